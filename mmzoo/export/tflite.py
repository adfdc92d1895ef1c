"""LiteRT (TFLite) export of the classification and embedding signatures.

``export_tflite(model, "model.tflite")`` writes the model's signatures over
*preprocessed* inputs (``image`` float32 ``[B, H, W, 3]`` RGB in ``[0, 255]``,
``token_ids`` int32 ``[B, L]``) through a temporary SavedModel and
``tf.lite.TFLiteConverter.from_saved_model``, plus a JSON sidecar
(``model.tflite.json``) with what an app needs around it: label names, image
size, the tokenizer's vocabulary and settings, and the op set used.

What converts (TensorFlow 2.21, tensorflow-text 2.21):

==================== ======================= =============================================
zoo head             LiteRT signatures       inputs -> outputs
==================== ======================= =============================================
classification       ``preprocessed``        image, token_ids -> scores, class_ids, classes
matching (dual enc.) ``preprocessed``,       image, token_ids -> score;
                     ``embed_image``,        image -> embedding;
                     ``embed_text``          token_ids -> embedding
matching (ITM)       ``preprocessed``        image, token_ids -> score
captioning           not supported           (in-graph decoding loop + string detokenizer)
==================== ======================= =============================================

Raw-input signatures (``image_bytes``, ``text``) do not convert: the image
preprocessor's antialiased resize (``ScaleAndTranslate``) is neither a LiteRT
builtin nor in the Select-TF-ops (Flex) set, and the tokenizer's
tensorflow-text ops (``FastWordpieceTokenizeWithOffsets``, regex split, UTF-8
normalisation) have no LiteRT kernels in the Python package; word and
wordpiece tokenizers alike. Decode/resize and tokenize in the app (the sidecar
holds the vocabulary) and feed the ``preprocessed`` inputs.

Op sets and batch: builtins only whenever the graph allows. CNN / ViT /
Transformer towers convert with a dynamic batch; recurrent towers (``lstm``,
``bilstm``: a ``while`` loop over a TensorList) convert to builtins only with
a fixed batch, so ``batch_size="auto"`` exports them with batch 1. Select TF
ops (Flex) are a last resort (``allow_select_tf_ops``), e.g. for a dynamic
batch with a recurrent tower (``batch_size=None``); the app's interpreter must
then link the Flex delegate (the ``tensorflow`` 2.21 pip package's
``tf.lite.Interpreter`` does not). The sidecar records ``ops`` and
``batch_size``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings

import keras
import tensorflow as tf

from mmzoo.export.signatures import write_archive
from mmzoo.models.base import float32_copy
from mmzoo.native_stderr import captured_native_stderr
from mmzoo.tasks import image_spec, model_input_names, task_for, token_spec

TFLITE_TASKS = ("classification", "matching")


class TFLiteConversionError(ValueError):
    """A signature cannot be converted to LiteRT (the message names the ops)."""


def tflite_endpoints(model, batch_size=None) -> dict:
    """``{name: (fn, input_signature)}`` of the LiteRT-convertible signatures of ``model``."""
    task = getattr(model, "task", None)
    if task not in TFLITE_TASKS:
        raise ValueError(
            "LiteRT export supports classification and matching models (captioners decode in an "
            "in-graph loop with a string detokenizer, which LiteRT cannot run). "
            f"Received: task={task!r} on {type(model).__name__}"
        )
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"batch_size must be None or a positive int. Received: batch_size={batch_size!r}")
    specs = {"image": image_spec(model, batch_size), "token_ids": token_spec(model, batch_size)}
    bound = task_for(model)
    names = [n for n in ("image", "token_ids") if n in model_input_names(model)]

    def preprocessed(*values):
        return bound.serve(dict(zip(names, values)), pad_empty_batch=False)

    eps = {"preprocessed": (preprocessed, [specs[n] for n in names])}
    for name, (key, embed) in bound.embedding_functions(pad_empty_batch=False).items():
        eps[name] = (embed, [specs[key]])
    return eps


def convert_saved_model(
    saved_model_dir, signature_keys=None, *, allow_select_tf_ops=True, optimize=False, try_builtins=True
):
    """Convert signatures of a SavedModel to LiteRT; returns ``(flatbuffer, ops)``.

    ``ops`` is ``"builtins"`` or ``"builtins+select_tf_ops"``. Builtins are
    tried first; Select TF ops only when they fail and ``allow_select_tf_ops``.
    Raises ``TFLiteConversionError`` naming the unsupported ops.
    """
    saved_model_dir = os.fspath(saved_model_dir)
    attempts = [("builtins", [tf.lite.OpsSet.TFLITE_BUILTINS])] if try_builtins else []
    if allow_select_tf_ops:
        attempts.append(
            ("builtins+select_tf_ops", [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])
        )
    errors = []
    for ops, op_sets in attempts:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=list(signature_keys) if signature_keys else None
        )
        converter.target_spec.supported_ops = op_sets
        if ops != "builtins":
            # Keep TensorList ops (dynamic-batch RNN loops) as Flex ops.
            converter._experimental_lower_tensor_list_ops = False
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            # The converter prints its MLIR diagnostics to file descriptor 2 as "error: ..." lines,
            # even for a first attempt that a later one replaces; a failure's are in its message.
            with captured_native_stderr():
                return converter.convert(), ops
        except Exception as e:  # ConverterError and friends
            errors.append((ops, _summarize(str(e))))
    detail = "; ".join(f"{ops}: {msg}" for ops, msg in errors)
    hint = "" if allow_select_tf_ops else " Pass allow_select_tf_ops=True to allow the Flex delegate."
    raise TFLiteConversionError(
        f"Cannot convert signatures {list(signature_keys or ['all'])} of {saved_model_dir} to LiteRT.{hint} "
        f"{detail}"
    )


def _summarize(message: str) -> str:
    for marker in ("Custom ops:", "Flex ops:", "failed to legalize operation", "is neither a custom op nor a flex op"):
        if marker in message:
            lines = [line.strip() for line in message.splitlines() if marker in line]
            if lines:
                return lines[0][-400:]
    return message.strip().splitlines()[-1][-400:] if message.strip() else "conversion failed"


def _tokenizer_info(tokenizer):
    return {
        "vocabulary": list(tokenizer.vocabulary),
        "mode": tokenizer.mode,
        "sequence_length": int(tokenizer.sequence_length),
        "lowercase": bool(tokenizer.lowercase),
        "add_start_end": bool(tokenizer.add_start_end),
        "pad_id": 0,
        "unk_id": 1,
        "start_id": 2,
        "end_id": 3,
    }


def _write_and_convert(model, batch_size, select_tf_ops, optimize):
    endpoints = tflite_endpoints(model, batch_size=batch_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    tmp_dir = tempfile.mkdtemp(prefix="mmzoo-tflite-")
    try:
        write_archive(archive, os.path.join(tmp_dir, "saved_model"))
        return convert_saved_model(
            os.path.join(tmp_dir, "saved_model"),
            list(endpoints),
            allow_select_tf_ops=select_tf_ops,
            optimize=optimize,
            try_builtins=not select_tf_ops,
        )
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def export_tflite(
    model,
    output_path,
    *,
    batch_size="auto",
    allow_select_tf_ops=True,
    optimize=False,
    overwrite=False,
) -> dict:
    """Write ``model``'s LiteRT signatures to ``output_path`` (+ ``output_path.json``).

    Args:
        model: a zoo classification or matching model (one built under a mixed
            precision policy is converted as float32: LiteRT has no float16 builtins).
        output_path: the ``.tflite`` file to write.
        batch_size: ``"auto"`` (a dynamic batch when the graph converts to
            builtins with one, else a fixed batch of 1: recurrent towers),
            ``None`` (dynamic) or a fixed positive int. Dynamic-batch inputs
            are resized by the interpreter's signature runner.
        allow_select_tf_ops: when builtins cannot express the graph, fall back
            to Select TF ops (the Flex delegate must then be linked into the
            app's interpreter).
        optimize: ``tf.lite.Optimize.DEFAULT`` (dynamic-range quantization).
        overwrite: replace an existing file.

    Returns the sidecar metadata (also written as JSON): ``signatures``
    (inputs/outputs), ``ops``, ``batch_size``, ``label_names``,
    ``image_size``, ``tokenizer`` (vocabulary and settings).

    Example:

    ```python
    import mmzoo
    from mmzoo.export.tflite import export_tflite
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, text_tower="transformer")
    info = export_tflite(model, "/tmp/concat_classifier.tflite")
    ```
    """
    output_path = os.path.abspath(os.fspath(output_path))
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(
            f"{output_path} already exists; pass overwrite=True to replace it. Received: output_path={output_path!r}"
        )
    candidates = [None, 1] if batch_size == "auto" else [batch_size]
    tflite_endpoints(model, batch_size=candidates[0])  # validates task and batch_size early
    model = float32_copy(model)  # a mixed-precision model converts as float32
    flatbuffer, errors = None, []
    for candidate in candidates:
        try:
            flatbuffer, ops = _write_and_convert(model, candidate, False, optimize)
            batch_size = candidate
            break
        except TFLiteConversionError as e:
            errors.append(e)
    if flatbuffer is None:
        if not allow_select_tf_ops:
            raise errors[-1]
        batch_size = candidates[0]
        flatbuffer, ops = _write_and_convert(model, batch_size, True, optimize)

    metadata = {
        "format": "mmzoo-tflite/1",
        "model_class": type(model).__name__,
        "task": model.task,
        "ops": ops,
        "batch_size": batch_size,
        "signatures": _signature_details(flatbuffer),
        "image_size": list(model.image_size),
        "image_input": "float32 [batch, height, width, 3] RGB in [0, 255], decoded and resized",
        "label_names": model.label_names,
        "tokenizer": _tokenizer_info(model.tokenizer),
        "tensorflow_version": tf.__version__,
    }
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    with open(output_path, "wb") as f:
        f.write(flatbuffer)
    with open(output_path + ".json", "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def _signature_details(flatbuffer) -> dict:
    """``{signature: {"inputs": ..., "outputs": ...}}`` of a converted flatbuffer, as its interpreter reports them."""
    with warnings.catch_warnings():
        # Only the signatures' details are read here; the deprecation (use LiteRT's interpreter, as
        # an app does) says nothing about the file written.
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    signatures = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        signatures[name] = {
            "inputs": {k: _describe(v) for k, v in runner.get_input_details().items()},
            "outputs": {k: _describe(v) for k, v in runner.get_output_details().items()},
        }
    return signatures


def _describe(detail):
    return {
        "dtype": tf.dtypes.as_dtype(detail["dtype"]).name,
        "shape": [int(d) if d >= 0 else None for d in detail["shape_signature"]],
    }
