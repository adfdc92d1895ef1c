import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.export import export_saved_model
from mmzoo.export.tflite import TFLiteConversionError, convert_saved_model, export_tflite

TEXTS = ["a red circle", "is there a blue square", "green"]


def _interpreter(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's LiteRT deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(path))
    return interpreter


def _pngs(n=3, size=32):
    rng = np.random.default_rng(0)
    return [tf.io.encode_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).numpy() for _ in range(n)]


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(2)
    return mmzoo.build("concat_classifier", preset="tiny", image_size=(32, 32), num_classes=3)


@pytest.fixture(scope="module")
def classifier_saved_model(classifier, tmp_path_factory):
    """The classifier's SavedModel (read-only), shared by the parity and raw-signature tests."""
    return export_saved_model(classifier, tmp_path_factory.mktemp("tflite") / "sm", warmup=False)


def test_classifier_parity_with_the_saved_model(classifier, classifier_saved_model, tmp_path, capfd):
    model = classifier
    capfd.readouterr()
    info = export_tflite(model, tmp_path / "clf.tflite")
    # The dynamic-batch attempt fails (the LSTM's loop) and the fixed batch converts: the first
    # attempt's MLIR "error: failed to legalize ..." lines are not printed.
    assert "error" not in capfd.readouterr().err
    # The LSTM text tower converts to builtins with a fixed batch of 1 ("auto").
    assert (info["ops"], info["batch_size"]) == ("builtins", 1)
    assert set(info["signatures"]) == {"preprocessed"}
    loaded = tf.saved_model.load(classifier_saved_model).signatures["preprocessed"]
    runner = _interpreter(tmp_path / "clf.tflite").get_signature_runner("preprocessed")

    image = model.image_preprocessor(tf.constant(_pngs())).numpy()
    token_ids = model.tokenizer(tf.constant(TEXTS)).numpy().astype("int32")
    for i in range(len(TEXTS)):
        expected = loaded(image=tf.constant(image[i : i + 1]), token_ids=tf.constant(token_ids[i : i + 1]))
        got = runner(image=image[i : i + 1], token_ids=token_ids[i : i + 1])
        np.testing.assert_allclose(got["scores"], expected["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(got["class_ids"], expected["class_ids"].numpy())
        assert list(got["classes"]) == list(expected["classes"].numpy())

    with open(str(tmp_path / "clf.tflite") + ".json") as f:
        sidecar = json.load(f)
    assert sidecar["label_names"] == model.label_names
    assert sidecar["tokenizer"]["vocabulary"] == model.tokenizer.vocabulary
    assert sidecar["signatures"]["preprocessed"]["inputs"]["token_ids"] == {
        "dtype": "int32",
        "shape": [1, model.sequence_length],
    }


def test_dynamic_batch_with_a_recurrent_tower_needs_select_tf_ops(classifier, tmp_path):
    with pytest.raises(TFLiteConversionError, match="allow_select_tf_ops=True"):
        export_tflite(classifier, tmp_path / "strict.tflite", batch_size=None, allow_select_tf_ops=False)
    info = export_tflite(classifier, tmp_path / "flex.tflite", batch_size=None)
    assert (info["ops"], info["batch_size"]) == ("builtins+select_tf_ops", None)
    assert info["signatures"]["preprocessed"]["inputs"]["image"]["shape"] == [None, 32, 32, 3]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_tflite(classifier, tmp_path / "flex.tflite", batch_size=None)


def test_a_mixed_precision_model_converts_as_float32(tmp_path):
    from mmzoo.models.base import dtype_policy

    keras.utils.set_random_seed(2)
    with dtype_policy("mixed_float16"):
        model = mmzoo.build("concat_classifier", preset="tiny", image_size=(32, 32), num_classes=3)
    with dtype_policy("mixed_bfloat16"):  # the copy converted is float32 whatever the global policy is
        info = export_tflite(model, tmp_path / "mixed.tflite")
    assert (info["ops"], info["batch_size"]) == ("builtins", 1)  # float16 ops would need Select TF ops
    assert model.dtype_policy.name == "mixed_float16"  # the model itself is left as it was
    inputs = model.preprocess(tf.constant(_pngs(1)), TEXTS[:1])
    got = _interpreter(tmp_path / "mixed.tflite").get_signature_runner("preprocessed")(
        image=inputs["image"].numpy(), token_ids=inputs["token_ids"].numpy().astype("int32"))
    np.testing.assert_allclose(got["scores"], model(inputs)["scores"].numpy(), atol=2e-3)  # float16 rounding


def test_dual_encoder_embeddings_parity_with_the_saved_model(tmp_path):
    model = mmzoo.build("dual_encoder", preset="tiny", image_size=(32, 32))
    info = export_tflite(model, tmp_path / "de.tflite")
    assert set(info["signatures"]) == {"preprocessed", "embed_image", "embed_text"}
    assert (info["ops"], info["batch_size"]) == ("builtins", None)  # dynamic batch
    version_dir = export_saved_model(model, tmp_path / "sm", warmup=False)
    loaded = tf.saved_model.load(version_dir)
    pngs = _pngs()
    interpreter = _interpreter(tmp_path / "de.tflite")

    image = model.image_preprocessor(tf.constant(pngs)).numpy()
    got = interpreter.get_signature_runner("embed_image")(image=image)["embedding"]
    expected = loaded.signatures["embed_image"](image_bytes=tf.constant(pngs))["embedding"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    token_ids = model.tokenizer(tf.constant(TEXTS)).numpy().astype("int32")
    got = interpreter.get_signature_runner("embed_text")(token_ids=token_ids)["embedding"]
    expected = loaded.signatures["embed_text"](text=tf.constant(TEXTS))["embedding"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    got = interpreter.get_signature_runner("preprocessed")(image=image, token_ids=token_ids)["score"]
    expected = loaded.signatures["serving_default"](image_bytes=tf.constant(pngs), text=tf.constant(TEXTS))["score"]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_raw_input_signatures_do_not_convert_and_say_why(classifier_saved_model):
    with pytest.raises(TFLiteConversionError, match="ScaleAndTranslate|FastWordpiece"):
        convert_saved_model(classifier_saved_model, ["serving_default"])


def test_captioners_are_refused_clearly(tmp_path):
    model = mmzoo.build("lstm_captioner", preset="tiny", image_size=(32, 32))
    with pytest.raises(ValueError, match="captioners"):
        export_tflite(model, tmp_path / "cap.tflite")
    with pytest.raises(ValueError, match="batch_size"):
        export_tflite(mmzoo.build("itm_matcher", preset="tiny", image_size=(32, 32)), tmp_path / "x.tflite", batch_size=0)


def test_cli_export_tflite(tmp_path, capsys):
    from mmzoo.cli import main

    model = mmzoo.build("concat_classifier", preset="tiny", image_size=(32, 32), text_tower="transformer", num_classes=3)
    path = str(tmp_path / "clf.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", path, "--format", "tflite", "--base-dir", str(tmp_path)]) == 0
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]  # tf.lite's deprecation
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(tmp_path / "clf.tflite")
    assert (out["ops"], out["batch_size"], out["signatures"]) == ("builtins", None, ["preprocessed"])
    assert main(["export", path, "--format", "tflite", "--output", str(tmp_path / "x.tflite"), "--batch-size", "two"]) == 2
    assert "--batch-size must be" in capsys.readouterr().err
