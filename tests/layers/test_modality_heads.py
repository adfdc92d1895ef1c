"""Tests for mmzoo/layers/_modality_heads.py: one linear head per pooled input (weights, outputs, shapes)."""

import keras
import numpy as np
import pytest

from mmzoo.layers._modality_heads import apply_modality_heads, build_modality_heads, modality_head_shapes

SHAPES = [(None, 5), (None, 3), (None, 2)]


def _built_layer(width=4):
    layer = keras.layers.Layer(name="heads")
    dims = build_modality_heads(layer, SHAPES, width)
    return layer, dims


def test_build_adds_kernel_and_bias_per_input_in_order():
    layer, dims = _built_layer()
    assert dims == [5, 3, 2]
    assert layer.num_modalities == 3
    assert [w.name for w in layer.weights] == ["kernel_0", "bias_0", "kernel_1", "bias_1", "kernel_2", "bias_2"]
    assert [tuple(k.shape) for k in layer.kernels] == [(5, 4), (3, 4), (2, 4)]
    assert [tuple(b.shape) for b in layer.biases] == [(4,)] * 3
    assert all(np.all(np.asarray(b) == 0) for b in layer.biases)


def test_apply_stacks_activated_heads_as_numpy_computes_them():
    layer, _ = _built_layer()
    rng = np.random.default_rng(0)
    for bias in layer.biases:  # nonzero biases so that adding them is checked too
        bias.assign(rng.normal(size=(4,)).astype("float32"))
    inputs = [rng.normal(size=(2, d)).astype("float32") for d in (5, 3, 2)]
    out = np.asarray(apply_modality_heads(layer, inputs, keras.activations.tanh))
    assert out.shape == (2, 3, 4)
    for i, x in enumerate(inputs):
        expected = np.tanh(x @ np.asarray(layer.kernels[i]) + np.asarray(layer.biases[i]))
        np.testing.assert_allclose(out[:, i], expected, atol=1e-5)


def test_shapes_of_combined_output_and_heads():
    layer = keras.layers.Layer()
    assert modality_head_shapes(layer, [(7, 5), (7, 3)], 6) == ((7, 6), (7, 2, 6))
    assert modality_head_shapes(layer, SHAPES, 4) == ((None, 4), (None, 3, 4))


def test_refuses_a_single_input_naming_the_layer():
    layer = keras.layers.Layer()
    with pytest.raises(ValueError, match="^Layer needs at least 2 inputs"):
        build_modality_heads(layer, [(None, 5)], 4)
    with pytest.raises(ValueError, match="rank-2"):
        modality_head_shapes(layer, [(None, 5), (None, 4, 3)], 4)
    assert layer.weights == []
