"""Serving signatures of a zoo model, built with ``keras.export.ExportArchive``.

Raw inputs go in (``image_bytes``: encoded JPEG/PNG/GIF/BMP, ``text``: UTF-8
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
Multi-label classifiers (``mode="multilabel"``): ``scores`` are per-class
sigmoid probabilities, ``class_ids``/``classes`` the top-scoring class, and
``predicted`` (bool ``[None, C]``) marks every class with ``score >= 0.5``.
Binary classifiers (``mode="binary"``, one sigmoid unit ``p``) serve
``scores = [1 - p, p]`` over their two ``label_names``.
Captioners' ``preprocessed`` signature takes only ``image``.
Classifiers with further heads (the multi-task classifier) add the outputs of
their ``serving_outputs(outputs)`` method (``match_score``) beside ``scores``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

MULTI_LABEL_THRESHOLD = 0.5


def _string_spec(name):
    return tf.TensorSpec(shape=(None,), dtype=tf.string, name=name)


def model_input_names(model) -> list[str]:
    names = getattr(model, "model_input_names", None)
    if names is None:
        names = [t.name for t in model.inputs]
    return list(names)


def _config_value(model, key, default=None):
    value = getattr(model, key, None)
    if value is None:
        try:
            value = model.get_config().get(key, default)
        except Exception:  # noqa: BLE001
            value = default
    return default if value is None else value


def classification_mode(model) -> str:
    """``"multiclass"``, ``"multilabel"`` or ``"binary"`` (zoo classifiers' ``mode``)."""
    mode = _config_value(model, "mode", None)
    if mode is None:
        mode = "multilabel" if _config_value(model, "multi_label", False) else "multiclass"
    return str(mode)


def is_multi_label(model) -> bool:
    return classification_mode(model) == "multilabel"


def _check_same_batch(image_bytes, text):
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


def _scores_of(outputs):
    if isinstance(outputs, dict):
        for key in ("scores", "probabilities", "logits"):
            if key in outputs:
                return outputs[key]
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        raise ValueError(
            "A classifier's outputs must hold 'scores'. Received output keys: " f"{sorted(outputs)}"
        )
    return outputs


def _classification_head(model, outputs):
    scores = tf.cast(_scores_of(outputs), tf.float32)
    if classification_mode(model) == "binary" and scores.shape[-1] == 1:
        # One sigmoid unit (probability of label_names[1]): serve both classes.
        scores = tf.concat([1.0 - scores, scores], axis=-1)
    num_classes = scores.shape[-1]
    label_names = model.label_names or [str(i) for i in range(num_classes)]
    if num_classes is not None and len(label_names) != num_classes:
        raise ValueError(
            "model.label_names must have one name per class. "
            f"Received: {len(label_names)} label_names for {num_classes} classes"
        )
    class_ids = tf.argmax(scores, axis=-1, output_type=tf.int64)
    result = {
        "scores": scores,
        "class_ids": class_ids,
        "classes": tf.gather(tf.constant(label_names, dtype=tf.string), class_ids),
    }
    if is_multi_label(model):
        result["predicted"] = scores >= MULTI_LABEL_THRESHOLD
    return result


def _with_one_row_at_least(fn, inputs, enabled=True):
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


def _run_model(model, inputs, pad_empty_batch=True):
    inputs = {k: v for k, v in inputs.items() if k in model_input_names(model)}
    return _with_one_row_at_least(lambda x: model(x, training=False), inputs, pad_empty_batch)


class SignatureBuilder:
    """The endpoint functions (raw and preprocessed) of one model."""

    def __init__(self, model, beam_width=4, pad_empty_batch=True):
        task = getattr(model, "task", "")
        if task not in ("classification", "matching", "captioning"):
            raise ValueError(
                "Export needs a zoo model whose task is 'classification', 'matching' or "
                f"'captioning'. Received: task={task!r} on {type(model).__name__}"
            )
        if int(beam_width) < 1:
            raise ValueError(f"beam_width must be at least 1. Received: beam_width={beam_width}")
        self.model = model
        self.task = task
        self.beam_width = int(beam_width)
        self.pad_empty_batch = bool(pad_empty_batch)
        names = model_input_names(model)
        self.uses_image = "image" in names or task == "captioning"
        self.uses_text = "token_ids" in names and task != "captioning"

    # -- raw inputs -> model inputs ------------------------------------------------
    def _raw_inputs(self, image_bytes=None, text=None):
        inputs = {}
        if image_bytes is not None:
            inputs["image"] = self.model.image_preprocessor(image_bytes)
        if text is not None:
            inputs["token_ids"] = tf.cast(self.model.tokenizer(text), tf.int32)
        return inputs

    def _raw_signature(self, names):
        return [_string_spec(n) for n in names]

    def _head(self, inputs):
        model = self.model
        if self.task == "classification":
            outputs = _run_model(model, inputs, self.pad_empty_batch)
            result = _classification_head(model, outputs)
            if hasattr(model, "serving_outputs"):  # multi-task models: their other heads
                result.update(model.serving_outputs(outputs))
            return result
        if self.task == "matching":
            outputs = _run_model(model, inputs, self.pad_empty_batch)
            score = outputs["score"] if isinstance(outputs, dict) else outputs
            return {"score": tf.reshape(tf.cast(score, tf.float32), [-1])}
        return self._caption(inputs["image"], method="greedy")

    def _caption(self, image, method, **kwargs):
        out = _with_one_row_at_least(
            lambda x: self.model.generate(x["image"], method=method, **kwargs), {"image": image}, self.pad_empty_batch
        )
        caption = self.model.tokenizer.detokenize(out["token_ids"])
        return {"caption": caption, "score": tf.cast(out["score"], tf.float32)}

    def endpoints(self) -> dict:
        """``{name: (fn, input_signature)}`` in export order (serving_default first)."""
        if self.task == "captioning":
            return self._captioning_endpoints()
        if self.uses_image and self.uses_text:
            eps = self._image_text_endpoints()
        elif self.uses_image:
            eps = self._image_endpoints()
        else:
            eps = self._text_endpoints()
        if self.task == "matching":
            eps.update(self._embedding_endpoints())
        return eps

    def _captioning_endpoints(self) -> dict:
        def serving_default(image_bytes):
            return self._caption(self._raw_inputs(image_bytes)["image"], method="greedy")

        def beam_search(image_bytes):
            return self._caption(self._raw_inputs(image_bytes)["image"], method="beam", beam_width=self.beam_width)

        def preprocessed(image):
            return self._caption(image, method="greedy")

        return {
            "serving_default": (serving_default, self._raw_signature(["image_bytes"])),
            "beam_search": (beam_search, self._raw_signature(["image_bytes"])),
            "preprocessed": (preprocessed, [self._image_spec()]),
        }

    def _image_text_endpoints(self) -> dict:
        # One dict argument: the signature keys are the dict keys, and
        # keras.layers.TFSMLayer can call the endpoint with a dict.
        def serving_default(inputs):
            image_bytes, text = _check_same_batch(inputs["image_bytes"], inputs["text"])
            return self._head(self._raw_inputs(image_bytes, text))

        def preprocessed(inputs):
            image, token_ids = _check_same_batch(inputs["image"], inputs["token_ids"])
            return self._head({"image": image, "token_ids": token_ids})

        return {
            "serving_default": (
                serving_default,
                [{"image_bytes": _string_spec("image_bytes"), "text": _string_spec("text")}],
            ),
            "preprocessed": (preprocessed, [{"image": self._image_spec(), "token_ids": self._token_spec()}]),
        }

    def _image_endpoints(self) -> dict:
        def serving_default(image_bytes):
            return self._head(self._raw_inputs(image_bytes=image_bytes))

        def preprocessed(image):
            return self._head({"image": image})

        return {
            "serving_default": (serving_default, self._raw_signature(["image_bytes"])),
            "preprocessed": (preprocessed, [self._image_spec()]),
        }

    def _text_endpoints(self) -> dict:
        def serving_default(text):
            return self._head(self._raw_inputs(text=text))

        def preprocessed(token_ids):
            return self._head({"token_ids": token_ids})

        return {
            "serving_default": (serving_default, self._raw_signature(["text"])),
            "preprocessed": (preprocessed, [self._token_spec()]),
        }

    def _embedding_endpoints(self) -> dict:
        """``embed_image`` / ``embed_text`` of matchers that have those methods."""
        model = self.model
        eps = {}
        if hasattr(model, "embed_image"):

            def embed_image(image_bytes):
                image = self._raw_inputs(image_bytes=image_bytes)["image"]
                embedding = _with_one_row_at_least(
                    lambda x: model.embed_image(x["image"]), {"image": image}, self.pad_empty_batch
                )
                return {"embedding": tf.cast(embedding, tf.float32)}

            eps["embed_image"] = (embed_image, self._raw_signature(["image_bytes"]))
        if hasattr(model, "embed_text"):

            def embed_text(text):
                token_ids = self._raw_inputs(text=text)["token_ids"]
                return {"embedding": tf.cast(model.embed_text(token_ids), tf.float32)}

            eps["embed_text"] = (embed_text, self._raw_signature(["text"]))
        return eps

    def _image_spec(self):
        h, w = self.model.image_size
        return tf.TensorSpec(shape=(None, h, w, 3), dtype=tf.float32, name="image")

    def _token_spec(self):
        return tf.TensorSpec(shape=(None, self.model.sequence_length), dtype=tf.int32, name="token_ids")


def build_export_archive(model, beam_width=4):
    """An ``ExportArchive`` tracking the model, tokenizer and image preprocessor.

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
    for name, (fn, signature) in SignatureBuilder(model, beam_width=beam_width).endpoints().items():
        archive.add_endpoint(name, fn, input_signature=signature)
    return archive
