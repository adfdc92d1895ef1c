"""Captioning zoo entries: ``lstm_captioner`` and ``transformer_captioner``.

Both are teacher-forced language models conditioned on an image: the inputs
are ``{"image": float32 [B, H, W, 3] in [0, 255], "token_ids": int32 [B, L]}``
with ``token_ids = [START] w1 .. wn [PAD]..`` (the caption shifted right) and
the output is ``{"logits": float [B, L, vocabulary_size]}``, the scores of the
next token at every position. ``training_example`` makes those pairs from
caption strings; ``compile()`` defaults to Adam, a padding-masked sparse
cross-entropy (optional ``label_smoothing``) and a masked accuracy.

``generate(image, method="greedy"|"beam"|"sample", ...)`` decodes inside the
graph (a ``tf.while_loop`` over fixed buffers: it traces once, runs in
``tf.function`` and exports) and returns ``{"token_ids": int32 [B, T],
"score": float32 [B]}``; ``model.tokenizer.detokenize(out["token_ids"])``
gives the captions::

    import mmzoo
    model = mmzoo.build("transformer_captioner", preset="tiny")
    model.compile()
    out = model.generate(images, method="beam", beam_width=4)
    captions = model.tokenizer.detokenize(out["token_ids"])

* ``LSTMCaptioner`` (Show and Tell, Vinyals et al. 2015): the image tower's
  pooled vector initialises the LSTM state.
* ``TransformerCaptioner``: a pre-norm Transformer decoder whose causal
  self-attention keeps a key/value cache while decoding and whose
  cross-attention reads the image tower's patch tokens (keys/values computed
  once per image); ``return_attention=True`` returns the cross-attention
  weights over the image tokens for visualisation.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from mmzoo.generation import search as _search
from mmzoo.layers.position_embedding import PositionEmbedding
from mmzoo.layers.token_and_position_embedding import TokenAndPositionEmbedding
from mmzoo.layers.transformer_decoder_block import TransformerDecoderBlock
from mmzoo.losses import MaskedAccuracy, MaskedSparseCategoricalCrossentropy
from mmzoo.models.base import MultimodalModel, normalize_image_size, resolve_tokenizer
from mmzoo.models.presets import DEFAULT_IMAGE, DEFAULT_VIT, image_towers
from mmzoo.preprocessing import TextTokenizer
from mmzoo.registry import register_model_class
from mmzoo.towers import IMAGE_TOWERS, build_image_tower, keep_outputs, select_tower_kwargs

METHODS = ("greedy", "beam", "sample")


def _as_config(value):
    """Tuples to lists, recursively, so ``get_config`` survives a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {k: _as_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_config(v) for v in value]
    return value


def _captioning_tokenizer(tokenizer, sequence_length) -> TextTokenizer:
    """The model's tokenizer, with ``add_start_end=True`` (rebuilt from its config if needed)."""
    tokenizer = resolve_tokenizer(tokenizer, sequence_length, add_start_end=True)
    if not tokenizer.add_start_end:
        tokenizer = TextTokenizer.from_config({**tokenizer.get_config(), "add_start_end": True})
    return tokenizer


class _Untracked:
    """Holds an object out of Keras' and TensorFlow's tracking.

    A plain object: neither Keras' ``Tracker`` nor TensorFlow's ``AutoTrackable``
    looks inside it, so what it holds is not part of the model's weights, its
    ``.keras`` file or a SavedModel (a helper tokenizer; the cache of decoding
    ``tf.function``s, whose tuple keys a SavedModel cannot save).
    """

    def __init__(self, value):
        self.value = value


class CaptionerBase(MultimodalModel):
    """Shared teacher forcing, compile defaults and ``generate`` of the captioners."""

    task = "captioning"
    uses_captions = True

    _CONFIG_ATTRIBUTES = {"sequence_length": "sequence_length_arg"}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Files of mmzoo before drop_unused_outputs hold the whole image tower.
        return super().from_config({"drop_unused_outputs": False, **config}, custom_objects=custom_objects)

    def _init_captioner(self, learning_rate, label_smoothing):
        self._remember(learning_rate=learning_rate, label_smoothing=label_smoothing)
        # Keyed by the decoding settings. Not a plain dict attribute: TensorFlow would wrap it in a
        # tracked ``_DictWrapper`` and ``tf.saved_model.save`` (so ``export_saved_model``) would fail
        # on its tuple keys after any eager ``generate`` call.
        self._generate_functions = _Untracked({})
        self._target_tokenizer = _Untracked(
            TextTokenizer.from_config(
                {**self.tokenizer.get_config(), "sequence_length": self.sequence_length + 1,
                 "name": "target_tokenizer"}
            )
        )

    # ------------------------------------------------------------ training
    def training_example(self, batch: dict):
        """``(x, y, sample_weight)`` from ``batch["caption"]`` (strings ``[B]``) and ``batch["image"]``.

        Captions are tokenized as ``[START] w1 .. wn [END]`` at
        ``sequence_length + 1``; ``x["token_ids"]`` drops the last id, ``y``
        (the next tokens) drops the first, ``sample_weight = y != 0``.
        """
        if "caption" not in batch:
            raise ValueError(
                "Captioners train on captions: the batch needs a 'caption' key. "
                f"Received keys: {sorted(batch)}"
            )
        ids = self._target_tokenizer.value(batch["caption"])
        x = {"image": batch["image"], "token_ids": ids[:, :-1]}
        y = ids[:, 1:]
        return x, {"logits": y}, {"logits": tf.cast(tf.not_equal(y, self.tokenizer.pad_id), tf.float32)}

    def compile(self, optimizer="auto", loss="auto", metrics="auto", label_smoothing=None, **kwargs):
        """Keras ``compile`` with captioning defaults.

        ``optimizer="auto"``: Adam at ``learning_rate``; ``loss="auto"``:
        ``MaskedSparseCategoricalCrossentropy`` (padding ignored) with
        ``label_smoothing`` (default: the constructor's); ``metrics="auto"``:
        ``MaskedAccuracy``.
        """
        smoothing = self.label_smoothing if label_smoothing is None else label_smoothing
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        if loss == "auto":
            loss = {"logits": MaskedSparseCategoricalCrossentropy(label_smoothing=smoothing,
                                                                  pad_id=self.tokenizer.pad_id)}
        if metrics == "auto":
            metrics = {"logits": [MaskedAccuracy(pad_id=self.tokenizer.pad_id, name="accuracy")]}
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # ---------------------------------------------------------- generation
    def _decoding(self, image, use_cache, max_length):
        """``(step_fn, state, constants, extras_shapes)`` for ``image`` (subclasses)."""
        raise NotImplementedError

    def _generate(self, image, method, beam_width, max_length, length_penalty, temperature, top_k, seed,
                  return_attention, use_cache):
        image = tf.convert_to_tensor(image, tf.float32)
        step_fn, state, constants, extras_shapes = self._decoding(image, use_cache, max_length)
        if not return_attention:
            extras_shapes = None
        outputs = _search.generate(
            step_fn, state, constants, method=method, batch_size=tf.shape(image)[0], max_length=max_length,
            start_id=self.tokenizer.start_id, end_id=self.tokenizer.end_id, pad_id=self.tokenizer.pad_id,
            beam_width=beam_width, length_penalty=length_penalty, temperature=temperature, top_k=top_k,
            seed=seed, extras_shapes=extras_shapes,
        )
        return outputs

    def generate(self, image, method="greedy", beam_width=4, max_length=None, length_penalty=0.0,
                 temperature=1.0, top_k=0, seed=None, return_attention=False, use_cache=True):
        """Caption ``image`` (float32 ``[B, H, W, 3]`` in ``[0, 255]``, or eagerly encoded image
        bytes, which ``preprocess`` decodes and resizes first) inside the graph.

        Args:
            method: ``"greedy"``, ``"beam"`` or ``"sample"``.
            beam_width: beams kept by beam search (``1`` is greedy search).
            max_length: most tokens generated (``[END]`` included); default
                and upper bound for the Transformer: ``sequence_length``.
            length_penalty: beam ranking ``log_prob / length ** length_penalty``.
            temperature, top_k, seed: sampling controls (``top_k=0``: all tokens).
            return_attention: also return ``"attention"``, the last decoder
                block's cross-attention over the image tokens (mean over heads)
                ``[B, T, num_image_tokens]`` (Transformer only).
            use_cache: Transformer only; ``False`` re-runs the decoder over the
                whole prefix at every step (the uncached reference).

        Returns:
            ``{"token_ids": int32 [B, T], "score": float32 [B]}`` (plus
            ``"attention"``): generated ids (``[START]`` excluded, ``[END]``
            included, ``[PAD]`` after) and their summed log-probability.
            Eagerly, a compiled ``tf.function`` per setting is reused.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
        max_length = self._check_max_length(max_length)
        if return_attention and not self._has_attention:
            raise ValueError(
                f"{type(self).__name__} has no attention over image tokens; use transformer_captioner. "
                "Received: return_attention=True"
            )
        args = (method, int(beam_width), max_length, float(length_penalty), float(temperature), int(top_k),
                None if seed is None else int(seed), bool(return_attention), bool(use_cache))
        if not tf.executing_eagerly():
            return self._generate(image, *args)
        image = tf.convert_to_tensor(image)
        if image.dtype == tf.string:  # encoded bytes: decoded and resized as preprocess does
            image = self.image_preprocessor(image)
        functions = self._generate_functions.value
        if args not in functions:
            spec = tf.TensorSpec([None, *self.image_size, 3], tf.float32)
            # A partial, not a lambda: TensorFlow counts traces per code object, so the functions of
            # several settings (or models) made by one lambda would add up to its "5 out of the last
            # 5 calls ... triggered tf.function retracing" warning, though each traces once.
            # autograph=False: the searches are tf.while_loops already (mmzoo.generation), as in the exports'
            # signatures; converting them took 1.4 s of the first eager generate in a process.
            functions[args] = tf.function(
                functools.partial(self._generate_with, args), input_signature=[spec], autograph=False
            )
        return functions[args](tf.cast(image, tf.float32))

    def _generate_with(self, args, image):
        return self._generate(image, *args)

    _has_attention = False

    def _check_max_length(self, max_length):
        if max_length is None:
            return self.sequence_length
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int. Received: max_length={max_length!r}")
        return max_length


@keras.saving.register_keras_serializable(package="mmzoo")
class LSTMCaptioner(CaptionerBase):
    """Show and Tell: the image's pooled embedding initialises an LSTM language model.

    Args:
        tokenizer: a ``TextTokenizer`` (``add_start_end`` is switched on);
            default: ``default_tokenizer()`` (characters) at ``sequence_length``.
        sequence_length: token length when the default tokenizer is used
            (``None``: its default, 64 characters):
            the most tokens a caption can have, ``[END]`` included; longer
            captions are cut in training and in ``generate``.
        image_size: ``(height, width)`` of the ``image`` input.
        image_tower / image_tower_kwargs: see ``mmzoo.towers.build_image_tower``.
        embedding_dim: word embedding width.
        hidden_dim: LSTM units.
        dropout: dropout before the output layer.
        learning_rate, label_smoothing: ``compile()`` defaults.
        drop_unused_outputs: build the image tower with only the output the
            decoder reads (``pooled``), so no weight goes without a gradient
            (``mmzoo.towers.keep_outputs``); files saved before this option
            load with ``False``.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("lstm_captioner", preset="tiny")
    >>> out = model.generate(np.zeros((2, 32, 32, 3), "float32"), method="beam", beam_width=2)
    >>> tuple(out["token_ids"].shape)
    (2, 20)
    """

    def __init__(self, tokenizer=None, sequence_length=None, image_size=(64, 64), image_tower="cnn",
                 image_tower_kwargs=None, embedding_dim=128, hidden_dim=256, dropout=0.1, learning_rate=1e-3,
                 label_smoothing=0.0, drop_unused_outputs=True, **kwargs):
        tokenizer = _captioning_tokenizer(tokenizer, sequence_length)
        size = normalize_image_size(image_size)
        image_tower_kwargs = select_tower_kwargs(image_tower, _as_config(dict(image_tower_kwargs or {})), IMAGE_TOWERS)
        vocabulary_size = tokenizer.vocabulary_size

        image = keras.Input((size[0], size[1], 3), dtype="float32", name="image")
        token_ids = keras.Input((tokenizer.sequence_length,), dtype="int32", name="token_ids")
        tower = build_image_tower(image_tower, image_size=size, name="image_tower", **image_tower_kwargs)
        pooled = keep_outputs(tower, ("pooled",) if drop_unused_outputs else None)(image)["pooled"]
        init_h = keras.layers.Dense(hidden_dim, activation="tanh", name="init_h")(pooled)
        init_c = keras.layers.Dense(hidden_dim, name="init_c")(pooled)
        x = keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="token_embedding")(token_ids)
        x = keras.layers.LSTM(hidden_dim, return_sequences=True, name="lstm")(x, initial_state=[init_h, init_c])
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
        kwargs.setdefault("name", "lstm_captioner")
        super().__init__(inputs={"image": image, "token_ids": token_ids}, outputs={"logits": logits},
                         tokenizer=tokenizer, image_size=size, **kwargs)
        self._remember(
            sequence_length=tokenizer.sequence_length, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs,
            embedding_dim=embedding_dim, hidden_dim=hidden_dim, dropout=dropout,
            drop_unused_outputs=bool(drop_unused_outputs),
        )
        self._init_captioner(learning_rate, label_smoothing)

    def _decoding(self, image, use_cache, max_length):
        pooled = self.get_layer("image_tower")(image, training=False)["pooled"]
        state = (self.get_layer("init_h")(pooled), self.get_layer("init_c")(pooled))
        embedding, cell, head = self.get_layer("token_embedding"), self.get_layer("lstm").cell, self.get_layer("logits")

        def step_fn(token_ids, index, state, constants):
            h, (h, c) = cell(tf.gather(embedding.embeddings, token_ids), list(state), training=False)
            return head(h), (h, c), {}

        return step_fn, state, (), None


@keras.saving.register_keras_serializable(package="mmzoo")
class TransformerCaptioner(CaptionerBase):
    """A Transformer decoder over the caption, cross-attending to the image tower's tokens.

    The image tokens are projected to ``hidden_dim``, get learned position
    embeddings (so the decoder knows where each patch lies) and a layer norm;
    ``num_layers`` ``TransformerDecoderBlock``s follow the token and position
    embeddings of the caption.

    Args:
        tokenizer, sequence_length, image_size, image_tower, image_tower_kwargs:
            as ``LSTMCaptioner`` (any tower of ``mmzoo.towers``).
        hidden_dim: decoder width.
        num_layers: decoder blocks.
        num_heads: attention heads (divide ``hidden_dim``).
        intermediate_dim: feed-forward width (default ``4 * hidden_dim``).
        dropout: dropout in the blocks.
        learning_rate, label_smoothing: ``compile()`` defaults.
        drop_unused_outputs: build the image tower with only the outputs the
            decoder reads (``tokens``, ``mask``), as ``LSTMCaptioner``.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("transformer_captioner", preset="tiny")
    >>> out = model.generate(np.zeros((2, 32, 32, 3), "float32"), return_attention=True)
    >>> tuple(out["attention"].shape)
    (2, 20, 16)
    """

    _has_attention = True

    def __init__(self, tokenizer=None, sequence_length=None, image_size=(64, 64), image_tower="cnn",
                 image_tower_kwargs=None, hidden_dim=128, num_layers=2, num_heads=4, intermediate_dim=None,
                 dropout=0.1, learning_rate=1e-3, label_smoothing=0.0, drop_unused_outputs=True, **kwargs):
        tokenizer = _captioning_tokenizer(tokenizer, sequence_length)
        size = normalize_image_size(image_size)
        image_tower_kwargs = select_tower_kwargs(image_tower, _as_config(dict(image_tower_kwargs or {})), IMAGE_TOWERS)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int. Received: num_layers={num_layers!r}")
        intermediate = intermediate_dim or 4 * hidden_dim
        vocabulary_size = tokenizer.vocabulary_size
        length = tokenizer.sequence_length

        image = keras.Input((size[0], size[1], 3), dtype="float32", name="image")
        token_ids = keras.Input((length,), dtype="int32", name="token_ids")
        tower = build_image_tower(image_tower, image_size=size, name="image_tower", **image_tower_kwargs)
        features = keep_outputs(tower, ("tokens", "mask") if drop_unused_outputs else None)(image)
        num_image_tokens = features["tokens"].shape[1]
        if num_image_tokens is None:
            raise ValueError(
                f"The image tower must give a fixed number of tokens. Received: tokens shape "
                f"{tuple(features['tokens'].shape)} from image_tower={image_tower!r}"
            )
        context = keras.layers.Dense(hidden_dim, name="image_projection")(features["tokens"])
        context = keras.layers.Add(name="image_positions_add")(
            [context, PositionEmbedding(num_image_tokens, name="image_positions")(context)]
        )
        context = keras.layers.LayerNormalization(epsilon=1e-5, name="image_norm")(context)
        x = TokenAndPositionEmbedding(vocabulary_size, length, hidden_dim, name="caption_embedding")(token_ids)
        for i in range(num_layers):
            x = TransformerDecoderBlock(hidden_dim, num_heads, intermediate, dropout=dropout,
                                        name=f"decoder_block_{i}")(
                x, context=context, context_mask=features["mask"]
            )
        x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
        logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
        kwargs.setdefault("name", "transformer_captioner")
        super().__init__(inputs={"image": image, "token_ids": token_ids}, outputs={"logits": logits},
                         tokenizer=tokenizer, image_size=size, **kwargs)
        self._remember(
            sequence_length=length, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs,
            hidden_dim=hidden_dim, num_layers=num_layers, num_heads=num_heads, intermediate_dim=intermediate_dim,
            dropout=dropout, drop_unused_outputs=bool(drop_unused_outputs),
        )
        self.num_image_tokens = int(num_image_tokens)
        self._init_captioner(learning_rate, label_smoothing)

    def _check_max_length(self, max_length):
        max_length = super()._check_max_length(max_length)
        if max_length > self.sequence_length:
            raise ValueError(
                f"max_length can be at most sequence_length={self.sequence_length} (the decoder's positions). "
                f"Received: max_length={max_length}"
            )
        return max_length

    def encode_image(self, image):
        """Image context for the decoder: ``(tokens [B, S, hidden_dim], mask [B, S])``."""
        features = self.get_layer("image_tower")(image, training=False)
        context = self.get_layer("image_projection")(features["tokens"])
        context = context + self.get_layer("image_positions")(context)
        return self.get_layer("image_norm")(context), features["mask"]

    def _decoding(self, image, use_cache, max_length):
        context, context_mask = self.encode_image(image)
        blocks = [self.get_layer(f"decoder_block_{i}") for i in range(self.num_layers)]
        embedding = self.get_layer("caption_embedding")
        final_norm, head = self.get_layer("final_norm"), self.get_layer("logits")
        extras_shapes = {"attention": (self.num_image_tokens,)}
        batch = tf.shape(image)[0]

        if use_cache:
            head_dim = self.hidden_dim // self.num_heads
            state = tuple(
                tf.zeros([batch, 2, max_length, self.num_heads, head_dim], context.dtype) for _ in blocks
            )
            constants = {
                "cross": tuple(block.compute_cross_attention_cache(context) for block in blocks),
                "mask": context_mask,
            }

            def step_fn(token_ids, index, caches, constants):
                x = tf.gather(embedding.token_embedding.embeddings, token_ids[:, None])
                position = embedding.position_embedding.position_embeddings[index]
                x = x + tf.cast(position, x.dtype)[None, None, :]
                new_caches = []
                for block, cache, cross in zip(blocks, caches, constants["cross"]):
                    x, cache, _, scores = block(
                        x, context_mask=constants["mask"], self_attention_cache=cache,
                        self_attention_cache_update_index=index, cross_attention_cache=cross,
                        return_attention_scores=True, training=False,
                    )
                    new_caches.append(cache)
                logits = head(final_norm(x))[:, 0]
                return logits, tuple(new_caches), {"attention": tf.reduce_mean(scores[:, :, 0], axis=1)}

            return step_fn, state, constants, extras_shapes

        state = tf.zeros([batch, max_length], tf.int32)  # the prefix so far
        constants = {"context": context, "mask": context_mask}

        def step_fn(token_ids, index, prefix, constants):
            prefix = _search.write_column(prefix, index, token_ids, max_length)
            x = embedding(prefix)
            mask = tf.not_equal(prefix, 0)
            for block in blocks:
                x, scores = block(x, context=constants["context"], mask=mask, context_mask=constants["mask"],
                                  return_attention_scores=True, training=False)
            logits = tf.gather(head(final_norm(x)), index, axis=1)
            attention = tf.gather(tf.reduce_mean(scores, axis=1), index, axis=1)
            return logits, prefix, {"attention": attention}

        return step_fn, state, constants, extras_shapes


# ---------------------------------------------------------------------------
# Presets: `tiny` runs in seconds on a CPU (tests, notebooks, --quick),
# `default` is what `mmzoo list` reports, `small` a step up. Image tower
# arguments are keyed by tower name so `image_tower="vit"` gets a matching size.
#
# `tiny` is sized to bind an attribute to its object within a few minutes of
# CPU: three batch-norm conv blocks (tokens that each see a whole object), two
# decoder blocks (one finds the object, the next reads it), hidden_dim 64,
# Adam at 3e-3. Measurements: docs/captioning.md.
# ---------------------------------------------------------------------------
_TINY_IMAGE = image_towers({"filters": (16, 32, 64), "batch_norm": True, "dim": 64}, 16)
_SMALL_IMAGE = image_towers({"filters": (16, 32, 64), "dim": 64}, 64, DEFAULT_VIT)


def _tokens_only(image_kwargs):
    """The Transformer reads only the tower's tokens: its CNN pools by averaging them.

    ``pool="flatten"`` would add a ``pooled_projection`` whose output nothing
    uses (Keras warns that its gradients do not exist, at every fit).
    """
    return {**image_kwargs, "cnn": {**image_kwargs["cnn"], "pool": "avg"}}


def _pooled_only(image_kwargs):
    """The LSTM reads only the tower's pooled (flattened) map: no projection of the unused tokens.

    With ``dim`` the CNN would also project its tokens (``token_projection``),
    which the LSTM never reads. Its ``init_h`` / ``init_c`` take the
    flattened map directly (4 x 4 x 64 at the tiny preset).
    """
    return {**image_kwargs, "cnn": {**image_kwargs["cnn"], "dim": None}}


LSTM_CAPTIONER_PRESETS = {
    "tiny": dict(image_size=(32, 32), image_tower_kwargs=_pooled_only(_TINY_IMAGE), embedding_dim=32,
                 hidden_dim=64, dropout=0.0, learning_rate=3e-3),
    "small": dict(image_size=(64, 64), image_tower_kwargs=_SMALL_IMAGE, embedding_dim=64, hidden_dim=128),
    "default": dict(image_size=(64, 64), image_tower_kwargs=DEFAULT_IMAGE, embedding_dim=128, hidden_dim=256),
}
TRANSFORMER_CAPTIONER_PRESETS = {
    "tiny": dict(image_size=(32, 32), image_tower_kwargs=_tokens_only(_TINY_IMAGE), hidden_dim=64,
                 num_layers=2, num_heads=4, dropout=0.0, learning_rate=3e-3),
    "small": dict(image_size=(64, 64), image_tower_kwargs=_tokens_only(_SMALL_IMAGE), hidden_dim=64,
                  num_layers=2, num_heads=4),
    "default": dict(image_size=(64, 64), image_tower_kwargs=_tokens_only(DEFAULT_IMAGE), hidden_dim=128,
                    num_layers=2, num_heads=4),
}

lstm_captioner = register_model_class(
    "lstm_captioner", LSTMCaptioner, presets=LSTM_CAPTIONER_PRESETS,
    description="Show and Tell: image embedding initialises an LSTM caption decoder.",
)
transformer_captioner = register_model_class(
    "transformer_captioner", TransformerCaptioner, presets=TRANSFORMER_CAPTIONER_PRESETS,
    description="Transformer decoder with KV cache, cross-attending to image patch tokens.",
)
