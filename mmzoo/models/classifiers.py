"""Classification zoo entries: fused classifiers and the unimodal baselines.

One class, `MultimodalClassifier`, joins an image tower and a text tower
(either may be left out for the baselines) with a fusion layer and a
`ClassificationHead`; the registered entries differ only in their fusion, so
tower choices and sizes stay arguments::

    import mmzoo
    model = mmzoo.build("gated_classifier", preset="tiny", label_names=["no", "yes"],
                        mode="binary", text_tower="bilstm")
    model.compile()
"""

from __future__ import annotations

import keras

from mmzoo.layers.classification_head import ClassificationHead
from mmzoo.models.base import MultimodalModel, normalize_image_size, resolve_tokenizer
from mmzoo.models.presets import DEFAULT_IMAGE, DEFAULT_TEXT, SMALL_TRANSFORMER, SMALL_VIT, TINY_TEXT, image_towers
from mmzoo.models.trunk import build_fused_trunk
from mmzoo.registry import register_model_class
from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, select_tower_kwargs  # noqa: F401  (re-exported)

FUSIONS = ("concat", "gated", "cross_attention", "late", "image_only", "text_only")


def resolve_labels(num_classes, label_names, mode):
    if label_names is not None:
        label_names = [str(n) for n in label_names]
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"label_names must be unique. Received: label_names={label_names}")
        if num_classes is not None and int(num_classes) != len(label_names):
            raise ValueError(
                "num_classes and label_names disagree. "
                f"Received: num_classes={num_classes}, {len(label_names)} label_names"
            )
        return len(label_names), label_names
    if num_classes is None:
        # No default: a classifier's classes are its data's (decision, issue 28).
        raise ValueError(
            "A classifier needs its classes: pass label_names=[...] (your data's labels) or num_classes=N "
            "(`mmzoo train` reads them from the training records). Received neither."
        )
    num_classes = int(num_classes)
    return num_classes, [f"class_{i}" for i in range(num_classes)]


def _build_classifier_graph(
    *, fusion, mode, num_classes, tokenizer, image_size, image_tower, image_tower_kwargs, text_tower,
    text_tower_kwargs, fusion_kwargs, hidden_units, dropout, normalize_modalities, drop_unused_outputs,
):
    """The classifier's graph: ``(trunk, scores)``, the fused trunk and the
    ``scores`` head on its features (a late-fusion trunk's logits go straight
    into the head)."""
    head_kwargs = dict(num_classes=num_classes, mode=mode, hidden_units=hidden_units, dropout=dropout, name="scores")
    trunk = build_fused_trunk(
        fusion=fusion,
        tokenizer=tokenizer,
        image_size=image_size,
        image_tower=image_tower,
        image_tower_kwargs=image_tower_kwargs,
        text_tower=text_tower,
        text_tower_kwargs=text_tower_kwargs,
        fusion_kwargs=fusion_kwargs,
        late_outputs=(1 if mode == "binary" else num_classes) if fusion == "late" else None,
        normalize_modalities=bool(normalize_modalities),
        drop_unused_outputs=bool(drop_unused_outputs),
    )
    if fusion == "late":
        head_kwargs.update(from_logits_input=True, hidden_units=0, dropout=0.0)
    scores = ClassificationHead(**head_kwargs)(trunk.features)
    return trunk, scores


@keras.saving.register_keras_serializable(package="mmzoo")
class MultimodalClassifier(MultimodalModel):
    """Image tower + text tower + fusion + classification head.

    Args:
        num_classes / label_names: the classes (label names travel with the
            model and come back from the exported signature as strings).
        fusion: ``"concat"``, ``"gated"``, ``"cross_attention"``, ``"late"``,
            ``"image_only"`` or ``"text_only"``.
        mode: ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        image_tower / text_tower: tower names (see ``mmzoo.towers``) and
            ``image_tower_kwargs`` / ``text_tower_kwargs`` their arguments.
        fusion_kwargs: arguments of the fusion layer.
        hidden_units, dropout: the head's hidden layer and dropout.
        tokenizer: a ``TextTokenizer`` (default: ``default_tokenizer()``, characters).
        image_size: ``(height, width)`` of the ``image`` input.
        learning_rate: Adam's learning rate for ``compile()`` defaults.
        normalize_modalities: ``LayerNormalization`` on each tower's pooled
            vector before ``concat``, ``gated`` and ``late`` fusion (see
            ``mmzoo.models.trunk.build_fused_trunk``). Default ``True``;
            models saved by mmzoo 0.1 load with ``False``, as they were built.
        drop_unused_outputs: build the towers with only the outputs the
            fusion reads, so no tower weight goes without a gradient. Default
            ``True``; mmzoo 0.1 models load with ``False`` (their files hold
            those weights).
    """

    task = "classification"

    def __init__(
        self,
        num_classes=None,
        label_names=None,
        fusion="concat",
        mode="multiclass",
        image_tower="cnn",
        image_tower_kwargs=None,
        text_tower="lstm",
        text_tower_kwargs=None,
        fusion_kwargs=None,
        hidden_units=64,
        dropout=0.1,
        tokenizer=None,
        image_size=(64, 64),
        learning_rate=1e-3,
        normalize_modalities=True,
        drop_unused_outputs=True,
        **kwargs,
    ):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}. Received: fusion={fusion!r}")
        num_classes, label_names = resolve_labels(num_classes, label_names, mode)
        image_tower_kwargs = select_tower_kwargs(image_tower, image_tower_kwargs, IMAGE_TOWERS)
        text_tower_kwargs = select_tower_kwargs(text_tower, text_tower_kwargs, TEXT_TOWERS)
        tokenizer = resolve_tokenizer(tokenizer, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs)
        size = normalize_image_size(image_size)
        trunk, scores = _build_classifier_graph(
            fusion=fusion, mode=mode, num_classes=num_classes, tokenizer=tokenizer, image_size=size,
            image_tower=image_tower, image_tower_kwargs=image_tower_kwargs, text_tower=text_tower,
            text_tower_kwargs=text_tower_kwargs, fusion_kwargs=fusion_kwargs, hidden_units=hidden_units,
            dropout=dropout, normalize_modalities=normalize_modalities, drop_unused_outputs=drop_unused_outputs,
        )
        inputs = trunk.inputs

        super().__init__(
            inputs=inputs,
            outputs={"scores": scores},
            tokenizer=tokenizer,
            image_size=size,
            label_names=label_names,
            **kwargs,
        )
        self._remember(
            num_classes=num_classes, fusion=fusion, mode=mode, image_tower=image_tower,
            image_tower_kwargs=image_tower_kwargs, text_tower=text_tower, text_tower_kwargs=text_tower_kwargs,
            fusion_kwargs=trunk.fusion_kwargs, hidden_units=hidden_units, dropout=dropout,
            learning_rate=learning_rate, normalize_modalities=bool(normalize_modalities),
            drop_unused_outputs=bool(drop_unused_outputs),
        )

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Keras ``compile`` with defaults for the head's mode (Adam, the matching
        cross-entropy, accuracy)."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        if loss == "auto":
            loss = (
                keras.losses.SparseCategoricalCrossentropy()
                if self.mode == "multiclass"
                else keras.losses.BinaryCrossentropy()
            )
        if metrics == "auto":
            metrics = [
                keras.metrics.SparseCategoricalAccuracy(name="accuracy")
                if self.mode == "multiclass"
                else keras.metrics.BinaryAccuracy(name="accuracy")
            ]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def training_example(self, batch):
        out = super().training_example(batch)
        if isinstance(out, tuple) and self.mode == "binary":
            x, y = out
            import tensorflow as tf

            return x, tf.cast(tf.reshape(y, [-1, 1]), "float32")
        return out

    def fusion_gates(self, inputs, per_unit=False):
        """``GatedFusion``'s gates for ``inputs``: which modality the model trusts.

        Returns ``[batch, 2]`` (image, text): for each example, the mean gate
        of each modality over the fused units (rows sum to 1). With
        ``per_unit=True`` returns the gates themselves, ``[batch, 2, units]``
        (a model built with ``fusion_kwargs={"gate": "modality"}`` has one
        gate per modality, so its ``per_unit`` gates are ``[batch, 2, 1]``).
        """
        if self.fusion != "gated":
            raise ValueError(f"fusion_gates needs fusion='gated'. Received: fusion={self.fusion!r}")
        gates = keras.Model(self.inputs, self.get_layer("fusion").output[1])(
            self._filter_inputs(inputs), training=False
        )
        if len(gates.shape) == 2:  # gate="modality": one gate per modality
            gates = keras.ops.expand_dims(gates, -1)
        return gates if per_unit else keras.ops.mean(gates, axis=-1)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # mmzoo 0.1 wrote neither: its models had no norm layers and full towers.
        config = {"normalize_modalities": False, "drop_unused_outputs": False, **config}
        return super().from_config(config, custom_objects=custom_objects)


# ---------------------------------------------------------------------------
# Presets. `tiny` runs in seconds on a CPU (tests, notebooks, --quick);
# `default` is the size `mmzoo list` reports and the demo trains; `small` is a
# ViT + Transformer step up. `classic` reproduces the well-known "three
# Conv2D+MaxPool blocks, Flatten" image branch with an LSTM text branch.
#
# The towers' sizes: mmzoo.models.presets.
# ---------------------------------------------------------------------------
TINY_IMAGE = image_towers({"filters": (8, 16), "dim": 32}, 32)
# The tiny preset's cnn: three batch-norm blocks (16/32/64 filters) pooled by
# averaging the projected tokens. Questions about one object among several
# need features that see the whole object (its colour bound to its shape);
# two blocks see too little of it. Averaging the tokens also uses the token
# projection that cross-attention reads, so no tower weight goes without a
# gradient. Measurements: docs/fusion.md.
TINY_PRESET_IMAGE = {**TINY_IMAGE, "cnn": {"filters": (16, 32, 64), "dim": 64, "batch_norm": True, "pool": "avg"}}
TINY_PRESET = dict(
    image_size=(32, 32), image_tower_kwargs=TINY_PRESET_IMAGE, text_tower_kwargs=TINY_TEXT, hidden_units=64, learning_rate=2e-3
)
DEFAULT_PRESET = dict(image_size=(64, 64), image_tower_kwargs=DEFAULT_IMAGE, text_tower_kwargs=DEFAULT_TEXT, hidden_units=128)
SMALL_PRESET = dict(
    image_size=(64, 64),
    image_tower="vit",
    image_tower_kwargs=SMALL_VIT,
    text_tower="transformer",
    text_tower_kwargs=SMALL_TRANSFORMER,
    hidden_units=128,
)
_CLASSIC = dict(
    image_size=(64, 64),
    image_tower="cnn",
    image_tower_kwargs={"cnn": {"filters": (32, 64, 128), "padding": "valid", "pool": "flatten"}},
    text_tower="lstm",
    text_tower_kwargs={"lstm": {"embedding_dim": 64, "units": 64}},
    hidden_units=128,
)


def _presets(fusion, **extra):
    tiny = {**TINY_PRESET, **extra.get("tiny", {})}
    if fusion == "gated":
        tiny["fusion_kwargs"] = {"units": 32}
    if fusion == "cross_attention":
        tiny["fusion_kwargs"] = {"num_heads": 4, "key_dim": 16}
    presets = {"tiny": tiny, "default": dict(DEFAULT_PRESET), "small": dict(SMALL_PRESET)}
    if fusion in ("concat", "gated", "late"):
        presets["classic"] = dict(_CLASSIC)
    return presets


def _register(name, fusion, description):
    return register_model_class(name, MultimodalClassifier, description=description, presets=_presets(fusion),
                                fusion=fusion)


concat_classifier = _register("concat_classifier", "concat", "image + text pooled features concatenated (feature-level fusion)")
gated_classifier = _register("gated_classifier", "gated", "Gated Multimodal Unit fusion; exposes per-example modality gates")
cross_attention_classifier = _register(
    "cross_attention_classifier", "cross_attention", "text tokens cross-attend to image patch tokens"
)
late_fusion_classifier = _register("late_fusion_classifier", "late", "one head per modality, logits averaged (late fusion)")
image_only_classifier = _register("image_only_classifier", "image_only", "unimodal baseline: image tower only")
text_only_classifier = _register("text_only_classifier", "text_only", "unimodal baseline: text tower only")
