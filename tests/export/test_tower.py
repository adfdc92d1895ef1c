import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

import mmzoo
from mmzoo.export.tower import TOWER_METADATA_FILENAME, export_tower
from mmzoo.preprocessing import TextTokenizer


@pytest.fixture(scope="module")
def model_a():
    keras.utils.set_random_seed(1)
    return mmzoo.build("concat_classifier", preset="tiny", image_size=(32, 32), num_classes=3)


def _images(n=3):
    return np.random.default_rng(0).uniform(0, 255, (n, 32, 32, 3)).round().astype("float32")


def _model_b(name, **kwargs):
    """Model B: a tiny 3-class 32x32 zoo classifier, like model A, built around an exported tower."""
    return mmzoo.build(name, preset="tiny", num_classes=3, image_size=(32, 32), **kwargs)


def _assert_features_close(a, b, atol=1e-5):
    assert sorted(a) == sorted(b) == ["mask", "pooled", "tokens"]
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k], "float32"), np.asarray(b[k], "float32"), atol=atol)


def test_image_tower_round_trip_into_model_b(model_a, tmp_path):
    path = export_tower(model_a, tmp_path / "image_tower", tower="image")
    model_b = _model_b("gated_classifier", image_tower="hub", image_tower_kwargs={"handle": path, "trainable": True})
    x = _images()
    _assert_features_close(model_a.get_layer("image_tower")(x), model_b.get_layer("image_tower")(x))
    # Its variables came back trainable.
    assert len(model_b.get_layer("image_tower").trainable_weights) == len(
        model_a.get_layer("image_tower").trainable_weights
    )


def test_text_tower_round_trip_into_model_b(model_a, tmp_path):
    path = export_tower(model_a, tmp_path / "text_tower", tower="text")
    model_b = _model_b(
        "concat_classifier", tokenizer=model_a.tokenizer, text_tower="hub", text_tower_kwargs={"handle": path}
    )
    ids = model_a.tokenizer(tf.constant(["a red circle", "is there a blue square left of it"])).numpy()
    _assert_features_close(model_a.get_layer("text_tower")(ids), model_b.get_layer("text_tower")(ids))


def test_text_tower_as_its_own_preprocessor_for_another_tokenizer(model_a, tmp_path):
    """The BERT pattern with an mmzoo export: model B has a different vocabulary."""
    path = export_tower(model_a, tmp_path / "text_tower", tower="text")
    other = TextTokenizer(["circle", "red", "a", "blue", "square"], sequence_length=10)
    model_b = _model_b(
        "concat_classifier",
        tokenizer=other,
        text_tower="hub",
        text_tower_kwargs={
            "handle": path,
            "preprocessor": path,
            "preprocessor_signature": "tokenize",
            "vocabulary": other.vocabulary,
        },
    )
    texts = tf.constant(["a red circle", "a blue square"])
    got = model_b.get_layer("text_tower")(other(texts).numpy())
    expected = model_a.get_layer("text_tower")(model_a.tokenizer(texts).numpy())
    _assert_features_close(expected, got)


def test_hub_style_module_with_hub_load(model_a, tmp_path):
    path = export_tower(model_a, tmp_path / "image_tower", tower="image")
    module = hub.load(path)
    tower = model_a.get_layer("image_tower")
    assert len(module.trainable_variables) == len(tower.trainable_weights) > 0
    assert len(module.variables) == len(tower.weights)
    x = _images()
    out = module(tf.constant(x / 255.0, tf.float32), training=False)
    np.testing.assert_allclose(out["pooled"], tower(x)["pooled"], atol=1e-5)
    # Gradients reach the reloaded variables.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(module(tf.constant(x / 255.0, tf.float32), training=True)["pooled"])
    grads = tape.gradient(loss, module.trainable_variables)
    assert all(g is not None for g in grads)
    with open(os.path.join(path, "assets.extra", TOWER_METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert metadata["tower"] == "image" and metadata["image_size"] == [32, 32]
    assert metadata["pooled_dim"] == int(tower.output["pooled"].shape[-1])


def test_serving_default_from_raw_inputs(model_a, tmp_path):
    image_path = export_tower(model_a, tmp_path / "image_tower", tower="image")
    text_path = export_tower(model_a, tmp_path / "text_tower", tower="text")
    x = _images(2)
    pngs = [tf.io.encode_png(img.astype("uint8")).numpy() for img in x]
    loaded = tf.saved_model.load(image_path)
    sig = loaded.signatures["serving_default"]
    assert set(sig.structured_input_signature[1]) == {"image_bytes"}
    out = sig(image_bytes=tf.constant(pngs))
    expected = model_a.get_layer("image_tower")(model_a.image_preprocessor(tf.constant(pngs)))
    _assert_features_close(expected, out)

    texts = ["a red circle", "a blue square"]
    loaded_text = tf.saved_model.load(text_path)
    out = loaded_text.signatures["serving_default"](text=tf.constant(texts))
    expected = model_a.get_layer("text_tower")(model_a.tokenizer(tf.constant(texts)).numpy())
    _assert_features_close(expected, out)
    ids = loaded_text.signatures["tokenize"](text=tf.constant(texts))["token_ids"]
    np.testing.assert_array_equal(ids, model_a.tokenizer(tf.constant(texts)))


def test_errors_and_overwrite(model_a, tmp_path):
    path = export_tower(model_a, tmp_path / "t", tower="image")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_tower(model_a, path, tower="image")
    assert export_tower(model_a, path, tower="text", overwrite=True, verify=False) == path
    with open(os.path.join(path, "assets.extra", TOWER_METADATA_FILENAME)) as f:
        assert json.load(f)["tower"] == "text"
    with pytest.raises(ValueError, match="tower must be one of"):
        export_tower(model_a, tmp_path / "x", tower="audio")
    with pytest.raises(ValueError, match="no image tower named 'nope'"):
        export_tower(model_a, tmp_path / "y", tower="image", layer_name="nope")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-tower-")]


def test_cli_export_tower(model_a, tmp_path, capsys):
    from mmzoo.cli import main

    path = str(tmp_path / "a.keras")
    model_a.save(path)
    assert main(["export", path, "--tower", "text", "--base-dir", str(tmp_path / "towers")]) == 0
    out_dir = capsys.readouterr().out.strip()
    assert out_dir == str(tmp_path / "towers" / "a_text_tower")
    assert "tokenize" in tf.saved_model.load(out_dir).signatures
    assert main(["export", path, "--tower", "image", "--format", "tflite"]) == 2
    assert "--tower exports a reusable SavedModel" in capsys.readouterr().err
