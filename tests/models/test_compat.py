"""Files written by earlier mmzoo versions still load, with the same outputs."""

import os
import warnings

import numpy as np
import pytest

import mmzoo

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "mmzoo_0_1")


@pytest.fixture(scope="module")
def outputs():
    with np.load(os.path.join(FIXTURES, "outputs.npz")) as data:
        return dict(data)


@pytest.mark.parametrize("name", ["gated_classifier", "dual_encoder", "transformer_captioner"])
def test_mmzoo_0_1_keras_files_load_with_identical_outputs(name, outputs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mmzoo.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    x = {"image": outputs["image"], "token_ids": outputs[f"{name}/token_ids"]}
    x = {k: v for k, v in x.items() if k in model.model_input_names}
    y = model(x, training=False)
    expected = {k.split("/", 1)[1]: v for k, v in outputs.items() if k.startswith(name + "/") and k != f"{name}/token_ids"}
    assert set(y) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(y[key]), value, rtol=1e-5, atol=1e-5, err_msg=f"{name}/{key}")
    gate_warnings = [w for w in caught if "per hidden unit" in str(w.message)]
    assert bool(gate_warnings) == (name == "gated_classifier")


def test_gated_classifier_saved_before_per_unit_gates_keeps_its_scalar_gate(outputs):
    with pytest.warns(UserWarning, match=r"\['gate'\]='modality'"):
        model = mmzoo.load_model(os.path.join(FIXTURES, "gated_classifier.keras"))
    assert model.fusion_kwargs["gate"] == "modality"
    x = {"image": outputs["image"], "token_ids": outputs["gated_classifier/token_ids"]}
    gates = np.asarray(model.fusion_gates(x))
    assert gates.shape == (3, 2)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-5)
    # Built now, the same entry has per-unit gates.
    assert mmzoo.build("gated_classifier", preset="tiny", num_classes=3).fusion_kwargs["gate"] == "unit"


FIXTURES_0_2 = os.path.join(os.path.dirname(FIXTURES), "mmzoo_0_2")


@pytest.mark.parametrize("name", ["concat_classifier", "multitask_classifier", "itm_matcher", "lstm_captioner"])
def test_keras_files_from_before_the_redesign_load_with_identical_outputs(name):
    with np.load(os.path.join(FIXTURES_0_2, "outputs.npz")) as data:
        expected = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(name + "/")}
    model = mmzoo.load_model(os.path.join(FIXTURES_0_2, f"{name}.keras"))
    x = {k: expected.pop(k) for k in ("image", "token_ids")}
    y = model({k: v for k, v in x.items() if k in model.model_input_names}, training=False)
    assert set(y) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(y[key]), value, rtol=1e-5, atol=1e-5, err_msg=f"{name}/{key}")


def test_export_from_before_the_redesign_serves_the_same_answers():
    import tensorflow as tf

    with np.load(os.path.join(FIXTURES_0_2, "export_outputs.npz"), allow_pickle=True) as data:
        expected = dict(data)
    loaded = tf.saved_model.load(os.path.join(FIXTURES_0_2, "concat_classifier_export", "1"))
    result = loaded.signatures["serving_default"](
        image_bytes=tf.constant(list(expected.pop("image_bytes"))), text=tf.constant(list(expected.pop("text")))
    )
    assert set(result) == set(expected) == {"class_ids", "classes", "scores"}
    np.testing.assert_allclose(result["scores"].numpy(), expected["scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["class_ids"].numpy(), expected["class_ids"])
    np.testing.assert_array_equal(result["classes"].numpy(), expected["classes"])
