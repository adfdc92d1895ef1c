"""`TransformerEncoderBlock`: a pre-norm Transformer encoder block (ViT / GPT-2 style)."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints, check_rates
from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-norm encoder block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``.

    Input and output are ``[batch, steps, dim]``. Padding is handled through
    the mask (``[batch, steps]``, ``True`` = valid), given as ``mask=`` or
    carried as the input's Keras mask: padded steps are never attended to, so
    valid steps' outputs do not depend on padding. The mask passes through.

    The attention and MLP sublayers are created in ``build`` because their
    widths follow the input width ``dim`` (as in keras-hub's
    ``TransformerEncoder``).

    Args:
        num_heads: attention heads; must divide the input width.
        mlp_dim: hidden width of the MLP (timm's ``mlp_ratio * dim``).
        dropout: dropout on the attention output, the MLP and the residuals.
        attention_dropout: dropout on the attention probabilities.
        activation: MLP activation.
        layer_norm_epsilon: epsilon of both layer norms.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> block = TransformerEncoderBlock(num_heads=2, mlp_dim=16)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    >>> block(x, mask=mask).shape
    TensorShape([2, 5, 8])
    """

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation="gelu",
        layer_norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_ints(num_heads=num_heads, mlp_dim=mlp_dim)
        check_rates(dropout=dropout, attention_dropout=attention_dropout)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.supports_masking = True

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(
                f"The input width must be divisible by num_heads={self.num_heads}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm"
        )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=dim // self.num_heads,
            dropout=self.attention_dropout,
            name="attention",
        )
        self.attention_dropout_layer = keras.layers.Dropout(self.dropout, name="attention_output_dropout")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="mlp_norm")
        self.mlp_hidden = keras.layers.Dense(self.mlp_dim, activation=self.activation, name="mlp_hidden")
        self.mlp_output = keras.layers.Dense(dim, name="mlp_output")
        self.mlp_dropout = keras.layers.Dropout(self.dropout, name="mlp_dropout")

        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(self, inputs, mask=None, training=None):
        attention_mask = None
        if mask is not None:
            mask = ops.cast(mask, "bool")
            # [batch, 1, steps]: no query attends to a padded key.
            attention_mask = ops.expand_dims(mask, 1)
        x = self.attention_norm(inputs)
        x = self.attention(x, x, attention_mask=attention_mask, training=training)
        x = inputs + self.attention_dropout_layer(x, training=training)
        y = self.mlp_norm(x)
        y = self.mlp_output(self.mlp_hidden(y))
        return x + self.mlp_dropout(y, training=training)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "num_heads", "mlp_dim", "dropout", "attention_dropout", "activation",
            "layer_norm_epsilon"
        )
