"""Tests for mmzoo/layers/_checks.py: positive-int and dropout-rate argument checks name the first bad argument."""

import pytest

from mmzoo.layers._checks import check_positive_ints, check_rates


def test_positive_ints_accepts_ints_above_zero_and_bool_as_isinstance_sees_it():
    check_positive_ints(units=1, num_heads=8, flag=True)  # no error


@pytest.mark.parametrize("bad", [0, -3, 2.0, "4", None, False])
def test_positive_ints_refuses_with_name_and_value(bad):
    with pytest.raises(ValueError, match=rf"^width must be a positive int\. Received: width={bad!r}$"):
        check_positive_ints(units=4, width=bad)


def test_positive_ints_names_the_first_bad_argument():
    with pytest.raises(ValueError, match="Received: a=0$"):
        check_positive_ints(a=0, b=-1)


def test_rates_accepts_half_open_unit_interval():
    check_rates(dropout=0.0, attention_dropout=0.999, int_zero=0)  # no error


@pytest.mark.parametrize("bad", [1.0, 1, -0.1, 2.5])
def test_rates_refuses_outside_half_open_unit_interval(bad):
    with pytest.raises(ValueError, match=rf"^rate must be in \[0, 1\)\. Received: rate={bad!r}$"):
        check_rates(ok=0.5, rate=bad)


def test_rates_names_the_first_bad_argument():
    with pytest.raises(ValueError, match=r"Received: first=1\.0$"):
        check_rates(first=1.0, second=-1.0)
