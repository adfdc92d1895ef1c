import numpy as np
import pytest

from mmzoo.layers.classification_head import ClassificationHead
from tests.harness import run_layer_checks


@pytest.mark.parametrize(
    "mode,num_classes,units", [("multiclass", 4, 4), ("multilabel", 3, 3), ("binary", 2, 1)]
)
def test_standard_checks(mode, num_classes, units, tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    out = run_layer_checks(
        lambda: ClassificationHead(num_classes, mode=mode, hidden_units=5, dropout=0.1),
        x,
        tmp_path=tmp_path,
        expected_output_shape=(3, units),
    )
    out = np.asarray(out)
    assert np.all((out >= 0) & (out <= 1))
    if mode == "multiclass":
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_from_logits_input_applies_only_the_activation():
    logits = np.array([[1.0, 2.0, 0.5]], "float32")
    out = np.asarray(ClassificationHead(3, from_logits_input=True)(logits))
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: mode='softmax'"):
        ClassificationHead(3, mode="softmax")
    with pytest.raises(ValueError, match="num_classes=2"):
        ClassificationHead(3, mode="binary")
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        ClassificationHead(1)
