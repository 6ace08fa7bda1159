"""The error barrier along a linear path: known answers for a bump, a convex bowl and
two equal ends; the interpolation is exact where both ends agree, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import linear_path
from lotto_core.instability import interpolate, leaf_path, trained_pair

from .helpers import host


def test_a_bump_in_the_middle_is_the_barrier():
    path = linear_path(lambda alpha: 4 * alpha * (1 - alpha), points=5)
    assert path.alphas == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert path.values == (0.0, 0.75, 1.0, 0.75, 0.0)
    assert path.barrier == 1.0


def test_a_convex_path_rises_only_to_its_higher_end():
    path = linear_path(lambda alpha: (2 - 2 * alpha) ** 2, points=11)  # from 4 down to 0
    assert path.barrier == pytest.approx(4 - 2)


@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(2, 40))
def test_equal_ends_and_a_flat_path_give_exactly_zero(value, points):
    assert linear_path(lambda alpha: value, points=points).barrier == 0.0


def test_interpolation_is_exact_where_the_ends_agree(xp, device):
    a = xp.asarray([0.0, 0.1, 3.0, -7.25], device=device)
    b = xp.asarray([0.0, 0.1, 5.0, 1.75], device=device)
    for alpha in (0.0, 0.3, 0.5, 1.0 / 3.0, 1.0):
        got = host(interpolate(a, b, alpha))
        assert got[0] == 0.0
        assert got[1] == host(a)[1]  # not 0.7 * 0.1 + 0.3 * 0.1
    np.testing.assert_array_equal(host(interpolate(a, b, 1.0)), host(b))
    np.testing.assert_allclose(host(interpolate(a, b, 0.5)), [0.0, 0.1, 4.0, -2.75])


@pytest.mark.parametrize(("points", "error"), [(1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_points_are_named(points, error):
    with pytest.raises(error, match="points"):
        linear_path(lambda alpha: 0.0, points=points)


def test_an_evaluation_that_is_not_a_number_is_named():
    with pytest.raises(TypeError, match="evaluate must return a real number, got str"):
        linear_path(lambda alpha: "low", points=2)


def test_a_leaf_path_interpolates_floating_leaves_and_keeps_the_others(xp, device):
    a = [xp.asarray([1.0, 2.0], device=device), xp.asarray([True, False], device=device)]
    b = [xp.asarray([3.0, 2.0], device=device), xp.asarray([True, False], device=device)]
    floating = lambda x: xp.isdtype(x.dtype, "real floating")  # noqa: E731
    same = lambda x, y: bool(xp.all(x == y))  # noqa: E731
    at = leaf_path(["w", "mask"], a, b, floating=floating, same=same)
    middle = at(0.5)
    np.testing.assert_array_equal(host(middle[0]), [2.0, 2.0])
    assert middle[1] is a[1]
    b[1] = xp.asarray([False, False], device=device)
    with pytest.raises(ValueError, match="mask is not floating and differs"):
        leaf_path(["w", "mask"], a, b, floating=floating, same=same)


def test_a_trained_pair_gives_each_copy_its_data_order():
    first, second = trained_pair([0], list, lambda copy, order: copy.append(order), ("a", "b"))
    assert (first, second) == ([0, "a"], [0, "b"])
    with pytest.raises(TypeError, match="data_orders must be two values"):
        trained_pair([0], list, lambda copy, order: None, "ab")
