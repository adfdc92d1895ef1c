"""The zoo registry, in the timm manner.

Each zoo entry is a small builder function registered under a name, with
named presets (hyperparameter sets). ``build(name, preset=..., **overrides)``
merges the preset with the overrides and calls the builder::

    import mmzoo
    mmzoo.list_models()
    model = mmzoo.build("gated_classifier", preset="tiny")
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

_REGISTRY: dict[str, "ModelEntry"] = {}
_ENTRIES_IMPORTED = False


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered zoo entry."""

    name: str
    builder: Callable[..., Any]
    description: str
    task: str
    presets: dict[str, dict[str, Any]]
    default_preset: str = "default"

    def preset_kwargs(self, preset: str | None) -> dict[str, Any]:
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise ValueError(
                f"Unknown preset for model '{self.name}'. Available presets: "
                f"{sorted(self.presets)}. Received: preset={preset!r}"
            )
        return dict(self.presets[preset])


def register_model(
    name: str,
    *,
    description: str,
    task: str,
    presets: dict[str, dict[str, Any]] | None = None,
    default_preset: str = "default",
):
    """Decorator registering a builder function as zoo entry ``name``.

    Every entry must have a ``tiny`` preset (tests and notebooks use it) and
    the ``default_preset``.
    """
    presets = {"default": {}, **(presets or {})}
    if "tiny" not in presets:
        raise ValueError(f"Zoo entry '{name}' needs a 'tiny' preset. Received: {sorted(presets)}")
    if task not in ("classification", "matching", "captioning"):
        raise ValueError(
            "task must be one of 'classification', 'matching', 'captioning'. "
            f"Received: task={task!r}"
        )

    def decorator(fn):
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"A zoo entry named '{name}' is already registered.")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=fn,
            description=description,
            task=task,
            presets=presets,
            default_preset=default_preset,
        )
        return fn

    return decorator


def _ensure_entries():
    global _ENTRIES_IMPORTED
    if not _ENTRIES_IMPORTED:
        _ENTRIES_IMPORTED = True
        import mmzoo.models  # noqa: F401  (registers every entry)


def list_models() -> list[str]:
    """Names of the registered zoo entries, sorted."""
    _ensure_entries()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a clear error for unknown names."""
    _ensure_entries()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown model name.{hint} Available: {sorted(_REGISTRY)}. "
            f"Received: name={name!r}"
        )
    return _REGISTRY[name]


def build(name: str, preset: str | None = None, **overrides):
    """Build zoo entry ``name`` at ``preset`` with keyword ``overrides``.

    Returns a ``keras.Model`` ready to ``compile`` and ``fit``.
    """
    entry = get_entry(name)
    kwargs = entry.preset_kwargs(preset)
    kwargs.update(overrides)
    return entry.builder(**kwargs)
