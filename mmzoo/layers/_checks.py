"""Argument checks the ``__init__`` of several mmzoo layers share (private to ``mmzoo.layers``)."""

from __future__ import annotations


def check_positive_ints(**values) -> None:
    """Raises ``ValueError`` naming the first argument that is not an ``int`` above 0.

    As ``isinstance`` sees it: a ``bool`` counts as an ``int`` here.
    """
    for arg, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{arg} must be a positive int. Received: {arg}={value!r}")


def check_rates(**values) -> None:
    """Raises ``ValueError`` naming the first argument outside ``[0, 1)`` (a dropout rate)."""
    for arg, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{arg} must be in [0, 1). Received: {arg}={value!r}")
