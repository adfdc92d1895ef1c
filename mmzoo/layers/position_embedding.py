"""`PositionEmbedding`: learned absolute position embeddings."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints
from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class PositionEmbedding(keras.layers.Layer):
    """Learned position embeddings for sequences of up to ``sequence_length`` steps.

    Takes a sequence ``[batch, steps, dim]`` and returns the position
    embeddings of its ``steps`` first positions broadcast to the same shape
    (the keras-hub convention): add them to the input with
    ``keras.layers.Add()``. Shorter inputs use the first positions; longer
    ones are an error. Masks pass through unchanged.

    Args:
        sequence_length: the maximum number of positions.
        initializer: initializer of the ``[sequence_length, dim]`` table.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((2, 5, 8), "float32")
    >>> PositionEmbedding(sequence_length=10)(x).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, sequence_length: int, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(sequence_length=sequence_length)
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-2] is not None and input_shape[-2] > self.sequence_length:
            raise ValueError(
                f"The input has {input_shape[-2]} steps, more than sequence_length="
                f"{self.sequence_length}. Received: input_shape={tuple(input_shape)}"
            )
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer,
            trainable=True,
        )

    def call(self, inputs):
        steps = ops.shape(inputs)[-2]
        positions = ops.cast(self.position_embeddings[:steps, :], inputs.dtype)
        return ops.broadcast_to(positions, ops.shape(inputs))

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return with_attributes(super().get_config(), self, "sequence_length", "initializer")
