"""The re-initialization control for NNX models: a ticket's masks on a fresh draw of the
model (Frankle & Carbin 2019: the ticket's structure with other initial values).

An NNX module does not keep its initializers after construction, so the fresh draw is
the model's own constructor run again with new ``nnx.Rngs``: ``build(rngs)``. The
shuffled-mask and random-pruning controls are the core's (``lotto_core.shuffle_masks``,
``lotto_core.random_prune_like``) and work on this adapter's ``Pruner`` as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import lotto_core
from lotto_core.strategy import Random

from ._tree import is_concrete
from .layers import Mask

__all__ = ["reinitialize"]

_DRAWN = (nnx.Param, nnx.BatchStat)
"""The variables a fresh draw replaces: parameters and the statistics they start with."""


def _variables(model: nnx.Module) -> dict[tuple[Any, ...], nnx.Variable[Any]]:
    return {path: node for path, node in nnx.iter_graph(model) if isinstance(node, _DRAWN)}


def reinitialize(
    model: nnx.Module,
    build: Callable[[nnx.Rngs], nnx.Module],
    pruner: lotto_core.Pruner | None = None,
    *,
    seed: int,
) -> None:
    """Replace every parameter (and BatchNorm statistic) of ``model`` by that of
    ``build(nnx.Rngs(seed))``, a fresh model made the way ``model`` was, keeping every
    mask: pruned weights stay exactly 0. With ``pruner``, the new values become its
    rewind point, so that ``rewind()`` returns to them. A value keeps the sharding of
    the one it replaces.

    ``build`` may return the plain model or its ``make_prunable`` twin: only the
    parameters and statistics are compared, by path, shape and dtype.

    Raises
    ------
    TypeError, ValueError
        If ``seed`` is not a non-negative int, ``build`` does not return an NNX module,
        or its parameters differ from ``model``'s (named); nothing changes.

    Examples
    --------
    >>> from flax import nnx
    >>> from lotto_backends.jax import MagnitudePruneGroup, Pruner, make_prunable
    >>> build = lambda rngs: make_prunable(nnx.Sequential(nnx.Linear(8, 8, rngs=rngs), nnx.relu))
    >>> model = build(nnx.Rngs(0))
    >>> pruner = Pruner([MagnitudePruneGroup([model.layers[0]], 0.5)], model=model)
    >>> pruner.prune_and_rewind()
    >>> reinitialize(model, build, pruner, seed=1)
    >>> int((model.layers[0].kernel[...] != 0).sum()), int(model.layers[0].kernel_mask[...].sum())
    (32, 32)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
    Random(seed)  # raises naming seed unless a non-negative int
    if not callable(build):
        raise TypeError(f"build must be a function of nnx.Rngs that returns a model, got {type(build).__name__}")
    fresh = build(nnx.Rngs(seed))
    if not isinstance(fresh, nnx.Module):
        raise TypeError(f"build must return an nnx.Module, got {type(fresh).__name__}")
    old, new = _variables(model), _variables(fresh)
    if old.keys() != new.keys():
        only = sorted(".".join(map(str, p)) for p in old.keys() ^ new.keys())
        raise ValueError(f"build makes a model with other parameters than model's: {only} in one of them only")
    for path, variable in old.items():
        a, b = variable.get_value(), new[path].get_value()
        if a.shape != b.shape or a.dtype != b.dtype:
            name = ".".join(map(str, path))
            raise ValueError(f"build makes {name} of {b.dtype}{list(b.shape)}, model has {a.dtype}{list(a.shape)}")
    masks = {
        (*path[:-1], str(path[-1]).removesuffix("_mask")): node.get_value()
        for path, node in nnx.iter_graph(model)
        if isinstance(node, Mask)
    }
    values = {}  # every new value first: a failure here changes nothing
    for path, variable in old.items():
        value = new[path].get_value()
        current = variable.get_value()
        if is_concrete(current) and current.sharding != value.sharding:
            value = jax.device_put(value, current.sharding)
        if path in masks:
            value = jnp.where(masks[path], value, jnp.zeros((), value.dtype))
        values[path] = value
    before = {path: variable.get_value() for path, variable in old.items()}  # immutable: no copies
    try:
        for path, variable in old.items():
            variable.set_value(values[path])
        if pruner is not None:
            pruner.set_rewind_point()
    except BaseException:
        for path, variable in old.items():
            variable.set_value(before[path])
        raise
