"""Helpers shared by the tower builders (private)."""

from __future__ import annotations


def normalize_image_size(image_size, minimum: int = 1) -> tuple[int, int]:
    """``int`` or ``(height, width)`` -> ``(height, width)``, validated."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(v) for v in image_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < minimum:
        raise ValueError(
            f"image_size must be an int or (height, width), each at least {minimum}. "
            f"Received: image_size={image_size!r}"
        )
    return size


def check_positive_int(arg: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{arg} must be a positive int. Received: {arg}={value!r}")


def check_choice(arg: str, value, choices):
    if value not in choices:
        raise ValueError(f"{arg} must be one of {tuple(choices)}. Received: {arg}={value!r}")


def check_rate(arg: str, value):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{arg} must be in [0, 1). Received: {arg}={value!r}")
