"""The controls of a lottery-ticket experiment as functions over a pruner's masks.

A ticket is tested against networks that keep exactly as many weights in every layer
but choose them otherwise: its masks shuffled within each parameter (the layer-wise
random control of Frankle et al. 2021, *Pruning Neural Networks at Initialization: Why
Are We Missing the Mark?*), or a network pruned at random to the ticket's per-parameter
counts (Frankle & Carbin 2019's random-pruning control). Both draw uniform random scores
(``RandomScores``, the same on every namespace for the same seed) and select with the
core's exact engine (``plan_cuts``), so the counts match the ticket's to the weight. The
third control, re-initialization, draws from the model's own initializers and lives in
the adapters (``lotto_backends.torch.reinitialize``, ``lotto_backends.jax.reinitialize``,
``lotto_backends.jax.pytree.reinitialize``).
"""

from __future__ import annotations

import math
from typing import Any

from ._array_api import Array, array_namespace
from .backend import count_kept, plan_cuts
from .overlap import named_masks
from .protocol import ParameterHandle
from .pruner import Pruner, masked_parameters
from .scores import RandomScores
from .strategy import Random
from .undo import Undo, write_masks

__all__ = ["random_prune_like", "shuffle_masks"]

_SHUFFLE, _RANDOM_PRUNE = 1, 2
"""The purpose in each control's random stream ``(seed, purpose, parameter index)``."""


def _check(pruner: object, seed: object) -> Pruner:
    if not isinstance(pruner, Pruner):
        raise TypeError(f"pruner must be a Pruner, got {type(pruner).__name__}")
    Random(seed)  # type: ignore[arg-type]  # raises naming seed unless a non-negative int
    return pruner


def _random_mask(handle: ParameterHandle, mask: Array, pruned: int, key: tuple[int, ...]) -> Array:
    """``mask`` with ``pruned`` of its kept entries dropped, chosen by uniform random
    scores drawn from ``key`` through the exact engine; ``mask`` itself if none is."""

    def count(kept: int, size: int) -> int:
        return pruned

    (cut,) = plan_cuts([RandomScores(handle.get_value(), key)], [mask], count)
    if not cut.pruned:
        return mask
    return cut.mask if cut.mask is not None else array_namespace(mask).zeros_like(mask)


def _write(writes: list[tuple[ParameterHandle, Array, None]]) -> None:
    """Store every new mask, all or nothing, zeroing what each prunes."""
    with Undo() as undo:
        write_masks(undo, writes)


def shuffle_masks(pruner: Pruner, *, seed: int) -> None:
    """Replace every mask of the pruner's groups by a uniformly random one that keeps the
    same number of weights of the same parameter (the layer-wise random control).

    Weights that the new mask keeps but the old one pruned read 0 until the next
    ``pruner.rewind()``, which is how the control is trained: shuffle, rewind, train.
    A parameter that several layers share is shuffled once.

    Raises
    ------
    TypeError, ValueError
        If ``pruner`` is not a ``Pruner`` or ``seed`` not a non-negative int; nothing
        changes.

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer, MagnitudePruneGroup
    >>> layer = ArrayLayer({"w": np.arange(1.0, 101.0)})
    >>> pruner = Pruner([MagnitudePruneGroup([layer], 0.7)])
    >>> pruner.prune()
    >>> shuffle_masks(pruner, seed=0)
    >>> int(layer.params["w"].get_mask().sum()), bool(layer.params["w"].get_mask()[:70].any())
    (30, True)
    """
    _check(pruner, seed)
    writes = []
    for i, (_, handle, mask) in enumerate(masked_parameters(pruner)):
        size = math.prod(mask.shape)
        pruned = size - count_kept(mask)
        everything = array_namespace(mask).ones_like(mask)
        writes.append((handle, _random_mask(handle, everything, pruned, (seed, _SHUFFLE, i)), None))
    _write(writes)


def random_prune_like(pruner: Pruner, like: Any, *, seed: int) -> None:
    """Prune the pruner's groups at random, parameter by parameter, down to the number of
    weights that ``like`` keeps in the same parameter (the random-pruning control).

    ``like`` is another ``Pruner`` (over the same architecture), its ``state_dict()``, or
    a mapping or sequence of boolean masks; its masks are matched to the pruner's in
    order (``lotto_core.pruner.masked_parameters``). Only weights kept now are pruned,
    as in any round; the groups' round counters do not move.

    Raises
    ------
    TypeError, ValueError
        If ``like``'s masks do not match the pruner's in number and shape, or keep more
        weights of a parameter than the pruner does (pruning cannot revive); nothing
        changes.

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer, MagnitudePruneGroup
    >>> pruner = Pruner([MagnitudePruneGroup([ArrayLayer({"w": np.ones(10)})], 0.5)])
    >>> random_prune_like(pruner, [np.arange(10) >= 6], seed=0)
    >>> int(pruner.groups[0].layers[0].params["w"].get_mask().sum())
    4
    """
    _check(pruner, seed)
    params = masked_parameters(pruner)
    targets = list(named_masks(like, "like").items())
    if len(targets) != len(params):
        raise ValueError(f"like holds {len(targets)} masks, the pruner's groups {len(params)}")
    counts = []
    for (name, _, mask), (their_name, theirs) in zip(params, targets, strict=True):
        if tuple(theirs.shape) != tuple(mask.shape):
            raise ValueError(
                f"like's mask {their_name} has shape {tuple(theirs.shape)}, the pruner's {name} {tuple(mask.shape)}"
            )
        want, kept = count_kept(theirs), count_kept(mask)
        if want > kept:
            raise ValueError(
                f"like keeps {want:,} weights of {their_name} where the pruner keeps {kept:,} of {name}: "
                "pruning cannot revive weights"
            )
        counts.append(kept - want)
    writes = []
    for i, ((_, handle, mask), pruned) in enumerate(zip(params, counts, strict=True)):
        new = _random_mask(handle, mask, pruned, (seed, _RANDOM_PRUNE, i))
        if new is not mask:
            writes.append((handle, new, None))
    _write(writes)
