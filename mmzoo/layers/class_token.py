"""`ClassToken`: prepend a learned ``[CLS]`` token to a sequence."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class ClassToken(keras.layers.Layer):
    """Prepend a learned ``[CLS]`` vector: ``[batch, steps, dim] -> [batch, steps + 1, dim]``.

    A mask, when the input carries one, gets a leading ``True``.

    Args:
        initializer: initializer of the ``[1, 1, dim]`` token.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> ClassToken()(np.zeros((2, 4, 8), "float32")).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, input_shape):
        self.token = self.add_weight(
            name="token", shape=(1, 1, input_shape[-1]), initializer=self.initializer, trainable=True
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.broadcast_to(ops.cast(self.token, inputs.dtype), (batch, 1, ops.shape(inputs)[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        mask = ops.cast(mask, "bool")
        return ops.concatenate([ops.ones_like(mask[:, :1]), mask], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], steps, input_shape[-1])

    def get_config(self):
        return with_attributes(super().get_config(), self, "initializer")
