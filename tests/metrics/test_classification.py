import numpy as np
import pytest

from mmzoo.metrics.classification import accuracy, classification_metrics, macro_f1, multilabel_f1


def test_accuracy_and_macro_f1_hand_checked():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fn1 -> 0
    assert macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_multilabel_micro_macro():
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 1]])
    out = multilabel_f1(y_true, y_pred)
    # micro: tp=2 fp=1 fn=1 -> 4/6
    assert out["micro_f1"] == pytest.approx(4 / 6)
    # per class: c0 1.0, c1 1.0, c2 tp0 fp1 fn1 -> 0
    assert out["macro_f1"] == pytest.approx(2 / 3)


def test_classification_metrics_modes():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = classification_metrics(np.array([0, 1, 1]), scores)
    assert out["accuracy"] == pytest.approx(2 / 3)
    binary = classification_metrics(np.array([1, 0]), np.array([[0.7], [0.2]]), mode="binary")
    assert binary["accuracy"] == 1.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="Received"):
        accuracy(np.zeros(3), np.zeros(4))
