import keras
import numpy as np
import pytest

from mmzoo.losses import MaskedAccuracy, MaskedSparseCategoricalCrossentropy


def test_padding_is_ignored():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 7)).astype("float32")
    y = np.array([[4, 5, 3, 0], [6, 3, 0, 0]])
    loss = MaskedSparseCategoricalCrossentropy()
    value = float(loss(y, logits))
    # Changing the logits at padded positions changes nothing.
    changed = logits.copy()
    changed[0, 3] += 50.0
    changed[1, 2:] -= 30.0
    assert float(loss(y, changed)) == pytest.approx(value, rel=1e-6)
    # The value is the mean over the 5 real tokens.
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_token = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    assert value == pytest.approx(per_token[y != 0].mean(), rel=1e-5)
    # A sample weight equal to the mask gives the same mean.
    assert float(loss(y, logits, sample_weight=(y != 0).astype("float32"))) == pytest.approx(value, rel=1e-5)


def test_label_smoothing_and_config():
    y = np.array([[4, 0]])
    logits = np.zeros((1, 2, 6), "float32")
    logits[0, 0, 4] = 10.0
    plain = float(MaskedSparseCategoricalCrossentropy()(y, logits))
    smoothed_loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.2)
    assert float(smoothed_loss(y, logits)) > plain
    clone = keras.losses.deserialize(keras.losses.serialize(smoothed_loss))
    assert clone.label_smoothing == 0.2 and clone.pad_id == 0
    with pytest.raises(ValueError, match="label_smoothing=1.5"):
        MaskedSparseCategoricalCrossentropy(label_smoothing=1.5)


def test_masked_accuracy():
    metric = MaskedAccuracy()
    y = np.array([[1, 2, 0, 0]])
    pred = np.eye(3, dtype="float32")[[1, 0, 2, 2]][None]  # right, wrong, (pad), (pad)
    metric.update_state(y, pred)
    assert float(metric.result()) == pytest.approx(0.5)
    assert MaskedAccuracy.from_config(metric.get_config()).pad_id == 0
