"""The argument checks shared by the tower builders (mmzoo/towers/_common.py)."""

import pytest

from mmzoo.towers._common import check_choice, check_positive_int, check_rate, normalize_image_size


def test_normalize_image_size():
    assert normalize_image_size(5) == (5, 5)
    assert normalize_image_size([3, "4"]) == (3, 4)
    assert normalize_image_size((32, 48), minimum=32) == (32, 48)


@pytest.mark.parametrize("bad", [0, (4,), (4, 4, 3), None, "ab", (2, "x")])
def test_normalize_image_size_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match=r"image_size must be an int or \(height, width\), each at least 1"):
        normalize_image_size(bad)


def test_normalize_image_size_minimum():
    with pytest.raises(ValueError, match=r"each at least 32. Received: image_size=\(32, 31\)"):
        normalize_image_size((32, 31), minimum=32)


def test_check_positive_int():
    check_positive_int("units", 1)
    check_positive_int("units", None, allow_none=True)
    for bad in (0, -3, 2.0, True, "4", None):
        with pytest.raises(ValueError, match=f"units must be a positive int. Received: units={bad!r}"):
            check_positive_int("units", bad)


def test_check_choice():
    check_choice("pooling", "mean", ("mean", "max"))
    with pytest.raises(ValueError, match=r"pooling must be one of \('mean', 'max'\). Received: pooling='sum'"):
        check_choice("pooling", "sum", ["mean", "max"])


def test_check_rate():
    for ok in (0, 0.0, 0.5, 0.999):
        check_rate("dropout", ok)
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
            check_rate("dropout", bad)
