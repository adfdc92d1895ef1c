"""The graph pieces every task's serving signatures share.

Shapes and dtypes of the signature inputs, the batch-size check of two-input
signatures, and the empty-batch guard. Each task's ``endpoints`` composes
them (``mmzoo.tasks``); ``mmzoo.export`` writes the result.
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


def check_same_batch(image_bytes, text):
    """Both batches must have the same size; an InvalidArgumentError names both."""
    n_images = tf.shape(image_bytes)[0]
    n_texts = tf.shape(text)[0]
    check = tf.debugging.Assert(
        tf.equal(n_images, n_texts),
        [
            "image_bytes and text must have the same batch size. Received: image_bytes batch size",
            n_images,
            "text batch size",
            n_texts,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes), tf.identity(text)


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
