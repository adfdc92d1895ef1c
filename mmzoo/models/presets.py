"""The towers' preset sizes, written once for every zoo entry.

Tower arguments in presets are keyed by tower name, so
``mmzoo.build(name, preset="tiny", text_tower="transformer")`` gets a tiny
Transformer, not LSTM arguments (``select_tower_kwargs``). ``tiny`` runs in
seconds on a CPU (tests, notebooks, ``--quick``); ``default`` is the size
``mmzoo list`` reports; ``small`` is a ViT + Transformer step up. Each entry
picks its CNN and embedding width; the ViT and text tower sizes are shared.
"""

from __future__ import annotations

TINY_VIT = {"patch_size": 8, "dim": 16, "num_layers": 1, "num_heads": 2}
DEFAULT_VIT = {"patch_size": 8, "dim": 64, "num_layers": 2, "num_heads": 4}

TINY_TEXT = {
    "lstm": {"embedding_dim": 16, "units": 16},
    "bilstm": {"embedding_dim": 16, "units": 16},
    "transformer": {"dim": 16, "num_layers": 1, "num_heads": 2},
}
DEFAULT_TEXT = {
    "lstm": {"embedding_dim": 64, "units": 64},
    "bilstm": {"embedding_dim": 64, "units": 64},
    "transformer": {"dim": 64, "num_layers": 2, "num_heads": 4},
}
SMALL_VIT = {"vit": {"patch_size": 8, "dim": 96, "num_layers": 4, "num_heads": 4}}
SMALL_TRANSFORMER = {"transformer": {"dim": 96, "num_layers": 2, "num_heads": 4}}


def image_towers(cnn: dict, dim: int, vit: dict | None = None) -> dict:
    """``{"cnn", "vit", "applications"}`` tower arguments: ``cnn`` as given, the
    MobileNetV3Small backbone projected to ``dim``, and ``vit`` (default: ``TINY_VIT`` at ``dim``)."""
    return {
        "cnn": dict(cnn),
        "vit": dict(vit) if vit is not None else {**TINY_VIT, "dim": dim},
        "applications": {"backbone": "MobileNetV3Small", "dim": dim},
    }


DEFAULT_IMAGE = image_towers({"filters": (32, 64, 128), "dim": 128}, 128, DEFAULT_VIT)
