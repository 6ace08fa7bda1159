"""Prune groups: a set of layers and the strategy that picks what each round removes.

A group is layers + a score + a scope + a structure + an amount
(``lotto_core.strategy``): it prunes its lowest-scored kept weights (or channels,
blocks), over the whole group or per part of it, as many as the amount says.
``MagnitudePruneGroup``, ``LayerwiseMagnitudePruneGroup`` and ``RandomPruneGroup`` name
the compositions of the lottery-ticket experiments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import Array, array_namespace, device
from .backend import Write, _plan_cuts, count_kept
from .protocol import ParameterHandle, PrunableLayer
from .scores import ArrayScores, ScoreSource
from .search import NOTHING, Cut
from .strategy import (
    NM,
    Amount,
    Global,
    Gradual,
    Grouped,
    Magnitude,
    PerLayer,
    Random,
    Rate,
    Scope,
    Score,
    Structure,
    Where,
    as_amount,
)
from .undo import Undo, write_masks

__all__ = [
    "LayerwiseMagnitudePruneGroup",
    "MagnitudePruneGroup",
    "PruneGroup",
    "RandomPruneGroup",
    "prunable_handles",
]


def prunable_handles(layer: PrunableLayer) -> list[tuple[str, ParameterHandle, Array]]:
    """The handles of ``layer`` that carry a mask, with that mask, in the layer's order."""
    out = []
    for name, handle in layer.parameter_handles().items():
        mask = handle.get_mask()
        if mask is not None:
            out.append((name, handle, mask))
    return out


@dataclass(frozen=True)
class _Target:
    """One prunable parameter of a group, as read when a round is planned."""

    layer: int
    name: str
    handle: ParameterHandle
    weight: Array
    mask: Array


@dataclass(frozen=True)
class _Step:
    """One parameter's part of a planned round. It holds no arrays, so a plan keeps no
    old weights or masks alive while the round is written."""

    index: int
    handle: ParameterHandle
    cut: Cut


def _check_layers(layers: object) -> tuple[PrunableLayer, ...]:
    if not isinstance(layers, Sequence) or isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of prunable layers, got {type(layers).__name__}")
    if len(layers) == 0:
        raise ValueError("layers must not be empty: a prune group needs at least one layer")
    seen: dict[int, int] = {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, PrunableLayer):
            raise TypeError(
                f"layers[{i}] is a {type(layer).__name__}, which is not prunable "
                "(it needs a parameter_handles() method, as the Prunable* layers have)"
            )
        if not prunable_handles(layer):
            raise ValueError(f"layers[{i}] ({type(layer).__name__}) has no prunable parameter")
        if id(layer) in seen:
            raise ValueError(f"layers[{i}] is the same layer as layers[{seen[id(layer)]}]")
        seen[id(layer)] = i
    return tuple(layers)


class PruneGroup:
    """Layers pruned together: a score, a scope and an amount (``lotto_core.strategy``).

    Parameters
    ----------
    layers
        The prunable layers of the group, in order: ties in score are broken by this
        order first, then by flattened (C-order) index.
    amount
        How many weights a round prunes: a ``Rate``, ``Sparsity`` or ``Gradual``; a
        number ``p`` stands for ``Rate(p)``, the fraction of the remaining weights.
        ``None`` with an ``NM`` structure, which fixes the sparsity.
    score
        What ranks the weights (default ``Magnitude()``): the lowest go first.
    scope
        Over which weights one threshold is shared (default ``Global()``).
    structure
        What one unit of pruning is (default: single weights): ``Channels``,
        ``Blocks`` (scored by their norm, counted by the amount in units) or ``NM``.

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer
    >>> from lotto_core.strategy import ERK, Sparsity
    >>> layers = [ArrayLayer({"w": np.ones((100, 10))}), ArrayLayer({"w": np.ones((10, 10))})]
    >>> PruneGroup(layers, Sparsity(0.8), scope=ERK()).prune()
    >>> [int(layer.params["w"].mask.sum()) for layer in layers]  # densities 0.19 and 0.34: 220 of 1100 kept
    [186, 34]
    """

    def __init__(
        self,
        layers: Sequence[PrunableLayer],
        amount: Amount | float | None,
        *,
        score: Score | None = None,
        scope: Scope | None = None,
        structure: Structure | None = None,
    ) -> None:
        self.structure = None if structure is None else _check(structure, Structure, "structure")
        if isinstance(structure, NM) != (amount is None):
            raise ValueError(
                "amount must be None with an NM structure (N:M fixes the sparsity at 1 - n/m), and given otherwise"
            )
        self.amount = None if amount is None else as_amount(amount)
        self.score = Magnitude() if score is None else _check(score, Score, "score")
        self.scope = Global() if scope is None else _check(scope, Scope, "scope")
        self.layers = _check_layers(layers)
        self.rounds = 0

    @property
    def p(self) -> float:
        """The rate of a ``Rate`` amount."""
        if not isinstance(self.amount, Rate):
            raise AttributeError(f"{type(self).__name__} prunes by {self.amount!r}, not at a rate p")
        return self.amount.p

    def prune(self) -> None:
        """Prune one round of this group alone (a ``Pruner`` prunes all its groups)."""
        self._commit(self._plan(values=True))

    def step(self, step: int) -> bool:
        """Prune if a ``Gradual`` amount's schedule says so at training step ``step``
        (call it once per step); whether it pruned."""
        if not self.due(step):
            return False
        self._commit(self._plan(values=True, step=step))
        return True

    def due(self, step: int) -> bool:
        """Whether the group's schedule prunes at training step ``step``."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise TypeError(f"step must be a non-negative int, got {step!r}")
        if not isinstance(self.amount, Gradual):
            raise TypeError(f"step() drives a Gradual amount; this group prunes by {self.amount!r}: call prune()")
        return self.amount.due(step)

    def targets(self) -> list[_Target]:
        """The group's prunable parameters with their current weights and masks,
        checked to be boolean masks matching their weights."""
        out = []
        seen: set[int] = set()
        for i, layer in enumerate(self.layers):
            for name, handle, mask in prunable_handles(layer):
                if id(mask) in seen:  # a parameter shared by two layers is one weight, counted once
                    continue
                seen.add(id(mask))
                weight = handle.get_value()
                xp = array_namespace(weight, mask)
                where = f"layers[{i}].{name}"
                if mask.dtype != xp.bool:
                    raise TypeError(f"mask of {where} must be boolean, got {mask.dtype}")
                if tuple(mask.shape) != tuple(weight.shape):
                    raise ValueError(f"mask of {where} has shape {tuple(mask.shape)}, weight has {tuple(weight.shape)}")
                if not xp.isdtype(weight.dtype, "real floating"):
                    raise TypeError(f"weight {where} must have a real floating dtype, got {weight.dtype}")
                if str(device(weight)) == "meta":
                    raise ValueError(
                        f"weight {where} is on the meta device (no values to rank): load or materialize it first"
                    )
                out.append(_Target(i, name, handle, weight, mask))
        doubles = {t.weight.dtype == array_namespace(t.weight).float64 for t in out}
        if len(doubles) > 1:
            raise TypeError("the weights of one group must all be float64 or all narrower floats, not a mix")
        return out

    def _plan(self, *, values: bool = False, step: int | None = None) -> list[_Step]:
        """Decide this round's cuts for every parameter; nothing is written. ``values``:
        the round is written right after, so the passes may write new weights too."""
        targets = self.targets()
        sources = [
            self.score.source(t.weight, Where(self.layers[t.layer], t.name, j, self.rounds))
            for j, t in enumerate(targets)
        ]
        layers = [t.layer for t in targets]
        if isinstance(self.structure, NM):
            cuts = [
                _replaced(t.mask, self.structure.mask(s.full(), t.mask)) for t, s in zip(targets, sources, strict=True)
            ]
        elif isinstance(self.structure, Grouped):
            units = [self.structure.reduce(s.full(), t.mask) for t, s in zip(targets, sources, strict=True)]
            name = type(self.score).__name__
            unit_cuts = self._select([ArrayScores(u, u, name) for u, _ in units], [k for _, k in units], layers, step)
            cuts = [
                _replaced(t.mask, self.structure.expand(_new_mask(kept, cut), t.mask))
                for t, (_, kept), cut in zip(targets, units, unit_cuts, strict=True)
            ]
        else:
            cuts = self._select(sources, [t.mask for t in targets], layers, step, values=values)
        return [_Step(j, t.handle, cut) for j, (t, cut) in enumerate(zip(targets, cuts, strict=True))]

    def _select(
        self,
        sources: list[ScoreSource],
        masks: list[Array],
        layers: list[int],
        step: int | None,
        *,
        values: bool = False,
    ) -> list[Cut]:
        """The scope's selections over these scores and masks (one per parameter, with
        the index of its layer), each pruning what the amount says."""
        assert self.amount is not None  # only an NM structure has none, and it selects no units
        cuts = [NOTHING] * len(masks)
        for picked, count in self.scope.parts(layers, masks, self.amount, step):
            chosen = _plan_cuts([sources[j] for j in picked], [masks[j] for j in picked], count, None, values=values)
            for j, cut in zip(picked, chosen, strict=True):
                cuts[j] = cut
        return cuts

    def _commit(self, plan: list[_Step]) -> None:
        """Write a planned round, all or nothing, and count it."""
        commit_rounds([(self, plan)])

    def _writes(self, plan: list[_Step]) -> tuple[list[Write], list[bool | None]]:
        """The mask writes of a planned round, and whether each old mask kept every entry
        (``None`` where the selection did not count)."""
        writes: list[Write] = []
        kept_all: list[bool | None] = []
        for step in plan:
            if step.cut.pruned:
                mask = step.cut.mask
                if mask is None:  # the cut prunes everything
                    old = step.handle.get_mask()
                    mask = array_namespace(old).zeros_like(old)
                writes.append((step.handle, mask, step.cut.values))
                kept_all.append(None if step.cut.kept is None else step.cut.kept == math.prod(mask.shape))
        return writes, kept_all

    def config(self) -> dict[str, Any]:
        """What identifies this group in a saved state."""
        pieces = [self.amount, self.score, self.scope, self.structure]
        return {
            "type": type(self).__name__,
            **{k: v for piece in pieces if piece is not None for k, v in piece.config().items()},
        }

    def __repr__(self) -> str:
        names = ", ".join(type(layer).__name__ for layer in self.layers)
        structure = "" if self.structure is None else f", structure={self.structure!r}"
        return (
            f"{type(self).__name__}([{names}], {self.amount!r}, score={self.score!r}, scope={self.scope!r}{structure})"
        )


def commit_rounds(planned: Sequence[tuple[PruneGroup, list[_Step]]]) -> None:
    """Write the planned rounds of several groups, all or nothing (``lotto_core.undo``),
    then count a round for each group."""
    writes: list[Write] = []
    kept_all: list[bool | None] = []
    for group, plan in planned:
        group_writes, group_kept_all = group._writes(plan)
        writes += group_writes
        kept_all += group_kept_all
    with Undo() as undo:
        write_masks(undo, writes, kept_all=kept_all)
    for group, _ in planned:
        group.rounds += 1


def _new_mask(mask: Array, cut: Cut) -> Array:
    """``mask`` after ``cut``."""
    if cut.everything:
        return array_namespace(mask).zeros_like(mask)
    return mask if cut.mask is None else cut.mask


def _replaced(old: Array, new: Array) -> Cut:
    """The cut from mask ``old`` to mask ``new`` (which keeps nothing that ``old`` does not)."""
    kept = count_kept(old)
    pruned = kept - count_kept(new)
    return Cut(threshold=math.nan, ties=0, tied=0, pruned=pruned, kept=kept, mask=new if pruned else None)


def _check(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a lotto_core.strategy.{kind.__name__}, got {type(value).__name__}")
    return value


class MagnitudePruneGroup(PruneGroup):
    """Global magnitude pruning at rate ``p`` (0 <= p < 1) per round: the group's
    remaining weights with the smallest ``|w|`` go first, with one threshold for the
    whole group (Frankle & Carbin 2019): ``PruneGroup(layers, Rate(p))``.

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer
    >>> a, b = ArrayLayer({"w": np.arange(1.0, 7.0)}), ArrayLayer({"w": np.arange(-4.0, 0.0)})
    >>> MagnitudePruneGroup([a, b], 0.3).prune()  # 3 of 10: 1, -1, and the 2/-2 tie goes to a
    >>> a["w"], b["w"]
    (array([0., 0., 3., 4., 5., 6.]), array([-4., -3., -2.,  0.]))
    """

    def __init__(self, layers: Sequence[PrunableLayer], p: float) -> None:
        super().__init__(layers, Rate(p))

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "p": self.p}

    def __repr__(self) -> str:
        names = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"{type(self).__name__}([{names}], p={self.p})"


class LayerwiseMagnitudePruneGroup(MagnitudePruneGroup):
    """Layer-wise magnitude pruning: every layer prunes ``p`` of its own remaining
    weights by ``|w|``, with a threshold of its own (Han et al. 2015):
    ``PruneGroup(layers, Rate(p), scope=PerLayer())``."""

    def __init__(self, layers: Sequence[PrunableLayer], p: float) -> None:
        super().__init__(layers, p)
        self.scope = PerLayer()


class RandomPruneGroup(MagnitudePruneGroup):
    """Random pruning: the same count as magnitude pruning, chosen uniformly among the
    group's remaining weights; the random-pruning control of Frankle & Carbin (2019):
    ``PruneGroup(layers, Rate(p), score=Random(seed))``.

    Parameters
    ----------
    seed
        Seeds the choice; the same seed, round and layers give the same masks on every
        namespace and device.
    """

    def __init__(self, layers: Sequence[PrunableLayer], p: float, *, seed: int = 0) -> None:
        score = Random(seed)
        super().__init__(layers, p)
        self.score = score
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": self.seed}
