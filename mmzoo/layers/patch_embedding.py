"""`PatchEmbedding`: split an image into patches and embed each one (ViT stem)."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints


@keras.saving.register_keras_serializable(package="mmzoo")
class PatchEmbedding(keras.layers.Layer):
    """Embed non-overlapping ``patch_size`` patches of ``[batch, H, W, C]`` images.

    A ``Conv2D(dim, patch_size, strides=patch_size)`` followed by a reshape
    to patch tokens ``[batch, (H // ph) * (W // pw), dim]`` in row-major
    order. Pixels beyond the last whole patch are dropped, so choose an image
    size divisible by the patch size.

    Args:
        patch_size: int or ``(ph, pw)``.
        dim: embedding width.
        kernel_initializer: initializer of the projection.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> PatchEmbedding(patch_size=4, dim=8)(np.zeros((2, 16, 16, 3), "float32")).shape
    TensorShape([2, 16, 8])
    """

    def __init__(self, patch_size, dim: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(patch_size, int):
            patch_size = (patch_size, patch_size)
        patch_size = tuple(patch_size)
        if len(patch_size) != 2 or not all(isinstance(p, int) and p > 0 for p in patch_size):
            raise ValueError(
                f"patch_size must be a positive int or a pair of them. Received: patch_size={patch_size!r}"
            )
        check_positive_ints(dim=dim)
        self.patch_size = patch_size
        self.dim = dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Conv2D(
            dim,
            kernel_size=patch_size,
            strides=patch_size,
            padding="valid",
            kernel_initializer=self.kernel_initializer,
            name="projection",
        )

    def _grid(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        gh = None if h is None else h // self.patch_size[0]
        gw = None if w is None else w // self.patch_size[1]
        return gh, gw

    def build(self, input_shape):
        gh, gw = self._grid(input_shape)
        if (gh is not None and gh < 1) or (gw is not None and gw < 1):
            raise ValueError(
                f"The image is smaller than one patch (patch_size={self.patch_size}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.projection.build(input_shape)
        self.built = True

    def call(self, inputs):
        x = self.projection(inputs)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1] * shape[2], self.dim))

    def compute_output_shape(self, input_shape):
        gh, gw = self._grid(input_shape)
        steps = None if gh is None or gw is None else gh * gw
        return (input_shape[0], steps, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": list(self.patch_size),
                "dim": self.dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
