"""The fused trunk shared by the classifiers, the multi-task model and the ITM matcher.

``build_fused_trunk`` creates the ``image`` / ``token_ids`` inputs, the image
tower, the text tower and the fusion layer (layer names ``image_tower``,
``text_tower`` and ``fusion``) and returns the inputs, the fused features and
the fusion arguments it used (defaults filled in). Heads go on top::

    from mmzoo.models.base import default_tokenizer
    from mmzoo.models.trunk import build_fused_trunk
    trunk = build_fused_trunk(fusion="concat", tokenizer=default_tokenizer(), image_size=(32, 32))
    trunk.inputs      # {"image": KerasTensor, "token_ids": KerasTensor}
    trunk.features    # KerasTensor [batch, dim]
"""

from __future__ import annotations

import dataclasses

import keras

from mmzoo.layers.concat_fusion import ConcatFusion
from mmzoo.layers.cross_attention_fusion import CrossAttentionFusion
from mmzoo.layers.gated_fusion import GatedFusion
from mmzoo.layers.late_fusion import LateFusion
from mmzoo.models.base import normalize_image_size
from mmzoo.towers import build_image_tower, build_text_tower, keep_outputs

TRUNK_FUSIONS = ("concat", "gated", "cross_attention", "late", "image_only", "text_only")
"""Every fusion the trunk builds; ``late`` needs ``late_outputs`` (it emits logits)."""


@dataclasses.dataclass
class FusedTrunk:
    """What ``build_fused_trunk`` returns.

    Attributes:
        inputs: ``{"image": ..., "token_ids": ...}`` (only the modalities the
            fusion uses).
        features: the fused features ``[batch, dim]`` (per-class logits for
            ``late`` fusion).
        fusion_kwargs: the fusion layer's arguments with defaults filled in
            (without ``return_gates``), as the model's config keeps them.
        image_features / text_features: the towers' output dicts
            (``pooled``, ``tokens``, ``mask``), ``None`` when unused.
    """

    inputs: dict
    features: object
    fusion_kwargs: dict
    image_features: dict | None = None
    text_features: dict | None = None


def build_towers(*, tokenizer, image_size, image_tower="cnn", image_tower_kwargs=None, text_tower="lstm",
                 text_tower_kwargs=None, outputs=None):
    """The ``image`` / ``token_ids`` inputs and the two towers, without fusion.

    Returns ``(inputs, image_features, text_features)``: ``inputs`` holds the
    inputs of the towers built; a tower name of ``None`` leaves that
    modality out (its features are ``None``). Tower outputs are the dicts
    of ``mmzoo.towers`` (``pooled``, ``tokens``, ``mask``), or only the
    ``outputs`` keys given (then layers that feed none of them are left out).
    The dual encoder uses this directly; ``build_fused_trunk`` adds the
    fusion layer.
    """
    size = normalize_image_size(image_size)
    inputs = {}
    image_features = text_features = None
    if image_tower is not None:
        inputs["image"] = keras.Input((size[0], size[1], 3), dtype="float32", name="image")
        image_features = keep_outputs(
            build_image_tower(image_tower, image_size=size, name="image_tower", **dict(image_tower_kwargs or {})),
            outputs,
        )(inputs["image"])
    if text_tower is not None:
        inputs["token_ids"] = keras.Input((tokenizer.sequence_length,), dtype="int32", name="token_ids")
        text_features = keep_outputs(
            build_text_tower(
                text_tower,
                vocabulary_size=tokenizer.vocabulary_size,
                sequence_length=tokenizer.sequence_length,
                name="text_tower",
                **dict(text_tower_kwargs or {}),
            ),
            outputs,
        )(inputs["token_ids"])
    return inputs, image_features, text_features


def build_fused_trunk(
    *,
    fusion,
    tokenizer,
    image_size,
    image_tower="cnn",
    image_tower_kwargs=None,
    text_tower="lstm",
    text_tower_kwargs=None,
    fusion_kwargs=None,
    late_outputs=None,
    normalize_modalities=False,
    drop_unused_outputs=False,
) -> FusedTrunk:
    """Inputs + image tower + text tower + fusion layer, as symbolic tensors.

    Args:
        fusion: one of ``TRUNK_FUSIONS``.
        tokenizer: the model's ``TextTokenizer`` (sequence length, vocabulary size).
        image_size: ``(height, width)`` (or an int) of the ``image`` input.
        image_tower / text_tower: tower names and ``*_tower_kwargs`` their
            arguments (already selected for the tower, see ``select_tower_kwargs``).
        fusion_kwargs: arguments of the fusion layer; defaults:
            ``units=64, gate="unit"`` (gated), ``num_heads=2, key_dim=32`` (cross_attention).
        late_outputs: number of logits of ``late`` fusion (required for it).
        normalize_modalities: put a ``LayerNormalization`` on each tower's
            pooled vector before a pooled fusion (``concat``, ``gated``,
            ``late``; layers ``image_norm`` / ``text_norm``), so both
            modalities reach the fusion on the same scale (docs/fusion.md).
        drop_unused_outputs: build the towers with only the outputs the
            fusion reads (``tokens`` and ``mask`` for cross-attention,
            ``pooled`` otherwise), so no weight goes without a gradient;
            a tower with no such weight is kept whole.
    """
    if fusion not in TRUNK_FUSIONS:
        raise ValueError(f"fusion must be one of {TRUNK_FUSIONS}. Received: fusion={fusion!r}")
    if fusion == "late" and not late_outputs:
        raise ValueError(f"fusion='late' needs late_outputs (the number of logits). Received: late_outputs={late_outputs}")
    fusion_kwargs = dict(fusion_kwargs or {})
    inputs, image_features, text_features = build_towers(
        tokenizer=tokenizer,
        image_size=image_size,
        image_tower=image_tower if fusion != "text_only" else None,
        image_tower_kwargs=image_tower_kwargs,
        text_tower=text_tower if fusion != "image_only" else None,
        text_tower_kwargs=text_tower_kwargs,
        outputs=(("tokens", "mask") if fusion == "cross_attention" else ("pooled",)) if drop_unused_outputs else None,
    )
    if normalize_modalities and fusion in ("concat", "gated", "late"):
        image_features, text_features = _normalize_pooled(image_features, text_features)
    features = _fuse(fusion, fusion_kwargs, image_features, text_features, late_outputs)
    return FusedTrunk(
        inputs=inputs,
        features=features,
        fusion_kwargs={k: v for k, v in fusion_kwargs.items() if k != "return_gates"},
        image_features=image_features,
        text_features=text_features,
    )


def _normalize_pooled(image_features, text_features):
    """The tower outputs with their ``pooled`` vectors layer-normalized (``image_norm`` / ``text_norm``)."""
    image_features = dict(
        image_features, pooled=keras.layers.LayerNormalization(epsilon=1e-6, name="image_norm")(image_features["pooled"])
    )
    text_features = dict(
        text_features, pooled=keras.layers.LayerNormalization(epsilon=1e-6, name="text_norm")(text_features["pooled"])
    )
    return image_features, text_features


def _fuse(fusion, fusion_kwargs, image_features, text_features, late_outputs):
    """The fused features: the ``fusion`` layer on the tower outputs (``fusion_kwargs`` gets its defaults)."""
    if fusion == "image_only":
        return image_features["pooled"]
    if fusion == "text_only":
        return text_features["pooled"]
    if fusion == "concat":
        return ConcatFusion(name="fusion", **fusion_kwargs)([image_features["pooled"], text_features["pooled"]])
    if fusion == "gated":
        fusion_kwargs.setdefault("units", 64)
        fusion_kwargs.setdefault("gate", "unit")
        fusion_kwargs["return_gates"] = True
        features, _ = GatedFusion(name="fusion", **fusion_kwargs)([image_features["pooled"], text_features["pooled"]])
        return features
    if fusion == "cross_attention":
        fusion_kwargs.setdefault("num_heads", 2)
        fusion_kwargs.setdefault("key_dim", 32)
        return CrossAttentionFusion(name="fusion", **fusion_kwargs)(
            {
                "text": text_features["tokens"],
                "image": image_features["tokens"],
                "text_mask": text_features["mask"],
                "image_mask": image_features["mask"],
            }
        )
    # late
    return LateFusion(num_outputs=int(late_outputs), name="fusion", **fusion_kwargs)(
        [image_features["pooled"], text_features["pooled"]]
    )
