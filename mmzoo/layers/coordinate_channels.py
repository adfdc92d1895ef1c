"""`CoordinateChannels`: append each pixel's x and y coordinates as two channels (CoordConv)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="mmzoo")
class CoordinateChannels(keras.layers.Layer):
    """``[batch, height, width, c] -> [batch, height, width, c + 2]``: x then y of each pixel centre.

    CoordConv (Liu et al., 2018): a convolution is translation-equivariant,
    so a CNN knows where something is only through the borders and the
    pooling grid; after three 2x poolings a 32-pixel image is a 4x4 map whose
    cells are 8 pixels wide. With the coordinates as channels, every filter
    can carry an object's exact position through the pooling, for relations
    such as "left of" that a few pixels decide
    (``build_cnn_tower(coord_channels=True)``). A tower whose pooled output
    is an MLP on the flattened map can read positions from the layout
    already; measurements: ``benchmarks/README.md``.

    The coordinates run from -1 (left / top pixel centre) to 1 (right /
    bottom), in the layer's compute dtype; they do not depend on the input
    values. Height and width must be known when the layer is built.

    Args:
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> out = CoordinateChannels()(np.zeros((1, 2, 3, 1), "float32"))
    >>> tuple(out.shape), [round(float(v), 2) for v in out[0, 0, :, 1]], [float(v) for v in out[0, :, 0, 2]]
    ((1, 2, 3, 3), [-1.0, 0.0, 1.0], [-1.0, 1.0])
    """

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "CoordinateChannels needs images [batch, height, width, channels] with a known height and "
                f"width. Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]

        def axis(n):  # pixel centres from -1 to 1; a single pixel sits at 0
            return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)

        # A constant of the graph (the sizes are static): nothing is recomputed per step.
        ys, xs = np.meshgrid(axis(height), axis(width), indexing="ij")
        grid = ops.cast(np.stack([xs, ys], axis=-1)[None], inputs.dtype)
        grid = ops.broadcast_to(grid, (ops.shape(inputs)[0], height, width, 2))
        return ops.concatenate([inputs, grid], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = None if input_shape[-1] is None else input_shape[-1] + 2
        return (*tuple(input_shape)[:-1], channels)
