"""The graph pieces every task's serving signatures share.

Shapes and dtypes of the signature inputs, the in-graph checks every request
passes before the model runs (shapes, the batch size of two-input signatures,
finite pixels, token ids in the vocabulary), and the empty-batch guard. Each
task's ``endpoints`` composes them (``mmzoo.tasks``); ``mmzoo.export`` writes
the result.
"""

from __future__ import annotations

import tensorflow as tf


def model_input_names(model) -> list[str]:
    """The names of the model's inputs (``"image"``, ``"token_ids"``)."""
    names = getattr(model, "model_input_names", None)
    if names is None:
        names = [t.name for t in model.inputs]
    return list(names)


def string_spec(name):
    return tf.TensorSpec(shape=(None,), dtype=tf.string, name=name)


def image_spec(model, batch_size=None):
    h, w = model.image_size
    return tf.TensorSpec(shape=(batch_size, h, w, 3), dtype=tf.float32, name="image")


def token_spec(model, batch_size=None):
    return tf.TensorSpec(shape=(batch_size, model.sequence_length), dtype=tf.int32, name="token_ids")


# What each signature input holds, in the messages that refuse a malformed one
# (no apostrophes: Assert prints its strings escaped).
INPUT_MEANINGS = {
    "image": "float32 RGB pixels in [0, 255] at the model image_size",
    "token_ids": "int32 ids of the model tokenizer, 0 = padding",
    "image_bytes": "one encoded image per row",
    "text": "one UTF-8 string per row",
}


def shape_text(spec) -> str:
    """A spec's shape as the messages write it: ``[batch, 16, 16, 3]``."""
    dims = ["batch" if i == 0 and d is None else ("any" if d is None else str(d)) for i, d in enumerate(spec.shape)]
    return "[" + ", ".join(dims) + "]"


def _dynamic_shape(value):
    """The request's shape, never the signature's. ``tf.shape`` turns what it knows when
    tracing into constants, and the graph optimizer folds the rank of a signature input
    from its spec (``Size(Shape(x))`` is 2 for a ``[None, 16]`` input fed ``[1, 16, 1]``):
    the shape is read through a ``PlaceholderWithDefault`` of unknown shape instead."""
    unknown = tf.raw_ops.PlaceholderWithDefault(input=value, shape=tf.TensorShape(None))
    return tf.raw_ops.Shape(input=unknown, out_type=tf.int32)


def check_shape(name, value, spec):
    """An ``Assert``: ``value`` has ``spec``'s rank and every dimension ``spec`` fixes.

    A request is not held to its signature's shape (TF Serving feeds any
    tensor of the right dtype), so without it a zero-channel image reaches a
    convolution and a short ``token_ids`` row a recurrent loop, whose errors
    name neither the input nor what was expected.
    """
    rank = spec.shape.rank
    shape = _dynamic_shape(value)
    ok = tf.equal(tf.raw_ops.Size(input=shape), rank)
    fixed = [i for i, d in enumerate(spec.shape) if d is not None]
    if fixed:
        padded = tf.concat([shape, tf.fill([rank], -1)], axis=0)  # rank entries at least, whatever the rank
        dims = tf.gather(padded, fixed)
        ok = tf.logical_and(ok, tf.reduce_all(tf.equal(dims, [spec.shape[i] for i in fixed])))
    meaning = INPUT_MEANINGS.get(name, str(spec.dtype.name))
    return tf.debugging.Assert(
        ok, [f"{name} must have shape {shape_text(spec)} ({meaning}). Received: shape", shape], summarize=8
    )


def check_same_batch(inputs: dict):
    """An ``Assert``: every input of ``inputs`` (``{name: tensor}``, ranks checked) has the
    same batch size; the ``InvalidArgumentError`` names the signature's inputs and their sizes."""
    names = list(inputs)
    sizes = [_dynamic_shape(inputs[name])[0] for name in names]
    ok = tf.reduce_all(tf.equal(tf.stack(sizes), sizes[0]))
    data = [f"{' and '.join(names)} must have the same batch size. Received: {names[0]} batch size", sizes[0]]
    for name, size in zip(names[1:], sizes[1:]):
        data += [f"and {name} batch size", size]  # error_text joins the items with spaces
    return tf.debugging.Assert(ok, data)


def check_values(name, value, vocabulary_size=None):
    """An ``Assert`` on the values of a preprocessed input, or ``None`` for other inputs:
    ``image`` pixels finite, ``token_ids`` in ``[0, vocabulary_size)`` (``>= 0`` without one)."""
    if name == "image":
        bad = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(value)), tf.int32))
        return tf.debugging.Assert(
            tf.equal(bad, 0),
            ["image must hold finite pixel values (RGB in [0, 255]). Received: NaN or Inf in", bad, "values"],
        )
    if name == "token_ids":
        flat = tf.reshape(value, [-1])
        low, high = tf.reduce_min(flat), tf.reduce_max(flat)  # an empty batch passes: (int max, int min)
        ok = tf.greater_equal(low, 0)
        expected = "ids >= 0"
        if vocabulary_size:
            ok = tf.logical_and(ok, tf.less(high, int(vocabulary_size)))
            expected = f"ids in [0, {int(vocabulary_size)}) (the model tokenizer vocabulary, 0 = padding)"
        return tf.debugging.Assert(ok, [f"token_ids must be {expected}. Received: ids from", low, "to", high])
    return None


def checked_inputs(inputs: dict, specs: dict, vocabulary_size=None) -> dict:
    """``inputs`` (``{name: tensor}``) once they pass, in the graph, before the model runs:
    each one's shape against ``specs[name]``, the same batch size, then the values of
    ``image`` and ``token_ids``. A failure is an ``InvalidArgumentError`` (TF Serving's
    INVALID_ARGUMENT) naming the input and what was expected. The checks run one after
    the other, so the first one that fails is the one reported (a wrong rank, not the
    batch size read from it).
    """
    checks = []

    def then(make):
        with tf.control_dependencies(checks[-1:]):
            check = make()
        if check is not None:
            checks.append(check)

    for name, value in inputs.items():
        then(lambda name=name, value=value: check_shape(name, value, specs[name]))
    if len(inputs) > 1:
        then(lambda: check_same_batch(inputs))
    for name, value in inputs.items():
        then(lambda name=name, value=value: check_values(name, value, vocabulary_size))
    with tf.control_dependencies(checks[-1:]):
        return {name: tf.identity(value) for name, value in inputs.items()}


def vocabulary_size(model):
    """The size of the model tokenizer's vocabulary, or ``None`` when it has none."""
    size = getattr(getattr(model, "tokenizer", None), "vocabulary_size", None)
    return int(size) if size else None


def with_one_row_at_least(fn, inputs, enabled=True):
    """``fn(inputs)`` for a batch of any size, 0 included; outputs cut to the batch.

    TF 2.21's oneDNN ``Conv2D`` returns its input's shape for a batch of 0, so
    a CNN tower fails on an empty request with an unrelated shape error. An
    empty batch runs as one zero row and the outputs are sliced back to 0
    rows; any other batch is passed through (padding by 0 rows is a no-op).
    ``enabled=False`` (LiteRT conversion: the pad would cost the converted
    model its dynamic batch) calls ``fn`` as is.
    """
    if not enabled:
        return fn(inputs)
    batch = tf.shape(next(iter(inputs.values())))[0]
    extra = tf.maximum(1 - batch, 0)
    padded = {k: tf.pad(v, [[0, extra]] + [[0, 0]] * (v.shape.rank - 1)) for k, v in inputs.items()}
    return tf.nest.map_structure(lambda t: t[:batch], fn(padded))


def run_model(model, inputs, pad_empty_batch=True):
    """The model on the inputs it has (of ``inputs``), in inference mode, any batch size."""
    inputs = {k: v for k, v in inputs.items() if k in model_input_names(model)}
    return with_one_row_at_least(lambda x: model(x, training=False), inputs, pad_empty_batch)
