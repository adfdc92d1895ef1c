import numpy as np
import pytest

from mmzoo.layers.token_slice import TokenSlice
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.arange(2 * 5 * 3, dtype="float32").reshape(2, 5, 3)
    out = run_layer_checks(
        lambda: TokenSlice(start=1, stop=4), x, tmp_path=tmp_path, expected_output_shape=(2, 3, 3)
    )
    np.testing.assert_allclose(np.asarray(out), x[:, 1:4])


def test_mask_is_sliced():
    mask = np.array([[True, True, False]])
    out = TokenSlice(start=1).compute_mask(np.zeros((1, 3, 2), "float32"), mask)
    assert np.asarray(out).tolist() == [[True, False]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: start=-1"):
        TokenSlice(start=-1)
    with pytest.raises(ValueError, match="Received: stop=1"):
        TokenSlice(start=2, stop=1)
