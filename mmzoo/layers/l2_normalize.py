"""`L2Normalize`: scale vectors to unit Euclidean length along an axis."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class L2Normalize(keras.layers.Layer):
    """Divide ``inputs`` by their L2 norm along ``axis``.

    The projection heads of dual encoders (CLIP, ALIGN) end with this layer, so
    that a dot product of two embeddings is their cosine similarity. The norm
    is floored at ``sqrt(epsilon)`` so an all-zero vector stays zero instead of
    becoming NaN. The output is computed in float32 and cast back to the
    layer's compute dtype.

    Args:
        axis: the axis to normalise (default ``-1``, the feature axis).
        epsilon: lower bound on the squared norm.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> out = L2Normalize()(np.array([[3.0, 4.0]], "float32"))
    >>> [round(float(v), 3) for v in out[0]]
    [0.6, 0.8]
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int):
            raise ValueError(f"axis must be an int. Received: axis={axis!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive. Received: epsilon={epsilon}")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        squared = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
        x = x * ops.rsqrt(ops.maximum(squared, self.epsilon))
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return with_attributes(super().get_config(), self, "axis", "epsilon")
