"""`ConcatFusion`: feature-level fusion by concatenation."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes


def check_pooled_shapes(layer_name, input_shape):
    """Shared validation: a list of at least two rank-2 shapes with known widths."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
        isinstance(s, (list, tuple)) for s in input_shape
    ):
        raise ValueError(
            f"{layer_name} expects a list of pooled vectors [batch, dim_i]. "
            f"Received: input_shape={input_shape}"
        )
    if len(input_shape) < 2:
        raise ValueError(
            f"{layer_name} needs at least 2 inputs (one per modality). "
            f"Received: {len(input_shape)} input(s) with shapes {list(input_shape)}"
        )
    for i, shape in enumerate(input_shape):
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(
                f"{layer_name} inputs must be rank-2 [batch, dim] with a known dim. "
                f"Received: input {i} with shape {tuple(shape)}"
            )
    return [int(s[-1]) for s in input_shape]


@keras.saving.register_keras_serializable(package="mmzoo")
class ConcatFusion(keras.layers.Layer):
    """Feature-level fusion: concatenate pooled modality vectors.

    Takes a list of ``N >= 2`` pooled vectors ``[batch, dim_i]`` and returns
    their concatenation ``[batch, sum(dim_i)]``, or, with ``projection_dim``,
    a linear projection of it ``[batch, projection_dim]``. Dropout (when
    ``dropout > 0``) is applied to the concatenated features, before the
    projection.

    Args:
        projection_dim: int or ``None``. Width of an optional linear
            projection of the concatenated vector.
        dropout: float in ``[0, 1)``. Dropout rate on the concatenated vector.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np
    >>> fusion = ConcatFusion(projection_dim=4)
    >>> image, text = np.ones((2, 3), "float32"), np.ones((2, 5), "float32")
    >>> tuple(fusion([image, text]).shape)
    (2, 4)
    >>> tuple(ConcatFusion()([image, text]).shape)
    (2, 8)
    """

    def __init__(self, projection_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if projection_dim is not None and (
            isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim <= 0
        ):
            raise ValueError(
                "projection_dim must be a positive int or None. "
                f"Received: projection_dim={projection_dim!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        self.projection_dim = projection_dim
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        self.projection = None
        if projection_dim is not None:
            self.projection = keras.layers.Dense(
                projection_dim, dtype=self.dtype_policy, name="projection"
            )

    def build(self, input_shape):
        dims = check_pooled_shapes(self.__class__.__name__, input_shape)
        if self.projection is not None:
            self.projection.build((None, sum(dims)))
        self.built = True

    def call(self, inputs, training=None):
        fused = keras.ops.concatenate(list(inputs), axis=-1)
        fused = self.dropout_layer(fused, training=training)
        if self.projection is not None:
            fused = self.projection(fused)
        return fused

    def compute_output_shape(self, input_shape):
        dims = check_pooled_shapes(self.__class__.__name__, input_shape)
        width = self.projection_dim if self.projection_dim is not None else sum(dims)
        return (input_shape[0][0], width)

    def get_config(self):
        return with_attributes(super().get_config(), self, "projection_dim", "dropout")
