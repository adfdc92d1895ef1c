"""`CachedMultiHeadAttention`: multi-head attention with a key/value cache for decoding."""

from __future__ import annotations

import math

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints, check_rates
from mmzoo.layers._config import with_attributes


@keras.saving.register_keras_serializable(package="mmzoo")
class CachedMultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product multi-head attention that can read and write a key/value cache.

    ``call(query, value, key=None, attention_mask=None, cache=None,
    cache_update_index=None, return_attention_scores=False)``:

    * no ``cache``: ordinary attention of ``query [B, Q, D]`` over
      ``value [B, S, C]`` (``key`` defaults to ``value``).
    * ``cache`` ``[B, 2, S, num_heads, key_dim]`` (keys then values) and no
      ``cache_update_index``: attend over the cached keys/values without
      recomputing them (cross-attention over a fixed context, computed once
      with ``compute_key_value``). ``value`` may be ``None``.
    * ``cache`` and ``cache_update_index``: project the new ``value`` steps,
      write them into the cache at ``cache_update_index`` and attend over the
      whole cache (causal self-attention while decoding: pass a mask that
      hides the slots not written yet).

    ``attention_mask``: bool ``[B, Q, S]`` (``True`` = may attend). Returns the
    output ``[B, Q, D]``, then the updated cache when ``cache`` was given,
    then the attention weights ``[B, num_heads, Q, S]`` when
    ``return_attention_scores=True`` (a tuple when more than one).

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head (queries, keys and values).
        dropout: dropout on the attention weights.
        use_bias: whether the projections have biases.
        kernel_initializer: initializer of the projections.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> layer = CachedMultiHeadAttention(num_heads=2, key_dim=4)
    >>> layer(np.zeros((1, 3, 8), "float32"), np.zeros((1, 5, 6), "float32")).shape
    TensorShape([1, 3, 8])
    """

    def __init__(self, num_heads: int, key_dim: int, dropout: float = 0.0, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive_ints(num_heads=num_heads, key_dim=key_dim)
        check_rates(dropout=dropout)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        bias_axes = "de" if use_bias else None

        def projection(name):
            return keras.layers.EinsumDense(
                "abc,cde->abde", output_shape=(None, num_heads, key_dim), bias_axes=bias_axes,
                kernel_initializer=self.kernel_initializer, name=name,
            )

        self.query_dense = projection("query")
        self.key_dense = projection("key")
        self.value_dense = projection("value")
        self.output_dense = None  # needs the query width: created in build
        for projection_layer in (self.query_dense, self.key_dense, self.value_dense):
            projection_layer.supports_masking = True  # masks pass through; attention_mask does the masking
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.supports_masking = True

    def _make_output_dense(self, output_dim):
        return keras.layers.EinsumDense(
            "abcd,cde->abe", output_shape=(None, output_dim), bias_axes="e" if self.use_bias else None,
            kernel_initializer=self.kernel_initializer, name="attention_output",
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.output_dense = self._make_output_dense(query_shape[-1])
        self.output_dense.build(tuple(query_shape[:-1]) + (self.num_heads, self.key_dim))
        self.built = True

    def compute_key_value(self, value, key=None):
        """Project a context once: ``[B, 2, S, num_heads, key_dim]`` for ``cache=``."""
        key = value if key is None else key
        return ops.stack([self.key_dense(key), self.value_dense(value)], axis=1)

    def call(self, query, value=None, key=None, attention_mask=None, cache=None, cache_update_index=None,
             return_attention_scores=False, training=None):
        q = self.query_dense(query)
        if cache is not None and cache_update_index is None:
            k, v = cache[:, 0], cache[:, 1]
        else:
            if value is None:
                raise ValueError("value is required unless a precomputed cache is given. Received: value=None")
            new_kv = self.compute_key_value(value, key)
            if cache is not None:
                cache = _write_cache(cache, ops.cast(new_kv, cache.dtype), cache_update_index)
                k, v = cache[:, 0], cache[:, 1]
            else:
                k, v = new_kv[:, 0], new_kv[:, 1]
        q = q * ops.cast(1.0 / math.sqrt(self.key_dim), q.dtype)
        scores = ops.einsum("bqhd,bkhd->bhqk", q, ops.cast(k, q.dtype))
        scores = ops.cast(scores, "float32")
        if attention_mask is not None:
            scores = ops.where(ops.expand_dims(ops.cast(attention_mask, "bool"), 1), scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        dropped = ops.cast(self.dropout_layer(weights, training=training), q.dtype)
        out = ops.einsum("bhqk,bkhd->bqhd", dropped, ops.cast(v, q.dtype))
        out = self.output_dense(out)
        results = [out]
        if cache is not None:
            results.append(cache)
        if return_attention_scores:
            results.append(weights)
        return results[0] if len(results) == 1 else tuple(results)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None, **kwargs):
        return tuple(query_shape)

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "num_heads", "key_dim", "dropout", "use_bias", "kernel_initializer"
        )


def _write_cache(cache, new_kv, index):
    """``cache[:, :, index:index + n] = new_kv`` with core TensorFlow ops.

    ``keras.ops.slice_update`` lowers to ``XlaDynamicUpdateSlice`` on the
    TensorFlow backend, an op TF Serving cannot run without XLA; a padded
    write selected by a position mask exports everywhere.
    """
    import tensorflow as tf

    index = tf.cast(index, "int32")
    length = tf.shape(cache)[2]
    n = tf.shape(new_kv)[2]
    padded = tf.pad(new_kv, [[0, 0], [0, 0], [index, length - index - n], [0, 0], [0, 0]])
    positions = tf.range(length)
    mask = tf.logical_and(positions >= index, positions < index + n)
    return tf.where(tf.reshape(mask, [1, 1, -1, 1, 1]), padded, cache)
