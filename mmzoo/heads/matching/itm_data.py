"""Training data for image-text matching (ITM) cross-encoders.

An ITM model learns ``P(match | image, text)`` from positive pairs and
negatives. Random negatives are mostly easy; ALBEF/BLIP mine *hard* negatives,
pairs a dual encoder finds similar but that do not match. ``make_itm_dataset``
builds a ``tf.data.Dataset`` of ``({"image", "token_ids"}, label)`` batches
from manifest records:

* every (image, caption) of the records is a positive (label 1);
* for every positive, ``num_negatives`` captions for its image and
  ``num_negatives`` images for its caption are negatives (label 0): with a
  ``dual_encoder``, drawn among the ``sample_from_top`` most similar
  non-matching ones (hard negatives), otherwise uniformly at random among
  the non-matching ones.

Captions are compared by exact string: a caption identical to one of the
image's own captions is never used as its negative (frequent in templated
data such as the built-in shapes captions).

Mining happens once per call; call it again with another ``seed`` per epoch
(or after further dual-encoder training) for fresh negatives.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmzoo.heads.matching.mining import mine_hard_negatives


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
        key = record.image if isinstance(record.image, (bytes, bytearray)) else str(record.image)
        i = image_index.setdefault(bytes(key) if isinstance(key, bytearray) else key, len(image_index))
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


def decode_images(images: Sequence, preprocessor, batch_size: int = 64) -> np.ndarray:
    """All ``images`` (paths or encoded bytes) decoded into one float32 ``[N, H, W, 3]`` array."""
    from mmzoo.data.pipeline import image_dataset

    batches = [np.asarray(b) for b in image_dataset(images, preprocessor.decode_one, batch_size)]
    return np.concatenate(batches, axis=0)


def tokenize_texts(tokenizer, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
    """int32 ``[N, L]`` token ids of ``texts``, in batches."""
    chunks = [
        np.asarray(tokenizer(np.array(list(texts[i : i + batch_size]), dtype=object)))
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(chunks, axis=0)


def _random_negatives(positive_lists, num_keys, num_negatives, rng):
    out = np.zeros((len(positive_lists), num_negatives), dtype=np.int64)
    for q, pos in enumerate(positive_lists):
        candidates = np.setdiff1d(np.arange(num_keys), pos)
        if len(candidates) == 0:
            candidates = np.arange(num_keys)
        out[q] = rng.choice(candidates, size=num_negatives, replace=len(candidates) < num_negatives)
    return out


def itm_pairs(
    records,
    dual_encoder=None,
    *,
    num_negatives: int = 1,
    sample_from_top: int = 8,
    seed: int = 0,
    batch_size: int = 64,
):
    """The (image, text, label) triples ``make_itm_dataset`` trains on.

    Returns ``(images, texts, image_ids, text_ids, labels)``: the unique
    images and texts, and aligned int arrays of pairs with 1/0 labels.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1. Received: num_negatives={num_negatives}")
    images, texts, text_to_images = records_to_retrieval_set(records)
    image_to_texts: list[list[int]] = [[] for _ in images]
    for t, ims in enumerate(text_to_images):
        for i in ims:
            image_to_texts[i].append(t)
    rng = np.random.default_rng(seed)
    if dual_encoder is not None:
        pixels = decode_images(images, dual_encoder.image_preprocessor, batch_size)
        image_emb = np.asarray(dual_encoder.image_encoder.predict(pixels, batch_size=batch_size, verbose=0))
        token_ids = tokenize_texts(dual_encoder.tokenizer, texts)
        text_emb = np.asarray(dual_encoder.text_encoder.predict(token_ids, batch_size=256, verbose=0))
        top = max(sample_from_top, num_negatives)
        neg_texts = mine_hard_negatives(
            image_emb, text_emb, image_to_texts, num_negatives=num_negatives, sample_from_top=top, seed=seed
        )
        neg_images = mine_hard_negatives(
            text_emb, image_emb, text_to_images, num_negatives=num_negatives, sample_from_top=top, seed=seed + 1
        )
    else:
        neg_texts = _random_negatives(image_to_texts, len(texts), num_negatives, rng)
        neg_images = _random_negatives(text_to_images, len(images), num_negatives, rng)
    image_ids, text_ids, labels = [], [], []
    for i, own in enumerate(image_to_texts):
        for t in own:
            image_ids.append(i), text_ids.append(t), labels.append(1.0)
            for n in range(num_negatives):
                # A negative text for the image and a negative image for the text.
                image_ids.append(i), text_ids.append(int(neg_texts[i, n])), labels.append(0.0)
                image_ids.append(int(neg_images[t, n])), text_ids.append(t), labels.append(0.0)
    labels = np.asarray(labels, np.float32)
    image_ids, text_ids = np.asarray(image_ids), np.asarray(text_ids)
    # A mined "negative" can still match (shared captions): label it truthfully.
    for k in np.flatnonzero(labels == 0):
        if image_ids[k] in text_to_images[text_ids[k]]:
            labels[k] = 1.0
    return images, texts, image_ids, text_ids, labels


def make_itm_dataset(
    records,
    itm_model,
    dual_encoder=None,
    *,
    batch_size: int = 32,
    num_negatives: int = 1,
    sample_from_top: int = 8,
    shuffle: bool = True,
    repeat: bool = False,
    seed: int = 0,
):
    """A ``tf.data.Dataset`` of ``({"image", "token_ids"}, label)`` for ``itm_model.fit``.

    Args:
        records: manifest records (``mmzoo.data.read_manifest``).
        itm_model: the ``ITMMatcher`` to train (its tokenizer and image size
            are used).
        dual_encoder: a trained ``DualEncoder`` to mine hard negatives with;
            ``None`` uses random negatives.
        batch_size: pairs per batch.
        num_negatives: negative texts per image and negative images per text,
            for every positive pair (``1`` gives one positive for two
            negatives, as ALBEF).
        sample_from_top: hard negatives are drawn among this many most
            similar non-matching items.
        shuffle, repeat, seed: the usual ``tf.data`` options.

    Example:

    >>> import mmzoo
    >>> from mmzoo.data import read_manifest
    >>> itm = mmzoo.build("itm_matcher", preset="tiny")
    >>> # ds = make_itm_dataset(read_manifest("data/manifest.jsonl"), itm, dual_encoder=clip)
    >>> # itm.fit(ds, epochs=1)
    """
    import tensorflow as tf

    images, texts, image_ids, text_ids, labels = itm_pairs(
        records, dual_encoder, num_negatives=num_negatives, sample_from_top=sample_from_top, seed=seed
    )
    token_ids = tokenize_texts(itm_model.tokenizer, texts)
    is_path = np.array([isinstance(im, str) for im in images])
    data = np.array([im.encode("utf-8") if isinstance(im, str) else bytes(im) for im in images], dtype=object)
    ds = tf.data.Dataset.from_tensor_slices(
        (data[image_ids], is_path[image_ids], token_ids[text_ids], labels)
    )
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    decode_one = itm_model.image_preprocessor.decode_one

    def load(value, path_flag, tokens, label):
        raw = tf.cond(path_flag, lambda: tf.io.read_file(value), lambda: value)
        return {"image": decode_one(raw), "token_ids": tokens}, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
