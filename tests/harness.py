"""Shared standard checks for mmzoo layers and models.

``run_layer_checks`` is the one harness every public layer goes through:
config round trip, symbolic and eager call, mask propagation (when given),
one training step, and a ``.keras`` round trip with ``safe_mode=True`` giving
identical outputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf


def _to_numpy(tree):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), tree)


def _lists_for_tuples(tree):
    # A reloaded Functional model returns its tuple outputs as a list.
    if isinstance(tree, (list, tuple)):
        return [_lists_for_tuples(t) for t in tree]
    if isinstance(tree, dict):
        return {k: _lists_for_tuples(v) for k, v in tree.items()}
    return tree


def _assert_tree_close(a, b, atol=1e-5):
    a, b = _lists_for_tuples(_to_numpy(a)), _lists_for_tuples(_to_numpy(b))
    keras.tree.assert_same_structure(a, b)
    for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5)


def _symbolic(value):
    value = np.asarray(value)
    dtype = "string" if value.dtype.kind in "SUO" else str(value.dtype)
    return keras.Input(shape=value.shape[1:], batch_size=None, dtype=dtype)


def run_layer_checks(
    layer_factory,
    inputs,
    *,
    call_kwargs=None,
    tmp_path,
    expected_output_shape=None,
    train=True,
    check_compute_output_shape=True,
):
    """Run the standard checks on ``layer_factory()`` applied to ``inputs``.

    ``inputs``: a numpy array, or a list/dict of them (the layer's first call
    argument). ``call_kwargs``: extra numpy keyword arguments (e.g. masks)
    passed as tensors. Returns the eager output for extra assertions.
    """
    call_kwargs = call_kwargs or {}

    # 1. Config round trip: every constructor argument comes back.
    layer = layer_factory()
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config, "get_config/from_config round trip changed the config"
    registered = keras.saving.get_registered_name(layer.__class__)
    assert registered.startswith("mmzoo>"), f"{layer.__class__.__name__} is not registered under 'mmzoo'"

    # 2. Eager call.
    eager_out = layer(inputs, **call_kwargs)
    if expected_output_shape is not None:
        shapes = keras.tree.map_structure(lambda t: tuple(t.shape), eager_out)
        assert shapes == expected_output_shape, f"output shape {shapes} != {expected_output_shape}"

    # 3. Symbolic call and compute_output_shape.
    sym_inputs = keras.tree.map_structure(_symbolic, inputs)
    sym_kwargs = {k: _symbolic(v) for k, v in call_kwargs.items()}
    sym_layer = layer_factory()
    sym_out = sym_layer(sym_inputs, **sym_kwargs)
    eager_shapes = keras.tree.map_structure(lambda t: tuple(t.shape)[1:], eager_out)
    sym_shapes = keras.tree.map_structure(lambda t: tuple(t.shape)[1:], sym_out)
    assert sym_shapes == eager_shapes, f"symbolic shapes {sym_shapes} != eager {eager_shapes}"
    if check_compute_output_shape:
        in_shapes = keras.tree.map_structure(lambda t: tuple(t.shape), sym_inputs)
        cos = sym_layer.compute_output_shape(in_shapes)
        # Shapes are tuples themselves: map over shape leaves, not over ints.
        cos = keras.tree.map_shape_structure(lambda s: tuple(s)[1:], cos)
        assert cos == sym_shapes, f"compute_output_shape {cos} != traced {sym_shapes}"

    # 4. A model around the layer: a training step and a .keras round trip.
    flat_inputs = keras.tree.flatten(sym_inputs) + list(sym_kwargs.values())
    model = keras.Model(flat_inputs, sym_out)
    data = keras.tree.flatten(inputs) + [np.asarray(v) for v in call_kwargs.values()]
    if train and sym_layer.trainable_weights:
        model.compile(optimizer="sgd", loss="mse")
        targets = keras.tree.map_structure(lambda t: np.zeros(t.shape, "float32"), _to_numpy(model(data)))
        before = [np.array(w) for w in sym_layer.trainable_weights]
        model.fit(data, targets, epochs=1, batch_size=len(data[0]), verbose=0)
        after = [np.array(w) for w in sym_layer.trainable_weights]
        assert any(not np.allclose(b, a) for b, a in zip(before, after)), "a training step changed no weight"
    out = model(data)
    path = os.path.join(str(tmp_path), "layer_check.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    _assert_tree_close(out, reloaded(data))
    return eager_out


def assert_model_roundtrip(model, inputs, tmp_path, atol=1e-5):
    """``.keras`` save/load with ``safe_mode=True`` gives identical outputs."""
    path = os.path.join(str(tmp_path), "model.keras")
    expected = model(inputs, training=False)
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model)
    _assert_tree_close(expected, reloaded(inputs, training=False), atol=atol)
    return reloaded


def assert_reloads_training_state(model, inputs, tmp_path, atol=1e-5):
    """``assert_model_roundtrip``, and the reloaded model trains on as ``model`` would: the same
    trainable variables, the same dtype policy, and its optimizer state (Adam's moments and step,
    the loss scale) loaded without a warning (Keras' "Skipping variable loading for optimizer"
    where the optimizer built on load does not match the saved one). Returns the reloaded model."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = assert_model_roundtrip(model, inputs, tmp_path, atol=atol)
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert reloaded.dtype_policy.name == model.dtype_policy.name
    assert type(reloaded.optimizer) is type(model.optimizer)
    assert [v.path for v in reloaded.trainable_variables] == [v.path for v in model.trainable_variables]
    saved, loaded = model.optimizer.variables, reloaded.optimizer.variables
    assert len(saved) > 2 * len(model.trainable_weights)  # built: the moments of every trainable weight
    # Keras loads them in order. Paths may differ in their scope only: a LossScaleOptimizer built by a
    # train step names its Adam's slots "loss_scale_optimizer/adam/...", one built on load "adam/...".
    assert [v.path.split("/")[-1] for v in loaded] == [v.path.split("/")[-1] for v in saved]
    for before, after in zip(saved, loaded):
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before), err_msg=after.path)
    return reloaded


def assert_every_trainable_weight_gets_a_gradient(model, inputs):
    """One forward pass on ``inputs``: every trainable variable gets a gradient of the floating
    outputs (where one did not, Keras would warn "Gradients do not exist" at every step)."""
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = sum(keras.ops.mean(v) for v in outputs.values() if v.dtype.is_floating)
    gradients = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, gradients) if g is None]
    assert not missing, missing


@contextlib.contextmanager
def tensorflow_log(level=logging.INFO):
    """Collect the ``tensorflow`` logger's messages inside the block, with the logger at ``level``
    (INFO: as TensorFlow sets it in Jupyter, where its INFO lines show in the notebook)."""
    logger = tf.get_logger()
    messages, previous = [], logger.level

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def tf_function_call(layer, *args, **kwargs):
    """Call ``layer`` inside a ``tf.function`` (graph mode)."""
    return tf.function(lambda *a, **k: layer(*a, **k))(*args, **kwargs)


def assert_refused_with_received(call, match=""):
    """``call()`` raises a ValueError that names ``match`` and then shows what it received."""
    with pytest.raises(ValueError, match=f"{match}.*Received:"):
        call()


# Pooled inputs every fusion of pooled (batch, dim) features refuses with a
# "Received:" error: a single modality, and a rank-3 one beside a pooled one.
# Keys are the test ids: parametrize with ``.values()`` and ``ids=.keys()``.
BAD_POOLED_FUSION_INPUTS = {
    "single-modality": [np.ones((2, 3), "float32")],
    "rank-3-beside-pooled": [np.ones((2, 3), "float32"), np.ones((2, 4, 3), "float32")],
}


def assert_export_serves_the_model(model, export_base, images, texts, atol=1e-5):
    """Export ``model`` (no warmup), check the graph only holds ops TF Serving has, and check that
    ``serving_default`` on encoded ``images`` and ``texts`` gives the Keras model's scores."""
    from mmzoo.export import check_serving_graph, export_saved_model

    version_dir = export_saved_model(model, export_base, warmup=False)
    check_serving_graph(version_dir)
    served = tf.saved_model.load(version_dir).signatures["serving_default"](
        image_bytes=tf.constant(images), text=tf.constant(texts)
    )["scores"]
    expected = model(model.preprocess(tf.constant(images), tf.constant(texts)), training=False)["scores"]
    np.testing.assert_allclose(served.numpy(), keras.ops.convert_to_numpy(expected), atol=atol)
    return version_dir
