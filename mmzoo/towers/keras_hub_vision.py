"""The ``keras_hub`` image tower: a keras-hub vision backbone, frozen by default.

``preset`` is what ``keras_hub.models.Backbone.from_preset`` takes: a
keras-hub preset handle (``"vit_base_patch16_224_imagenet"``, ``"kaggle://..."``),
a local keras-hub preset directory (``backbone.save_to_preset(path)`` and
``image_converter.save_to_preset(path)``) or a local Hugging Face directory
keras-hub converts (ViT, DINOv2; needs ``safetensors``)::

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, image_size=(224, 224),
                        image_tower="keras_hub", image_tower_kwargs={"preset": "path/to/vit"})

Backbones (``VISION_FAMILIES``, by the preset's backbone class):
``ViTBackbone``, ``CLIPVisionEncoder``, ``SigLIPVisionEncoder`` and
``DINOV2Backbone``. A full ``CLIPBackbone`` / ``SigLIPBackbone`` preset
(vision + text) is not taken: save its ``vision_encoder``.

Resolution (decision): the tower refuses an ``image_size`` other than the
backbone's ``image_shape`` (ViT/CLIP/SigLIP position embeddings are fixed to
it). Nothing is resized inside the tower: the model's own preprocessing
resizes raw images once, to ``image_size``, so pass the backbone's size.

Normalization: the tower's input is float32 ``[B, H, W, 3]`` RGB in
``[0, 255]``; in the graph it gets ``x * scale + offset`` (core ops, per
channel or global) with the ``scale`` and ``offset`` of the preset's
``ImageConverter``, read from ``image_converter.json`` (or the
``image_converter`` nested in ``preprocessor.json``; the older
``mean``/``variance`` form is converted as keras-hub does); a Hugging Face
directory (what keras-hub converts: ViT, DINOv2) has its image processor's
``rescale_factor``, ``image_mean`` and ``image_std`` read from
``preprocessor_config.json``. A preset with none of these gets its family's default (``DEFAULT_NORMALIZATION``: ``[-1, 1]`` for
ViT and SigLIP, OpenAI's mean/std for CLIP, ImageNet mean/std for DINOv2),
which ``normalization(preset)`` reports as ``"default"``.

Outputs: ``tokens`` = the patch tokens ``[B, (H/p)*(W/p), hidden]``
(the class token and DINOv2's register tokens dropped, so tokens map onto
the patch grid), ``mask`` all ``True``, ``pooled`` = the family's pooled
output (``pooling="default"``: the class token of the final
normalized sequence for ViT, CLIP and DINOv2 (CLIP's before its projection);
SigLIP's attention-pooling head; a ViT without class token takes the mean)
or the mean of the patch tokens (``"mean"``).

Freezing (decision, as the text tower): the backbone (SigLIP's pooling head
included) is frozen unless ``trainable=True``; the tower's ``dim``
projections stay trainable, so a model built with the defaults trains its
projections, fusion and head (``UnfreezeTowers`` fine-tunes later).

Saving: as the text tower, the zoo model's config keeps ``preset``; loading a
``.keras`` file rebuilds the tower from the preset (its weights load, then the
file's replace them), so the preset must be reachable where the file is
loaded. A SavedModel export carries the weights and needs no preset.

keras-hub is an optional dependency: ``pip install mmzoo[hub]``.
"""

from __future__ import annotations

import math
import types

import keras
import tensorflow as tf

from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.layers.token_slice import TokenSlice
from mmzoo.towers._common import check_choice, check_positive_int, check_rate, normalize_image_size
from mmzoo.towers.keras_hub_tuning import (
    freeze_or_lora,
    import_keras_hub,
    mark_pooling_layers,
    mark_unused,
    preset_files,
    remember_backbone,
)

POOLINGS = ("default", "mean")
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# backbone class name -> (mean, std) on [0, 1] images, used when the preset saved no image converter.
DEFAULT_NORMALIZATION = {
    "ViTBackbone": _HALF,
    "CLIPVisionEncoder": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "SigLIPVisionEncoder": _HALF,
    "DINOV2Backbone": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
VISION_FAMILIES = tuple(DEFAULT_NORMALIZATION)


@keras.saving.register_keras_serializable(package="mmzoo")
class PatchCount(keras.layers.Layer):
    """``[B, T, D]`` -> the same values, declared ``[B, num_tokens, D]`` (a reshape: core ops only).

    keras-hub 0.32's ``SigLIPVisionEmbedding`` declares one token too many in its
    symbolic shape (as if it had a class token); its computed sequence has
    exactly the patches.
    """

    def __init__(self, num_tokens: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)

    def call(self, x):
        return tf.reshape(x, [tf.shape(x)[0], self.num_tokens, x.shape[-1]])

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], self.num_tokens, x.shape[-1]), dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


def _converter_config(preset, preset_utils):
    """The saved ``ImageConverter``'s config, or ``None`` when the preset holds none."""
    if preset_utils.check_file_exists(preset, "image_converter.json"):
        return preset_utils.load_json(preset, "image_converter.json").get("config", {})
    if preset_utils.check_file_exists(preset, "preprocessor.json"):
        converter = preset_utils.load_json(preset, "preprocessor.json").get("config", {}).get("image_converter")
        if isinstance(converter, dict):
            return converter.get("config", {})
    return None


def _from_mean_std(mean, std, scale=1.0):
    return [scale / s for s in std], [-m / s for m, s in zip(mean, std)]


def _hf_image_processor(preset, preset_utils):
    """``(scale, offset)`` of a Hugging Face directory's ``preprocessor_config.json`` (transformers'
    image processor: ``do_rescale``/``rescale_factor``, ``do_normalize``/``image_mean``/``image_std``,
    with transformers' defaults), or ``None`` when there is none."""
    if not preset_utils.check_file_exists(preset, "preprocessor_config.json"):
        return None
    config = preset_utils.load_json(preset, "preprocessor_config.json")
    rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
    if not config.get("do_normalize", True) or "image_mean" not in config or "image_std" not in config:
        return rescale, None
    mean, std = (_per_channel(config[key]) for key in ("image_mean", "image_std"))
    return _from_mean_std(mean, std, rescale)


def _per_channel(value) -> list[float]:
    return [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]


def normalization(preset, family: str) -> dict:
    """``{"scale", "offset", "source"}`` the tower applies to ``[0, 255]`` images of ``preset``.

    ``source`` is ``"image_converter"`` (read from a keras-hub preset),
    ``"preprocessor_config"`` (a Hugging Face directory's image processor)
    or ``"default"`` (``DEFAULT_NORMALIZATION[family]``). ``scale`` and
    ``offset`` are a float, a list of 3 floats or ``None`` (not applied), as
    keras-hub's ``ImageConverter`` takes them.
    """
    preset_utils = preset_files()

    config = _converter_config(preset, preset_utils)
    processor = _hf_image_processor(preset, preset_utils) if config is None else None
    if processor is not None:
        return {"scale": processor[0], "offset": processor[1], "source": "preprocessor_config"}
    if config is None:
        mean, std = DEFAULT_NORMALIZATION[family]
        scale, offset = _from_mean_std(mean, std, 1.0 / 255.0)
        return {"scale": scale, "offset": offset, "source": "default"}
    scale, offset = config.get("scale"), config.get("offset")
    if "mean" in config and "variance" in config:  # the older form, converted as ImageConverter does
        std = [math.sqrt(v) for v in config["variance"]]
        scale, offset = _from_mean_std(config["mean"], std, 1.0 if scale is None else scale)
    return {"scale": scale, "offset": offset, "source": "image_converter"}


def _family(backbone, preset) -> str:
    family = type(backbone).__name__
    if family not in VISION_FAMILIES:
        raise ValueError(
            f"The keras_hub image tower takes {', '.join(VISION_FAMILIES)} presets (for a CLIP or SigLIP "
            f"preset, save its vision_encoder). Received: preset={preset!r} with a {family}"
        )
    return family


def _check_arguments(preset, image_size, pooling, dim, dropout):
    if preset is None:
        raise ValueError(
            "The keras_hub image tower needs a preset (a keras-hub preset handle or a local keras-hub "
            "preset directory): image_tower_kwargs={'preset': ...}. Received: preset=None"
        )
    check_choice("pooling", pooling, POOLINGS)
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)
    return normalize_image_size(image_size)


def _image_input(backbone):
    """The backbone's image input (a dict ``{"images": ...}`` for CLIP, SigLIP and DINOv2)."""
    spec = backbone.input
    return spec["images"] if isinstance(spec, dict) else spec


def _check_size(backbone, size, preset):
    shape = tuple(_image_input(backbone).shape[1:])
    if shape[-1] != 3:
        raise ValueError(f"The keras_hub image tower takes channels_last RGB backbones. Received: {shape}")
    if tuple(shape[:2]) != tuple(size):
        raise ValueError(
            f"image_size must be the backbone's resolution {tuple(shape[:2])} (preset {preset!r}); the "
            f"tower does not resize. Received: image_size={tuple(size)}"
        )


def _features(backbone, family, x):
    """``(sequence, num_prefix_tokens, head_pooled)``: the backbone's final sequence on ``x``,
    how many non-patch tokens lead it, and the family's own pooled output (``None``: the class token)."""
    inputs = {"images": x} if isinstance(backbone.input, dict) else x
    if family == "SigLIPVisionEncoder":
        # The encoder outputs only its attention-pooled vector; the sequence is post_layer_norm's output.
        norm = next(layer for layer in backbone.layers if layer.name.endswith("post_layer_norm"))
        both = keras.Model(backbone.input, [norm.output, backbone.output], name=f"{backbone.name}_features")
        sequence, pooled = both(inputs)
        side = _image_input(backbone).shape[1] // backbone.get_config()["patch_size"]
        sequence = PatchCount(side * side, name="patch_count")(sequence)
        return sequence, 0, pooled
    sequence = backbone(inputs)
    if isinstance(sequence, dict):  # CLIP with intermediate_output_index
        sequence = sequence["sequence_output"]
    config = backbone.get_config()
    if family == "ViTBackbone":
        return sequence, int(bool(config.get("use_class_token", True))), None
    if family == "DINOV2Backbone":
        return sequence, 1 + int(config.get("num_register_tokens", 0)), None
    return sequence, 1, None


def keep_fine_tuned_position_embeddings(backbone) -> int:
    """Make the backbone's interpolated position embeddings (DINOv2) load as they were saved.

    keras-hub's ``DINOV2Embeddings`` saves every variable, then on load skips
    ``interpolated_position_embeddings`` and derives it again from
    ``position_embeddings``, which it writes back on save only when the
    *signed* sum of the change exceeds epsilon: fine-tuned embeddings whose
    change sums to zero or less come back as the pretrained ones (and a
    resolution other than the preset's goes through a lossy bicubic round
    trip). Decision: such layers load every saved variable as a plain Keras
    layer does, so a ``.keras`` file restores what was trained, exactly.
    Files saved before this change hold the trained variable too. Returns
    how many layers were changed.
    """
    changed = 0
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "interpolated_position_embeddings"):
            layer.load_own_variables = types.MethodType(keras.layers.Layer.load_own_variables, layer)
            changed += 1
    return changed


def build_keras_hub_image_tower(
    image_size=(224, 224),
    preset=None,
    trainable=False,
    lora_rank=None,
    pooling="default",
    dim=None,
    dropout=0.0,
    name="image_tower",
) -> keras.Model:
    """An image tower around a keras-hub vision backbone (see the module docstring).

    Args:
        image_size: must be the backbone's resolution.
        preset: keras-hub preset handle or local keras-hub preset directory.
        trainable: fine-tune the backbone (default ``False``: frozen; ``dim`` projections train either way).
        lora_rank: train rank-``lora_rank`` LoRA adapters on the backbone's attention
            (``keras_hub_tuning.enable_lora``) instead; not with ``trainable=True``.
        pooling: ``"default"`` (the family's pooled output) or ``"mean"`` (of the patch tokens).
        dim: optional ``Dense`` projection of ``pooled`` and ``tokens``.
        dropout: dropout on ``pooled``.
        name: the tower model's name.
    """
    size = _check_arguments(preset, image_size, pooling, dim, dropout)
    backbone = import_keras_hub().models.Backbone.from_preset(preset)
    family = _family(backbone, preset)
    _check_size(backbone, size, preset)
    keep_fine_tuned_position_embeddings(backbone)
    freeze_or_lora(backbone, trainable, lora_rank)
    settings = normalization(preset, family)

    image = keras.Input((*size, 3), dtype="float32", name="image")
    x = image
    if settings["scale"] is not None or settings["offset"] is not None:
        scale = 1.0 if settings["scale"] is None else settings["scale"]
        offset = 0.0 if settings["offset"] is None else settings["offset"]
        x = keras.layers.Rescaling(scale, offset=offset, name="normalization")(x)
    sequence, prefix, pooled = _features(backbone, family, x)
    tokens = TokenSlice(start=prefix, name="patch_tokens")(sequence) if prefix else sequence
    if pooling == "mean" or (pooled is None and not prefix):
        pooled = MaskedGlobalPooling("mean", name="mean_pool")(tokens)
    elif pooled is None:
        pooled = MaskedGlobalPooling("first", name="cls_pool")(sequence)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
        pooled = keras.layers.Dense(dim, name="pooled_projection")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    mask = SequenceMask(name="token_mask")(tokens)
    tower = keras.Model(image, {"pooled": pooled, "tokens": tokens, "mask": mask}, name=name)
    remember_backbone(tower, backbone)  # for UnfreezeTowers and reset_lora
    _mark_unused_parts(tower, backbone, pooling)
    return tower


def _mark_unused_parts(tower, backbone, pooling) -> None:
    """Mark what no gradient reaches (``keras_hub_tuning.mark_unused``): DINOv2's mask token
    (read only with the masks of its self-supervised pretraining) and SigLIP's attention-pooling
    head, unused with ``pooling="mean"`` and, with the default, where a model reads only ``tokens``."""
    head = getattr(backbone, "head", None)
    mark_pooling_layers(tower, backbone, [layer.name for layer in backbone.layers if layer is head],
                        pooled_reads_them=pooling != "mean")
    mark_unused(backbone, variables=("/mask_token",))
