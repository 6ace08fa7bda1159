"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, *Linear Mode Connectivity
and the Lottery Ticket Hypothesis*): from one starting point, two copies trained with
different data orders end in the same basin when the error along the straight line
between them does not rise above that of its ends.

The core holds the measurement, written once: ``trained_pair`` trains two copies with the
two data orders, ``leaf_path`` is the line between their leaves (floating ones
interpolated by ``interpolate``, the others required equal), and ``linear_path``
evaluates along it and returns the error barrier. The adapters' ``instability`` functions
(``lotto_backends.torch``, ``lotto_backends.jax`` and its ``pytree``) supply the copy,
the leaves and how to read a model back from them; ``train`` and ``evaluate`` are the
user's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import Array

__all__ = ["Instability", "check_data_orders", "interpolate", "leaf_path", "linear_path", "trained_pair"]


@dataclass(frozen=True)
class Instability:
    """What ``evaluate`` gave along the linear path from ``a`` (``alpha`` 0) to ``b``
    (``alpha`` 1): ``values[i]`` at ``alphas[i]``."""

    alphas: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def barrier(self) -> float:
        """The error barrier: the largest value along the path minus the mean of the two
        ends' values (0 for two equal ends; near 0 for linearly connected ones)."""
        return max(self.values) - (self.values[0] + self.values[-1]) / 2

    def to_dict(self) -> dict[str, object]:
        return {"barrier": self.barrier, "alphas": list(self.alphas), "values": list(self.values)}


def check_data_orders(data_orders: object) -> tuple[Any, Any]:
    """The two data orders of an instability analysis, one per copy.

    Raises
    ------
    TypeError
        If ``data_orders`` is not a sequence of two values.
    """
    if not isinstance(data_orders, Sequence) or isinstance(data_orders, str) or len(data_orders) != 2:
        raise TypeError(f"data_orders must be two values, one per copy, got {data_orders!r}")
    return data_orders[0], data_orders[1]


def trained_pair(
    start: Any, copy: Callable[[Any], Any], train: Callable[[Any, Any], None], data_orders: object
) -> tuple[Any, Any]:
    """Two copies of ``start`` (``copy(start)``), each trained in place by
    ``train(copy, order)`` with one of the two ``data_orders``.

    Raises
    ------
    TypeError
        If ``data_orders`` is not a sequence of two values.
    """
    orders = check_data_orders(data_orders)
    pair = copy(start), copy(start)
    for model, order in zip(pair, orders, strict=True):
        train(model, order)
    return pair


def leaf_path(
    names: Sequence[str],
    a: Sequence[Array],
    b: Sequence[Array],
    *,
    floating: Callable[[Array], bool],
    same: Callable[[Array, Array], bool],
) -> Callable[[float], list[Array]]:
    """The leaves at ``alpha`` on the line from leaves ``a`` to leaves ``b``: the
    ``floating`` ones interpolated, the others (masks, counters, RNG keys) ``a``'s, which
    must be the ``same`` as ``b``'s.

    Raises
    ------
    ValueError
        Naming a leaf that is not floating and differs between the two.
    """
    flags = [floating(x) for x in a]
    for name, x, y, flag in zip(names, a, b, flags, strict=True):
        if not flag and not same(x, y):
            raise ValueError(
                f"{name} is not floating and differs between the two trained copies: it cannot be interpolated"
            )

    def at(alpha: float) -> list[Array]:
        return [interpolate(x, y, alpha) if flag else x for x, y, flag in zip(a, b, flags, strict=True)]

    return at


def interpolate(a: Array, b: Array, alpha: float) -> Array:
    """``a + alpha * (b - a)``: ``a`` itself at ``alpha`` 0 and ``b`` at 1, and exactly
    ``a`` wherever ``a`` and ``b`` are equal (pruned weights stay 0)."""
    if alpha == 0:
        return a
    if alpha == 1:
        return b
    return a + alpha * (b - a)


def linear_path(evaluate_at: Callable[[float], float], points: int = 30) -> Instability:
    """``evaluate_at(alpha)`` at ``points`` evenly spaced ``alpha`` from 0 to 1, both
    included (Frankle et al. use 30).

    Raises
    ------
    TypeError, ValueError
        If ``points`` is not an int of at least 2, or ``evaluate_at`` returns no real
        number.

    Examples
    --------
    >>> path = linear_path(lambda alpha: 1 - (2 * alpha - 1) ** 2, points=3)  # a bump in the middle
    >>> path.values, path.barrier
    ((0.0, 1.0, 0.0), 1.0)
    """
    if isinstance(points, bool) or not isinstance(points, int):
        raise TypeError(f"points must be an int, got {type(points).__name__} {points!r}")
    if points < 2:
        raise ValueError(f"points must be at least 2 (both ends of the path), got {points}")
    alphas = tuple(i / (points - 1) for i in range(points))
    values = []
    for alpha in alphas:
        value = evaluate_at(alpha)
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            raise TypeError(f"evaluate must return a real number, got {type(value).__name__} {value!r}") from None
    return Instability(alphas, tuple(values))
