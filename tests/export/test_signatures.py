"""Serving signatures (mmzoo/export/signatures.py), called eagerly without a SavedModel round trip:
the endpoints per task as the archive gets them, refusals, the model's own prediction, empty and
mismatched batches. (Each task's outputs are tested in tests/tasks.)"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.export.signatures import serving_endpoints
from tests.export.tiny_models import LABELS, TinyClassifier, TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square"]


@pytest.fixture(scope="module")
def classifier():
    return TinyClassifier()


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def _keras_scores(model, images, texts):
    return keras.ops.convert_to_numpy(model(model.preprocess(tf.constant(images), tf.constant(texts)))["scores"])


def test_serving_endpoints_refuses_other_models_and_beam_widths(classifier):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Received: task='' on Sequential"):
        serving_endpoints(plain)
    with pytest.raises(ValueError, match="beam_width must be at least 1. Received: beam_width=0"):
        serving_endpoints(classifier, beam_width=0)


def test_endpoints_per_task_and_modality(classifier):
    eps = serving_endpoints(classifier)
    assert list(eps) == ["serving_default", "preprocessed"]
    assert eps["serving_default"][1] == [{name: tf.TensorSpec([None], tf.string, name=name)
                                          for name in ("image_bytes", "text")}]
    image_spec, token_spec = eps["preprocessed"][1][0]["image"], eps["preprocessed"][1][0]["token_ids"]
    assert (image_spec.shape.as_list(), image_spec.dtype) == ([None, 16, 16, 3], tf.float32)
    assert (token_spec.shape.as_list(), token_spec.dtype) == ([None, 6], tf.int32)

    assert list(serving_endpoints(TinyDualEncoder())) == [
        "serving_default", "preprocessed", "embed_image", "embed_text"]

    captioner = mmzoo.build("transformer_captioner", preset="tiny", image_size=(16, 16))
    assert list(serving_endpoints(captioner, beam_width=2)) == ["serving_default", "beam_search", "preprocessed"]


def test_serving_default_is_the_models_own_prediction(classifier):
    eps = serving_endpoints(classifier)
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
    serve = serving_endpoints(classifier)["serving_default"][0]
    empty = serve({"image_bytes": tf.constant([], tf.string), "text": tf.constant([], tf.string)})
    assert {k: tuple(v.shape) for k, v in empty.items()} == {"scores": (0, 3), "class_ids": (0,), "classes": (0,)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes and text must have the same batch size"):
        serve({"image_bytes": tf.constant(random_images(2)), "text": tf.constant(TEXTS[:1])})




def test_export_stores_each_weight_once(tmp_path):
    """keras-team/keras#23553: ExportArchive saved every weight twice (``variables/`` and ``_all_variables/``)."""
    from mmzoo.export import export_saved_model
    from mmzoo.export.tower import export_tower

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, image_size=(16, 16))
    weights = sum(int(np.prod(v.shape)) for v in model.weights)
    version_dir = export_saved_model(model, tmp_path / "m", warmup=False, verify=False)
    tower_dir = export_tower(model, str(tmp_path / "tower"), tower="image", verify=False)
    image_weights = sum(int(np.prod(v.shape)) for v in model.get_layer("image_tower").weights)
    for directory, expected in ((version_dir, weights), (tower_dir, image_weights)):
        reader = tf.train.load_checkpoint(os.path.join(directory, "variables", "variables"))
        shapes = reader.get_variable_to_shape_map()
        stored = sum(int(np.prod(s)) for k, s in shapes.items() if k.endswith("VARIABLE_VALUE"))
        assert not [k for k in shapes if k.startswith("_all_variables/")], directory
        assert expected <= stored < expected + 16, (directory, stored, expected)  # + a few scalar states
    loaded = tf.saved_model.load(version_dir)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(random_images(2)), text=tf.constant(["a", "b"]))
    np.testing.assert_allclose(
        out["scores"].numpy(),
        keras.ops.convert_to_numpy(model(model.preprocess(tf.constant(random_images(2)), tf.constant(["a", "b"])))["scores"]),
        atol=1e-5)
