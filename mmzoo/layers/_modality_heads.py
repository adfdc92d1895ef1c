"""One linear head per pooled modality vector: what ``GatedFusion`` and ``LateFusion`` share (private)."""

from __future__ import annotations

import keras

from mmzoo.layers.concat_fusion import check_pooled_shapes


def build_modality_heads(layer, input_shape, width):
    """Adds ``kernel_i [dim_i, width]`` and ``bias_i [width]`` to ``layer`` for each pooled input.

    Sets ``layer.num_modalities``, ``layer.kernels`` and ``layer.biases`` (the
    weights are created in the order ``kernel_0, bias_0, kernel_1, ...``) and
    returns the input widths ``dim_i``.
    """
    dims = check_pooled_shapes(layer.__class__.__name__, input_shape)
    layer.num_modalities = len(dims)
    layer.kernels, layer.biases = [], []
    for i, dim in enumerate(dims):
        layer.kernels.append(layer.add_weight(name=f"kernel_{i}", shape=(dim, width), initializer="glorot_uniform"))
        layer.biases.append(layer.add_weight(name=f"bias_{i}", shape=(width,), initializer="zeros"))
    return dims


def apply_modality_heads(layer, inputs, activation):
    """``[batch, N, width]``: ``activation(x_i @ kernel_i + bias_i)`` for each pooled input ``x_i``."""
    return keras.ops.stack(
        [
            activation(keras.ops.matmul(x, kernel) + bias)
            for x, kernel, bias in zip(list(inputs), layer.kernels, layer.biases)
        ],
        axis=1,
    )


def modality_head_shapes(layer, input_shape, width):
    """The shapes ``(batch, width)`` of a combined output and ``(batch, N, width)`` of the heads."""
    dims = check_pooled_shapes(layer.__class__.__name__, input_shape)
    batch = input_shape[0][0]
    return (batch, width), (batch, len(dims), width)
