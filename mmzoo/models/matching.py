"""Image-text matching zoo entries: ``dual_encoder`` (CLIP) and ``itm_matcher`` (ALBEF/BLIP ITM).

Both take the shared inputs ``{"image": float32 [B, H, W, 3] in [0, 255],
"token_ids": int32 [B, L]}`` and return ``{"score": float [B]}``: the cosine
similarity of the pair for the dual encoder, the match probability for the
ITM cross-encoder::

    import mmzoo
    clip = mmzoo.build("dual_encoder", preset="tiny")
    clip.compile()                       # Adam; the contrastive loss is built in
    # clip.fit(mmzoo.data.make_dataset(records, clip), epochs=5)
    itm = mmzoo.build("itm_matcher", preset="tiny")
    itm.compile()                        # Adam + binary cross-entropy
    # itm.fit(make_itm_dataset(records, itm, dual_encoder=clip), epochs=5)
"""

from __future__ import annotations

import json

import keras
import tensorflow as tf

from mmzoo.distribute import num_replicas_in_sync
from mmzoo.layers.l2_normalize import L2Normalize
from mmzoo.layers.logit_scale import LogitScale
from mmzoo.layers.pair_similarity import PairSimilarity
from mmzoo.losses.contrastive import contrastive_loss
from mmzoo.losses.token_negatives import token_groups_from_words, token_swap_negatives
from mmzoo.models.base import CustomStepModel, MultimodalModel, normalize_image_size, resolve_tokenizer
from mmzoo.models.presets import DEFAULT_TEXT, DEFAULT_VIT, SMALL_TRANSFORMER, SMALL_VIT, TINY_TEXT, image_towers
from mmzoo.models.trunk import build_fused_trunk, build_towers
from mmzoo.registry import register_model_class
from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, select_tower_kwargs


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")


def _check_dual_encoder_arguments(embedding_dim, hard_negative_exchange_probability, label_smoothing):
    _positive_int("embedding_dim", embedding_dim)
    if not 0.0 <= float(hard_negative_exchange_probability) <= 1.0:
        raise ValueError(
            "hard_negative_exchange_probability must be in [0, 1]. "
            f"Received: {hard_negative_exchange_probability}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}")


def _build_dual_encoder_graph(
    *, embedding_dim, tokenizer, image_size, image_tower, image_tower_kwargs, text_tower, text_tower_kwargs
):
    """The dual encoder's graph: ``(inputs, image_embedding, text_embedding, score)``."""
    inputs, image_features, text_features = build_towers(
        tokenizer=tokenizer, image_size=image_size, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs,
        text_tower=text_tower, text_tower_kwargs=text_tower_kwargs,
    )
    image_embedding = L2Normalize(name="image_embedding")(
        keras.layers.Dense(embedding_dim, name="image_projection")(image_features["pooled"])
    )
    text_embedding = L2Normalize(name="text_embedding")(
        keras.layers.Dense(embedding_dim, name="text_projection")(text_features["pooled"])
    )
    score = PairSimilarity(normalize=False, name="score")([image_embedding, text_embedding])
    return inputs, image_embedding, text_embedding, score


@keras.saving.register_keras_serializable(package="mmzoo")
class DualEncoder(CustomStepModel):
    """CLIP-style dual encoder: two towers projected into one unit-sphere space.

    ``image -> image tower -> Dense(embedding_dim) -> L2Normalize`` and
    ``token_ids -> text tower -> Dense(embedding_dim) -> L2Normalize``;
    ``model(x)`` returns ``{"score": cosine similarity [B]}`` of each pair.
    Training (``fit`` on ``{"image", "token_ids"}`` batches, no labels)
    minimises the symmetric InfoNCE loss over in-batch negatives with a
    learnable temperature clipped as CLIP does (``LogitScale``, scale at most
    ``max_logit_scale``). Under ``tf.distribute`` the negatives are the global
    batch: embeddings are all-gathered across replicas.

    ``embed_image(image)`` and ``embed_text(token_ids)`` return unit vectors
    ``[B, embedding_dim]`` (graph-safe); ``image_encoder`` / ``text_encoder``
    are the two Functional sub-models (shared weights), handy for export and
    indexing.

    Args:
        embedding_dim: size of the shared embedding space.
        image_tower / text_tower: tower names (``mmzoo.towers``) and
            ``image_tower_kwargs`` / ``text_tower_kwargs`` their arguments
            (or dicts keyed by tower name, as the presets give).
        initial_temperature: CLIP's ``0.07``.
        max_logit_scale: the clip of the learnable scale (CLIP: ``100``).
        learn_temperature: ``False`` keeps the temperature fixed.
        ignore_duplicate_texts: identical token sequences in a batch are not
            used as negatives of each other (templated captions repeat).
        label_smoothing: of the contrastive cross-entropies.
        hard_negative_groups: groups of interchangeable words (colours,
            shapes, ``("left", "right")``...). When given, training adds to
            every image an edited copy of its caption as an extra negative
            text (NegCLIP; ``mmzoo.losses.token_swap_negatives``):
            one word replaced by another of its group, or two words of a
            group exchanged. One-word phrases in the vocabulary are used.
        hard_negative_exchange_probability: chance of an exchange (binding
            swap) when a caption has two words of one group.
        seed: seed of the edits (``None``: random).
        learning_rate: Adam's learning rate for the ``compile()`` default.
        tokenizer: a ``TextTokenizer`` (default: ``default_tokenizer()``, characters).
        image_size: ``(height, width)`` of the ``image`` input.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("dual_encoder", preset="tiny")
    >>> x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["a red circle", "a blue square"])
    >>> tuple(model(x)["score"].shape), tuple(model.embed_text(x["token_ids"]).shape)
    ((2,), (2, 16))
    """

    task = "matching"
    uses_captions = True

    def __init__(
        self,
        embedding_dim: int = 64,
        image_tower: str = "cnn",
        image_tower_kwargs=None,
        text_tower: str = "transformer",
        text_tower_kwargs=None,
        initial_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        learn_temperature: bool = True,
        ignore_duplicate_texts: bool = True,
        label_smoothing: float = 0.0,
        hard_negative_groups=None,
        hard_negative_exchange_probability: float = 0.5,
        seed=None,
        learning_rate: float = 1e-3,
        tokenizer=None,
        image_size=(64, 64),
        **kwargs,
    ):
        _check_dual_encoder_arguments(embedding_dim, hard_negative_exchange_probability, label_smoothing)
        size = normalize_image_size(image_size)
        image_tower_kwargs = select_tower_kwargs(image_tower, image_tower_kwargs, IMAGE_TOWERS)
        text_tower_kwargs = select_tower_kwargs(text_tower, text_tower_kwargs, TEXT_TOWERS)
        tokenizer = resolve_tokenizer(tokenizer, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs)
        inputs, image_embedding, text_embedding, score = _build_dual_encoder_graph(
            embedding_dim=embedding_dim, tokenizer=tokenizer, image_size=size, image_tower=image_tower,
            image_tower_kwargs=image_tower_kwargs, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs,
        )
        super().__init__(
            inputs=inputs,
            outputs={"score": score},
            tokenizer=tokenizer,
            image_size=size,
            **kwargs,
        )
        self.logit_scale = LogitScale(
            initial_temperature=initial_temperature,
            max_logit_scale=max_logit_scale,
            trainable=learn_temperature,
            name="logit_scale",
        )
        self.logit_scale.build()
        self.image_encoder = keras.Model(inputs["image"], image_embedding, name="image_encoder")
        self.text_encoder = keras.Model(inputs["token_ids"], text_embedding, name="text_encoder")
        self._remember(
            embedding_dim=embedding_dim, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs,
            text_tower=text_tower, text_tower_kwargs=text_tower_kwargs,
            initial_temperature=float(initial_temperature), max_logit_scale=float(max_logit_scale),
            learn_temperature=bool(learn_temperature), ignore_duplicate_texts=bool(ignore_duplicate_texts),
            label_smoothing=float(label_smoothing),
            hard_negative_groups=(
                None if hard_negative_groups is None else [[str(w) for w in g] for g in hard_negative_groups]
            ),
            hard_negative_exchange_probability=float(hard_negative_exchange_probability),
            seed=seed, learning_rate=learning_rate,
        )
        self._init_hard_negatives(tokenizer, seed)

    def _init_hard_negatives(self, tokenizer, seed):
        """The token groups and seed of the NegCLIP caption edits (none without ``hard_negative_groups``)."""
        self._token_groups = None
        if self.hard_negative_groups is not None:
            self._token_groups = token_groups_from_words(tokenizer, self.hard_negative_groups)
            self._negative_seed = keras.random.SeedGenerator(seed, name="hard_negative_seed")

    # -- embeddings ---------------------------------------------------------
    def embed_image(self, image):
        """Unit image embeddings ``[B, embedding_dim]`` of float ``[B, H, W, 3]`` in [0, 255]."""
        return self.image_encoder(image, training=False)

    def embed_text(self, token_ids):
        """Unit text embeddings ``[B, embedding_dim]`` of int32 token ids ``[B, L]``."""
        return self.text_encoder(token_ids, training=False)

    def similarity_matrix(self, image, token_ids):
        """Cosine similarities ``[B_image, B_text]`` of every image with every text."""
        return tf.matmul(self.embed_image(image), self.embed_text(token_ids), transpose_b=True)

    # -- training -----------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Adam at ``learning_rate``; the contrastive loss is built in (``loss``
        must stay ``"auto"`` / ``None``)."""
        self._compile_own_loss(optimizer, loss, metrics, kwargs, loss_is="its own contrastive loss")

    def training_example(self, batch):
        """``{"image", "token_ids": tokenizer(caption)}``: matching pairs, no labels."""
        texts = batch["caption"] if "caption" in batch else batch["text"]
        return {"image": batch["image"], "token_ids": self.tokenizer(texts)}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Symmetric InfoNCE of the batch's pairs (global batch under a strategy).

        ``y`` and ``sample_weight`` are ignored: the positives are the pairs
        of ``x``. With ``hard_negative_groups``, training (not evaluation)
        adds an edited copy of each caption as an image-to-text negative.
        Returns the loss scaled by ``1 / num_replicas`` as Keras losses are,
        plus any regularisation losses.
        """
        image_embedding = self.image_encoder(x["image"], training=training)
        text_embedding = self.text_encoder(x["token_ids"], training=training)
        negatives = negative_mask = edited = None
        if self._token_groups is not None and training:
            edited, negative_mask = token_swap_negatives(
                x["token_ids"], self._token_groups, seed=self._negative_seed,
                exchange_probability=self.hard_negative_exchange_probability,
            )
            negatives = self.text_encoder(edited, training=training)
        loss = contrastive_loss(
            image_embedding,
            text_embedding,
            self.logit_scale.scale(),
            keys=x["token_ids"] if self.ignore_duplicate_texts else None,
            label_smoothing=self.label_smoothing,
            negative_text_embeddings=negatives,
            negative_mask=negative_mask,
            negative_keys=edited if (negatives is not None and self.ignore_duplicate_texts) else None,
        )
        replicas = num_replicas_in_sync()
        if replicas > 1:
            loss = loss / replicas
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, dict) or "image" not in x or "token_ids" not in x:
            raise ValueError(
                "DualEncoder trains on {'image', 'token_ids'} batches of matching pairs "
                f"(see training_example). Received: {type(x).__name__} "
                f"{sorted(x) if isinstance(x, dict) else ''}"
            )

        def loss_fn():
            loss = self._compute_loss(x=x, y=y, y_pred=None, sample_weight=sample_weight, training=training)
            self._loss_tracker.update_state(loss * num_replicas_in_sync(), sample_weight=tf.shape(x["image"])[0])
            return loss, None

        self._gradient_step(loss_fn, training)
        logs = self.compute_metrics(x, y, self(x, training=False), sample_weight=sample_weight) if (
            self._compile_metrics is not None and y is not None
        ) else self.compute_metrics(x, y, None, sample_weight=sample_weight)
        logs = dict(logs)
        logs["logit_scale"] = self.logit_scale.scale()
        return logs


ITM_FUSIONS = ("cross_attention", "gated")
# Tower arguments that leave the tower's weights as they are: they may differ between the
# dual encoder and the ITM that starts from its towers (a locked LiT image tower, fine-tuned here).
_WEIGHTLESS_TOWER_KWARGS = ("trainable",)


def _tower_mismatches(source, model) -> list:
    """What differs between the towers of ``source`` (a dual encoder) and ``model``'s, as
    ``"attr: source's vs model's"`` lines (tower kinds and arguments, but for ``trainable``)."""
    def plain(value):  # a reloaded model's kwargs hold lists where a built one has tuples
        return json.loads(json.dumps(value, sort_keys=True))

    def weighty(attr, value):
        if attr.endswith("_kwargs") and isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in _WEIGHTLESS_TOWER_KWARGS}
        return value

    problems = []
    for attr in ("image_tower", "image_tower_kwargs", "text_tower", "text_tower_kwargs"):
        theirs, ours = getattr(source, attr, None), getattr(model, attr)
        if plain(weighty(attr, theirs)) != plain(weighty(attr, ours)):
            problems.append(f"{attr}: {theirs!r} vs {ours!r}")
    return problems


@keras.saving.register_keras_serializable(package="mmzoo")
class ITMMatcher(MultimodalModel):
    """Image-text matching cross-encoder (the ITM objective of ALBEF / BLIP).

    The two towers are fused, ``CrossAttentionFusion`` (text tokens attend to
    image patch tokens; default) or ``GatedFusion`` of the pooled vectors;
    the fused vector, concatenated with both pooled vectors, goes through
    ``Dense(hidden_units, gelu) -> Dropout -> Dense(1) -> sigmoid``:
    ``model(x)`` returns ``{"score": match probability [B]}``.

    Train it on positives and (hard) negatives: ``make_itm_dataset(records,
    itm, dual_encoder=clip)`` mines negatives a trained dual encoder finds
    similar; ``training_example`` (used by ``mmzoo.data.make_dataset`` and
    ``mmzoo train``) pairs every image with its caption (label 1) and with
    the caption of another example of the batch (label 0 unless the two
    captions are identical). Re-rank a dual encoder's top-k with it:
    ``evaluate_matcher(clip, records, rerank_model=itm)``.

    Args:
        fusion: ``"cross_attention"`` or ``"gated"``; ``fusion_kwargs`` its
            arguments.
        image_tower / text_tower, ``*_tower_kwargs``: as ``DualEncoder``.
        hidden_units, dropout: the head.
        learning_rate: Adam's learning rate for the ``compile()`` default.
        tokenizer, image_size: as every zoo model.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("itm_matcher", preset="tiny")
    >>> x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["a red circle", "a blue square"])
    >>> tuple(model(x)["score"].shape)
    (2,)
    """

    task = "matching"
    uses_captions = True

    def __init__(
        self,
        fusion: str = "cross_attention",
        image_tower: str = "cnn",
        image_tower_kwargs=None,
        text_tower: str = "transformer",
        text_tower_kwargs=None,
        fusion_kwargs=None,
        hidden_units: int = 64,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        tokenizer=None,
        image_size=(64, 64),
        **kwargs,
    ):
        if fusion not in ITM_FUSIONS:
            raise ValueError(f"fusion must be one of {ITM_FUSIONS}. Received: fusion={fusion!r}")
        _positive_int("hidden_units", hidden_units)
        size = normalize_image_size(image_size)
        image_tower_kwargs = select_tower_kwargs(image_tower, image_tower_kwargs, IMAGE_TOWERS)
        text_tower_kwargs = select_tower_kwargs(text_tower, text_tower_kwargs, TEXT_TOWERS)
        tokenizer = resolve_tokenizer(tokenizer, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs)
        trunk = build_fused_trunk(
            fusion=fusion, tokenizer=tokenizer, image_size=size, image_tower=image_tower,
            image_tower_kwargs=image_tower_kwargs, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs,
            fusion_kwargs=fusion_kwargs,
        )
        features = keras.layers.Concatenate(name="itm_features")(
            [trunk.features, trunk.image_features["pooled"], trunk.text_features["pooled"]]
        )
        hidden = keras.layers.Dense(hidden_units, activation="gelu", name="itm_hidden")(features)
        hidden = keras.layers.Dropout(dropout, name="itm_dropout")(hidden)
        logit = keras.layers.Dense(1, name="itm_logit", dtype="float32")(hidden)
        logit = keras.layers.Reshape((), name="score_logit")(logit)
        # The sigmoid is the LAST op of the output, so binary cross-entropy computes from its logit
        # (Keras reads it back from the Sigmoid op); on clipped probabilities a head that starts
        # saturated gets no gradient. Same weights as a sigmoid inside the Dense: older files load alike.
        score = keras.layers.Activation("sigmoid", name="score", dtype="float32")(logit)
        super().__init__(
            inputs=trunk.inputs,
            outputs={"score": score},
            tokenizer=tokenizer,
            image_size=size,
            **kwargs,
        )
        self._remember(
            fusion=fusion, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs, text_tower=text_tower,
            text_tower_kwargs=text_tower_kwargs, fusion_kwargs=trunk.fusion_kwargs, hidden_units=hidden_units,
            dropout=dropout, learning_rate=learning_rate,
        )

    def init_towers_from(self, dual_encoder) -> "ITMMatcher":
        """Start both towers from a trained dual encoder's (ALBEF / BLIP share them).

        A cross-encoder trained from scratch must learn to see shapes and read
        captions before it can learn what a mismatch is; started from a
        contrastively trained dual encoder's towers it only learns the fusion
        (docs/matching.md). The towers
        must be built alike: same tower kinds and arguments, image size and
        vocabulary size; only ``trainable`` may differ (a LiT dual encoder's
        locked image tower can be fine-tuned here). Returns ``self``.
        """
        problems = _tower_mismatches(dual_encoder, self)
        if tuple(getattr(dual_encoder, "image_size", ())) != tuple(self.image_size):
            problems.append(f"image_size: {getattr(dual_encoder, 'image_size', None)} vs {self.image_size}")
        if getattr(dual_encoder, "tokenizer", None) is not None and (
            dual_encoder.tokenizer.vocabulary_size != self.tokenizer.vocabulary_size
        ):
            problems.append(
                f"vocabulary size: {dual_encoder.tokenizer.vocabulary_size} vs {self.tokenizer.vocabulary_size}"
            )
        if problems:
            raise ValueError(
                "init_towers_from needs a dual encoder whose towers are built like this model's "
                "(dual encoder vs itm_matcher): " + "; ".join(problems)
            )
        for name in ("image_tower", "text_tower"):
            self.get_layer(name).set_weights(dual_encoder.get_layer(name).get_weights())
        return self

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Adam, binary cross-entropy on ``score``, accuracy and AUC."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        if loss == "auto":
            loss = {"score": keras.losses.BinaryCrossentropy()}
        if metrics == "auto":
            metrics = {"score": [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]}
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def training_example(self, batch):
        """Positives plus in-batch negatives: ``(x, {"score": label})`` with ``2B`` pairs.

        Each image is paired with its caption (label 1) and with the caption
        of the example ``shift`` places further in the batch (``shift`` drawn
        in ``[1, B-1]``; label 1 again if that caption is identical, else 0).
        For hard negatives use ``make_itm_dataset(..., dual_encoder=...)``.
        """
        texts = batch["caption"] if "caption" in batch else batch["text"]
        token_ids = self.tokenizer(texts)
        size = tf.shape(token_ids)[0]
        shift = tf.random.uniform([], 1, tf.maximum(size, 2), dtype=tf.int32) % tf.maximum(size, 1)
        negative_ids = tf.roll(token_ids, shift, axis=0)
        same = tf.reduce_all(tf.equal(negative_ids, token_ids), axis=1)
        x = {
            "image": tf.concat([batch["image"], batch["image"]], axis=0),
            "token_ids": tf.concat([token_ids, negative_ids], axis=0),
        }
        labels = tf.concat([tf.ones([size], tf.float32), tf.cast(same, tf.float32)], axis=0)
        return x, {"score": labels}


# ---------------------------------------------------------------------------
# Presets: `tiny` runs in seconds on a CPU (tests, notebooks, --quick);
# `default` is what `mmzoo list` sizes; `small` is a ViT + Transformer step up;
# datasets register their own recipes (`mmzoo.datasets.shapes`). Tower kwargs are keyed by tower name, so
# `mmzoo.build("dual_encoder", preset="tiny", text_tower="lstm")` gets a tiny LSTM.
# ---------------------------------------------------------------------------
_TINY_IMAGE = image_towers({"filters": (8, 16), "dim": 16}, 16)
_DEFAULT_IMAGE = image_towers({"filters": (32, 64, 96), "batch_norm": True, "dim": 64}, 64, DEFAULT_VIT)

# The two matchers share their towers (``ITMMatcher.init_towers_from`` copies a dual encoder's).
_MATCHER_TOWERS = {
    "tiny": dict(image_size=(32, 32), image_tower_kwargs=_TINY_IMAGE, text_tower_kwargs=TINY_TEXT),
    "default": dict(image_size=(64, 64), image_tower_kwargs=_DEFAULT_IMAGE, text_tower_kwargs=DEFAULT_TEXT),
    "small": dict(image_size=(64, 64), image_tower="vit", image_tower_kwargs=SMALL_VIT, text_tower="transformer",
                  text_tower_kwargs=SMALL_TRANSFORMER),
}
DUAL_ENCODER_PRESETS = {
    size: {**_MATCHER_TOWERS[size], "embedding_dim": dim} for size, dim in (("tiny", 16), ("default", 64), ("small", 128))
}
ITM_PRESETS = {
    size: {**_MATCHER_TOWERS[size], "fusion_kwargs": {"num_heads": heads, "key_dim": key_dim}, "hidden_units": units}
    for size, heads, key_dim, units in (("tiny", 2, 8, 16), ("default", 4, 16, 64), ("small", 4, 24, 96))
}


dual_encoder = register_model_class(
    "dual_encoder", DualEncoder, presets=DUAL_ENCODER_PRESETS,
    description="CLIP-style dual encoder: contrastive image/text embeddings, cosine-similarity score",
)
itm_matcher = register_model_class(
    "itm_matcher", ITMMatcher, presets=ITM_PRESETS,
    description="ITM cross-encoder (ALBEF/BLIP): fused towers -> match probability, hard-negative training",
)
