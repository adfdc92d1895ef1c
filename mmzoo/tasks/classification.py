"""Classification: label names learned from the records, most-common-answer
chance levels, and the ``scores`` / ``class_ids`` / ``classes`` signatures.

Multi-label classifiers (``mode="multilabel"``): ``scores`` are per-class
sigmoid probabilities, ``class_ids``/``classes`` the top-scoring class, and
``predicted`` (bool ``[None, C]``) marks every class with ``score >= 0.5``.
Binary classifiers (``mode="binary"``, one sigmoid unit ``p``) serve
``scores = [1 - p, p]`` over their two ``label_names``. Classifiers with
further heads (the multi-task classifier) add their ``serving_outputs``.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from mmzoo.data import label_names_from_records
from mmzoo.metrics.classification import multilabel_f1
from mmzoo.tasks.base import Task

MULTI_LABEL_THRESHOLD = 0.5


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


def classification_outputs(model, outputs) -> dict:
    """A classifier's raw outputs as the signature's ``scores``, ``class_ids``, ``classes`` (+ ``predicted``)."""
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


class ClassificationTask(Task):
    """Classifiers: answers (labels) to an image, a text, or both."""

    name = "classification"
    reads_text = True

    @classmethod
    def arguments_from_records(cls, records) -> dict:
        """``label_names`` found in the records (``mode="multilabel"`` when a record has several)."""
        arguments = {"label_names": label_names_from_records(records)}
        if any(isinstance(r.label, (list, tuple)) for r in records):
            arguments["mode"] = "multilabel"
        return arguments

    def chance(self, eval_records, train_records=None, metrics=None) -> dict:
        """Always answering the most common label of the evaluated records
        (accuracy, macro-F1; exact match for multi-label)."""
        labels = [r.label for r in eval_records if r.label is not None]
        if not labels:
            return {"rule": "no labels", "metrics": {}}
        if any(isinstance(label, (list, tuple)) for label in labels):
            truth = [set(label) if isinstance(label, (list, tuple)) else {label} for label in labels]
            top, count = collections.Counter(tuple(sorted(t)) for t in truth).most_common(1)[0]
            names = sorted(set().union(*truth))
            y_true = np.array([[name in t for name in names] for t in truth])
            y_pred = np.tile([name in top for name in names], (len(truth), 1))
            return {"rule": f"always the most common label set {list(top)}",
                    "metrics": {**multilabel_f1(y_true, y_pred), "exact_match": count / len(labels)}}
        counts = collections.Counter(str(label) for label in labels)
        top, count = counts.most_common(1)[0]
        p = count / len(labels)
        return {"rule": f"always the most common answer, {top!r}",
                "metrics": {"accuracy": p, "macro_f1": 2 * p / (1 + p) / len(counts)}}

    def metadata(self, beam_width: int = 4) -> dict:
        return {
            "classification_mode": classification_mode(self.model),
            "multi_label": is_multi_label(self.model),
            "multi_label_threshold": MULTI_LABEL_THRESHOLD,
        }

    def serve(self, inputs, pad_empty_batch=True):
        return classification_outputs(self.model, self.run(inputs, pad_empty_batch))


class MultiTaskClassificationTask(ClassificationTask):
    """Classifiers with further heads: their ``serving_outputs`` (``match_score``) beside ``scores``."""

    @classmethod
    def accepts(cls, model) -> bool:
        return super().accepts(model) and hasattr(model, "serving_outputs")

    def serve(self, inputs, pad_empty_batch=True):
        outputs = self.run(inputs, pad_empty_batch)
        return {**classification_outputs(self.model, outputs), **self.model.serving_outputs(outputs)}
