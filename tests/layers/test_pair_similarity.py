import numpy as np
import pytest

from mmzoo.layers.pair_similarity import PairSimilarity
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 6)).astype("float32")
    b = rng.normal(size=(4, 6)).astype("float32")
    out = run_layer_checks(lambda: PairSimilarity(), [a, b], tmp_path=tmp_path, expected_output_shape=(4,))
    expected = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5)


def test_dot_product_without_normalisation():
    a = np.array([[1.0, 2.0]], "float32")
    b = np.array([[3.0, 4.0]], "float32")
    assert float(PairSimilarity(normalize=False)([a, b])[0]) == pytest.approx(11.0)


def test_needs_two_inputs():
    with pytest.raises(ValueError, match="list of two tensors"):
        PairSimilarity()([np.ones((1, 2), "float32")])
