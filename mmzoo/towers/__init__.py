"""Image and text towers: Functional sub-models with a common output contract.

Every tower is a Functional ``keras.Model`` with a ``name`` (so several can
live in one model) whose output is a dict::

    {"pooled": float [B, D], "tokens": float [B, T, D], "mask": bool [B, T]}

Image towers take float32 ``[B, H, W, 3]`` RGB in ``[0, 255]`` (each rescales
inside the graph as its backbone expects; ``mask`` is all ``True``); text
towers take int32 token ids ``[B, L]`` with 0 as padding (``mask`` is
``ids != 0``).

    from mmzoo.towers import build_image_tower, build_text_tower
    image_tower = build_image_tower("cnn", image_size=(32, 32), filters=(8, 16), dim=32)
    text_tower = build_text_tower("transformer", vocabulary_size=100, sequence_length=16,
                                  dim=32, num_layers=1, num_heads=2)
"""

from __future__ import annotations

import difflib

import keras

from mmzoo.towers._common import normalize_image_size
from mmzoo.towers.applications import APPLICATIONS_BACKBONES, build_applications_tower
from mmzoo.towers.cnn import CLASSIC_CNN, build_cnn_tower
from mmzoo.towers.hub import build_hub_image_tower, build_hub_text_tower
from mmzoo.towers.keras_hub import build_keras_hub_text_tower, keras_hub_tokenizer
from mmzoo.towers.keras_hub_tuning import copy_marks, mark_pooled_unused
from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower
from mmzoo.towers.recurrent import build_bilstm_tower, build_lstm_tower
from mmzoo.towers.transformer import build_transformer_text_tower
from mmzoo.towers.vit import build_vit_tower

IMAGE_TOWERS = {
    "cnn": build_cnn_tower,
    "applications": build_applications_tower,
    "vit": build_vit_tower,
    "hub": build_hub_image_tower,
    "keras_hub": build_keras_hub_image_tower,
}

TEXT_TOWERS = {
    "lstm": build_lstm_tower,
    "bilstm": build_bilstm_tower,
    "transformer": build_transformer_text_tower,
    "hub": build_hub_text_tower,
    "keras_hub": build_keras_hub_text_tower,
}


def _lookup(kind: str, name, choices: dict):
    if name not in choices:
        close = difflib.get_close_matches(str(name), list(choices), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown {kind} tower.{hint} Choices: {sorted(choices)}. Received: name={name!r}"
        )
    return choices[name]


def select_tower_kwargs(tower: str, kwargs, choices) -> dict:
    """Tower arguments: ``kwargs`` itself, or ``kwargs[tower]`` when ``kwargs``
    is keyed by tower names (how zoo presets size every tower at once).

    >>> select_tower_kwargs("lstm", {"lstm": {"units": 8}, "transformer": {"dim": 16}}, TEXT_TOWERS)
    {'units': 8}
    """
    kwargs = dict(kwargs or {})
    if kwargs and all(k in choices for k in kwargs) and all(isinstance(v, dict) for v in kwargs.values()):
        return dict(kwargs.get(tower, {}))
    return kwargs


def build_image_tower(name: str, /, image_size=(64, 64), **kwargs):
    """Build the image tower ``name`` (``"cnn"``, ``"applications"``, ``"vit"``, ``"hub"`` or ``"keras_hub"``).

    ``kwargs`` go to the tower's builder (``build_cnn_tower``,
    ``build_applications_tower``, ``build_vit_tower``, ``build_hub_image_tower``:
    ``handle=`` a TF Hub URL or local SavedModel, ``build_keras_hub_image_tower``:
    ``preset=`` a keras-hub vision preset), including the Keras
    ``name=`` of the tower model (default ``"image_tower"``).

    Example:

    >>> tower = build_image_tower("cnn", image_size=(16, 16), filters=(4,), dim=8, name="img")
    >>> tower.name, sorted(tower.output)
    ('img', ['mask', 'pooled', 'tokens'])
    """
    return _lookup("image", name, IMAGE_TOWERS)(image_size=image_size, **kwargs)


def build_text_tower(name: str, /, vocabulary_size: int, sequence_length: int, **kwargs):
    """Build the text tower ``name`` (``"lstm"``, ``"bilstm"``, ``"transformer"``, ``"hub"`` or ``"keras_hub"``).

    ``kwargs`` go to the tower's builder (``build_lstm_tower``,
    ``build_bilstm_tower``, ``build_transformer_text_tower``,
    ``build_hub_text_tower``, ``build_keras_hub_text_tower``: ``preset=`` a
    keras-hub preset or local Hugging Face directory), including the
    Keras ``name=`` of the tower model (default ``"text_tower"``).

    Example:

    >>> tower = build_text_tower("lstm", vocabulary_size=20, sequence_length=8, units=8)
    >>> tuple(tower.output["pooled"].shape)
    (None, 8)
    """
    return _lookup("text", name, TEXT_TOWERS)(
        vocabulary_size=vocabulary_size, sequence_length=sequence_length, **kwargs
    )


def keep_outputs(tower, keys):
    """``tower`` reduced to the outputs ``keys`` (``None``: all): nothing it no longer needs trains.

    A tower's ``tokens`` feed cross-attention and the Transformer captioner,
    its ``pooled`` vector the pooled fusions and the LSTM captioner; a model
    that reads one of them would otherwise carry the other's projection, a
    weight that never gets a gradient (Keras warns "Gradients do not exist")
    and that only makes the file bigger. Layers feeding none of ``keys`` drop
    out; the whole tower is kept (with its exportable ``{pooled, tokens,
    mask}``) when nothing would drop out, as with an average-pooled CNN.
    Inside a keras-hub backbone nothing can drop out: where only ``tokens``
    are read, the layers that feed only ``pooled`` (BERT's pooler, SigLIP's
    pooling head) are frozen instead.

    >>> tower = build_image_tower("cnn", image_size=(16, 16), filters=(4,), dim=8, pool="flatten")
    >>> sorted(keep_outputs(tower, ("tokens", "mask")).output), len(tower.weights) > len(keep_outputs(tower, ("pooled",)).weights)
    (['mask', 'tokens'], True)
    """
    if keys is None or set(keys) >= set(tower.output):
        return tower
    if "pooled" not in keys:
        mark_pooled_unused(tower)
    reduced = keras.Model(tower.input, {k: tower.output[k] for k in keys}, name=tower.name)
    if len(reduced.weights) == len(tower.weights):
        return tower
    copy_marks(tower, reduced)  # UnfreezeTowers and reset_lora find the backbone through it
    return reduced


def _keras_hub_tower_tokenizer(kwargs, sequence_length):
    if not kwargs.get("preset"):
        raise ValueError(f"text_tower='keras_hub' needs text_tower_kwargs={{'preset': ...}}. Received: {kwargs!r}")
    return keras_hub_tokenizer(kwargs["preset"], sequence_length)


# Text towers that bring their own vocabulary (pretrained ones): name -> fn(tower kwargs, sequence_length).
TOWER_TOKENIZERS = {"keras_hub": _keras_hub_tower_tokenizer}


def tower_tokenizer(text_tower, text_tower_kwargs=None, sequence_length: int | None = None):
    """The ``TextTokenizer`` text tower ``text_tower`` needs (a pretrained tower's own vocabulary,
    e.g. ``keras_hub_tokenizer`` of its preset), or ``None`` when the tower learns any vocabulary.
    ``sequence_length=None``: the tower's default (``keras_hub``: 64, or less when the backbone
    takes fewer positions)."""
    if text_tower not in TOWER_TOKENIZERS:
        return None
    return TOWER_TOKENIZERS[text_tower](dict(text_tower_kwargs or {}), sequence_length and int(sequence_length))


__all__ = [
    "TOWER_TOKENIZERS",
    "normalize_image_size",
    "tower_tokenizer",
    "APPLICATIONS_BACKBONES",
    "CLASSIC_CNN",
    "IMAGE_TOWERS",
    "TEXT_TOWERS",
    "build_applications_tower",
    "build_bilstm_tower",
    "build_cnn_tower",
    "build_hub_image_tower",
    "build_hub_text_tower",
    "build_image_tower",
    "build_keras_hub_image_tower",
    "build_keras_hub_text_tower",
    "build_lstm_tower",
    "build_text_tower",
    "build_transformer_text_tower",
    "build_vit_tower",
    "keep_outputs",
]
