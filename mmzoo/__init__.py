"""mmzoo: a Keras 3 / TensorFlow model zoo for multimodal (image + text) models.

    import mmzoo
    mmzoo.list_models()
    model = mmzoo.build("gated_classifier", preset="tiny", num_classes=3)
    mmzoo.export_saved_model(model, "saved_models/gated_classifier")
"""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mmzoo import registry as _registry  # noqa: E402
from mmzoo.registry import build, get_entry, list_models, register_model  # noqa: E402
from mmzoo.version import __version__  # noqa: E402


def _load_zoo():
    """Import the zoo's entries and the presets datasets register (on first lookup)."""
    import mmzoo.models  # noqa: F401  (registers every entry)
    from mmzoo.datasets import shapes

    shapes.register_presets()


_registry.set_entry_loader(_load_zoo)


def export_saved_model(model, base_dir, version=None, **kwargs):
    """Export ``model`` as a TF Serving SavedModel under ``base_dir/<version>/``.

    See ``mmzoo.export.export_saved_model``; returns the version directory.
    """
    from mmzoo.export import export_saved_model as _export

    return _export(model, base_dir, version=version, **kwargs)


def load_model(path, safe_mode=True, **kwargs):
    """Load a ``.keras`` file written by mmzoo (``safe_mode=True`` by default).

    Registers the zoo's classes first, which a bare
    ``keras.saving.load_model`` needs (``import mmzoo.models`` does the same).
    """
    import keras

    import mmzoo.models  # noqa: F401

    return keras.saving.load_model(path, safe_mode=safe_mode, **kwargs)


__all__ = ["__version__", "build", "export_saved_model", "get_entry", "list_models", "load_model", "register_model"]
