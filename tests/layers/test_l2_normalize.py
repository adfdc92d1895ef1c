import numpy as np
import pytest

from mmzoo.layers.l2_normalize import L2Normalize
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    out = run_layer_checks(lambda: L2Normalize(), x, tmp_path=tmp_path, expected_output_shape=(3, 5))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out), x / np.linalg.norm(x, axis=-1, keepdims=True), rtol=1e-5)


def test_zero_vector_stays_finite():
    out = np.asarray(L2Normalize()(np.zeros((1, 4), "float32")))
    assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_other_axis():
    x = np.array([[[3.0], [4.0]]], "float32")
    out = np.asarray(L2Normalize(axis=1)(x))
    np.testing.assert_allclose(out[0, :, 0], [0.6, 0.8], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="epsilon must be positive"):
        L2Normalize(epsilon=0)
    with pytest.raises(ValueError, match="axis must be an int"):
        L2Normalize(axis="last")
