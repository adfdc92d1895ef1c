"""Records to model inputs, for running a model over a whole set (evaluation, mining)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmzoo.data.pipeline import image_dataset


def record_image_key(record):
    """A hashable key of a record's image: its path, or its encoded bytes."""
    key = record.image if isinstance(record.image, (bytes, bytearray)) else str(record.image)
    return bytes(key) if isinstance(key, bytearray) else key


def records_to_retrieval_set(records):
    """Unique images, unique caption strings and ``text_to_images``.

    Returns ``(images, texts, text_to_images)``: ``images`` are the records'
    image paths (or encoded bytes) without repeats, ``texts`` the distinct
    captions (a record without captions contributes its ``text``), and
    ``text_to_images[t]`` the sorted indices of the images having caption
    ``t``. Identical captions of several images become one text matching all
    of them.
    """
    image_index: dict = {}
    text_index: dict[str, int] = {}
    text_to_images: list[set[int]] = []
    for record in records:
        i = image_index.setdefault(record_image_key(record), len(image_index))
        captions = list(getattr(record, "captions", None) or [])
        if not captions and getattr(record, "text", None):
            captions = [record.text]
        for caption in captions:
            t = text_index.get(caption)
            if t is None:
                t = text_index[caption] = len(text_index)
                text_to_images.append(set())
            text_to_images[t].add(i)
    if not image_index or not text_index:
        raise ValueError(
            "Matching needs records with images and captions (or texts). "
            f"Received: {len(image_index)} images and {len(text_index)} texts"
        )
    return list(image_index), list(text_index), [sorted(s) for s in text_to_images]


def preprocess_images(images: Sequence, preprocessor, batch_size: int = 64) -> np.ndarray:
    """All ``images`` (paths or encoded bytes) decoded into one float32 ``[N, H, W, 3]`` array."""
    batches = [np.asarray(b) for b in image_dataset(images, preprocessor.decode_one, batch_size)]
    return np.concatenate(batches, axis=0)


def tokenize_texts(tokenizer, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
    """int32 ``[N, L]`` token ids of ``texts``, in batches."""
    chunks = [
        np.asarray(tokenizer(np.array(list(texts[i : i + batch_size]), dtype=object)))
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(chunks, axis=0)
