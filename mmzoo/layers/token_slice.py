"""`TokenSlice`: keep steps ``start:stop`` of a sequence."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class TokenSlice(keras.layers.Layer):
    """Slice a sequence ``[batch, steps, ...]`` to ``[batch, start:stop, ...]``.

    Used to drop a ``[CLS]`` token from the patch tokens a tower outputs.
    A mask the input carries is sliced the same way.

    Args:
        start: first kept step.
        stop: end of the slice (exclusive), or ``None`` for the end.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> TokenSlice(start=1)(np.zeros((2, 5, 8), "float32")).shape
    TensorShape([2, 4, 8])
    """

    def __init__(self, start: int = 0, stop: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a non-negative int. Received: start={start!r}")
        if stop is not None and (not isinstance(stop, int) or stop <= start):
            raise ValueError(
                f"stop must be None or an int greater than start={start}. Received: stop={stop!r}"
            )
        self.start = start
        self.stop = stop
        self.supports_masking = True

    def call(self, inputs):
        return inputs[:, self.start : self.stop]

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return mask[:, self.start : self.stop]

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        if steps is not None:
            steps = len(range(steps)[self.start : self.stop])
        return (input_shape[0], steps) + tuple(input_shape[2:])

    def get_config(self):
        return with_attributes(super().get_config(), self, "start", "stop")
