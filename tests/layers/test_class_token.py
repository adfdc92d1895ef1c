import numpy as np

from mmzoo.layers.class_token import ClassToken
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    out = run_layer_checks(
        lambda: ClassToken(initializer="ones"),
        x,
        tmp_path=tmp_path,
        expected_output_shape=(2, 4, 4),
    )
    out = np.asarray(out)
    np.testing.assert_allclose(out[:, 0], np.ones((2, 4)))
    np.testing.assert_allclose(out[:, 1:], x)


def test_mask_gets_a_leading_true():
    mask = np.array([[True, False]])
    out = ClassToken().compute_mask(np.zeros((1, 2, 3), "float32"), mask)
    assert np.asarray(out).tolist() == [[True, True, False]]
