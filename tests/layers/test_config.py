"""Tests for mmzoo/layers/_config.py: with_attributes writes layer attributes into a config, serializing activations and initializers."""

import keras

from mmzoo.layers._config import with_attributes


def test_matches_what_dense_writes_for_the_same_attributes():
    dense = keras.layers.Dense(3, activation="gelu", kernel_initializer="he_normal", bias_initializer="ones")
    base = {"name": "x"}
    config = with_attributes(base, dense, "units", "activation", "kernel_initializer", "bias_initializer")
    assert config is base  # updated in place and returned
    own = dense.get_config()
    for key in ("units", "activation", "kernel_initializer", "bias_initializer"):
        assert config[key] == own[key], key
    assert config["activation"] == "gelu"
    assert config["units"] == 3


def test_keys_follow_names_order_and_serialized_values_round_trip():
    dense = keras.layers.Dense(2, activation="tanh", kernel_initializer=keras.initializers.Orthogonal(gain=2.0))
    config = with_attributes({"trainable": True}, dense, "kernel_initializer", "use_bias", "activation")
    assert list(config) == ["trainable", "kernel_initializer", "use_bias", "activation"]
    assert config["use_bias"] is True  # other values are written as they are
    initializer = keras.initializers.deserialize(config["kernel_initializer"])
    assert isinstance(initializer, keras.initializers.Orthogonal)
    assert initializer.gain == 2.0
    assert keras.activations.deserialize(config["activation"]) is keras.activations.tanh
