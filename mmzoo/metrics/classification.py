"""Classification metrics: accuracy, macro-F1, and micro/macro F1 for multi-label.

Pure numpy on predictions; ``mmzoo.evaluation.evaluate_classifier`` runs a
model over records and calls these.

    >>> import numpy as np
    >>> from mmzoo.metrics.classification import accuracy, macro_f1
    >>> accuracy(np.array([0, 1, 1]), np.array([0, 1, 0]))
    0.6666666666666666
"""

from __future__ import annotations

import numpy as np


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape. Received: {y_true.shape} and {y_pred.shape}"
        )
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over classes present in y_true or y_pred."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    num_classes = num_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    true_1h = np.eye(num_classes, dtype=bool)[y_true]
    pred_1h = np.eye(num_classes, dtype=bool)[y_pred]
    return multilabel_f1(true_1h, pred_1h)["macro_f1"]


def multilabel_f1(y_true, y_pred) -> dict:
    """Micro and macro F1 for multi-hot ``[N, C]`` arrays (macro over classes that occur)."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = np.sum(y_true & y_pred, axis=0).astype(float)
    fp = np.sum(~y_true & y_pred, axis=0).astype(float)
    fn = np.sum(y_true & ~y_pred, axis=0).astype(float)
    present = (tp + fp + fn) > 0
    per_class = _f1(tp, fp, fn)
    macro = float(per_class[present].mean()) if present.any() else 0.0
    micro = float(_f1(tp.sum(), fp.sum(), fn.sum()))
    return {"micro_f1": micro, "macro_f1": macro}


def classification_metrics(y_true, scores, mode: str = "multiclass", threshold: float = 0.5) -> dict:
    """Metrics from ground truth and the model's ``scores``.

    ``mode``: ``"multiclass"`` (y_true int ids, scores ``[N, C]``), ``"binary"``
    (y_true 0/1, scores ``[N, 1]``) or ``"multilabel"`` (y_true multi-hot).
    """
    scores = np.asarray(scores)
    if mode == "multilabel":
        y_true = np.asarray(y_true) > 0.5
        y_pred = scores >= threshold
        out = multilabel_f1(y_true, y_pred)
        out["exact_match"] = float(np.mean(np.all(y_true == y_pred, axis=1))) if len(y_true) else float("nan")
        return out
    if mode == "binary":
        y_pred = (scores.reshape(len(scores), -1)[:, 0] >= threshold).astype(int)
        y_true = np.asarray(y_true).reshape(-1).astype(int)
        return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, 2)}
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    y_pred = np.argmax(scores, axis=-1)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, scores.shape[-1]),
    }
