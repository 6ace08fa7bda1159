"""Instability analysis of an NNX model or a parameter pytree
(``lotto_core.instability``): two copies trained by the user's ``train`` with different
data orders, evaluated along the linear path between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lotto_core.instability import Instability, check_data_orders, leaf_path, linear_path, trained_pair

__all__ = ["instability", "pytree_instability"]


def _same(a: jax.Array, b: jax.Array) -> bool:
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    return bool(jnp.array_equal(a, b))


def _floating(x: jax.Array) -> bool:
    return bool(jnp.issubdtype(x.dtype, jnp.floating))


def _path(a: Any, b: Any) -> Callable[[float], Any]:
    """The pytree at ``alpha`` on the line from ``a`` to ``b`` (``leaf_path``)."""
    flat_a, treedef = jax.tree_util.tree_flatten_with_path(a)
    flat_b = treedef.flatten_up_to(b)  # type: ignore[attr-defined]
    names = [jax.tree_util.keystr(path) for path, _ in flat_a]
    at = leaf_path(names, [x for _, x in flat_a], flat_b, floating=_floating, same=_same)
    return lambda alpha: treedef.unflatten(at(alpha))  # type: ignore[attr-defined]


def instability(
    model: nnx.Module,
    train: Callable[[nnx.Module, Any], None],
    evaluate: Callable[[nnx.Module], float],
    *,
    points: int = 30,
    data_orders: Sequence[Any] = (0, 1),
) -> Instability:
    """Train two copies (``nnx.clone``) of ``model`` from where it is now,
    ``train(copy, data_orders[i])`` each, then ``evaluate`` at ``points`` evenly spaced
    points of the straight line between their states (parameters and BatchNorm
    statistics); ``model`` is left as it was. Two copies trained alike give a barrier of
    exactly 0.

    Raises
    ------
    TypeError, ValueError
        If ``model`` is not an NNX module, ``data_orders`` not two values, ``points`` not
        an int of at least 2, ``evaluate`` returns no number, or a non-floating variable
        (a mask) differs between the trained copies.

    Examples
    --------
    >>> from flax import nnx
    >>> model = nnx.Linear(2, 1, use_bias=False, rngs=nnx.Rngs(0))
    >>> def train(copy, order):
    ...     copy.kernel.set_value(jnp.full((2, 1), 1.0 if order == 0 else -1.0))
    >>> result = instability(model, train, lambda m: 1 - float((m.kernel[...] ** 2).sum()), points=3)
    >>> result.values, result.barrier
    ((-1.0, 1.0, -1.0), 2.0)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
    first, second = trained_pair(model, nnx.clone, train, data_orders)
    graphdef, state = nnx.split(first)
    at = _path(state, nnx.state(second))
    return linear_path(lambda alpha: evaluate(nnx.merge(graphdef, at(alpha))), points)


def pytree_instability(
    params: Any,
    train: Callable[[Any, Any], Any],
    evaluate: Callable[[Any], float],
    *,
    points: int = 30,
    data_orders: Sequence[Any] = (0, 1),
) -> Instability:
    """``instability`` for a parameter pytree: ``train(params, data_orders[i])`` returns
    the trained parameters, ``evaluate(params)`` a number."""
    first, second = check_data_orders(data_orders)
    at = _path(train(params, first), train(params, second))
    return linear_path(lambda alpha: evaluate(at(alpha)), points)
