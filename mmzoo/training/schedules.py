"""Learning-rate schedules for a run (``--lr-schedule``, ``--warmup-steps``).

Keras is imported when a schedule is made, so ``LR_SCHEDULES`` (read by the
run config) costs no TensorFlow import.
"""

from __future__ import annotations

LR_SCHEDULES = ("constant", "cosine")


def make_lr_schedule(kind: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """The learning rate (a float) or ``LearningRateSchedule`` for a run.

    ``"constant"``: ``learning_rate`` throughout, after a linear warmup from 0
    over ``warmup_steps`` when given. ``"cosine"``: linear warmup from 0 to
    ``learning_rate`` over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps``.

    >>> s = make_lr_schedule("cosine", 1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(s(step)), 6) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}. Received: lr_schedule={kind!r}")
    if not learning_rate or learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive. Received: learning_rate={learning_rate}")
    warmup_steps = int(warmup_steps or 0)
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0. Received: warmup_steps={warmup_steps}")
    if kind == "constant" and warmup_steps == 0:
        return float(learning_rate)
    import keras

    total_steps = int(total_steps)
    if kind == "cosine" and warmup_steps >= total_steps:
        raise ValueError(
            "warmup_steps must be smaller than the run's total steps for a cosine schedule. "
            f"Received: warmup_steps={warmup_steps}, total steps={total_steps}"
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else float(learning_rate),
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=1.0 if kind == "constant" else 0.0,  # alpha=1: no decay
        warmup_target=float(learning_rate) if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
