"""What mmzoo layers share in ``get_config`` (private to ``mmzoo.layers``)."""

from __future__ import annotations

import keras


def _serialized(name: str, value):
    """``value`` as a config holds it: ``activation`` and ``*initializer`` attributes are Keras objects."""
    if name == "activation":
        return keras.activations.serialize(value)
    if name.endswith("initializer"):
        return keras.initializers.serialize(value)
    return value


def with_attributes(config: dict, layer, *names: str) -> dict:
    """``config`` (the base layer's) updated with ``layer``'s attributes ``names``, in that order.

    Each ``names`` entry is both the ``__init__`` argument and the attribute
    holding it. ``activation`` is written with ``keras.activations.serialize``
    and every ``*initializer`` with ``keras.initializers.serialize`` (the
    layers store what ``keras.activations.get`` / ``keras.initializers.get``
    made of the argument); other values are written as they are.
    """
    config.update({name: _serialized(name, getattr(layer, name)) for name in names})
    return config
