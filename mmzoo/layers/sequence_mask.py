"""`SequenceMask`: the boolean validity mask of a sequence, as a tensor."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class SequenceMask(keras.layers.Layer):
    """Return a boolean mask ``[batch, steps]`` (``True`` = valid step).

    With ``padding_id`` set, the input is token ids ``[batch, steps]`` and the
    mask is ``ids != padding_id`` (text towers). With ``padding_id=None`` the
    input is any sequence ``[batch, steps, ...]`` and every step is valid
    (image patch tokens). Towers output this mask next to their tokens so
    fusion layers can take it explicitly.

    Args:
        padding_id: the padding token id, or ``None`` for an all-``True`` mask.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> SequenceMask(padding_id=0)(np.array([[5, 7, 0]])).numpy().tolist()
    [[True, True, False]]
    >>> SequenceMask()(np.zeros((1, 4, 8), "float32")).shape
    TensorShape([1, 4])
    """

    def __init__(self, padding_id: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if padding_id is not None and not isinstance(padding_id, int):
            raise ValueError(
                f"padding_id must be an int or None. Received: padding_id={padding_id!r}"
            )
        self.padding_id = padding_id

    def call(self, inputs):
        if self.padding_id is None:
            shape = ops.shape(inputs)
            return ops.ones((shape[0], shape[1]), dtype="bool")
        return ops.not_equal(inputs, ops.cast(self.padding_id, inputs.dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="bool")

    def get_config(self):
        return with_attributes(super().get_config(), self, "padding_id")
