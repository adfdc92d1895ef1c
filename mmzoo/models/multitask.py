"""Multi-task zoo entry: one fused trunk, two heads trained together.

``multitask_classifier`` puts one image tower, one text tower and one fusion
layer (the trunk ``mmzoo.models.trunk.build_fused_trunk`` also builds for the
classifiers) under two heads that read the same fused features:

* ``scores``: the question head, softmax over the answers (the shapes
  ``label``), exactly as ``concat_classifier`` & co.;
* ``match_score``: an image-caption matching (ITM) head, the probability
  that the text describes the image.

Why caption matching as the second task: it needs nothing the data pipeline
does not already carry. A manifest row with a ``text``, a ``label`` and
``caption``s (any question data with captions)
gives both targets; ``make_dataset`` expands one row per (image, caption) pair
for this model (``uses_captions``), as it does for matchers. A multi-label
"which colours are in the picture" head would need the scene's objects, which
are shapes-specific metadata the pipeline drops; caption matching works on any
captioned data and is the issue's "image-text classification plus caption
matching". The two tasks also help each other: both need the trunk to bind
each colour to its shape.

Training (``fit`` on ``make_dataset`` batches, ``mmzoo train``): every step
runs the trunk once over ``3B`` rows: ``(image, question)`` for the question
head, ``(image, caption)`` (match, target 1) and ``(image, caption of the
example B/2 places further in the batch)`` (target 0, or 1 when that caption
is identical or belongs to the same image) for the matching head. The loss is
``loss_weights["scores"] * cross-entropy + loss_weights["match_score"] *
binary cross-entropy``; logs carry ``loss`` and per head ``scores_loss``,
``scores_accuracy``, ``match_score_loss``, ``match_score_accuracy``. Batches
without captions (evaluation on question-only data) update the question head's
metrics only; training without captions is an error unless the matching head's
weight is 0.

Inference and export: ``model(x)`` returns ``{"scores": [B, C],
"match_score": [B]}`` for ``x = {"image", "token_ids"}``; the exported
``serving_default`` (``image_bytes``, ``text``) returns ``scores``,
``class_ids``, ``classes`` (the text read as a question) and ``match_score``
(the text read as a caption)::

    import mmzoo
    model = mmzoo.build("multitask_classifier", preset="tiny", num_classes=3,
                        loss_weights={"scores": 1.0, "match_score": 0.5})
    model.compile()
    # model.fit(mmzoo.data.make_dataset(records, model), epochs=5)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mmzoo.distribute import num_replicas_in_sync
from mmzoo.layers.classification_head import ClassificationHead
from mmzoo.models.base import CustomStepModel, normalize_image_size, resolve_tokenizer
from mmzoo.models.classifiers import DEFAULT_PRESET, SMALL_PRESET, TINY_PRESET, resolve_labels
from mmzoo.models.trunk import build_fused_trunk
from mmzoo.registry import register_model_class
from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, select_tower_kwargs

MULTITASK_FUSIONS = ("concat", "gated", "cross_attention")
HEADS = ("scores", "match_score")
DEFAULT_LOSS_WEIGHTS = {"scores": 1.0, "match_score": 0.5}
_TRUNK_INPUTS = ("image", "token_ids")


def _resolve_loss_weights(loss_weights) -> dict:
    if loss_weights is None:
        return dict(DEFAULT_LOSS_WEIGHTS)
    if not isinstance(loss_weights, dict):
        raise ValueError(
            f"loss_weights must be a dict keyed by head {list(HEADS)}. Received: loss_weights={loss_weights!r}"
        )
    unknown = sorted(set(loss_weights) - set(HEADS))
    if unknown:
        raise ValueError(f"loss_weights keys must be heads {list(HEADS)}. Received: loss_weights={loss_weights!r}")
    weights = {**DEFAULT_LOSS_WEIGHTS, **loss_weights}
    for head, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"loss_weights must be numbers >= 0. Received: loss_weights={loss_weights!r}")
    if not any(weights.values()):
        raise ValueError(f"At least one loss weight must be positive. Received: loss_weights={loss_weights!r}")
    return {head: float(weights[head]) for head in HEADS}


def _check_arguments(fusion, mode, hidden_units, match_hidden_units) -> int:
    """Validates the fusion, mode and hidden sizes; returns ``match_hidden_units``
    (``hidden_units`` when ``None``)."""
    if fusion not in MULTITASK_FUSIONS:
        raise ValueError(f"fusion must be one of {MULTITASK_FUSIONS}. Received: fusion={fusion!r}")
    if mode != "multiclass":
        raise ValueError(
            "multitask_classifier's question head is multiclass (one answer per question). "
            f"Received: mode={mode!r}"
        )
    match_hidden_units = hidden_units if match_hidden_units is None else match_hidden_units
    for name, value in (("hidden_units", hidden_units), ("match_hidden_units", match_hidden_units)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0. Received: {name}={value!r}")
    return match_hidden_units


def _build_heads(features, num_classes, hidden_units, match_hidden_units, dropout) -> dict:
    """``{"scores": question head, "match_score": matching head}`` on the trunk's ``features``."""
    scores = ClassificationHead(
        num_classes=num_classes, mode="multiclass", hidden_units=hidden_units, dropout=dropout, name="scores"
    )(features)
    match = features
    if match_hidden_units:
        match = keras.layers.Dense(match_hidden_units, activation="relu", name="match_hidden")(match)
    if dropout:
        match = keras.layers.Dropout(dropout, name="match_dropout")(match)
    match = keras.layers.Dense(1, dtype="float32", name="match_logit")(match)
    match = keras.layers.Reshape((), name="match_score_logit")(match)
    # The sigmoid is the output's LAST op, so Keras' binary cross-entropy reads its logit back
    # (the step scores the whole output, before slicing): on clipped probabilities a head started
    # in the sigmoid's tail gets exactly zero gradient (as ITMMatcher's comment says). Same
    # weights as the layout before (sigmoid inside the Dense): older .keras files load alike.
    match_score = keras.layers.Activation("sigmoid", dtype="float32", name="match_score")(match)
    return {"scores": scores, "match_score": match_score}


def _head_metrics() -> list:
    """Per-head loss and accuracy trackers, in the order the logs report them."""
    return [
        keras.metrics.Mean(name="scores_loss"),
        keras.metrics.SparseCategoricalAccuracy(name="scores_accuracy"),
        keras.metrics.Mean(name="match_score_loss"),
        keras.metrics.BinaryAccuracy(name="match_score_accuracy"),
    ]


@keras.saving.register_keras_serializable(package="mmzoo")
class MultiTaskClassifier(CustomStepModel):
    """One fused trunk (image tower + text tower + fusion) with a question
    head (``scores``) and an image-caption matching head (``match_score``).

    Args:
        num_classes / label_names: the question head's classes (required).
        fusion: ``"gated"`` (default), ``"concat"`` or ``"cross_attention"``;
            ``fusion_kwargs`` its arguments.
        image_tower / text_tower and ``*_tower_kwargs``: as the classifiers.
        hidden_units, dropout: the question head's hidden layer and dropout.
        match_hidden_units: the matching head's hidden layer (default
            ``hidden_units``).
        loss_weights: ``{"scores": w1, "match_score": w2}`` (default ``1.0``
            and ``0.5``); a weight of 0 switches that head's training off.
        mode: only ``"multiclass"`` (kept for the ``mmzoo train`` contract:
            multi-label data gives a clear error).
        tokenizer, image_size: as every zoo model.
        learning_rate: Adam's learning rate for the ``compile()`` default.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("multitask_classifier", preset="tiny", num_classes=3)
    >>> x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["what color is the circle"] * 2)
    >>> out = model(x)
    >>> tuple(out["scores"].shape), tuple(out["match_score"].shape)
    ((2, 9), (2,))
    """

    task = "classification"
    uses_captions = True
    """``make_dataset`` and ``mmzoo train`` pair every image with each caption for this model."""

    def __init__(
        self,
        num_classes=None,
        label_names=None,
        fusion="gated",
        image_tower="cnn",
        image_tower_kwargs=None,
        text_tower="lstm",
        text_tower_kwargs=None,
        fusion_kwargs=None,
        hidden_units=64,
        match_hidden_units=None,
        dropout=0.1,
        loss_weights=None,
        mode="multiclass",
        tokenizer=None,
        image_size=(64, 64),
        learning_rate=1e-3,
        **kwargs,
    ):
        match_hidden_units = _check_arguments(fusion, mode, hidden_units, match_hidden_units)
        loss_weights = _resolve_loss_weights(loss_weights)
        num_classes, label_names = resolve_labels(num_classes, label_names, mode)
        image_tower_kwargs = select_tower_kwargs(image_tower, image_tower_kwargs, IMAGE_TOWERS)
        text_tower_kwargs = select_tower_kwargs(text_tower, text_tower_kwargs, TEXT_TOWERS)
        tokenizer = resolve_tokenizer(tokenizer, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs)
        size = normalize_image_size(image_size)

        trunk = build_fused_trunk(
            fusion=fusion,
            tokenizer=tokenizer,
            image_size=size,
            image_tower=image_tower,
            image_tower_kwargs=image_tower_kwargs,
            text_tower=text_tower,
            text_tower_kwargs=text_tower_kwargs,
            fusion_kwargs=fusion_kwargs,
        )
        outputs = _build_heads(trunk.features, num_classes, hidden_units, match_hidden_units, dropout)

        super().__init__(
            inputs=trunk.inputs,
            outputs=outputs,
            tokenizer=tokenizer,
            image_size=size,
            label_names=label_names,
            **kwargs,
        )
        self._remember(
            num_classes=num_classes, fusion=fusion, image_tower=image_tower, image_tower_kwargs=image_tower_kwargs,
            text_tower=text_tower, text_tower_kwargs=text_tower_kwargs, fusion_kwargs=trunk.fusion_kwargs,
            hidden_units=hidden_units, match_hidden_units=match_hidden_units, dropout=dropout,
            loss_weights=dict(loss_weights), mode=mode, learning_rate=learning_rate,
        )
        self._class_loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.head_metrics = _head_metrics()

    # -- inference ------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        # Batches from training_example also carry "caption_ids" (training
        # pairs); the graph itself reads only the trunk's inputs.
        if isinstance(inputs, dict):
            inputs = {k: v for k, v in inputs.items() if k in _TRUNK_INPUTS}
        return super().call(inputs, training=training, mask=mask)

    def serving_outputs(self, outputs) -> dict:
        """The heads beyond ``scores`` in the exported signatures: ``match_score`` float32 ``[B]``."""
        return {"match_score": tf.reshape(tf.cast(outputs["match_score"], tf.float32), [-1])}

    # -- training ---------------------------------------------------------------
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Adam at ``learning_rate``; the per-head losses (weighted by
        ``loss_weights``) and metrics are built in."""
        self._compile_own_loss(
            optimizer, loss, metrics, kwargs,
            loss_is="its per-head losses itself (set their weights with loss_weights=...)",
            metrics_are="its per-head metrics itself",
        )

    def training_example(self, batch):
        """``({"image", "token_ids": question, "caption_ids": caption}, label)``.

        ``caption_ids`` is there when the batch has captions (``make_dataset``
        expands them for this model); the step builds the matching pairs.
        """
        if "text" not in batch:
            raise ValueError(
                "multitask_classifier needs a 'text' (question) column in the data. "
                f"Received: batch keys {sorted(batch)}"
            )
        x = {"image": batch["image"], "token_ids": self.tokenizer(batch["text"])}
        if "caption" in batch:
            x["caption_ids"] = self.tokenizer(batch["caption"])
        if "label" in batch:
            return x, batch["label"]
        return x

    def matching_pairs(self, image, caption_ids):
        """``(images [2B, ...], token_ids [2B, L], targets [2B])``: each image
        with its caption (target 1) and with the caption ``B // 2`` places
        further in the batch (target 1 if that caption is identical or its
        image is the same image, else 0)."""
        size = tf.shape(caption_ids)[0]
        shift = tf.maximum(size // 2, 1)
        negative_ids = tf.roll(caption_ids, shift, axis=0)
        same_text = tf.reduce_all(tf.equal(negative_ids, caption_ids), axis=1)
        same_image = tf.reduce_all(tf.equal(tf.roll(image, shift, axis=0), image), axis=[1, 2, 3])
        targets = tf.concat([tf.ones([size], tf.float32), tf.cast(same_text | same_image, tf.float32)], axis=0)
        return tf.concat([image, image], axis=0), tf.concat([caption_ids, negative_ids], axis=0), targets

    def _step_inputs(self, x, y, training):
        """Check a batch: ``(inputs, size, match_targets)``, the question rows first, then the
        matching pairs (``match_targets`` ``None`` when the match head does not train)."""
        if not isinstance(x, dict) or any(k not in x for k in _TRUNK_INPUTS):
            raise ValueError(
                "MultiTaskClassifier trains on {'image', 'token_ids', 'caption_ids'} batches "
                f"(see training_example). Received: {type(x).__name__} {sorted(x) if isinstance(x, dict) else ''}"
            )
        if y is None:
            raise ValueError("MultiTaskClassifier needs the question labels (y). Received: y=None")
        match_weight = self.loss_weights["match_score"]
        if training and match_weight > 0 and "caption_ids" not in x:
            raise ValueError(
                "multitask_classifier trains its match_score head on image-caption pairs, but the batch has no "
                "captions (make_dataset(..., captions=True) on records with captions), or pass "
                f"loss_weights={{'match_score': 0}}. Received: x keys {sorted(x)}"
            )
        image, question = x["image"], x["token_ids"]
        size = tf.shape(question)[0]
        if not ("caption_ids" in x and match_weight > 0):
            return {"image": image, "token_ids": question}, size, None
        pair_images, pair_ids, match_targets = self.matching_pairs(image, x["caption_ids"])
        inputs = {
            "image": tf.concat([image, pair_images], axis=0),
            "token_ids": tf.concat([question, tf.cast(pair_ids, question.dtype)], axis=0),
        }
        return inputs, size, match_targets

    def _heads_loss(self, inputs, y, sample_weight, size, match_targets, training):
        """``(loss per replica, (loss, scores, class_loss, match, match_loss))`` of one batch."""
        outputs = self(inputs, training=training)
        scores = outputs["scores"][:size]
        class_loss = self._class_loss_fn(y, scores, sample_weight=sample_weight)
        loss = self.loss_weights["scores"] * class_loss
        match = match_loss = None
        if match_targets is not None:
            match = outputs["match_score"][size:]
            # Element-wise on the unsliced output, so Keras finds the sigmoid's logit (a slice of
            # it is a new tensor that hides it); the question rows' zero targets are dropped after.
            padded_targets = tf.concat([tf.zeros([size], match_targets.dtype), match_targets], axis=0)
            per_pair = keras.ops.binary_crossentropy(padded_targets, outputs["match_score"])
            match_loss = tf.reduce_mean(per_pair[size:])
            loss = loss + self.loss_weights["match_score"] * match_loss
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        replicas = num_replicas_in_sync()
        return (loss / replicas if replicas > 1 else loss), (loss, scores, class_loss, match, match_loss)

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, size, match_targets = self._step_inputs(x, y, training)
        loss, scores, class_loss, match, match_loss = self._gradient_step(
            lambda: self._heads_loss(inputs, y, sample_weight, size, match_targets, training), training
        )
        self._loss_tracker.update_state(loss, sample_weight=size)
        head = {m.name: m for m in self.head_metrics}
        head["scores_loss"].update_state(class_loss, sample_weight=size)
        head["scores_accuracy"].update_state(y, scores, sample_weight=sample_weight)
        if match_targets is not None:
            head["match_score_loss"].update_state(match_loss, sample_weight=2 * size)
            head["match_score_accuracy"].update_state(match_targets, match)
        return {m.name: m.result() for m in self.metrics}


# Presets: the classifiers' sizes (tiny: 32x32 batch-norm cnn + small lstm, gated fusion).
MULTITASK_PRESETS = {
    "tiny": dict(TINY_PRESET),
    "default": dict(DEFAULT_PRESET),
    "small": dict(SMALL_PRESET),
}


multitask_classifier = register_model_class(
    "multitask_classifier", MultiTaskClassifier, presets=MULTITASK_PRESETS,
    description="one fused trunk, two heads trained together: question answers + image-caption matching",
)
