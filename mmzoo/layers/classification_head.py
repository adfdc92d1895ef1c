"""`ClassificationHead`: pooled features to class scores."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes

MODES = ("multiclass", "multilabel", "binary")


@keras.saving.register_keras_serializable(package="mmzoo")
class ClassificationHead(keras.layers.Layer):
    """Optional hidden layer, dropout, and a scoring layer.

    ``mode="multiclass"``: softmax over ``num_classes``; ``"multilabel"``: an
    independent sigmoid per class; ``"binary"``: one sigmoid unit (the
    probability of the positive class, ``label_names[1]``). Scores are float32
    even under mixed precision (the output layer is kept in float32).

    Args:
        num_classes: number of classes (``2`` for binary, which emits 1 score).
        mode: ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        hidden_units: width of an optional hidden ReLU layer (``0``: none).
        dropout: dropout rate before the scoring layer.
        from_logits_input: the input already is logits (late fusion): only
            the activation is applied.

    Example:

    >>> import numpy as np
    >>> head = ClassificationHead(num_classes=3, hidden_units=8)
    >>> tuple(head(np.ones((2, 5), "float32")).shape)
    (2, 3)
    """

    def __init__(self, num_classes, mode="multiclass", hidden_units=0, dropout=0.0, from_logits_input=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
        if int(num_classes) < 1 or (mode == "multiclass" and int(num_classes) < 2):
            raise ValueError(
                f"num_classes must be at least 2 (1 for multilabel). Received: num_classes={num_classes}"
            )
        if mode == "binary" and int(num_classes) != 2:
            raise ValueError(f"mode='binary' needs num_classes=2. Received: num_classes={num_classes}")
        if int(hidden_units) < 0:
            raise ValueError(f"hidden_units must be >= 0. Received: hidden_units={hidden_units}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.num_classes = int(num_classes)
        self.mode = mode
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        self.from_logits_input = bool(from_logits_input)
        self.output_units = 1 if mode == "binary" else self.num_classes
        self.hidden = (
            keras.layers.Dense(self.hidden_units, activation="relu", name="hidden")
            if self.hidden_units and not self.from_logits_input
            else None
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None
        self.logits = None if self.from_logits_input else keras.layers.Dense(self.output_units, name="logits")
        self.activation_layer = keras.layers.Activation(
            "softmax" if mode == "multiclass" else "sigmoid", dtype="float32", name="activation"
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = shape[:-1] + (self.hidden_units,)
        if self.logits is not None:
            self.logits.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if self.hidden is not None:
            x = self.hidden(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        if self.logits is not None:
            x = self.logits(x)
        return self.activation_layer(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_units,)

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "num_classes", "mode", "hidden_units", "dropout", "from_logits_input"
        )
