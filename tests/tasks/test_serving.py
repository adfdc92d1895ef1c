"""Tests for mmzoo/tasks/serving.py: input names, specs, the batch check and the empty-batch guard."""

import keras
import pytest
import tensorflow as tf

from mmzoo.tasks.serving import check_same_batch, image_spec, model_input_names, token_spec, with_one_row_at_least
from tests.export.tiny_models import TinyClassifier


def test_model_input_names_and_specs():
    classifier = TinyClassifier()
    assert sorted(model_input_names(classifier)) == ["image", "token_ids"]
    plain = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(1)])
    assert model_input_names(plain) == ["features"]
    assert image_spec(classifier) == tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")
    assert token_spec(classifier, batch_size=1) == tf.TensorSpec([1, 6], tf.int32, name="token_ids")


def test_check_same_batch_names_both_inputs():
    images, texts = check_same_batch(tf.constant(["x", "y"]), tf.constant(["a", "b"]))
    assert images.shape == texts.shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes and text must have the same batch size"):
        check_same_batch(tf.constant(["x", "y"]), tf.constant(["a"]))


def test_with_one_row_at_least_runs_an_empty_batch_as_one_row():
    seen = []

    def fn(inputs):
        seen.append(int(inputs["x"].shape[0]))
        return {"y": inputs["x"] * 2.0}

    out = with_one_row_at_least(fn, {"x": tf.zeros((0, 3))})
    assert seen == [1] and tuple(out["y"].shape) == (0, 3)
    out = with_one_row_at_least(fn, {"x": tf.ones((2, 3))})
    assert seen[-1] == 2 and out["y"].numpy().tolist() == [[2.0] * 3] * 2
    with_one_row_at_least(fn, {"x": tf.zeros((0, 3))}, enabled=False)
    assert seen[-1] == 0
