"""Fixtures for the data tests: a tiny shapes dataset and a stand-in model.

The stand-in has what ``make_dataset`` needs from a zoo model (the real
``ImagePreprocessor`` and ``TextTokenizer``, ``label_names``, ``task`` and
``training_example``) without building any network.
"""

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.datasets.shapes import VOCABULARY, generate_shapes_dataset
from mmzoo.preprocessing import ImagePreprocessor, TextTokenizer


class StandInModel:
    """The data-facing surface of a zoo model (no network)."""

    def __init__(self, label_names=None, task="classification", image_size=16, sequence_length=8):
        self.task = task
        self.label_names = label_names
        self.image_preprocessor = ImagePreprocessor(image_size=(image_size, image_size))
        self.tokenizer = TextTokenizer(list(VOCABULARY), sequence_length=sequence_length)
        self.model_input_names = ["image", "token_ids"]

    def training_example(self, batch):
        if self.task == "classification":
            x = {"image": batch["image"], "token_ids": self.tokenizer(batch["text"])}
            return (x, batch["label"]) if "label" in batch else x
        return {"image": batch["image"], "token_ids": self.tokenizer(batch["caption"])}


class BatchEcho:
    """A stand-in whose ``training_example`` returns the decoded batch as is."""

    def __init__(self, label_names=None, task="", image_size=16):
        self.task = task
        self.label_names = label_names
        self.image_preprocessor = ImagePreprocessor(image_size=(image_size, image_size))

    def training_example(self, batch):
        return batch


def png_bytes(color=(255, 0, 0), size=8):
    image = np.zeros((size, size, 3), "uint8") + np.asarray(color, "uint8")
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A small shapes dataset on disk (read-only for the tests)."""
    out = tmp_path_factory.mktemp("shapes")
    return generate_shapes_dataset(out, num_images=12, image_size=32, seed=0)


@pytest.fixture
def image_files(tmp_path):
    """Three small PNG files in ``tmp_path``; returns their paths."""
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png_bytes(color))
        paths.append(str(path))
    return paths
