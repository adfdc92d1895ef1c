"""Tests for mmzoo/training/schedules.py."""

import numpy as np
import pytest

from mmzoo.training import make_lr_schedule


def test_cosine_schedule_with_warmup_values():
    schedule = make_lr_schedule("cosine", 1e-3, total_steps=110, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    # Monotone decay after the warmup.
    decay = [float(schedule(s)) for s in range(10, 111, 10)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_constant_schedule_with_and_without_warmup():
    assert make_lr_schedule("constant", 3e-4, total_steps=50) == pytest.approx(3e-4)
    schedule = make_lr_schedule("constant", 3e-4, total_steps=50, warmup_steps=4)
    values = [float(schedule(step)) for step in (0, 2, 4, 30, 50)]
    np.testing.assert_allclose(values, [0.0, 1.5e-4, 3e-4, 3e-4, 3e-4], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "step"}, "lr_schedule must be one of"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
        ({"warmup_steps": -2}, "warmup_steps must be >= 0"),
        ({"warmup_steps": 100}, "smaller than the run's total steps"),
    ],
)
def test_schedule_errors(kwargs, message):
    args = {"kind": "cosine", "learning_rate": 1e-3, "total_steps": 100, "warmup_steps": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_lr_schedule(**args)
