import keras
import numpy as np
import pytest

from mmzoo.layers.late_fusion import LateFusion
from tests.harness import run_layer_checks


def _pooled(batch=4, dims=(5, 3)):
    rng = np.random.default_rng(3)
    return [rng.normal(size=(batch, d)).astype("float32") for d in dims]


def _numpy_heads(layer, inputs, activation=lambda v: v):
    weights = [np.asarray(w) for w in layer.weights]
    return np.stack(
        [activation(x @ weights[2 * i] + weights[2 * i + 1]) for i, x in enumerate(inputs)], axis=1
    )


def test_standard_checks_mean(tmp_path):
    run_layer_checks(lambda: LateFusion(num_outputs=3), _pooled(), tmp_path=tmp_path, expected_output_shape=(4, 3))


def test_standard_checks_learned_with_modality_logits(tmp_path):
    run_layer_checks(
        lambda: LateFusion(num_outputs=3, combine="learned", return_modality_logits=True),
        _pooled(dims=(5, 3, 2)),
        tmp_path=tmp_path,
        expected_output_shape=((4, 3), (4, 3, 3)),
    )


def test_standard_checks_softmax_activation(tmp_path):
    out = run_layer_checks(
        lambda: LateFusion(num_outputs=3, activation="softmax"), _pooled(), tmp_path=tmp_path
    )
    np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, rtol=1e-5)


def test_mean_equals_mean_of_per_modality_heads():
    inputs = _pooled(dims=(5, 3, 7))
    layer = LateFusion(num_outputs=2, return_modality_logits=True)
    combined, per_modality = (np.asarray(t) for t in layer(inputs))
    expected = _numpy_heads(layer, inputs)
    np.testing.assert_allclose(per_modality, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(combined, expected.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.combine_weights()), [1 / 3] * 3, rtol=1e-6)


def test_softmax_activation_averages_probabilities():
    inputs = _pooled()
    layer = LateFusion(num_outputs=4, activation="softmax")
    out = np.asarray(layer(inputs))

    def softmax(v):
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(out, _numpy_heads(layer, inputs, softmax).mean(1), rtol=1e-5, atol=1e-6)


def test_learned_combination_uses_softmax_weights():
    inputs = _pooled()
    layer = LateFusion(num_outputs=2, combine="learned")
    start = np.asarray(layer(inputs))
    heads = _numpy_heads(layer, inputs)
    np.testing.assert_allclose(start, heads.mean(1), rtol=1e-5, atol=1e-5)  # starts at the mean
    layer.combine_logits.assign(np.array([2.0, -1.0], "float32"))
    w = np.exp([2.0, -1.0]) / np.exp([2.0, -1.0]).sum()
    np.testing.assert_allclose(np.asarray(layer.combine_weights()), w, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(layer(inputs)), w[0] * heads[:, 0] + w[1] * heads[:, 1], rtol=1e-5, atol=1e-5
    )


def test_learned_weights_favour_informative_modality():
    rng = np.random.default_rng(0)
    n = 256
    labels = rng.integers(0, 2, size=n)
    informative = ((labels[:, None] * 2.0 - 1.0) + 0.3 * rng.normal(size=(n, 4))).astype("float32")
    noise = rng.normal(size=(n, 4)).astype("float32")
    a, b = keras.Input((4,)), keras.Input((4,))
    layer = LateFusion(num_outputs=2, combine="learned")
    model = keras.Model([a, b], layer([a, b]))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit([informative, noise], labels, epochs=10, batch_size=64, verbose=0)
    weights = np.asarray(layer.combine_weights())
    assert weights[0] > weights[1], weights


def test_mixed_precision():
    out = LateFusion(num_outputs=3, combine="learned", dtype="mixed_float16")(_pooled())
    assert keras.backend.standardize_dtype(out.dtype) == "float16"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_outputs": 0}, "num_outputs"),
        ({"num_outputs": -3}, "num_outputs"),
        ({"num_outputs": 3, "combine": "max"}, "combine"),
        ({"num_outputs": 3, "activation": "no_such_activation"}, "activation"),
        ({"num_outputs": 3, "return_modality_logits": 1}, "return_modality_logits"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received:"):
        LateFusion(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="Received:"):
        LateFusion(num_outputs=2)([np.ones((2, 3), "float32")])
    with pytest.raises(ValueError, match="not built"):
        LateFusion(num_outputs=2).combine_weights()
