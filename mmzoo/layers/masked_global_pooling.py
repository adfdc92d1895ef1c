"""`MaskedGlobalPooling`: mean / max / first-token pooling over a masked sequence."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._config import with_attributes

_MODES = ("mean", "max", "first")


@keras.saving.register_keras_serializable(package="mmzoo")
class MaskedGlobalPooling(keras.layers.Layer):
    """Pool a sequence ``[batch, steps, dim]`` to ``[batch, dim]``, ignoring padding.

    ``mode="mean"`` averages the valid steps, ``"max"`` takes the maximum over
    them and ``"first"`` returns the first step (a ``[CLS]`` token). The mask
    (``[batch, steps]``, ``True`` = valid) comes from the ``mask`` argument or
    from the Keras mask the input carries (for example after an
    ``Embedding(mask_zero=True)``). Without a mask every step counts. A row
    whose steps are all masked pools to zeros.

    Args:
        mode: ``"mean"``, ``"max"`` or ``"first"``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> x = np.array([[[1.0], [3.0], [100.0]]], "float32")
    >>> mask = np.array([[True, True, False]])
    >>> float(MaskedGlobalPooling("mean")(x, mask=mask)[0, 0])
    2.0
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if self.mode == "first":
            return inputs[:, 0, :]
        if mask is None:
            if self.mode == "mean":
                return ops.mean(inputs, axis=1)
            return ops.max(inputs, axis=1)
        mask = ops.cast(mask, "bool")
        weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)
        if self.mode == "mean":
            total = ops.sum(inputs * weights, axis=1)
            count = ops.maximum(ops.sum(weights, axis=1), 1.0)
            return total / count
        very_negative = ops.cast(ops.full_like(inputs, -1e9), inputs.dtype)
        masked = ops.where(ops.expand_dims(mask, -1), inputs, very_negative)
        pooled = ops.max(masked, axis=1)
        any_valid = ops.any(mask, axis=1, keepdims=True)
        return ops.where(any_valid, pooled, ops.zeros_like(pooled))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return with_attributes(super().get_config(), self, "mode")
