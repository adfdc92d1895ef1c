import math

import keras
import numpy as np
import pytest

from mmzoo.layers.logit_scale import LogitScale
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.array([[0.5, -0.25], [0.1, 0.0]], "float32")
    out = run_layer_checks(lambda: LogitScale(initial_temperature=0.1), x, tmp_path=tmp_path, expected_output_shape=(2, 2))
    np.testing.assert_allclose(np.asarray(out), x * 10.0, rtol=1e-5)


def test_initial_scale_is_clip_default():
    layer = LogitScale()
    layer.build()
    assert float(layer.scale()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_forward_clips_a_scale_set_by_hand():
    layer = LogitScale(max_logit_scale=100.0)
    layer.build()
    layer.log_scale.assign(math.log(1000.0))
    assert float(layer.scale()) == pytest.approx(100.0, rel=1e-5)
    assert float(layer(np.array([1.0], "float32"))[0]) == pytest.approx(100.0, rel=1e-5)


def test_initial_scale_beyond_the_bound_is_clipped():
    layer = LogitScale(initial_temperature=0.001, max_logit_scale=50.0)
    layer.build()
    assert float(layer.scale()) == pytest.approx(50.0, rel=1e-5)


def test_optimizer_keeps_the_stored_value_within_the_bound():
    # A huge learning rate pushes the scale up; the constraint clamps the
    # variable itself after the step, as CLIP clamps its parameter.
    inputs = keras.Input((1,))
    layer = LogitScale(initial_temperature=0.02, max_logit_scale=100.0)
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1000.0), loss="mse")
    model.fit(np.ones((4, 1), "float32"), np.full((4, 1), 1e4, "float32"), epochs=2, verbose=0)
    assert float(layer.log_scale) == pytest.approx(math.log(100.0), rel=1e-6)
    assert float(layer.log_scale) <= math.log(100.0) + 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError, match="initial_temperature must be positive"):
        LogitScale(initial_temperature=0.0)
    with pytest.raises(ValueError, match="min_logit_scale <= max_logit_scale"):
        LogitScale(max_logit_scale=0.5)
