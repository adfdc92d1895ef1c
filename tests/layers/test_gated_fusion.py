import keras
import numpy as np
import pytest

from mmzoo.layers.gated_fusion import GatedFusion
from tests.harness import run_layer_checks


def _pooled(batch=4, dims=(5, 3)):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(batch, d)).astype("float32") for d in dims]


def _numpy_gmu(layer, inputs):
    weights = [np.asarray(w) for w in layer.weights]
    n = len(inputs)
    kernels, biases = weights[0 : 2 * n : 2], weights[1 : 2 * n : 2]
    gate_kernel, gate_bias = weights[2 * n], weights[2 * n + 1]
    hidden = [np.tanh(x @ k + b) for x, k, b in zip(inputs, kernels, biases)]
    logits = np.concatenate(inputs, -1) @ gate_kernel + gate_bias
    gates = np.exp(logits - logits.max(-1, keepdims=True))
    gates /= gates.sum(-1, keepdims=True)
    fused = sum(gates[:, i : i + 1] * h for i, h in enumerate(hidden))
    return fused, gates, hidden


def test_standard_checks(tmp_path):
    run_layer_checks(
        lambda: GatedFusion(units=6, dropout=0.1), _pooled(), tmp_path=tmp_path, expected_output_shape=(4, 6)
    )


def test_standard_checks_return_gates_three_modalities(tmp_path):
    fused, gates = run_layer_checks(
        lambda: GatedFusion(units=6, return_gates=True),
        _pooled(dims=(5, 3, 7)),
        tmp_path=tmp_path,
        expected_output_shape=((4, 6), (4, 3)),
    )
    assert np.asarray(gates).shape == (4, 3)


@pytest.mark.parametrize("dims", [(5, 3), (5, 3, 7, 2)])
def test_matches_numpy_formula_and_gates_sum_to_one(dims):
    inputs = _pooled(dims=dims)
    layer = GatedFusion(units=4, return_gates=True)
    layer.build([x.shape for x in inputs])
    # Non-zero biases so that they are checked too.
    for w in layer.weights:
        w.assign(np.random.default_rng(2).normal(size=w.shape).astype("float32"))
    fused, gates = (np.asarray(t) for t in layer(inputs))
    expected_fused, expected_gates, _ = _numpy_gmu(layer, inputs)
    np.testing.assert_allclose(gates.sum(-1), np.ones(len(gates)), rtol=1e-6)
    assert np.all(gates > 0)
    np.testing.assert_allclose(gates, expected_gates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused, expected_fused, rtol=1e-5, atol=1e-5)


def test_two_modalities_equal_paper_sigmoid_form():
    # Arevalo et al. 2017: h = z * tanh(W1 x1) + (1 - z) * tanh(W2 x2),
    # z = sigmoid(Wz [x1, x2]); here Wz = column 0 - column 1 of the gate kernel.
    inputs = _pooled(dims=(5, 3))
    layer = GatedFusion(units=4)
    fused = np.asarray(layer(inputs))
    k1, b1, k2, b2, gate_kernel, gate_bias = (np.asarray(w) for w in layer.weights)
    h1, h2 = np.tanh(inputs[0] @ k1 + b1), np.tanh(inputs[1] @ k2 + b2)
    wz = gate_kernel[:, 0] - gate_kernel[:, 1]
    z = 1.0 / (1.0 + np.exp(-(np.concatenate(inputs, -1) @ wz + gate_bias[0] - gate_bias[1])))
    np.testing.assert_allclose(fused, z[:, None] * h1 + (1 - z[:, None]) * h2, rtol=1e-5, atol=1e-5)


def test_gates_learn_to_trust_the_informative_modality():
    # The GMU paper's synthetic check, tiny: modality 0 carries the label,
    # modality 1 is pure noise (and larger, so it is not trivially ignored).
    rng = np.random.default_rng(0)
    n = 512
    labels = rng.integers(0, 2, size=n)
    informative = (labels[:, None] * 2.0 - 1.0) + 0.3 * rng.normal(size=(n, 4))
    noise = rng.normal(size=(n, 4)) * 3.0
    x_inf = keras.Input((4,))
    x_noise = keras.Input((4,))
    fused, gates = GatedFusion(units=8, return_gates=True, name="gmu")([x_inf, x_noise])
    out = keras.layers.Dense(1, activation="sigmoid")(fused)
    model = keras.Model([x_inf, x_noise], out)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    data = [informative.astype("float32"), noise.astype("float32")]
    model.fit(data, labels.astype("float32"), epochs=15, batch_size=64, verbose=0)
    gate_model = keras.Model([x_inf, x_noise], gates)
    mean_gates = np.asarray(gate_model(data)).mean(0)
    assert mean_gates[0] > 0.75, mean_gates


def test_functional_model_shapes():
    a, b = keras.Input((5,)), keras.Input((3,))
    fused, gates = GatedFusion(units=4, return_gates=True)([a, b])
    assert tuple(fused.shape) == (None, 4) and tuple(gates.shape) == (None, 2)


def test_mixed_precision():
    fused, gates = GatedFusion(units=4, return_gates=True, dtype="mixed_float16")(_pooled())
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    np.testing.assert_allclose(np.asarray(gates, "float32").sum(-1), 1.0, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": -3}, "units"),
        ({"units": 0}, "units"),
        ({"units": 4.0}, "units"),
        ({"units": 4, "dropout": 1.5}, "dropout"),
        ({"units": 4, "return_gates": "yes"}, "return_gates"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received:"):
        GatedFusion(**kwargs)


@pytest.mark.parametrize(
    "inputs",
    [
        [np.ones((2, 3), "float32")],
        [np.ones((2, 3), "float32"), np.ones((2, 4, 3), "float32")],
    ],
)
def test_bad_inputs(inputs):
    with pytest.raises(ValueError, match="Received:"):
        GatedFusion(units=2)(inputs)
