"""The zoo registry, in the timm manner.

Each zoo entry is a small builder function registered under a name, with
named presets (hyperparameter sets). ``build(name, preset=..., **overrides)``
merges the preset with the overrides and calls the builder::

    import mmzoo
    mmzoo.list_models()
    model = mmzoo.build("gated_classifier", preset="tiny", num_classes=3)
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

_REGISTRY: dict[str, "ModelEntry"] = {}
# The registry imports nothing from mmzoo: the package (``mmzoo/__init__``)
# installs the function that imports the zoo's entries, called on first use.
_ENTRY_LOADER: Callable[[], None] | None = None
_ENTRIES_LOADED = False


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered zoo entry."""

    name: str
    builder: Callable[..., Any]
    description: str
    task: str
    presets: dict[str, dict[str, Any]]
    default_preset: str = "default"
    model_class: type | None = None
    """The class the builder returns (what ``mmzoo.tasks`` reads the data facts from before building)."""

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
    model_class: type | None = None,
):
    """Decorator registering a builder function as zoo entry ``name``.

    Every entry must have a ``tiny`` preset (tests and notebooks use it) and
    the ``default_preset``. ``model_class``: the class the builder returns,
    when known (the zoo's entries give it; ``build_for_data`` reads from it
    what the model learns from before building it).
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
            model_class=model_class,
        )
        return fn

    return decorator


def register_model_class(
    name: str,
    model_class: type,
    *,
    description: str,
    presets: dict[str, dict[str, Any]] | None = None,
    **fixed: Any,
) -> Callable[..., Any]:
    """Register ``model_class`` as zoo entry ``name`` (of the class's ``task``) and return its
    builder, ``name(**kwargs) -> model_class(**fixed, **kwargs)``: the one-line entry most zoo
    models are (``fixed`` binds arguments, e.g. a classifier's ``fusion``)."""

    def builder(**kwargs):
        return model_class(**fixed, **kwargs)

    classes = ", num_classes=3" if model_class.task == "classification" else ""
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"{description}\n\n    Builds a ``{model_class.__name__}`` (see its docstring for the arguments).\n\n"
        f"    >>> import mmzoo\n    >>> model = mmzoo.build({name!r}, preset='tiny'{classes})\n"
    )
    return register_model(name, description=description, task=model_class.task, presets=presets,
                          model_class=model_class)(builder)


def register_preset(name: str, preset: str, kwargs: dict[str, Any]) -> None:
    """Add preset ``preset`` to the registered entry ``name`` (a dataset's recipe).

    Datasets register the recipes tuned on them this way (``mmzoo.datasets``),
    so the models themselves know nothing about any dataset.
    """
    if name not in _REGISTRY:
        raise ValueError(f"register_preset: no zoo entry named {name!r}. Registered: {sorted(_REGISTRY)}")
    presets = _REGISTRY[name].presets
    if preset in presets and presets[preset] != kwargs:
        raise ValueError(f"Zoo entry '{name}' already has a different preset {preset!r}.")
    presets[preset] = dict(kwargs)


def set_entry_loader(loader: Callable[[], None]) -> None:
    """Install the function that imports (and so registers) the zoo's entries.

    ``mmzoo/__init__`` installs one that imports ``mmzoo.models`` and
    ``mmzoo.datasets``; it runs once, on the first lookup, so importing
    ``mmzoo`` stays cheap (the CLI's ``--help`` and the serving clients never
    load TensorFlow).
    """
    global _ENTRY_LOADER
    _ENTRY_LOADER = loader


def _ensure_entries():
    global _ENTRIES_LOADED
    if not _ENTRIES_LOADED and _ENTRY_LOADER is not None:
        _ENTRIES_LOADED = True
        _ENTRY_LOADER()


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
