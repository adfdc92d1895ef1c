import numpy as np
import pytest

from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from tests.harness import run_layer_checks

X = np.array(
    [[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]], [[1.0, 1.0], [2.0, 2.0], [3.0, 6.0]]], "float32"
)
MASK = np.array([[True, True, False], [True, True, True]])


@pytest.mark.parametrize("mode", ["mean", "max", "first"])
def test_standard_checks(mode, tmp_path):
    run_layer_checks(
        lambda: MaskedGlobalPooling(mode),
        X,
        call_kwargs={"mask": MASK},
        tmp_path=tmp_path,
        expected_output_shape=(2, 2),
    )


def test_mean_ignores_masked_steps():
    out = np.asarray(MaskedGlobalPooling("mean")(X, mask=MASK))
    np.testing.assert_allclose(out, [[2.0, 1.0], [2.0, 3.0]], atol=1e-6)


def test_max_ignores_masked_steps():
    out = np.asarray(MaskedGlobalPooling("max")(X, mask=MASK))
    np.testing.assert_allclose(out, [[3.0, 4.0], [3.0, 6.0]])


def test_first_and_no_mask():
    np.testing.assert_allclose(np.asarray(MaskedGlobalPooling("first")(X)), X[:, 0])
    np.testing.assert_allclose(np.asarray(MaskedGlobalPooling("mean")(X)), X.mean(axis=1), atol=1e-5)


def test_all_masked_row_pools_to_zeros():
    mask = np.array([[False, False, False], [True, False, False]])
    for mode in ("mean", "max"):
        out = np.asarray(MaskedGlobalPooling(mode)(X, mask=mask))
        np.testing.assert_allclose(out[0], [0.0, 0.0])
        np.testing.assert_allclose(out[1], X[1, 0])


def test_uses_keras_mask_from_embedding():
    import keras

    ids = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(10, 3, mask_zero=True)(ids)
    model = keras.Model(ids, MaskedGlobalPooling("mean")(x))
    a = np.asarray(model(np.array([[4, 5, 0, 0]])))
    b = np.asarray(model(np.array([[4, 5, 0, 0]])))
    c = np.asarray(model(np.array([[4, 0, 0, 0]])))
    np.testing.assert_allclose(a, b)
    assert not np.allclose(a, c)


def test_bad_mode():
    with pytest.raises(ValueError, match="Received: mode='sum'"):
        MaskedGlobalPooling("sum")
