"""`CrossAttentionFusion`: text tokens attend to image patch tokens."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes

_POOLING_MODES = ("mean", "max", "first")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")


def _check_arguments(
    num_heads, key_dim, bidirectional, dropout, pooling, intermediate_dim, return_attention_scores, layer_norm_epsilon
):
    _positive_int("num_heads", num_heads)
    _positive_int("key_dim", key_dim)
    if intermediate_dim is not None:
        _positive_int("intermediate_dim", intermediate_dim)
    for flag_name, flag in (
        ("bidirectional", bidirectional),
        ("return_attention_scores", return_attention_scores),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"{flag_name} must be a bool. Received: {flag_name}={flag!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if pooling not in _POOLING_MODES:
        raise ValueError(f"pooling must be one of {_POOLING_MODES}. Received: pooling={pooling!r}")
    if not float(layer_norm_epsilon) > 0:
        raise ValueError(
            f"layer_norm_epsilon must be positive. Received: layer_norm_epsilon={layer_norm_epsilon!r}"
        )


@keras.saving.register_keras_serializable(package="mmzoo")
class CrossAttentionFusion(keras.layers.Layer):
    """Cross-attention fusion of a text token sequence and image patch tokens.

    Text tokens ``[batch, text_length, text_dim]`` are the queries of a
    ``keras.layers.MultiHeadAttention`` over the image tokens ``[batch,
    image_length, image_dim]`` (keys and values), followed by a residual
    connection and ``LayerNormalization``, then a position-wise feed-forward
    block (``Dense(intermediate_dim, gelu) -> Dense(text_dim)``) with its own
    residual and ``LayerNormalization`` (post-norm, as in the original
    Transformer decoder's cross-attention block). The attended text tokens
    are pooled into ``[batch, text_dim]`` over the non-padded positions.

    With ``bidirectional=True`` a second, independent block lets the image
    tokens attend to the (original) text tokens, in parallel (co-attention);
    its pooled image vector is concatenated: output ``[batch, text_dim +
    image_dim]``.

    Masks: ``text_mask`` (bool ``[batch, text_length]``, ``True`` = real token)
    is the query mask of the text->image attention, the key mask of the
    image->text attention, and the pooling mask of the text side;
    ``image_mask`` (bool ``[batch, image_length]``) plays the same roles for
    the image. Masked positions therefore never change the output. Either
    mask may be omitted (all positions valid). A row whose keys are all
    masked gets a zero attention update.

    Call signature: ``layer(inputs, text_mask=None, image_mask=None,
    training=None)`` where ``inputs`` is a dict ``{"text": tokens, "image":
    tokens}`` that may also carry ``"text_mask"`` and ``"image_mask"`` (the
    form to use in Functional models: the towers' ``"tokens"`` / ``"mask"``
    outputs plug straight in), or a list ``[text_tokens, image_tokens]``.
    Keyword masks take precedence over masks in the dict, which take
    precedence over Keras' implicit masks (``Embedding(mask_zero=True)``,
    ``Masking``) carried by the token tensors.

    Args:
        num_heads: int, number of attention heads.
        key_dim: int, size of each attention head for query and key.
        bidirectional: bool, also let the image tokens attend to the text.
        dropout: float in ``[0, 1)``, dropout of the attention weights and
            of the residual branches.
        pooling: ``"mean"`` (masked mean), ``"max"`` (masked max) or
            ``"first"`` (first token, e.g. a ``[START]``/CLS token).
        intermediate_dim: int or ``None``, width of the feed-forward hidden
            layer; ``None`` uses twice the width of the attending tokens.
        return_attention_scores: bool. If ``True``, ``call`` returns
            ``(pooled, scores)`` with ``scores`` a dict holding
            ``"text_to_image"`` ``[batch, num_heads, text_length,
            image_length]`` and, when bidirectional, ``"image_to_text"``
            ``[batch, num_heads, image_length, text_length]``.
        layer_norm_epsilon: float, epsilon of the layer normalizations.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np
    >>> fusion = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=True)
    >>> text = np.random.rand(2, 5, 8).astype("float32")
    >>> image = np.random.rand(2, 9, 6).astype("float32")
    >>> text_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    >>> pooled = fusion({"text": text, "image": image, "text_mask": text_mask})
    >>> tuple(pooled.shape)
    (2, 14)
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        bidirectional=False,
        dropout=0.0,
        pooling="mean",
        intermediate_dim=None,
        return_attention_scores=False,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_arguments(num_heads, key_dim, bidirectional, dropout, pooling, intermediate_dim,
                         return_attention_scores, layer_norm_epsilon)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.bidirectional = bidirectional
        self.dropout = float(dropout)
        self.pooling = pooling
        self.intermediate_dim = intermediate_dim
        self.return_attention_scores = return_attention_scores
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        # Consumes token masks; the pooled output carries none (compute_mask).
        self.supports_masking = True

        self._create_sublayers()

    def _create_sublayers(self):
        """Per direction: attention, its norm and the feed-forward norm; then the dropout."""
        directions = ("text_to_image", "image_to_text") if self.bidirectional else ("text_to_image",)
        self._directions = directions
        self.attention_layers, self.attention_norms, self.feedforward_norms = {}, {}, {}
        for direction in directions:
            self.attention_layers[direction] = keras.layers.MultiHeadAttention(
                num_heads=self.num_heads,
                key_dim=self.key_dim,
                dropout=self.dropout,
                dtype=self.dtype_policy,
                name=f"{direction}_attention",
            )
            self.attention_norms[direction] = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=f"{direction}_attention_norm"
            )
            self.feedforward_norms[direction] = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=f"{direction}_feedforward_norm"
            )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        # The feed-forward widths follow the token widths, known in build()
        # (as keras.layers.MultiHeadAttention and keras-hub's encoders do).
        self.intermediate_layers, self.output_layers = {}, {}

    # ------------------------------------------------------------------ inputs
    def _split(self, inputs):
        """``inputs`` -> (text, image, text_mask, image_mask); works on shapes too."""
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"text", "image", "text_mask", "image_mask"}
            if "text" not in inputs or "image" not in inputs or unknown:
                raise ValueError(
                    "CrossAttentionFusion expects a dict with keys 'text' and 'image' "
                    "(and optionally 'text_mask', 'image_mask'). "
                    f"Received: keys={sorted(inputs)}"
                )
            return inputs["text"], inputs["image"], inputs.get("text_mask"), inputs.get("image_mask")
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return inputs[0], inputs[1], None, None
        raise ValueError(
            "CrossAttentionFusion expects {'text': ..., 'image': ...} or [text_tokens, image_tokens]. "
            f"Received: inputs={inputs!r}"
        )

    def _token_dims(self, input_shape):
        text_shape, image_shape, _, _ = self._split(input_shape)
        for name, shape in (("text", text_shape), ("image", image_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"CrossAttentionFusion {name} tokens must be rank-3 [batch, length, dim] "
                    f"with a known dim. Received: {name} shape={tuple(shape)}"
                )
        return tuple(text_shape), tuple(image_shape)

    # ------------------------------------------------------------------- build
    def build(self, input_shape):
        text_shape, image_shape = self._token_dims(input_shape)
        pairs = {"text_to_image": (text_shape, image_shape), "image_to_text": (image_shape, text_shape)}
        for direction in self._directions:
            query_shape, value_shape = pairs[direction]
            width = query_shape[-1]
            hidden = self.intermediate_dim or 2 * width
            self.attention_layers[direction].build(query_shape, value_shape)
            self.attention_norms[direction].build(query_shape)
            self.feedforward_norms[direction].build(query_shape)
            intermediate = keras.layers.Dense(
                hidden, activation="gelu", dtype=self.dtype_policy, name=f"{direction}_intermediate"
            )
            output = keras.layers.Dense(width, dtype=self.dtype_policy, name=f"{direction}_output")
            intermediate.build(query_shape)
            output.build(query_shape[:-1] + (hidden,))
            self.intermediate_layers[direction] = intermediate
            self.output_layers[direction] = output
        self.built = True

    # -------------------------------------------------------------------- call
    def _attend(self, direction, query, value, query_mask, value_mask, training):
        attention = self.attention_layers[direction]
        result = attention(
            query=query,
            value=value,
            query_mask=query_mask,
            value_mask=value_mask,
            return_attention_scores=self.return_attention_scores,
            training=training,
        )
        update, scores = result if self.return_attention_scores else (result, None)
        if scores is not None:
            # A fresh tensor: the attention layer attaches the query mask to
            # its outputs, which must not leak onto the [B, H, Lq, Lk] scores.
            scores = keras.ops.copy(scores)
        if value_mask is not None:
            # Rows with no valid key would attend uniformly to masked values.
            has_key = keras.ops.any(value_mask, axis=-1)
            update = update * keras.ops.cast(has_key, update.dtype)[:, None, None]
        x = self.attention_norms[direction](query + self.dropout_layer(update, training=training))
        ffn = self.output_layers[direction](self.intermediate_layers[direction](x))
        x = self.feedforward_norms[direction](x + self.dropout_layer(ffn, training=training))
        return x, scores

    def _pool(self, tokens, mask):
        if self.pooling == "first":
            return tokens[:, 0, :]
        if mask is None:
            if self.pooling == "mean":
                return keras.ops.mean(tokens, axis=1)
            return keras.ops.max(tokens, axis=1)
        weights = keras.ops.cast(mask, tokens.dtype)[:, :, None]
        if self.pooling == "mean":
            total = keras.ops.sum(tokens * weights, axis=1)
            count = keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)
            return total / count
        lowest = keras.ops.full_like(tokens, -6e4 if keras.backend.standardize_dtype(tokens.dtype) == "float16" else -1e9)
        pooled = keras.ops.max(keras.ops.where(mask[:, :, None], tokens, lowest), axis=1)
        return pooled * keras.ops.cast(keras.ops.any(mask, axis=-1), tokens.dtype)[:, None]

    def call(self, inputs, text_mask=None, image_mask=None, training=None, mask=None):
        text, image, dict_text_mask, dict_image_mask = self._split(inputs)
        # Keras' implicit masks (e.g. from ``Embedding(mask_zero=True)``).
        implicit_text_mask, implicit_image_mask = None, None
        if isinstance(mask, dict):
            implicit_text_mask, implicit_image_mask = mask.get("text"), mask.get("image")
        elif isinstance(mask, (list, tuple)) and len(mask) == 2:
            implicit_text_mask, implicit_image_mask = mask
        if text_mask is None:
            text_mask = dict_text_mask if dict_text_mask is not None else implicit_text_mask
        if image_mask is None:
            image_mask = dict_image_mask if dict_image_mask is not None else implicit_image_mask
        if text_mask is not None:
            text_mask = keras.ops.cast(text_mask, "bool")
        if image_mask is not None:
            image_mask = keras.ops.cast(image_mask, "bool")

        attended_text, text_scores = self._attend(
            "text_to_image", text, image, text_mask, image_mask, training
        )
        pooled = self._pool(attended_text, text_mask)
        scores = {"text_to_image": text_scores}
        if self.bidirectional:
            attended_image, image_scores = self._attend(
                "image_to_text", image, text, image_mask, text_mask, training
            )
            pooled = keras.ops.concatenate([pooled, self._pool(attended_image, image_mask)], axis=-1)
            scores["image_to_text"] = image_scores
        if self.return_attention_scores:
            return pooled, scores
        return pooled

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        text_shape, image_shape = self._token_dims(input_shape)
        batch = text_shape[0]
        width = text_shape[-1] + (image_shape[-1] if self.bidirectional else 0)
        pooled = (batch, width)
        if not self.return_attention_scores:
            return pooled
        scores = {"text_to_image": (batch, self.num_heads, text_shape[1], image_shape[1])}
        if self.bidirectional:
            scores["image_to_text"] = (batch, self.num_heads, image_shape[1], text_shape[1])
        return pooled, scores

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "num_heads", "key_dim", "bidirectional", "dropout", "pooling",
            "intermediate_dim", "return_attention_scores", "layer_norm_epsilon"
        )
