"""Prune groups: a set of layers and the rule that picks what each round removes.

Every group prunes the ``k = min(remaining, ceil(p * remaining))`` lowest-scored of its
remaining weights (``lotto_core.rate.prune_count``). Subclasses say how weights are
scored and whether the threshold is shared by the group or set per layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import Array, array_namespace, device
from .backend import backend_for, plan_cuts
from .protocol import ParameterHandle, PrunableLayer
from .rate import validate_rate
from .scores import MagnitudeScores, RandomScores, ScoreSource
from .search import Cut

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


class PruneGroup(ABC):
    """Layers pruned together at rate ``p`` (0 <= p < 1) per round.

    Parameters
    ----------
    layers
        The prunable layers of the group, in order: ties in score are broken by this
        order first, then by flattened (C-order) index.
    p
        Fraction of the group's remaining weights that each round removes.
    """

    def __init__(self, layers: Sequence[PrunableLayer], p: float) -> None:
        self.p = validate_rate(p)
        self.layers = _check_layers(layers)
        self.rounds = 0

    def prune(self) -> None:
        """Prune one round of this group alone (a ``Pruner`` prunes all its groups)."""
        self._commit(self._plan(values=True))

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

    def _plan(self, *, values: bool = False) -> list[_Step]:
        """Decide this round's cuts for every parameter; nothing is written. ``values``:
        the round is written right after, so the selection may write new weights too
        (``plan_cuts``)."""
        targets = self.targets()
        sources = [self._scores(j, t.weight) for j, t in enumerate(targets)]
        cuts = self._cuts(targets, sources, values)
        return [_Step(j, t.handle, cut) for j, (t, cut) in enumerate(zip(targets, cuts, strict=True))]

    def _commit(self, plan: list[_Step]) -> None:
        """Write a planned round through the backend of its masks."""
        writes = []
        for step in plan:
            if step.cut.pruned:
                mask = step.cut.mask
                if mask is None:  # the cut prunes everything
                    old = step.handle.get_mask()
                    mask = array_namespace(old).zeros_like(old)
                writes.append((step.handle, mask, step.cut.values))
        if writes:
            backend_for(writes[0][1]).write(writes)
        self.rounds += 1

    @abstractmethod
    def _scores(self, index: int, weight: Array) -> ScoreSource:
        """The score source of the group's ``index``-th prunable parameter."""

    def _cuts(self, targets: list[_Target], sources: list[ScoreSource], values: bool) -> list[Cut]:
        """Global selection: one threshold shared by the whole group."""
        return plan_cuts(sources, [t.mask for t in targets], self.p, values=values)

    def config(self) -> dict[str, Any]:
        """What identifies this group in a saved state."""
        return {"type": type(self).__name__, "p": self.p}

    def __repr__(self) -> str:
        names = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"{type(self).__name__}([{names}], p={self.p})"


class MagnitudePruneGroup(PruneGroup):
    """Global magnitude pruning: the group's remaining weights with the smallest ``|w|``
    go first, with one threshold for the whole group (Frankle & Carbin 2019).

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer
    >>> a, b = ArrayLayer({"w": np.arange(1.0, 7.0)}), ArrayLayer({"w": np.arange(-4.0, 0.0)})
    >>> MagnitudePruneGroup([a, b], 0.3).prune()  # 3 of 10: 1, -1, and the 2/-2 tie goes to a
    >>> a["w"], b["w"]
    (array([0., 0., 3., 4., 5., 6.]), array([-4., -3., -2.,  0.]))
    """

    def _scores(self, index: int, weight: Array) -> ScoreSource:
        return MagnitudeScores(weight)


class LayerwiseMagnitudePruneGroup(MagnitudePruneGroup):
    """Layer-wise magnitude pruning: every layer prunes ``p`` of its own remaining
    weights by ``|w|``, with a threshold of its own (Han et al. 2015)."""

    def _cuts(self, targets: list[_Target], sources: list[ScoreSource], values: bool) -> list[Cut]:
        cuts: list[Cut] = []
        for i in range(len(self.layers)):
            picked = [j for j, t in enumerate(targets) if t.layer == i]
            cuts.extend(super()._cuts([targets[j] for j in picked], [sources[j] for j in picked], values))
        return cuts


class RandomPruneGroup(PruneGroup):
    """Random pruning: the same count as magnitude pruning, chosen uniformly among the
    group's remaining weights; the random-pruning control of Frankle & Carbin (2019).

    Parameters
    ----------
    seed
        Seeds the choice; the same seed, round and layers give the same masks on every
        namespace and device.
    """

    def __init__(self, layers: Sequence[PrunableLayer], p: float, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        super().__init__(layers, p)
        self.seed = seed

    def _scores(self, index: int, weight: Array) -> ScoreSource:
        return RandomScores(weight, (self.seed, self.rounds, index))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": self.seed}
