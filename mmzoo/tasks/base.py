"""``Task``: what differs between the zoo's tasks, written once per task.

A zoo model (``mmzoo.models``) is a Keras model: its graph, its
preprocessing (``preprocess``, ``training_example``), its compile defaults
and its train step. What the rest of the library does *around* a model of a
given task lives in one ``Task`` subclass per task, in the manner of
TensorFlow Model Garden's tasks and per-task export modules:

* **data**: which record texts the vocabulary is learned from, the automatic
  sequence length, the constructor arguments learned from the records
  (``label_names``), and the training examples (one per caption or not);
* **reporting**: the chance level of each headline metric;
* **export**: the serving signatures (``endpoints``), the task's part of the
  export metadata, and the head run on preprocessed inputs (``serve``).

``task_for(model)`` picks the most specific task that accepts the model (its
``task`` attribute, then what it can do: ``embed_image``/``embed_text`` make
a dual encoder, ``serving_outputs`` a multi-task classifier), so a user's own
``MultimodalModel`` subclass gets its task's behaviour too.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from mmzoo.tasks.serving import (
    checked_inputs,
    image_spec,
    model_input_names,
    run_model,
    string_spec,
    token_spec,
    vocabulary_size,
)


class Task:
    """One task's behaviour around a model; ``Task(model)`` binds it to one model."""

    name = ""
    """The ``model.task`` value this class serves."""
    reads_text = False
    """The records' ``text`` column is a model input (the questions of a classifier)."""
    adds_start_end = False
    """The tokenizer wraps texts in start/end tokens (models that generate text)."""
    captions_by_default = False
    """Every model of the task trains on (image, caption) pairs."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def accepts(cls, model) -> bool:
        """Whether this task serves ``model`` (an instance or a model class)."""
        return getattr(model, "task", None) == cls.name

    # -- data ----------------------------------------------------------------------
    @classmethod
    def learns_from_captions(cls, model) -> bool:
        """Whether ``model`` (or its class) trains on (image, caption) pairs: every matcher and
        captioner, and models that say so (``uses_captions = True``, the multi-task classifier)."""
        return cls.captions_by_default or bool(getattr(model, "uses_captions", False))

    @classmethod
    def corpus_texts(cls, records, model) -> list[str]:
        """The texts a tokenizer learns its vocabulary from: the records' texts
        when the model reads them, and their captions when it learns from captions."""
        texts = [r.text for r in records if r.text] if cls.reads_text else []
        if cls.learns_from_captions(model):
            texts.extend(c for r in records for c in r.captions or [])
        return texts

    @classmethod
    def sequence_length_for(cls, texts) -> int:
        """The tokenizer's sequence length when none is given: the longest text in
        words (+2 for start/end tokens), clipped to 8..64."""
        longest = max((len(t.split()) for t in texts), default=8)
        return int(min(64, max(8, longest + (2 if cls.adds_start_end else 0))))

    @classmethod
    def arguments_from_records(cls, records) -> dict:
        """Constructor arguments learned from the records (none but a classifier's labels)."""
        return {}

    @classmethod
    def examples(cls, records, model) -> list:
        """One record per training example: a model that learns from captions gets one
        record per (image, caption) pair, as ``make_dataset`` expands them."""
        if cls.learns_from_captions(model) and any(r.captions for r in records):
            return [dataclasses.replace(r, captions=[c]) for r in records for c in r.captions]
        return list(records)

    # -- reporting -----------------------------------------------------------------
    def chance(self, eval_records, train_records=None, metrics=None) -> dict:
        """``{"rule": str, "metrics": {name: value}}``: each headline metric without learning."""
        return {"rule": "", "metrics": {}}

    # -- export --------------------------------------------------------------------
    def metadata(self, beam_width: int = 4) -> dict:
        """The task's keys of the export metadata (``assets.extra/mmzoo.json``)."""
        return {}

    def serve(self, inputs: dict, pad_empty_batch: bool = True) -> dict:
        """The signature outputs of the model on preprocessed ``inputs``."""
        raise NotImplementedError(f"{type(self).__name__}.serve")

    def embedding_functions(self, pad_empty_batch: bool = True) -> dict:
        """``{signature name: (input name, fn)}`` of the embeddings the model serves (dual encoders)."""
        return {}

    def raw_inputs(self, image_bytes=None, text=None) -> dict:
        """Encoded images and strings to the model's inputs, through its own preprocessors."""
        inputs = {}
        if image_bytes is not None:
            inputs["image"] = self.model.image_preprocessor(image_bytes)
        if text is not None:
            inputs["token_ids"] = tf.cast(self.model.tokenizer(text), tf.int32)
        return inputs

    def input_spec(self, name: str) -> tf.TensorSpec:
        """The signature spec of input ``name`` (``image``, ``token_ids``, ``image_bytes``, ``text``)."""
        if name == "image":
            return image_spec(self.model)
        if name == "token_ids":
            return token_spec(self.model)
        return string_spec(name)

    def checked(self, inputs: dict) -> dict:
        """A signature's ``inputs`` once they pass the in-graph request checks
        (``mmzoo.tasks.serving.checked_inputs``: shapes, batch sizes, pixel and id values)."""
        specs = {name: self.input_spec(name) for name in inputs}
        return checked_inputs(inputs, specs, vocabulary_size(self.model))

    def endpoints(self, beam_width: int = 4, pad_empty_batch: bool = True) -> dict:
        """``{name: (fn, input_signature)}`` in export order (``serving_default`` first):
        ``serving_default`` on raw inputs and ``preprocessed`` on model inputs, over the
        modalities the model has. Every request is checked before the model runs (``checked``)."""
        names = model_input_names(self.model)
        if "image" in names and "token_ids" in names:
            return self._image_text_endpoints(pad_empty_batch)
        key = "image" if "image" in names else "token_ids"
        raw = "image_bytes" if key == "image" else "text"

        def serving_default(value):
            return self.serve(self.raw_inputs(**self.checked({raw: value})), pad_empty_batch)

        def preprocessed(value):
            return self.serve(self.checked({key: value}), pad_empty_batch)

        return {
            "serving_default": (serving_default, [self.input_spec(raw)]),
            "preprocessed": (preprocessed, [self.input_spec(key)]),
        }

    def _image_text_endpoints(self, pad_empty_batch) -> dict:
        # One dict argument: the signature keys are the dict keys, and
        # keras.layers.TFSMLayer can call the endpoint with a dict.
        def serving_default(inputs):
            inputs = self.checked({"image_bytes": inputs["image_bytes"], "text": inputs["text"]})
            return self.serve(self.raw_inputs(**inputs), pad_empty_batch)

        def preprocessed(inputs):
            return self.serve(self.checked({"image": inputs["image"], "token_ids": inputs["token_ids"]}),
                              pad_empty_batch)

        return {
            "serving_default": (
                serving_default,
                [{name: self.input_spec(name) for name in ("image_bytes", "text")}],
            ),
            "preprocessed": (
                preprocessed,
                [{name: self.input_spec(name) for name in ("image", "token_ids")}],
            ),
        }

    def run(self, inputs, pad_empty_batch: bool = True):
        """The model's raw outputs on ``inputs`` (inference mode, any batch size)."""
        return run_model(self.model, inputs, pad_empty_batch)
