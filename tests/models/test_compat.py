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
    assert mmzoo.build("gated_classifier", preset="tiny").fusion_kwargs["gate"] == "unit"
