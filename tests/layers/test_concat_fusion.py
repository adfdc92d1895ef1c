import keras
import numpy as np
import pytest

from mmzoo.layers.concat_fusion import ConcatFusion
from tests.harness import BAD_POOLED_FUSION_INPUTS, assert_refused_with_received, run_layer_checks


def _pooled(batch=3, dims=(4, 6)):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(batch, d)).astype("float32") for d in dims]


def test_standard_checks_plain(tmp_path):
    out = run_layer_checks(
        lambda: ConcatFusion(), _pooled(), tmp_path=tmp_path, expected_output_shape=(3, 10)
    )
    np.testing.assert_allclose(np.asarray(out), np.concatenate(_pooled(), axis=-1))


def test_standard_checks_projected_three_modalities(tmp_path):
    run_layer_checks(
        lambda: ConcatFusion(projection_dim=5, dropout=0.2),
        _pooled(dims=(4, 6, 2)),
        tmp_path=tmp_path,
        expected_output_shape=(3, 5),
    )


def test_projection_is_linear_map_of_concatenation():
    inputs = _pooled()
    layer = ConcatFusion(projection_dim=3)
    out = np.asarray(layer(inputs))
    kernel, bias = (np.asarray(w) for w in layer.projection.weights)
    np.testing.assert_allclose(out, np.concatenate(inputs, -1) @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
    inputs = _pooled(batch=16, dims=(32, 32))
    layer = ConcatFusion(dropout=0.5)
    np.testing.assert_allclose(np.asarray(layer(inputs)), np.concatenate(inputs, -1))
    trained = np.asarray(layer(inputs, training=True))
    assert np.mean(trained == 0) > 0.3


def test_mixed_precision():
    out = ConcatFusion(projection_dim=4, dtype="mixed_float16")(_pooled())
    assert keras.backend.standardize_dtype(out.dtype) == "float16"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"projection_dim": 0}, "projection_dim"),
        ({"projection_dim": -3}, "projection_dim"),
        ({"projection_dim": 2.5}, "projection_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    assert_refused_with_received(lambda: ConcatFusion(**kwargs), match)


@pytest.mark.parametrize("inputs", BAD_POOLED_FUSION_INPUTS.values(), ids=BAD_POOLED_FUSION_INPUTS.keys())
def test_bad_inputs(inputs):
    assert_refused_with_received(lambda: ConcatFusion()(inputs))
