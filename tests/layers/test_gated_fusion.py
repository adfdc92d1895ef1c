import keras
import numpy as np
import pytest

from mmzoo.layers.gated_fusion import GatedFusion
from tests.harness import BAD_POOLED_FUSION_INPUTS, assert_refused_with_received, run_layer_checks


def _pooled(batch=4, dims=(5, 3)):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(batch, d)).astype("float32") for d in dims]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _numpy_gmu(layer, inputs):
    """The GMU computed by hand from the layer's weights: (fused, gates, hidden)."""
    weights = [np.asarray(w) for w in layer.weights]
    n = len(inputs)
    kernels, biases = weights[0 : 2 * n : 2], weights[1 : 2 * n : 2]
    gate_kernel, gate_bias = weights[2 * n], weights[2 * n + 1]
    hidden = [np.tanh(x @ k + b) for x, k, b in zip(inputs, kernels, biases)]
    logits = np.concatenate(inputs, -1) @ gate_kernel + gate_bias
    if layer.gate == "modality":  # one scalar gate per modality: [batch, N]
        gates = _softmax(logits, -1)
        fused = sum(gates[:, i : i + 1] * h for i, h in enumerate(hidden))
    elif n == 2:  # the paper: z = sigmoid(W_z [x1; x2]), h = z h1 + (1 - z) h2
        z = _sigmoid(logits)
        gates = np.stack([z, 1 - z], axis=1)
        fused = z * hidden[0] + (1 - z) * hidden[1]
    else:  # per unit, a softmax over the modalities
        gates = _softmax(logits.reshape(len(logits), n, layer.units), 1)
        fused = sum(gates[:, i] * h for i, h in enumerate(hidden))
    return fused, gates, hidden


def _random_weights(layer, seed=2):
    # Non-zero biases so that they are checked too.
    for w in layer.weights:
        w.assign(np.random.default_rng(seed).normal(size=w.shape).astype("float32"))


def test_standard_checks(tmp_path):
    run_layer_checks(
        lambda: GatedFusion(units=6, dropout=0.1), _pooled(), tmp_path=tmp_path, expected_output_shape=(4, 6)
    )


def test_standard_checks_return_gates_three_modalities(tmp_path):
    fused, gates = run_layer_checks(
        lambda: GatedFusion(units=6, return_gates=True),
        _pooled(dims=(5, 3, 7)),
        tmp_path=tmp_path,
        expected_output_shape=((4, 6), (4, 3, 6)),
    )
    assert np.asarray(gates).shape == (4, 3, 6)


def test_standard_checks_modality_gate(tmp_path):
    run_layer_checks(
        lambda: GatedFusion(units=6, gate="modality", return_gates=True),
        _pooled(),
        tmp_path=tmp_path,
        expected_output_shape=((4, 6), (4, 2)),
    )


@pytest.mark.parametrize("gate", ["unit", "modality"])
@pytest.mark.parametrize("dims", [(5, 3), (5, 3, 7), (5, 3, 7, 2)])
def test_matches_hand_computed_formula_and_gates_sum_to_one(dims, gate):
    inputs = _pooled(dims=dims)
    layer = GatedFusion(units=4, gate=gate, return_gates=True)
    layer.build([x.shape for x in inputs])
    _random_weights(layer)
    fused, gates = (np.asarray(t) for t in layer(inputs))
    expected_fused, expected_gates, _ = _numpy_gmu(layer, inputs)
    assert gates.shape == ((4, len(dims), 4) if gate == "unit" else (4, len(dims)))
    np.testing.assert_allclose(gates.sum(1), np.ones(gates.sum(1).shape), rtol=1e-6)
    assert np.all(gates > 0)
    np.testing.assert_allclose(gates, expected_gates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused, expected_fused, rtol=1e-5, atol=1e-5)


def test_unit_gates_differ_across_units():
    # The point of the GMU: each hidden unit mixes the modalities in its own
    # proportion, so the gates of one example are not one scalar per modality.
    inputs = _pooled(dims=(5, 3))
    layer = GatedFusion(units=8, return_gates=True)
    _, gates = layer(inputs)
    gates = np.asarray(gates)
    assert gates.shape == (4, 2, 8)
    assert np.all(gates[:, 0].std(-1) > 1e-3)


def test_two_modalities_sigmoid_equals_softmax_over_modalities():
    # For N = 2 the sigmoid gate is a softmax over the two modalities with
    # logits (a, 0): the N > 2 form is its generalisation.
    inputs = _pooled(dims=(5, 3))
    layer = GatedFusion(units=4)
    layer.build([x.shape for x in inputs])
    _random_weights(layer, seed=5)
    fused = np.asarray(layer(inputs))
    k1, b1, k2, b2, gate_kernel, gate_bias = (np.asarray(w) for w in layer.weights)
    hidden = np.stack([np.tanh(inputs[0] @ k1 + b1), np.tanh(inputs[1] @ k2 + b2)], axis=1)
    logit = np.concatenate(inputs, -1) @ gate_kernel + gate_bias
    gates = _softmax(np.stack([logit, np.zeros_like(logit)], axis=1), 1)
    np.testing.assert_allclose(fused, (gates * hidden).sum(1), rtol=1e-5, atol=1e-5)


def test_config_without_gate_loads_as_the_scalar_modality_gate():
    # A GatedFusion config written before per-unit gates has no "gate".
    old = {"name": "fusion", "units": 4, "return_gates": True, "dropout": 0.0}
    layer = GatedFusion.from_config(old)
    assert layer.gate == "modality"
    _, gates = layer(_pooled())
    assert np.asarray(gates).shape == (4, 2)
    assert GatedFusion.from_config(GatedFusion(units=4).get_config()).gate == "unit"


@pytest.mark.parametrize("gate, floor", [("unit", 0.6), ("modality", 0.75)])
def test_gates_learn_to_trust_the_informative_modality(gate, floor):
    # The GMU paper's synthetic check, tiny: modality 0 carries the label,
    # modality 1 is pure noise (and larger, so it is not trivially ignored).
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 512
    labels = rng.integers(0, 2, size=n)
    informative = (labels[:, None] * 2.0 - 1.0) + 0.3 * rng.normal(size=(n, 4))
    noise = rng.normal(size=(n, 4)) * 3.0
    x_inf = keras.Input((4,))
    x_noise = keras.Input((4,))
    fused, gates = GatedFusion(units=8, gate=gate, return_gates=True, name="gmu")([x_inf, x_noise])
    if gate == "unit":
        gates = keras.ops.mean(gates, axis=-1)  # [batch, 2]: the mean gate over units
    out = keras.layers.Dense(1, activation="sigmoid")(fused)
    model = keras.Model([x_inf, x_noise], out)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    data = [informative.astype("float32"), noise.astype("float32")]
    model.fit(data, labels.astype("float32"), epochs=15, batch_size=64, verbose=0)
    gate_model = keras.Model([x_inf, x_noise], gates)
    mean_gates = np.asarray(gate_model(data)).mean(0)
    # Per-unit gates: units the classifier barely reads need not pick a
    # side, so their mean is lower than a single modality gate's.
    assert mean_gates[0] > floor, mean_gates


def test_functional_model_shapes():
    a, b = keras.Input((5,)), keras.Input((3,))
    fused, gates = GatedFusion(units=4, return_gates=True)([a, b])
    assert tuple(fused.shape) == (None, 4) and tuple(gates.shape) == (None, 2, 4)


def test_mixed_precision():
    fused, gates = GatedFusion(units=4, return_gates=True, dtype="mixed_float16")(_pooled())
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    np.testing.assert_allclose(np.asarray(gates, "float32").sum(1), 1.0, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": -3}, "units"),
        ({"units": 0}, "units"),
        ({"units": 4.0}, "units"),
        ({"units": 4, "dropout": 1.5}, "dropout"),
        ({"units": 4, "return_gates": "yes"}, "return_gates"),
        ({"units": 4, "gate": "scalar"}, "gate"),
    ],
)
def test_bad_arguments(kwargs, match):
    assert_refused_with_received(lambda: GatedFusion(**kwargs), match)


@pytest.mark.parametrize("inputs", BAD_POOLED_FUSION_INPUTS.values(), ids=BAD_POOLED_FUSION_INPUTS.keys())
def test_bad_inputs(inputs):
    assert_refused_with_received(lambda: GatedFusion(units=2)(inputs))
