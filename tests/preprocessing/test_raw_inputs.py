"""Tests for mmzoo/preprocessing/_raw_inputs.py: accept_raw_inputs lets a layer take unconverted, non-tensor inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmzoo.preprocessing._raw_inputs import accept_raw_inputs


class _Lengths(keras.layers.Layer):
    """Records what ``call`` received and returns string lengths."""

    def __init__(self, raw, **kwargs):
        super().__init__(**kwargs)
        self.received = None
        if raw:
            accept_raw_inputs(self)

    def call(self, texts):
        self.received = texts
        return tf.strings.length(texts)


def test_sets_the_flags_and_builds_the_layer():
    layer = _Lengths(raw=True)
    assert layer.built is True
    assert layer.supports_jit is False
    assert layer._convert_input_args is False
    assert layer._allow_non_tensor_positional_args is True
    assert layer.weights == []


def test_python_strings_reach_call_as_given():
    layer = _Lengths(raw=True)
    out = layer(["ab", "cde"])
    assert layer.received == ["ab", "cde"]  # not converted to a tensor
    assert out.numpy().tolist() == [2, 3]


class _Identity(keras.layers.Layer):
    def __init__(self, raw, **kwargs):
        super().__init__(**kwargs)
        if raw:
            accept_raw_inputs(self)

    def call(self, x):
        return x


def test_inputs_are_neither_converted_nor_cast():
    pixels = np.array([[0, 255]], np.uint8)
    assert _Identity(raw=True)(pixels) is pixels  # a numpy array stays one
    assert _Identity(raw=True)(tf.constant([1.5], tf.float64)).dtype == tf.float64
    # Without it, Keras converts to a tensor and casts floats to the layer's float32.
    converted = _Identity(raw=False)(tf.constant([1.5], tf.float64))
    assert isinstance(converted, tf.Tensor) and converted.dtype == tf.float32


def test_without_it_keras_refuses_python_strings():
    with pytest.raises(ValueError, match="Only input tensors may be passed as positional arguments"):
        _Lengths(raw=False)(["ab", "cde"])
