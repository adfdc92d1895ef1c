"""Masked loss and accuracy for teacher-forced captioning (padding ignored)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmzoo")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Token-level cross-entropy averaged over non-padding targets.

    ``y_true``: int ``[B, L]`` next-token ids (``pad_id`` = padding);
    ``y_pred``: logits ``[B, L, V]``. Padding targets contribute nothing and do
    not count in the mean, with or without a ``sample_weight``.
    ``label_smoothing`` spreads that much probability mass uniformly.

    Example::

        import numpy as np
        loss = MaskedSparseCategoricalCrossentropy()
        loss(np.array([[4, 3, 0]]), np.zeros((1, 3, 6), "float32"))  # log(6)
    """

    def __init__(self, label_smoothing=0.0, pad_id=0, from_logits=True,
                 name="masked_sparse_categorical_crossentropy", reduction="mean_with_sample_weight",
                 **kwargs):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}")
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.pad_id = int(pad_id)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        num_classes = ops.shape(y_pred)[-1]
        if self.label_smoothing:
            target = ops.one_hot(y_true, num_classes, dtype=y_pred.dtype)
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / ops.cast(num_classes, y_pred.dtype)
            losses = keras.losses.categorical_crossentropy(target, y_pred, from_logits=self.from_logits)
        else:
            losses = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        return losses

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Padding targets get weight 0; "mean_with_sample_weight" divides by the weight sum.
        weight = ops.cast(ops.not_equal(ops.cast(y_true, "int32"), self.pad_id), "float32")
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        return super().__call__(y_true, y_pred, sample_weight=weight)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, pad_id=self.pad_id, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="mmzoo")
class MaskedAccuracy(keras.metrics.Mean):
    """Next-token accuracy over non-padding targets (``y_pred``: logits or probabilities ``[B, L, V]``).

    Example::

        import numpy as np
        metric = MaskedAccuracy()
        metric.update_state(np.array([[1, 0]]), np.array([[[0.0, 1.0], [1.0, 0.0]]]))
        metric.result()  # 1.0: the padding position does not count
    """

    def __init__(self, pad_id=0, name="masked_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.pad_id = int(pad_id)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        matches = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), self.dtype)
        weight = ops.cast(ops.not_equal(y_true, self.pad_id), self.dtype)
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, self.dtype)
        return super().update_state(matches, sample_weight=weight)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
