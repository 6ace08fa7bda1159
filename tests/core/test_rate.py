import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import prune_count
from lotto_core.rate import exact_rate, validate_rate


@pytest.mark.parametrize(
    ("p", "remaining", "expected"),
    [
        (0.07, 100, 7),  # the seed library computes 8 here
        (0.1, 40, 4),
        (0.1, 36, 4),  # ceil(3.6)
        (0.2, 1, 1),  # min(remaining, ceil(0.2)) prunes the last weight
        (0.0, 100, 0),
        (0.2, 0, 0),
        (0.3, 10, 3),  # 0.3 * 10 is 3.0000000000000004 in floats
        (Fraction(1, 3), 9, 3),
        (Decimal("0.15"), 20, 3),
    ],
)
def test_prune_count_is_exact(p, remaining, expected):
    assert prune_count(p, remaining) == expected


@given(st.integers(0, 999), st.integers(0, 10**9))
def test_prune_count_is_the_ceil_rule(thousandths, remaining):
    p = thousandths / 1000
    exact = Fraction(thousandths, 1000) * remaining
    assert prune_count(p, remaining) == min(remaining, math.ceil(exact))


def test_exact_rate_reads_the_decimal_the_user_wrote():
    assert exact_rate(0.07) == Fraction(7, 100)
    assert exact_rate(Fraction(2, 7)) == Fraction(2, 7)


@pytest.mark.parametrize("p", [1.0, 1, -0.1, 1.5, float("nan"), float("inf")])
def test_rate_outside_range_is_a_value_error(p):
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        validate_rate(p)


@pytest.mark.parametrize("p", ["0.2", None, True, [0.2], 0.2j])
def test_rate_of_wrong_type_is_a_type_error(p):
    with pytest.raises(TypeError, match="p must be a real number"):
        validate_rate(p)


@pytest.mark.parametrize("remaining", [-1, 2.0, True])
def test_remaining_must_be_a_count(remaining):
    with pytest.raises(ValueError, match="remaining"):
        prune_count(0.2, remaining)
