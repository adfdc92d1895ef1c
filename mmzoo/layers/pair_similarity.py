"""`PairSimilarity`: the dot product (or cosine similarity) of paired vectors."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class PairSimilarity(keras.layers.Layer):
    """Score each pair ``(a[i], b[i])``: ``[batch, dim] x 2 -> [batch]``.

    With ``normalize=True`` the vectors are L2-normalised first, so the score is
    their cosine similarity in ``[-1, 1]``; with ``normalize=False`` it is the
    plain dot product (use it when the inputs are already unit vectors, as the
    outputs of a dual encoder's ``L2Normalize`` are).

    Args:
        normalize: whether to L2-normalise the inputs first.
        epsilon: lower bound on the squared norms when normalising.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [1.0, 1.0]], "float32")
    >>> b = np.array([[2.0, 0.0], [-1.0, -1.0]], "float32")
    >>> [round(float(v), 3) for v in PairSimilarity()([a, b])]
    [1.0, -1.0]
    """

    def __init__(self, normalize: bool = True, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive. Received: epsilon={epsilon}")
        self.normalize = bool(normalize)
        self.epsilon = float(epsilon)

    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "PairSimilarity expects a list of two tensors [a, b]. "
                f"Received: {type(inputs).__name__} of length {len(inputs) if hasattr(inputs, '__len__') else '?'}"
            )

    def call(self, inputs):
        self._check(inputs)
        a, b = (ops.cast(t, "float32") for t in inputs)
        if self.normalize:
            a = a * ops.rsqrt(ops.maximum(ops.sum(ops.square(a), -1, keepdims=True), self.epsilon))
            b = b * ops.rsqrt(ops.maximum(ops.sum(ops.square(b), -1, keepdims=True), self.epsilon))
        return ops.cast(ops.sum(a * b, axis=-1), self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return tuple(input_shape[0][:-1])

    def get_config(self):
        return with_attributes(super().get_config(), self, "normalize", "epsilon")
