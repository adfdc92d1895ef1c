"""Serving signatures of a zoo model, built with ``keras.export.ExportArchive``.

Raw inputs go in (``image_bytes``: encoded JPEG/PNG/GIF/BMP/WebP, ``text``: UTF-8
strings); decoding, resizing and tokenization run inside the graph through
the model's own ``image_preprocessor`` and ``tokenizer``. The signatures per
``model.task`` (names, inputs, outputs) are the stable contract documented
in ``docs/signatures.md``:

=============== ================= ======================== ===================================
task            signature         inputs                   outputs
=============== ================= ======================== ===================================
classification  serving_default   image_bytes, text        scores, class_ids, classes
                                                           (+ predicted when multi-label)
matching        serving_default   image_bytes, text        score
matching        embed_image       image_bytes              embedding (models with embed_image)
matching        embed_text        text                     embedding (models with embed_text)
captioning      serving_default   image_bytes              caption, score (greedy)
captioning      beam_search       image_bytes              caption, score
every task      preprocessed      image, token_ids         as serving_default
=============== ================= ======================== ===================================

Models that only use one modality (unimodal baselines) take only that input.
Captioners' ``preprocessed`` signature takes only ``image``. Each task's
signatures are written by its ``mmzoo.tasks`` class (``Task.endpoints``);
this module puts them into an ``ExportArchive``. With
``input_type="tf_example"`` the tf.Example signatures (``tf_example``,
``classify``, ``regress``; ``mmzoo.export.examples``) are added beside them.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from mmzoo.export.examples import PREDICT_METHOD, check_input_type, example_endpoints
from mmzoo.tasks import task_for


def serving_endpoints(model, beam_width: int = 4, pad_empty_batch: bool = True) -> dict:
    """``{name: (fn, input_signature)}`` of ``model``'s signatures, in export order
    (``serving_default`` first), as its task writes them (``mmzoo.tasks``)."""
    task = task_for(model)
    if isinstance(beam_width, bool) or int(beam_width) < 1:
        raise ValueError(f"beam_width must be at least 1. Received: beam_width={beam_width}")
    return task.endpoints(beam_width=int(beam_width), pad_empty_batch=bool(pad_empty_batch))


def export_endpoints(model, beam_width=4, input_type="raw", feature_keys=None) -> dict:
    """``{name: (fn, input_signature, method name)}`` of every signature the export writes:
    the task's (``serving_endpoints``), then, for ``input_type="tf_example"``, the
    tf.Example ones (``examples.example_endpoints``)."""
    endpoints = serving_endpoints(model, beam_width=beam_width)
    result = {name: (fn, signature, PREDICT_METHOD) for name, (fn, signature) in endpoints.items()}
    if check_input_type(input_type) == "tf_example":
        result.update(example_endpoints(model, endpoints, feature_keys))
    return result


def build_export_archive(model, beam_width=4, input_type="raw", feature_keys=None):
    """An ``ExportArchive`` tracking the model, tokenizer and image preprocessor,
    with the signatures of ``export_endpoints``.

    The tokenizer and preprocessor must be built (call them once, as
    ``export_saved_model`` does on its sample inputs).
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in (model.tokenizer, model.image_preprocessor):
        if isinstance(resource, keras.layers.Layer) and not resource.built:
            raise ValueError(
                f"{type(resource).__name__} '{resource.name}' is not built: call it once on sample "
                "inputs before export (export_saved_model does)."
            )
        archive.track(resource)
    for name, (fn, signature, _) in export_endpoints(model, beam_width, input_type, feature_keys).items():
        archive.add_endpoint(name, fn, input_signature=signature)
    store_variables_once(archive)
    return archive


def write_archive(archive, path) -> None:
    """``archive.write_out(path)``, tracing each endpoint once, without TensorFlow's INFO line
    ``Assets written to: <path>``.

    ``ExportArchive.write_out`` traces every endpoint twice: once to list the
    variables it uses, outside a save context, and again inside
    ``tf.saved_model.save``, whose save context is part of ``tf.function``'s
    cache key (the variable policy). Only the second trace is saved. Here the
    variables are listed from traces made in a save context with the same
    options, which ``tf.saved_model.save`` then finds in the cache: the same
    SavedModel in less time (``benchmarks/export_time.py`` measures it).

    ``path`` is an export's temporary directory, renamed into place later, and
    the export reports the final path itself. The line shows wherever the
    ``tensorflow`` logger is at INFO, as TensorFlow sets it in Jupyter; the
    logger's level is restored after the write, so its warnings still show.
    """
    from tensorflow.python.saved_model import save_context

    options = tf.saved_model.SaveOptions()
    logger = tf.get_logger()
    previous = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        if not archive._endpoint_names:
            raise ValueError("No endpoints have been set yet. Call add_endpoint().")
        with save_context.save_context(options):
            archive._filter_and_track_resources()
        # What write_out then does: every endpoint a signature, the first one also serving_default.
        names = list(archive._endpoint_names)
        signatures = {name: archive._get_concrete_fn(name) for name in names}
        signatures.setdefault("serving_default", signatures[names[0]])
        tf.saved_model.save(archive._tf_trackable, path, options=options, signatures=signatures)
    finally:
        logger.setLevel(previous)


def store_variables_once(archive) -> int:
    """Make the archive's variable collections hold the ``tf.Variable``s its endpoints capture.

    ``ExportArchive.track`` lists the ``keras.Variable`` wrappers under
    ``variables`` / ``trainable_variables`` / ``non_trainable_variables``, and
    its save lists the endpoints' own ``tf.Variable``s under
    ``_all_variables``: two trackable objects per weight, so the checkpoint
    holds every weight twice and a server loads it twice (keras-team/keras
    #23553, Keras 3.15). Unwrapped, they are the same objects and TensorFlow
    saves each once. Returns how many variables were unwrapped.
    """
    trackable = getattr(archive, "_tf_trackable", None)
    count = 0
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        values = list(getattr(trackable, name, None) or [])
        unwrapped = [v.value if isinstance(v, keras.Variable) and isinstance(v.value, tf.Variable) else v
                     for v in values]
        count += sum(a is not b for a, b in zip(values, unwrapped))
        if values:
            setattr(trackable, name, unwrapped)
    return count
