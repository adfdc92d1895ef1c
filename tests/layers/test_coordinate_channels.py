import numpy as np
import pytest

from mmzoo.layers.coordinate_channels import CoordinateChannels
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype("float32")
    out = run_layer_checks(CoordinateChannels, x, tmp_path=tmp_path, expected_output_shape=(2, 3, 5, 6),
                           train=False)
    out = np.asarray(out)
    np.testing.assert_array_equal(out[..., :4], x)  # the input channels pass unchanged
    # Channel 4 is x (varies along the width), channel 5 is y (along the height), both -1 .. 1.
    np.testing.assert_allclose(out[0, 1, :, 4], [-1.0, -0.5, 0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[1, :, 2, 5], [-1.0, 0.0, 1.0], atol=1e-6)
    assert np.ptp(out[..., 4], axis=1).max() == 0 and np.ptp(out[..., 5], axis=2).max() == 0


def test_coordinates_do_not_depend_on_the_input():
    layer = CoordinateChannels()
    a = np.asarray(layer(np.zeros((1, 4, 4, 1), "float32")))[..., 1:]
    b = np.asarray(layer(np.full((1, 4, 4, 1), 7.0, "float32")))[..., 1:]
    np.testing.assert_array_equal(a, b)


def test_a_one_pixel_axis_sits_at_zero():
    out = np.asarray(CoordinateChannels()(np.zeros((1, 1, 3, 1), "float32")))
    np.testing.assert_allclose(out[0, 0, :, 2], 0.0)


def test_needs_a_known_image_size():
    import keras

    with pytest.raises(ValueError, match="known height and width"):
        CoordinateChannels()(keras.Input((None, None, 3)))
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        CoordinateChannels()(np.zeros((2, 3), "float32"))
