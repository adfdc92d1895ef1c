"""Serving signatures (mmzoo/export/signatures.py), called eagerly without a SavedModel round trip:
the classification mode, the endpoints per task and modality, the classification head, empty and
mismatched batches."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.export.signatures import (
    MULTI_LABEL_THRESHOLD,
    SignatureBuilder,
    _classification_head,
    _with_one_row_at_least,
    classification_mode,
    is_multi_label,
    model_input_names,
)
from tests.export.tiny_models import LABELS, TinyClassifier, TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square"]


@pytest.fixture(scope="module")
def classifier():
    return TinyClassifier()


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def _keras_scores(model, images, texts):
    return keras.ops.convert_to_numpy(model(model.preprocess(tf.constant(images), tf.constant(texts)))["scores"])


def test_classification_mode_from_mode_multi_label_or_default():
    assert classification_mode(types.SimpleNamespace(mode="binary")) == "binary"
    assert classification_mode(types.SimpleNamespace(mode=None, multi_label=True)) == "multilabel"
    assert classification_mode(types.SimpleNamespace()) == "multiclass"
    assert is_multi_label(types.SimpleNamespace(mode="multilabel"))
    assert not is_multi_label(types.SimpleNamespace(mode="binary"))
    # Models that keep the flag only in their config.
    from_config = types.SimpleNamespace(get_config=lambda: {"mode": "multilabel"})
    assert classification_mode(from_config) == "multilabel" and is_multi_label(from_config)
    assert classification_mode(TinyClassifier(multi_label=True)) == "multilabel"
    assert classification_mode(mmzoo.build("concat_classifier", preset="tiny", label_names=["n", "y"],
                                           mode="binary")) == "binary"


def test_model_input_names(classifier):
    assert sorted(model_input_names(classifier)) == ["image", "token_ids"]
    plain = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(1)])
    assert model_input_names(plain) == ["features"]


def test_signature_builder_refuses_other_models_and_beam_widths(classifier):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Received: task='' on Sequential"):
        SignatureBuilder(plain)
    with pytest.raises(ValueError, match="beam_width must be at least 1. Received: beam_width=0"):
        SignatureBuilder(classifier, beam_width=0)


def test_endpoints_per_task_and_modality(classifier):
    eps = SignatureBuilder(classifier).endpoints()
    assert list(eps) == ["serving_default", "preprocessed"]
    assert eps["serving_default"][1] == [{name: tf.TensorSpec([None], tf.string, name=name)
                                          for name in ("image_bytes", "text")}]
    image_spec, token_spec = eps["preprocessed"][1][0]["image"], eps["preprocessed"][1][0]["token_ids"]
    assert (image_spec.shape.as_list(), image_spec.dtype) == ([None, 16, 16, 3], tf.float32)
    assert (token_spec.shape.as_list(), token_spec.dtype) == ([None, 6], tf.int32)

    assert list(SignatureBuilder(TinyDualEncoder()).endpoints()) == [
        "serving_default", "preprocessed", "embed_image", "embed_text"]

    image_only = SignatureBuilder(mmzoo.build("image_only_classifier", preset="tiny", label_names=LABELS,
                                              image_size=(16, 16)))
    assert (image_only.uses_image, image_only.uses_text) == (True, False)
    assert [s.name for s in image_only.endpoints()["serving_default"][1]] == ["image_bytes"]
    text_only = SignatureBuilder(mmzoo.build("text_only_classifier", preset="tiny", label_names=LABELS))
    assert (text_only.uses_image, text_only.uses_text) == (False, True)
    assert [s.name for s in text_only.endpoints()["serving_default"][1]] == ["text"]

    captioner = SignatureBuilder(mmzoo.build("transformer_captioner", preset="tiny", image_size=(16, 16)),
                                 beam_width=2)
    assert (captioner.uses_image, captioner.uses_text, captioner.beam_width) == (True, False, 2)
    eps = captioner.endpoints()
    assert list(eps) == ["serving_default", "beam_search", "preprocessed"]
    assert [s.name for s in eps["beam_search"][1]] == ["image_bytes"]
    assert eps["preprocessed"][1][0].shape.as_list() == [None, 16, 16, 3]


def test_serving_default_is_the_models_own_prediction(classifier):
    eps = SignatureBuilder(classifier).endpoints()
    images = random_images(2, size=(20, 24))
    out = _numpy(eps["serving_default"][0]({"image_bytes": tf.constant(images), "text": tf.constant(TEXTS)}))
    expected = _keras_scores(classifier, images, TEXTS)
    assert set(out) == {"scores", "class_ids", "classes"}
    np.testing.assert_allclose(out["scores"], expected, atol=1e-5)
    assert out["class_ids"].dtype == np.int64 and out["class_ids"].tolist() == expected.argmax(-1).tolist()
    assert [c.decode() for c in out["classes"]] == [LABELS[i] for i in expected.argmax(-1)]
    inputs = classifier.preprocess(tf.constant(images), tf.constant(TEXTS))
    pre = _numpy(eps["preprocessed"][0]({"image": tf.convert_to_tensor(inputs["image"]),
                                         "token_ids": tf.cast(inputs["token_ids"], tf.int32)}))
    np.testing.assert_allclose(pre["scores"], expected, atol=1e-5)


def test_empty_and_mismatched_batches(classifier):
    serve = SignatureBuilder(classifier).endpoints()["serving_default"][0]
    empty = serve({"image_bytes": tf.constant([], tf.string), "text": tf.constant([], tf.string)})
    assert {k: tuple(v.shape) for k, v in empty.items()} == {"scores": (0, 3), "class_ids": (0,), "classes": (0,)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes and text must have the same batch size"):
        serve({"image_bytes": tf.constant(random_images(2)), "text": tf.constant(TEXTS[:1])})


def test_with_one_row_at_least_runs_an_empty_batch_as_one_row():
    seen = []

    def fn(inputs):
        seen.append(int(inputs["x"].shape[0]))
        return {"y": inputs["x"] * 2.0}

    out = _with_one_row_at_least(fn, {"x": tf.zeros((0, 3))})
    assert seen == [1] and tuple(out["y"].shape) == (0, 3)
    out = _with_one_row_at_least(fn, {"x": tf.ones((2, 3))})
    assert seen[-1] == 2 and out["y"].numpy().tolist() == [[2.0] * 3] * 2
    _with_one_row_at_least(fn, {"x": tf.zeros((0, 3))}, enabled=False)
    assert seen[-1] == 0


def test_classification_head_binary_multilabel_and_label_names():
    binary = types.SimpleNamespace(mode="binary", label_names=["no", "yes"])
    out = _numpy(_classification_head(binary, {"scores": tf.constant([[0.2], [0.9]])}))
    np.testing.assert_allclose(out["scores"], [[0.8, 0.2], [0.1, 0.9]], atol=1e-6)
    assert out["classes"].tolist() == [b"no", b"yes"] and "predicted" not in out

    multi = types.SimpleNamespace(mode="multilabel", label_names=None)
    out = _numpy(_classification_head(multi, {"probabilities": tf.constant([[0.7, 0.2, MULTI_LABEL_THRESHOLD]])}))
    assert out["predicted"].tolist() == [[True, False, True]]
    assert out["classes"].tolist() == [b"0"]  # no label names: the class ids as names

    wrong = types.SimpleNamespace(mode="multiclass", label_names=["a", "b"])
    with pytest.raises(ValueError, match="Received: 2 label_names for 3 classes"):
        _classification_head(wrong, {"scores": tf.zeros((1, 3))})
    with pytest.raises(ValueError, match="must hold 'scores'"):
        _classification_head(wrong, {"a": tf.zeros((1, 2)), "b": tf.zeros((1, 2))})
