"""Fine-tuning the keras_hub towers' backbones: finding them, unfreezing their top layers, LoRA.

* ``keras_hub_backbones(model)``: the keras-hub backbones inside a model (its
  ``keras_hub`` text and image towers, however deep).
* ``transformer_blocks(backbone)``: a backbone's transformer layers, bottom to
  top (BERT's ``transformer_layers``, ViT's, CLIP's and SigLIP's
  ``encoder_layers``, DINOv2's ``encoder.layers``).
* ``unfreeze_top(backbone, n)``: makes the top ``n`` blocks trainable, with
  what follows them (decision: the final layer norm, BERT's pooler, SigLIP's
  pooling head), the rest frozen; ``n=None`` unfreezes the whole backbone.
  LoRA adapters of the blocks left frozen keep training.
* ``unfrozen_state(model)`` / ``restore_unfrozen(model, state)``: what
  ``unfreeze_top`` did to each backbone, as a zoo model's config saves it
  (decision: a ``.keras`` file saved after ``UnfreezeTowers`` reloads with the
  same layers trainable, so ``fit`` goes on with the optimizer state it saved).
* ``enable_lora(backbone, rank)``: keras-hub's ``Backbone.enable_lora`` (it
  freezes the backbone and adds rank-``rank`` adapters to the attention's
  ``query`` and ``value`` projections), plus (decision) those projections'
  biases frozen, which keras-hub leaves trainable: only the adapters train.

LoRA and saving: Keras' ``EinsumDense`` saves a LoRA layer's kernel with the
adapters merged into it and zeroes the adapters on load, so a ``.keras`` round
trip keeps the outputs (the tower enables LoRA again at build time, so the
reloaded graph has the variables the file holds). With both adapter factors
at zero their gradients are zero, so (decision) a zoo model's ``fit``
re-initializes the ``A`` factor of such layers first (``reset_lora(model,
only_merged=True)``): a reloaded model trains its adapters on from the merged
kernels. ``save_weights`` merges the same way, so the training run's backup
keeps the adapters and the unmerged kernels beside its weights file
(``lora_state`` / ``restore_lora_state``): a resumed LoRA run goes on exactly
where it stopped.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from mmzoo.towers._common import check_positive_int

# The attribute a keras_hub tower model keeps its backbone under (set without Keras' tracking:
# SigLIP's backbone is reached only through a features model, not as a layer of the tower).
BACKBONE_ATTRIBUTE = "_mmzoo_keras_hub_backbone"


def remember_backbone(tower, backbone) -> None:
    """Record ``backbone`` on the ``tower`` model for ``keras_hub_backbones`` (not a tracked sublayer)."""
    object.__setattr__(tower, BACKBONE_ATTRIBUTE, backbone)


def keras_hub_backbones(model) -> list:
    """The keras-hub ``Backbone``s inside ``model`` (each once, in layer order)."""
    if "keras_hub" not in sys.modules:
        return []
    backbone_class = sys.modules["keras_hub"].models.Backbone
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for candidate in (getattr(layer, BACKBONE_ATTRIBUTE, None), layer):
            if isinstance(candidate, backbone_class) and id(candidate) not in seen:
                seen.add(id(candidate))
                found.append(candidate)
    return found


def _block_holder(backbone):
    """``(holder, blocks)``: the layer that lists the transformer blocks, and the blocks."""
    for holder in (backbone, *backbone._flatten_layers(include_self=False)):
        for attribute in ("transformer_layers", "encoder_layers"):
            blocks = getattr(holder, attribute, None)
            if blocks:
                return holder, list(blocks)
    encoder = getattr(backbone, "encoder", None)
    blocks = getattr(encoder, "layers", None)
    if isinstance(encoder, keras.layers.Layer) and blocks:
        return encoder, list(blocks)
    raise ValueError(f"Found no transformer layers in the keras-hub backbone {type(backbone).__name__}.")


def transformer_blocks(backbone) -> list:
    """The backbone's transformer layers, bottom to top."""
    return _block_holder(backbone)[1]


def _leaves(layer) -> list:
    return [x for x in layer._flatten_layers(include_self=True) if x._trainable_variables or x._non_trainable_variables]


def _top_layers(backbone, n: int) -> set:
    """ids of the weight-holding layers ``unfreeze_top`` trains: the top ``n`` blocks and what follows them."""
    holder, blocks = _block_holder(backbone)
    keep = {id(x) for block in blocks[len(blocks) - n:] for x in _leaves(block)}
    in_blocks = {id(x) for block in blocks for x in _leaves(block)}
    flat = [x for x in _leaves(backbone) if x is not backbone]
    last = max((i for i, x in enumerate(flat) if id(x) in in_blocks), default=len(flat))
    keep.update(id(x) for x in flat[last + 1:])
    if holder is not backbone:  # ViT's encoder holds its final layer norm beside the blocks
        keep.update(id(x) for x in _leaves(holder) if x is not holder and id(x) not in in_blocks)
    return keep


UNUSED_ATTRIBUTE = "_mmzoo_unused"
# The backbone layers a keras_hub tower's ``pooled`` output alone reads (BERT's pooler, SigLIP's
# attention-pooling head): unused, and marked so, when a model reads only the tower's ``tokens``.
POOLED_ONLY_ATTRIBUTE = "_mmzoo_pooled_only_layers"


def mark_unused(backbone, names=(), variables=()) -> None:
    """Record layers (``names``) and variables (``variables``: endings of their paths, such as
    ``"/mask_token"``) of ``backbone`` the tower does not use: they stay frozen whatever is
    unfrozen, as nothing would train them (and Keras would warn that they get no gradient at
    every step). Marks add up."""
    layers, endings = getattr(backbone, UNUSED_ATTRIBUTE, ((), ()))
    object.__setattr__(backbone, UNUSED_ATTRIBUTE, (layers + tuple(names), endings + tuple(variables)))
    _freeze_unused(backbone)


def _freeze_unused(backbone) -> None:
    layers, endings = getattr(backbone, UNUSED_ATTRIBUTE, ((), ()))
    for name in layers:
        set_trainable(backbone.get_layer(name), False)
    for variable in backbone.weights if endings else ():
        if variable.path.endswith(endings):
            variable.trainable = False


def mark_pooling_layers(tower, backbone, names, pooled_reads_them: bool) -> None:
    """``names``: the ``backbone`` layers that only make its own pooled vector (BERT's pooler,
    SigLIP's pooling head). When ``tower``'s ``pooled`` output is that vector they are recorded on
    the tower (``mark_pooled_unused`` freezes them where a model reads only ``tokens``); when the
    tower pools by itself they are frozen now."""
    if pooled_reads_them:
        object.__setattr__(tower, POOLED_ONLY_ATTRIBUTE, tuple(names))
    else:
        mark_unused(backbone, names)


def copy_marks(source, target) -> None:
    """Give ``target`` (a model reduced from the tower ``source``) the tower's backbone and pooled-only marks."""
    for attribute in (BACKBONE_ATTRIBUTE, POOLED_ONLY_ATTRIBUTE):
        if hasattr(source, attribute):
            object.__setattr__(target, attribute, getattr(source, attribute))


def mark_pooled_unused(tower) -> None:
    """The model reads only ``tower``'s ``tokens``: freeze the backbone layers that feed only ``pooled``."""
    backbone = getattr(tower, BACKBONE_ATTRIBUTE, None)
    names = getattr(tower, POOLED_ONLY_ATTRIBUTE, ())
    if backbone is not None and names:
        mark_unused(backbone, names)


def set_trainable(layer, value: bool) -> None:
    """``layer.trainable = value``, sublayers included, even when ``layer.trainable`` already is ``value``.

    Under the TensorFlow backend ``layer.trainable = True`` on a layer whose
    flag is already ``True`` does nothing (TF's ``AutoTrackable.__setattr__``
    skips assigning an identical object, and Keras' setter recurses by
    assignment), so sublayers frozen on their own would stay frozen; this
    calls Keras' setter on every layer.
    """
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        keras.layers.Layer.trainable.fset(sublayer, bool(value))


def _lora_only(layer) -> None:
    """Train only the LoRA adapters of a LoRA-enabled ``EinsumDense``."""
    set_trainable(layer, True)
    for variable in layer._trainable_variables + layer._non_trainable_variables:
        variable.trainable = variable is layer.lora_kernel_a or variable is layer.lora_kernel_b


UNFROZEN_ATTRIBUTE = "_mmzoo_unfrozen"
ALL_LAYERS = "all"  # ``unfrozen_state``'s entry for ``unfreeze_top(backbone, None)``


def unfreeze_top(backbone, n: int | None = None) -> None:
    """Make the top ``n`` transformer blocks (and the layers after them) trainable; all when ``n`` is None
    (layers the tower does not use, ``mark_unused``, stay frozen). Recorded on the backbone for
    ``unfrozen_state``."""
    if n is not None and (isinstance(n, bool) or int(n) < 0):
        raise ValueError(f"The number of layers to unfreeze must be >= 0 or None. Received: {n!r}")
    object.__setattr__(backbone, UNFROZEN_ATTRIBUTE, ALL_LAYERS if n is None else int(n))
    set_trainable(backbone, True)
    if n is not None:
        keep = _top_layers(backbone, min(int(n), len(transformer_blocks(backbone))))
        for layer in _leaves(backbone):
            if layer is backbone or id(layer) in keep:
                continue
            if getattr(layer, "lora_enabled", False):
                _lora_only(layer)
            else:
                set_trainable(layer, False)
    _freeze_unused(backbone)


def unfrozen_state(model) -> list | None:
    """What ``unfreeze_top`` did to each keras-hub backbone of ``model``, in ``keras_hub_backbones``
    order: ``None`` (as built), a number of top layers or ``"all"``; ``None`` when nothing was unfrozen."""
    state = [getattr(backbone, UNFROZEN_ATTRIBUTE, None) for backbone in keras_hub_backbones(model)]
    return state if any(entry is not None for entry in state) else None


def restore_unfrozen(model, state, owner: str = "model") -> None:
    """Unfreeze ``model``'s backbones as ``unfrozen_state`` recorded them (a saved config's entry);
    an entry that does not fit the rebuilt model raises a ``ValueError`` naming it."""
    if state is None:
        return
    backbones = keras_hub_backbones(model)
    if not isinstance(state, (list, tuple)) or len(state) != len(backbones):
        raise ValueError(
            f"Refusing to load {owner}: its saved unfrozen_towers {str(state)[:120]!r} does not list one entry per "
            f"keras_hub backbone (the rebuilt model has {len(backbones)}); the file is damaged."
        )
    for backbone, entry in zip(backbones, state):
        if entry is None:
            continue
        if entry != ALL_LAYERS and (isinstance(entry, bool) or not isinstance(entry, int) or entry < 0):
            raise ValueError(
                f"Refusing to load {owner}: unfrozen_towers entries are null, a number of layers or "
                f"{ALL_LAYERS!r}. Received: {entry!r}"
            )
        unfreeze_top(backbone, None if entry == ALL_LAYERS else entry)


def enable_lora(backbone, rank: int) -> None:
    """keras-hub's ``backbone.enable_lora(rank)``, with only the adapters trainable."""
    if not hasattr(backbone, "enable_lora"):
        raise ValueError(f"{type(backbone).__name__} has no enable_lora (keras-hub too old?).")
    backbone.enable_lora(int(rank))
    lora = [x for x in _leaves(backbone) if getattr(x, "lora_enabled", False)]
    if not lora:
        raise ValueError(f"keras-hub found no query/value layers to put LoRA on in {type(backbone).__name__}.")
    for layer in lora:
        _lora_only(layer)


def _lora_layers(model) -> list:
    return [layer for backbone in keras_hub_backbones(model) for layer in _leaves(backbone)
            if getattr(layer, "lora_enabled", False)]


def reset_lora(model, only_merged: bool = False) -> int:
    """Re-initialize the ``A`` factor of the LoRA adapters in ``model`` (``he_uniform``, as Keras does).

    A reloaded ``.keras`` file has its adapters merged into the kernels and
    both factors zeroed, so they would get no gradient; after this they train
    again from the merged kernels (the outputs do not change: ``B`` is zero).
    ``only_merged``: only layers whose two factors are both zero. Returns how
    many layers were reset.
    """
    count = 0
    for layer in _lora_layers(model):
        a, b = layer.lora_kernel_a, layer.lora_kernel_b
        if only_merged and (np.any(keras.ops.convert_to_numpy(a)) or np.any(keras.ops.convert_to_numpy(b))):
            continue
        a.assign(keras.initializers.HeUniform()(a.shape, dtype=a.dtype))
        count += 1
    return count


def _lora_variables(model) -> dict:
    """``{path: variable}``: each LoRA layer's kernel variable (its value without the adapters merged
    in) and its two factors."""
    return {v.path: v for layer in _lora_layers(model) for v in layer.weights
            if v.name in ("kernel", "lora_kernel_a", "lora_kernel_b")}


def lora_state(model) -> dict:
    """``{path: array}`` of ``_lora_variables``, which ``save_weights`` does not keep as they are;
    ``{}`` without LoRA layers."""
    return {path: keras.ops.convert_to_numpy(v) for path, v in _lora_variables(model).items()}


def restore_lora_state(model, state: dict) -> None:
    """Assign what ``lora_state`` returned (after ``load_weights``, which zeroed the factors); a state
    that does not name exactly the model's LoRA variables raises a ``ValueError``."""
    variables = _lora_variables(model)
    if set(state) != set(variables):
        raise ValueError(
            f"The saved LoRA state does not fit this model: it has {len(state)} variables, the model "
            f"{len(variables)} (e.g. {sorted(set(state) ^ set(variables))[:2]})."
        )
    for path, value in state.items():
        variables[path].assign(value)


def import_keras_hub():
    """``keras_hub``, or an ImportError saying how to install it (an optional dependency)."""
    try:
        import keras_hub
    except ImportError as error:  # pragma: no cover - keras-hub is in the test extra
        raise ImportError(
            "The keras_hub towers need keras-hub (and safetensors for Hugging Face checkpoints): "
            "pip install 'mmzoo[hub]'."
        ) from error
    return keras_hub


# The keras-hub release the preset readers below were written and tested against.
TESTED_KERAS_HUB = "0.32"


def preset_files():
    """keras-hub's preset file reader (``get_file``, ``check_file_exists``,
    ``load_json``: local paths, handles, ``kaggle://`` and ``hf://`` alike).

    It is keras-hub's private ``keras_hub.src.utils.preset_utils``; the
    ``[hub]`` extra bounds keras-hub to the release it was tested with. A
    keras-hub that moved it raises an ImportError saying so, not a bare
    ``ModuleNotFoundError`` from inside a tower.
    """
    keras_hub = import_keras_hub()
    try:
        from keras_hub.src.utils import preset_utils
    except ImportError as error:
        raise ImportError(
            f"mmzoo's keras_hub towers read preset files through keras_hub.src.utils.preset_utils, which "
            f"keras-hub {getattr(keras_hub, '__version__', '?')} does not have (tested with keras-hub "
            f"{TESTED_KERAS_HUB}): pip install 'mmzoo[hub]' installs that release."
        ) from error
    return preset_utils


def freeze_or_lora(backbone, trainable, lora_rank) -> None:
    """Freeze the backbone (``trainable=False``), leave it trainable, or train LoRA adapters on it."""
    check_positive_int("lora_rank", lora_rank, allow_none=True)
    if lora_rank is not None and trainable:
        raise ValueError(
            "lora_rank trains LoRA adapters on a frozen backbone; trainable=True would train all of it. "
            f"Pass one of them. Received: trainable={trainable!r}, lora_rank={lora_rank!r}"
        )
    backbone.trainable = bool(trainable)
    if lora_rank is not None:
        enable_lora(backbone, lora_rank)
