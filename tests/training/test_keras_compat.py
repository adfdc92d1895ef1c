"""Tests for mmzoo/training/keras_compat.py: the guards, and each patch on the installed Keras.

The first tests fail when a Keras upgrade removes a private attribute a
patch (or a callback in callbacks.py) relies on: that is the signal to
revisit keras_compat.py.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmzoo.training import keras_compat
from mmzoo.training.keras_compat import (
    applies_to,
    build_from_local_batch,
    force_jit,
    keras_version,
    missing_private,
    patch_multi_worker_logs,
)


def _model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_keras_version_and_the_versions_the_patches_apply_to():
    assert keras_version("3.15.1") == (3, 15, 1)
    assert keras_version("3.16.0.dev2026011500") == (3, 16, 0)
    assert keras_version() == keras_version(keras.__version__) and len(keras_version()) >= 2
    assert applies_to((3, 15, 1)) and applies_to((3, 14, 0))
    assert not applies_to((4, 0, 0)) and not applies_to((2, 15, 0))
    assert applies_to(), f"the patches are written for Keras 3; installed: {keras.__version__}"


def test_the_installed_keras_has_every_private_attribute_the_package_uses():
    assert missing_private(_model(), "_jit_compile", "_flatten_layers", "_maybe_symbolic_build", "_symbolic_build") == []
    assert missing_private(keras_compat._trainer_module(), "reduce_per_replica") == []
    # callbacks.BackupAndRestore overrides and reads these.
    backup = keras.callbacks.BackupAndRestore("unused")
    assert missing_private(backup, "_save_model", "_load_model", "_training_metadata_path", "_current_epoch",
                           "_last_batch_seen") == []
    # callbacks.EpochSeeds reads the seed generators of each layer.
    assert len(getattr(keras.layers.Dropout(0.5, seed=1), "_seed_generators", ())) == 1
    assert missing_private(object(), "_jit_compile", "__class__") == ["_jit_compile"]


def test_force_jit_lifts_the_refusal_of_preprocessing_layers():
    from mmzoo.registry import build

    model = build("gated_classifier", preset="tiny", num_classes=3, image_size=[32, 32])
    model.compile()
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        model.compile(optimizer=model.optimizer, jit_compile=True)
    assert model.jit_compile is False  # Keras refuses: the tokenizer's string ops are tracked
    assert force_jit(model) is True and model.jit_compile is True


def test_force_jit_leaves_keras_alone_under_op_determinism(capsys):
    from tensorflow.python.framework import config

    model = _model()
    config.enable_op_determinism()
    try:
        assert force_jit(model) is False
    finally:
        config.disable_op_determinism()
    assert "--jit-compile is ignored with --deterministic" in capsys.readouterr().out
    assert model.jit_compile is not True


def test_a_patch_whose_private_attribute_is_gone_is_skipped_with_a_warning():
    layer = keras.layers.Dense(2)  # a layer, not a model: it has no _maybe_symbolic_build and no _jit_compile
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 3), "float32")).batch(2)
    with pytest.warns(RuntimeWarning, match=r"build_from_local_batch skipped: .* no _maybe_symbolic_build, "
                                            r"_symbolic_build on Dense"):
        assert build_from_local_batch(layer, tf.distribute.get_strategy(), dataset) is False
    assert not hasattr(layer, "_maybe_symbolic_build")
    with pytest.warns(RuntimeWarning, match=r"force_jit skipped: .* no _jit_compile on Dense"):
        assert force_jit(layer) is False
    assert not hasattr(layer, "_jit_compile")


def test_build_from_local_batch_builds_from_one_local_batch():
    model = _model()
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"))).batch(2)
    strategy = tf.distribute.get_strategy()
    assert not model.optimizer.built
    assert build_from_local_batch(model, strategy, dataset) is True
    model._maybe_symbolic_build(iterator=None)  # what fit calls first; no distributed batch needed
    assert model.optimizer.built and len(model.optimizer.variables) > 1


def test_patch_multi_worker_logs_is_idempotent_and_leaves_other_strategies_alone():
    trainer = keras_compat._trainer_module()
    assert patch_multi_worker_logs() is True
    patched = trainer.reduce_per_replica
    assert patched._mmzoo_patched and not getattr(patched.__wrapped__, "_mmzoo_patched", False)
    assert patch_multi_worker_logs() is True and trainer.reduce_per_replica is patched  # not wrapped twice
    values = {"loss": tf.constant(1.5), "x": tf.constant([1.0, 2.0])}
    expected = patched.__wrapped__(values, tf.distribute.get_strategy(), "auto")
    got = patched(values, tf.distribute.get_strategy(), "auto")
    assert float(got["loss"]) == float(expected["loss"]) == 1.5
    np.testing.assert_array_equal(got["x"], expected["x"])
