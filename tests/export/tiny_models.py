"""Tiny test-local zoo models (classification, matching) and raw test inputs.

They follow the MultimodalModel contract exactly as zoo entries do, so the
export paths are exercised independently of the zoo builders.
"""

from __future__ import annotations

import io

import keras
import numpy as np
from PIL import Image

from mmzoo.models.base import MultimodalModel
from mmzoo.preprocessing import TextTokenizer

VOCABULARY = ["a", "red", "green", "blue", "circle", "square", "triangle", "small", "big"]
LABELS = ["circle", "square", "triangle"]


def tiny_tokenizer(sequence_length=6, **kwargs):
    return TextTokenizer(vocabulary=VOCABULARY, mode="word", sequence_length=sequence_length, **kwargs)


def _inputs_and_image_features(tokenizer, image_size, units, activation=None):
    """The tokenizer (default, given, or its config), the ``image`` and
    ``token_ids`` inputs, and the image branch: rescale, flatten, ``Dense(units)``."""
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    if isinstance(tokenizer, dict):
        tokenizer = keras.saving.deserialize_keras_object(tokenizer)
    h, w = image_size
    image = keras.Input((h, w, 3), name="image")
    token_ids = keras.Input((tokenizer.sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Rescaling(1.0 / 255.0)(image)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation=activation)(x)
    return tokenizer, image, token_ids, x


@keras.saving.register_keras_serializable(package="mmzoo_tests")
class TinyClassifier(MultimodalModel):
    """image Flatten+Dense and token Embedding+pooling -> ``{"scores"}``."""

    task = "classification"

    def __init__(self, tokenizer=None, image_size=(16, 16), label_names=tuple(LABELS), multi_label=False, **kwargs):
        tokenizer, image, token_ids, x = _inputs_and_image_features(tokenizer, image_size, 8, activation="relu")
        t = keras.layers.Embedding(tokenizer.vocabulary_size, 8, mask_zero=True)(token_ids)
        t = keras.layers.GlobalAveragePooling1D()(t)
        hidden = keras.layers.Concatenate()([x, t])
        scores = keras.layers.Dense(
            len(label_names), activation="sigmoid" if multi_label else "softmax", name="scores"
        )(hidden)
        self.multi_label = bool(multi_label)
        super().__init__(
            inputs={"image": image, "token_ids": token_ids},
            outputs={"scores": scores},
            tokenizer=tokenizer,
            image_size=image_size,
            label_names=label_names,
            **kwargs,
        )
        self.multi_label = bool(multi_label)

    def get_config(self):
        config = super().get_config()
        config["multi_label"] = self.multi_label
        return config


@keras.saving.register_keras_serializable(package="mmzoo_tests")
class TinyDualEncoder(MultimodalModel):
    """Two towers, L2-normalised embeddings; ``{"score"}`` = cosine similarity."""

    task = "matching"

    def __init__(self, tokenizer=None, image_size=(16, 16), dim=8, **kwargs):
        tokenizer, image, token_ids, x = _inputs_and_image_features(tokenizer, image_size, dim)
        image_embedding = keras.layers.UnitNormalization(name="image_embedding")(x)
        t = keras.layers.Embedding(tokenizer.vocabulary_size, dim, mask_zero=True)(token_ids)
        t = keras.layers.GlobalAveragePooling1D()(t)
        t = keras.layers.Dense(dim)(t)
        text_embedding = keras.layers.UnitNormalization(name="text_embedding")(t)
        score = keras.layers.Dot(axes=1)([image_embedding, text_embedding])
        score = keras.layers.Reshape((), name="score")(score)
        self.image_encoder = keras.Model(image, image_embedding, name="image_encoder")
        self.text_encoder = keras.Model(token_ids, text_embedding, name="text_encoder")
        super().__init__(
            inputs={"image": image, "token_ids": token_ids},
            outputs={"score": score},
            tokenizer=tokenizer,
            image_size=image_size,
            **kwargs,
        )
        self.dim = dim

    def embed_image(self, image):
        return self.image_encoder(image, training=False)

    def embed_text(self, token_ids):
        return self.text_encoder(token_ids, training=False)

    def get_config(self):
        config = super().get_config()
        config["dim"] = self.dim
        return config


def encode(array, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def random_images(n, size=(20, 24), seed=0, fmt="PNG") -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(rng.integers(0, 256, (*size, 3)), fmt=fmt) for _ in range(n)]


def png_header_only(width, height) -> bytes:
    """A PNG whose header claims ``width x height`` (for the size guard)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
