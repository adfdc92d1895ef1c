"""Classifier evaluation: a model run over records through the training pipeline."""

from __future__ import annotations

import numpy as np

from mmzoo.data import make_dataset
from mmzoo.evaluation.forward import forward_for
from mmzoo.metrics.classification import classification_metrics


def predict_records(model, records, batch_size: int = 64):
    """Run ``model`` over ``records``; returns ``(y_true, scores)`` as numpy."""
    ds = make_dataset(records, model, batch_size=batch_size, training=False)
    forward = forward_for(lambda x: model(x, training=False)["scores"], ds.element_spec[0], int(ds.cardinality()))
    ys, scores = [], []
    for batch in ds:
        x, y = batch[0], batch[1]
        ys.append(np.asarray(y))
        scores.append(np.asarray(forward(x)))
    if not ys:
        raise ValueError("No records to evaluate. Received: 0 records")
    return np.concatenate(ys), np.concatenate(scores)


def evaluate_classifier(model, records, batch_size: int = 64) -> dict:
    """Accuracy and macro-F1 (micro/macro F1 for multi-label) over ``records``."""
    y_true, scores = predict_records(model, records, batch_size=batch_size)
    out = classification_metrics(y_true, scores, mode=getattr(model, "mode", "multiclass"))
    out["num_examples"] = int(len(y_true))
    return out
