"""`TransformerDecoderBlock`: pre-norm decoder block with self- and cross-attention caches."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints
from mmzoo.layers._config import with_attributes
from mmzoo.layers.cached_multi_head_attention import CachedMultiHeadAttention


def _self_attention_mask(x, mask, self_attention_cache, self_attention_cache_update_index):
    """The causal self-attention mask ``[1 or B, T, S]`` of ``x``: against the
    cache's positions when decoding with one, else within ``x`` (and its padding ``mask``)."""
    steps = ops.shape(x)[1]
    query_positions = ops.arange(steps, dtype="int32")
    if self_attention_cache is not None:
        if self_attention_cache_update_index is None:
            raise ValueError(
                "self_attention_cache_update_index is required with self_attention_cache. "
                "Received: self_attention_cache_update_index=None"
            )
        index = ops.cast(self_attention_cache_update_index, "int32")
        key_positions = ops.arange(ops.shape(self_attention_cache)[2], dtype="int32")
        self_mask = ops.expand_dims(key_positions, 0) <= ops.expand_dims(query_positions + index, 1)
        return ops.expand_dims(self_mask, 0)
    self_mask = ops.expand_dims(
        ops.expand_dims(query_positions, 0) <= ops.expand_dims(query_positions, 1), 0
    )
    if mask is not None:
        self_mask = ops.logical_and(self_mask, ops.expand_dims(ops.cast(mask, "bool"), 1))
    return self_mask


@keras.saving.register_keras_serializable(package="mmzoo")
class TransformerDecoderBlock(keras.layers.Layer):
    """Causal self-attention, cross-attention over a context, feed-forward; pre-norm residuals.

    Teacher forcing (training): ``block(x, context=image_tokens)`` with
    ``x [B, L, hidden_dim]`` returns ``[B, L, hidden_dim]``. ``mask`` (bool
    ``[B, L]``, taken from the Keras mask of ``x`` when not given) hides padding
    keys; ``context_mask`` (bool ``[B, S]``) hides context tokens.

    Decoding with a cache (each step feeds only the new tokens):

    * ``cross_attention_cache = block.compute_cross_attention_cache(context)``
      once per image, ``[B, 2, S, num_heads, head_dim]``;
    * ``self_attention_cache``: zeros ``[B, 2, max_length, num_heads, head_dim]``
      to start with; pass ``self_attention_cache_update_index`` (the position of
      the first new token). The block writes the new keys/values there and
      returns ``(outputs, self_attention_cache, cross_attention_cache)``.

    With ``return_attention_scores=True`` the cross-attention weights
    ``[B, num_heads, L, S]`` come last in the returned tuple.

    Args:
        hidden_dim: width of the token stream (input and output).
        num_heads: attention heads; must divide ``hidden_dim``.
        intermediate_dim: width of the feed-forward layer.
        dropout: dropout on attention weights and residual branches.
        activation: feed-forward activation.
        layer_norm_epsilon: epsilon of the layer normalisations.
        kernel_initializer: initializer of the dense kernels.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> block = TransformerDecoderBlock(hidden_dim=8, num_heads=2, intermediate_dim=16)
    >>> x, image_tokens = np.zeros((2, 5, 8), "float32"), np.zeros((2, 4, 6), "float32")
    >>> block(x, context=image_tokens).shape
    TensorShape([2, 5, 8])
    """

    def __init__(self, hidden_dim: int, num_heads: int, intermediate_dim: int, dropout: float = 0.0,
                 activation="gelu", layer_norm_epsilon: float = 1e-5, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(hidden_dim=hidden_dim, num_heads=num_heads, intermediate_dim=intermediate_dim)
        if hidden_dim % num_heads:
            raise ValueError(
                "hidden_dim must be divisible by num_heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        head_dim = hidden_dim // num_heads
        init = keras.initializers.get(kernel_initializer)
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="self_attention_norm")
        self.self_attention = CachedMultiHeadAttention(
            num_heads, head_dim, dropout=dropout, kernel_initializer=init, name="self_attention"
        )
        self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="cross_attention_norm")
        self.cross_attention = CachedMultiHeadAttention(
            num_heads, head_dim, dropout=dropout, kernel_initializer=init, name="cross_attention"
        )
        self.feedforward_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="feedforward_norm")
        self.feedforward_intermediate = keras.layers.Dense(
            intermediate_dim, activation=self.activation, kernel_initializer=init, name="feedforward_intermediate"
        )
        self.feedforward_output = keras.layers.Dense(hidden_dim, kernel_initializer=init, name="feedforward_output")
        self.residual_dropout = keras.layers.Dropout(dropout)
        self.supports_masking = True

    def build(self, inputs_shape, context_shape=None):
        if inputs_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"The input width must equal hidden_dim={self.hidden_dim}. Received: inputs_shape={tuple(inputs_shape)}"
            )
        if context_shape is None:
            context_shape = inputs_shape
        self.self_attention_norm.build(inputs_shape)
        self.self_attention.build(inputs_shape, inputs_shape)
        self.cross_attention_norm.build(inputs_shape)
        self.cross_attention.build(inputs_shape, context_shape)
        self.feedforward_norm.build(inputs_shape)
        self.feedforward_intermediate.build(inputs_shape)
        self.feedforward_output.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def compute_cross_attention_cache(self, context):
        """Cross-attention keys/values of ``context [B, S, C]``: ``[B, 2, S, num_heads, head_dim]``."""
        return self.cross_attention.compute_key_value(context)

    def call(self, inputs, context=None, mask=None, context_mask=None, self_attention_cache=None,
             self_attention_cache_update_index=None, cross_attention_cache=None, return_attention_scores=False,
             training=None):
        if context is None and cross_attention_cache is None:
            raise ValueError(
                "TransformerDecoderBlock needs the context to attend to: pass context= (image tokens "
                "[B, S, C]) or cross_attention_cache=. Received: context=None"
            )
        x = inputs
        self_mask = _self_attention_mask(x, mask, self_attention_cache, self_attention_cache_update_index)
        cross_mask = None
        if context_mask is not None:
            cross_mask = ops.expand_dims(ops.cast(context_mask, "bool"), 1)

        h = self.self_attention_norm(x)
        if self_attention_cache is not None:
            h, self_attention_cache = self.self_attention(
                h, h, attention_mask=self_mask, cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index, training=training,
            )
        else:
            h = self.self_attention(h, h, attention_mask=self_mask, training=training)
        x = x + self.residual_dropout(h, training=training)

        h = self.cross_attention_norm(x)
        if cross_attention_cache is None and self_attention_cache is not None:
            cross_attention_cache = self.compute_cross_attention_cache(context)
        cross = self.cross_attention(
            h, context, attention_mask=cross_mask, cache=cross_attention_cache,
            return_attention_scores=return_attention_scores, training=training,
        )
        cross = cross if isinstance(cross, tuple) else (cross,)
        h, scores = cross[0], (cross[-1] if return_attention_scores else None)
        x = x + self.residual_dropout(h, training=training)

        h = self.feedforward_output(self.feedforward_intermediate(self.feedforward_norm(x)))
        x = x + self.residual_dropout(h, training=training)

        results = [x]
        if self_attention_cache is not None:
            results += [self_attention_cache, cross_attention_cache]
        if return_attention_scores:
            results.append(scores)
        return results[0] if len(results) == 1 else tuple(results)

    def compute_mask(self, inputs, mask=None, **kwargs):
        return mask

    def compute_output_shape(self, inputs_shape, context_shape=None, **kwargs):
        return tuple(inputs_shape)

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "hidden_dim", "num_heads", "intermediate_dim", "dropout", "activation",
            "layer_norm_epsilon", "kernel_initializer"
        )
