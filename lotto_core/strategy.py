"""The pieces a prune group is composed of: a score, a scope, a structure and an amount.

A group prunes its layers' lowest-scored kept weights (the *score*), or whole channels or
blocks of them (the *structure*), chosen over the whole group or within parts of it (the
*scope*), as many as the *amount* says. Every combination selects exactly with
``lotto_core.search``: one threshold per part of the scope, ties broken by parameter
order and then flattened (C-order) index, kept NaN scores never pruned.

>>> import numpy as np
>>> from lotto_core import ArrayLayer, PruneGroup
>>> a, b = ArrayLayer({"w": np.arange(1.0, 7.0)}), ArrayLayer({"w": np.arange(-4.0, 0.0)})
>>> PruneGroup([a, b], Sparsity(0.5), score=ScoreFn(lambda w, layer, name: -abs(w)), scope=PerLayer()).prune()
>>> a["w"], b["w"]  # each layer keeps its half with the smallest |w|
(array([1., 2., 3., 0., 0., 0.]), array([ 0.,  0., -2., -1.]))
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ._array_api import Array, array_namespace, device
from .backend import count_kept
from .protocol import PrunableLayer
from .rate import exact_rate, prune_count, validate_rate
from .scores import ArrayScores, MagnitudeScores, RandomScores, ScoreSource
from .search import Count

__all__ = [
    "ERK",
    "NM",
    "SNIP",
    "Amount",
    "Blocks",
    "Channels",
    "Global",
    "GraSP",
    "Gradual",
    "Grouped",
    "Magnitude",
    "PerLayer",
    "Random",
    "Rate",
    "Scope",
    "Score",
    "ScoreFn",
    "Sparsity",
    "Structure",
    "SynFlow",
    "Uniform",
    "Where",
]


# --- amounts ----------------------------------------------------------------------------


class Amount(ABC):
    """How many weights a round prunes: the number of a unit's weights kept after it."""

    @abstractmethod
    def target_kept(self, kept: int, size: int, step: int | None) -> int:
        """Of ``size`` weights, ``kept`` kept now: how many stay kept (never more than
        ``kept``). ``step`` is the training step of a scheduled prune, else ``None``."""

    def config(self) -> dict[str, Any]:
        return {"amount": type(self).__name__, **{f"amount.{k}": v for k, v in vars(self).items()}}


@dataclass(frozen=True)
class Rate(Amount):
    """``p`` of the remaining weights per round: ``ceil(p * kept)``, the iterative
    magnitude pruning rule (exact: ``Rate(0.07)`` of 100 is 7)."""

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", validate_rate(self.p))

    def target_kept(self, kept: int, size: int, step: int | None) -> int:
        return kept - prune_count(self.p, kept)


def _sparsity(s: object, name: str) -> Fraction:
    """A sparsity in [0, 1] as the exact fraction written."""
    if s != 1 and s != 1.0:
        validate_rate(s, name)
    elif isinstance(s, bool):
        raise TypeError(f"{name} must be a real number in [0, 1], got {s!r}")
    return exact_rate(s)  # type: ignore[arg-type]


def _kept_at(sparsity: Fraction, kept: int, size: int) -> int:
    """Kept weights at ``sparsity`` of ``size``: ``size - ceil(sparsity * size)``, and
    never more than ``kept`` (pruned weights are not revived)."""
    return min(kept, size + (-sparsity.numerator * size) // sparsity.denominator)


@dataclass(frozen=True)
class Sparsity(Amount):
    """Prune until ``sparsity`` of the unit's weights are pruned: ``ceil(sparsity *
    size)`` of them (a unit that is sparser already prunes nothing)."""

    sparsity: float

    def __post_init__(self) -> None:
        _sparsity(self.sparsity, "sparsity")

    def target_kept(self, kept: int, size: int, step: int | None) -> int:
        return _kept_at(_sparsity(self.sparsity, "sparsity"), kept, size)


@dataclass(frozen=True)
class Gradual(Amount):
    """Gradual magnitude pruning (Zhu & Gupta 2017, *To prune, or not to prune*): from
    ``initial`` to ``final`` sparsity over training, pruning at every ``frequency``-th
    step from ``begin_step`` to ``end_step``, with the cubic schedule
    ``s_t = final + (initial - final) * (1 - (t - begin_step) / (end_step - begin_step))**3``.
    Driven by ``group.step(t)`` (or ``Pruner.step(t)``) once per training step."""

    initial: float
    final: float
    begin_step: int
    end_step: int
    frequency: int

    def __post_init__(self) -> None:
        _sparsity(self.initial, "initial")
        _sparsity(self.final, "final")
        for name in ("begin_step", "end_step", "frequency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"{name} must be a non-negative int, got {value!r}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be at least 1, got {self.frequency}")
        if self.end_step <= self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must be after begin_step ({self.begin_step})")
        if exact_rate(self.final) < exact_rate(self.initial):
            raise ValueError(f"final ({self.final}) must be at least initial ({self.initial})")

    def due(self, step: int) -> bool:
        """Whether the schedule prunes at training step ``step``."""
        on_grid = (step - self.begin_step) % self.frequency == 0
        return self.begin_step <= step <= self.end_step and (on_grid or step == self.end_step)

    def sparsity_at(self, step: int) -> Fraction:
        """The schedule's sparsity at ``step`` (exact)."""
        initial, final = exact_rate(self.initial), exact_rate(self.final)
        t = min(max(step, self.begin_step), self.end_step)
        left = 1 - Fraction(t - self.begin_step, self.end_step - self.begin_step)
        return final + (initial - final) * left**3

    def target_kept(self, kept: int, size: int, step: int | None) -> int:
        if step is None:
            raise ValueError("a Gradual amount prunes on a schedule: call group.step(t) (or Pruner.step(t)) each step")
        return _kept_at(self.sparsity_at(step), kept, size)


def as_amount(amount: object) -> Amount:
    """An ``Amount`` as given, or a number as the ``Rate`` it stands for."""
    if isinstance(amount, Amount):
        return amount
    validate_rate(amount, "amount")
    return Rate(amount)  # type: ignore[arg-type]


# --- scores -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a score is computed: the group's ``index``-th prunable parameter, ``name``
    of ``layer``, in the group's ``round``-th round."""

    layer: PrunableLayer
    name: str
    index: int
    round: int


class Score(ABC):
    """What ranks a weight: the lowest-scored kept weights go first."""

    @abstractmethod
    def source(self, weight: Array, where: Where) -> ScoreSource:
        """The scores of ``weight``, the parameter at ``where``."""

    def config(self) -> dict[str, Any]:
        plain = {k: v for k, v in vars(self).items() if isinstance(v, int | float | str)}
        return {"score": type(self).__name__, **{f"score.{k}": v for k, v in plain.items()}}


@dataclass(frozen=True)
class Magnitude(Score):
    """``|w|`` (Han et al. 2015; Frankle & Carbin 2019, *The Lottery Ticket Hypothesis*).
    A kept weight that is exactly 0 has the lowest score, so it goes first."""

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return MagnitudeScores(weight)


@dataclass(frozen=True)
class Random(Score):
    """Uniform random scores, the same on every namespace and device for the same
    ``seed``, round and parameter: random pruning, the control of Frankle & Carbin
    (2019) and of Frankle et al. (2021, *Pruning Neural Networks at Initialization: Why
    Are We Missing the Mark?*)."""

    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be a non-negative int, got {type(self.seed).__name__} {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return RandomScores(weight, (self.seed, where.round, where.index))


ScoreFunction = Callable[..., Array]
"""``fn(weight, layer=..., name=...) -> scores``: an array of ``weight``'s shape, on its
namespace and device, of a real floating dtype."""


@dataclass(frozen=True)
class ScoreFn(Score):
    """The user's own score: ``fn(weight, layer=layer, name=name)`` returns an array of
    ``weight``'s shape (any real floats: negative scores rank below zero, NaN is never
    pruned). The selection stays exact and O(N).

    Examples
    --------
    Prune the weights that moved least since the rewind point (movement pruning):

    >>> import numpy as np
    >>> from lotto_core import ArrayLayer, PruneGroup
    >>> layer = ArrayLayer({"w": np.array([1.0, 2.0, 3.0, 4.0])})
    >>> layer.params["w"].set_value(np.array([1.5, 2.0, 0.0, 4.1]))
    >>> moved = ScoreFn(lambda w, layer, name: abs(w - layer.params[name].get_rewind_point()))
    >>> PruneGroup([layer], 0.5, score=moved).prune()
    >>> layer["w"]
    array([1.5, 0. , 0. , 0. ])
    """

    fn: ScoreFunction

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return ArrayScores(weight, self.fn(weight, layer=where.layer, name=where.name), type(self).__name__)


def _sensitivity(weight: Array, gradient: Array, name: str) -> ArrayScores:
    """``|w * g|``: SNIP's score with the loss's gradient, SynFlow's with the flow's."""
    return ArrayScores(weight, array_namespace(weight).abs(weight * gradient), name)


GradientFunction = Callable[[PrunableLayer, str], Array]
"""``gradient(layer, name) -> array``: a gradient of the loss for parameter ``name`` of
``layer``, in the weight's shape (in torch, ``getattr(layer, name).grad``)."""


@dataclass(frozen=True)
class SNIP(Score):
    """Connection sensitivity ``|w * g|`` (Lee et al. 2019, *SNIP: Single-shot Network
    Pruning based on Connection Sensitivity*): ``gradient(layer, name)`` gives ``g``, the
    loss's gradient on a batch, usually at initialization."""

    gradient: GradientFunction

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return _sensitivity(weight, self.gradient(where.layer, where.name), "SNIP")


@dataclass(frozen=True)
class SynFlow(Score):
    """Synaptic flow ``|w * dR/dw|`` (Tanaka et al. 2020, *Pruning neural networks
    without any data by iteratively conserving synaptic flow*), ``R`` the sum of the
    outputs of the network with every parameter replaced by its absolute value on an
    input of ones: data-free. ``flow(layer, name)`` gives ``dR/dw``; the backends'
    ``synaptic_flow(model, inputs)`` computes it. SynFlow is iterative: recompute the
    flow and prune to ``Sparsity(1 - (1 - s) ** (k / n))`` for ``k = 1 .. n`` (the paper
    uses ``n = 100``), so that no layer collapses."""

    flow: GradientFunction

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return _sensitivity(weight, self.flow(where.layer, where.name), "SynFlow")


@dataclass(frozen=True)
class GraSP(Score):
    """Gradient signal preservation (Wang et al. 2020, *Picking Winning Tickets Before
    Training by Preserving Gradient Flow*): GraSP removes the weights with the largest
    ``-w * Hg``, so here the score is ``w * Hg`` and the lowest go first.
    ``hessian_gradient(layer, name)`` gives ``Hg``, the Hessian-gradient product of the
    loss on a batch."""

    hessian_gradient: GradientFunction

    def source(self, weight: Array, where: Where) -> ScoreSource:
        return ArrayScores(weight, weight * self.hessian_gradient(where.layer, where.name), "GraSP")


# --- scopes -----------------------------------------------------------------------------


Part = tuple[list[int], Count]
"""``(parameter indices, count)``: one selection over those parameters of the group,
pruning ``count(kept, size)`` of their kept weights with one threshold."""


class Scope(ABC):
    """Over which weights one threshold is shared, and how the amount is shared out."""

    @abstractmethod
    def parts(self, layers: Sequence[int], masks: Sequence[Array], amount: Amount, step: int | None) -> list[Part]:
        """The selections of one round, given each prunable parameter's layer index and
        mask (in group order)."""

    def config(self) -> dict[str, Any]:
        return {"scope": type(self).__name__}


def _count(amount: Amount, step: int | None) -> Count:
    return lambda kept, size: kept - amount.target_kept(kept, size, step)


@dataclass(frozen=True)
class Global(Scope):
    """One threshold for the whole group (Frankle & Carbin 2019): the amount counts the
    group's weights together."""

    def parts(self, layers: Sequence[int], masks: Sequence[Array], amount: Amount, step: int | None) -> list[Part]:
        return [(list(range(len(masks))), _count(amount, step))]


@dataclass(frozen=True)
class PerLayer(Scope):
    """A threshold per layer (Han et al. 2015): the amount counts each layer's weights."""

    def parts(self, layers: Sequence[int], masks: Sequence[Array], amount: Amount, step: int | None) -> list[Part]:
        return [
            ([j for j, owner in enumerate(layers) if owner == layer], _count(amount, step))
            for layer in dict.fromkeys(layers)
        ]


def _kept_and_sizes(masks: Sequence[Array]) -> tuple[list[int], list[int]]:
    kept = [count_kept(m) for m in masks]
    return kept, [math.prod(m.shape) for m in masks]


def _share(densities: Sequence[Fraction], sizes: Sequence[int], total: int) -> list[int]:
    """Integer kept counts near ``density * size`` that add up to ``total`` exactly: each
    rounded down, then one more to the largest remainders (earlier parameters first)."""
    exact = [d * n for d, n in zip(densities, sizes, strict=True)]  # adds up to ``total``
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class _Distributed(Scope):
    """A scope that shares a group-wide target out over the parameters by density, each
    parameter then pruned to its share with a threshold of its own."""

    @abstractmethod
    def densities(self, shapes: Sequence[tuple[int, ...]], target: Fraction) -> list[Fraction]:
        """Per parameter, the density at which the group keeps ``target`` of its weights."""

    def parts(self, layers: Sequence[int], masks: Sequence[Array], amount: Amount, step: int | None) -> list[Part]:
        kept, sizes = _kept_and_sizes(masks)
        total = amount.target_kept(sum(kept), sum(sizes), step)
        densities = self.densities([tuple(m.shape) for m in masks], Fraction(total, max(1, sum(sizes))))
        shares = _share(densities, sizes, total)
        return [([j], _fixed(kept[j] - min(kept[j], shares[j]))) for j in range(len(masks))]


def _fixed(k: int) -> Count:
    return lambda kept, size: k


@dataclass(frozen=True)
class Uniform(_Distributed):
    """Every parameter at the same density, the group's target (Zhu & Gupta 2017; Evci
    et al. 2020). Kept counts are shared out so that the group keeps exactly its target
    (largest remainders); a parameter already sparser than its share stays as it is."""

    def densities(self, shapes: Sequence[tuple[int, ...]], target: Fraction) -> list[Fraction]:
        return [target] * len(shapes)


@dataclass(frozen=True)
class ERK(_Distributed):
    """Erdős-Rényi-Kernel densities (Evci et al. 2020, *Rigging the Lottery*): a
    parameter's density is proportional to ``sum(shape) / prod(shape)`` (for a
    convolution, ``(c_out + c_in + k_h + k_w) / (c_out * c_in * k_h * k_w)``), scaled so
    that the group keeps exactly its target; parameters that would exceed density 1 are
    kept dense and the rest rescaled, as in the RigL code."""

    def densities(self, shapes: Sequence[tuple[int, ...]], target: Fraction) -> list[Fraction]:
        sizes = [math.prod(s) for s in shapes]
        raw = [Fraction(sum(s), n) if n else Fraction(0) for s, n in zip(shapes, sizes, strict=True)]
        dense: set[int] = set()
        while True:
            budget = target * sum(sizes) - sum(sizes[i] for i in dense)
            spread = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
            scale = budget / spread if spread else Fraction(0)
            over = {i for i in range(len(sizes)) if i not in dense and scale * raw[i] > 1}
            if not over:
                return [Fraction(1) if i in dense else min(Fraction(1), scale * raw[i]) for i in range(len(sizes))]
            dense |= over


# --- structures ---------------------------------------------------------------------------


class Structure:
    """What one unit of pruning is: whole output channels, blocks, or N of every M."""

    def config(self) -> dict[str, Any]:
        return {"structure": type(self).__name__, **{f"structure.{k}": v for k, v in vars(self).items()}}


class Grouped(Structure, ABC):
    """A structure whose units are groups of entries, scored by the L2 norm of their
    kept entries' scores and selected with the group's scope and amount, which count
    units: kept units are those with a kept entry."""

    @abstractmethod
    def reduce(self, scores: Array, mask: Array) -> tuple[Array, Array]:
        """``(unit scores, units kept)`` of one parameter."""

    @abstractmethod
    def expand(self, units: Array, mask: Array) -> Array:
        """The parameter's new mask: ``mask`` where its unit is kept in ``units``."""


def _norms(xp: Any, scores: Array, mask: Array, axes: tuple[int, ...]) -> Array:
    """The L2 norms of the kept scores over ``axes``."""
    kept = scores if bool(xp.all(mask)) else xp.where(mask, scores, xp.zeros_like(scores))
    return xp.linalg.vector_norm(kept, axis=axes)


def _check_axis(axis: object, name: str) -> None:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{name} must be an int, got {axis!r}")


@dataclass(frozen=True)
class Channels(Grouped):
    """Whole output channels (neurons): the slices along ``axis`` (0: torch's
    ``(out, in, ...)`` weights; JAX's NNX kernels are ``(..., in, out)``, ``axis=-1``),
    each scored by the L2 norm of its scores (Li et al. 2017, *Pruning Filters for
    Efficient ConvNets*, with magnitude scores)."""

    axis: int = 0

    def __post_init__(self) -> None:
        _check_axis(self.axis, "axis")

    def _front(self, xp: Any, x: Array) -> Array:
        axis = self.axis % x.ndim
        return xp.permute_dims(x, (axis, *[d for d in range(x.ndim) if d != axis]))

    def reduce(self, scores: Array, mask: Array) -> tuple[Array, Array]:
        xp = array_namespace(scores, mask)
        if not -mask.ndim <= self.axis < mask.ndim:
            raise ValueError(f"Channels(axis={self.axis}) does not fit a parameter of shape {tuple(mask.shape)}")
        s, m = self._front(xp, scores), self._front(xp, mask)
        rest = tuple(range(1, s.ndim))
        return (_norms(xp, s, m, rest), xp.any(m, axis=rest)) if rest else (xp.abs(s), m)

    def expand(self, units: Array, mask: Array) -> Array:
        xp = array_namespace(units, mask)
        shape = [1] * mask.ndim
        shape[self.axis % mask.ndim] = mask.shape[self.axis % mask.ndim]
        return mask & xp.reshape(units, tuple(shape))


@dataclass(frozen=True)
class Blocks(Grouped):
    """Blocks of ``rows x cols`` of the weight's 2-D view (dimension 0 by the rest
    flattened), each scored by the L2 norm of its scores; the view's sides must be
    multiples of the block's."""

    rows: int
    cols: int

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def _blocked(self, xp: Any, x: Array) -> Array:
        r, c = x.shape[0], math.prod(x.shape[1:])
        if r % self.rows or c % self.cols:
            raise ValueError(
                f"Blocks({self.rows}, {self.cols}) do not tile a {r} x {c} weight (shape {tuple(x.shape)})"
            )
        return xp.reshape(x, (r // self.rows, self.rows, c // self.cols, self.cols))

    def reduce(self, scores: Array, mask: Array) -> tuple[Array, Array]:
        xp = array_namespace(scores, mask)
        if mask.ndim < 2:
            raise ValueError(f"Blocks need a weight of 2 or more dimensions, got shape {tuple(mask.shape)}")
        # each block's entries made adjacent first: a reduction over inner axes runs several times faster
        m = xp.permute_dims(self._blocked(xp, mask), (0, 2, 1, 3))
        s = xp.permute_dims(self._blocked(xp, scores), (0, 2, 1, 3))
        s, m = xp.reshape(s, (*s.shape[:2], -1)), xp.reshape(m, (*m.shape[:2], -1))
        return _norms(xp, s, m, (2,)), xp.any(m, axis=2)

    def expand(self, units: Array, mask: Array) -> Array:
        xp = array_namespace(units, mask)
        blocks = xp.broadcast_to(units[:, None, :, None], self._blocked(xp, mask).shape)
        return mask & xp.reshape(blocks, mask.shape)


@dataclass(frozen=True)
class NM(Structure):
    """N:M sparsity (Mishra et al. 2021; Zhou et al. 2021): in every block of ``m``
    consecutive weights along ``axis``, the input dimension (1: torch's ``(out, in,
    ...)``; 0 for an NNX ``Linear`` kernel ``(in, out)``, -2 for a ``Conv`` kernel), the
    ``n`` highest-scored are kept and the others pruned, the earlier of tied scores
    first; a block with fewer than ``n`` kept keeps them. It fixes the sparsity at
    ``1 - n/m``, so a group with this structure takes no amount (``2:4`` first: the
    pattern of NVIDIA's sparse tensor cores)."""

    n: int = 2
    m: int = 4
    axis: int = 1

    def __post_init__(self) -> None:
        _check_axis(self.axis, "axis")
        for name in ("n", "m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if not 0 < self.n <= self.m:
            raise ValueError(f"N:M needs 0 < n <= m, got n={self.n}, m={self.m}")

    def mask(self, scores: Array, mask: Array) -> Array:
        """The new mask of one parameter."""
        xp = array_namespace(scores, mask)
        if not -mask.ndim <= self.axis < mask.ndim:
            raise ValueError(f"NM(axis={self.axis}) does not fit a parameter of shape {tuple(mask.shape)}")
        axis = self.axis % mask.ndim
        if mask.shape[axis] % self.m:
            shape = tuple(mask.shape)
            raise ValueError(
                f"NM({self.n}, {self.m}) needs dimension {axis} of shape {shape} to be a multiple of {self.m}"
            )
        order = (*[d for d in range(mask.ndim) if d != axis], axis)
        back = tuple(order.index(d) for d in range(mask.ndim))
        s, m = xp.permute_dims(scores, order), xp.permute_dims(mask, order)
        blocked = (*s.shape[:-1], s.shape[-1] // self.m, self.m)
        s, m = xp.reshape(s, blocked), xp.reshape(m, blocked)
        low = xp.asarray(-xp.inf, dtype=s.dtype, device=device(s))
        high = xp.asarray(xp.inf, dtype=s.dtype, device=device(s))
        # pruned entries rank lowest (they stay pruned first), kept NaN highest (never pruned)
        s = xp.where(m, xp.where(xp.isnan(s), high, s), low)
        # an entry's rank in its block: the entries below it, and the earlier ones equal to it
        # (one elementwise pass per position: the Array API has no top-k, and two argsorts cost 5x more)
        rank = xp.zeros(s.shape, dtype=xp.int32, device=device(s))
        position = xp.arange(self.m, device=device(s))
        for i in range(self.m):
            other = s[..., i : i + 1]
            rank += xp.astype((other < s) | ((other == s) & (position > i)), xp.int32)
        keep = m & (rank >= self.m - self.n)
        return xp.permute_dims(xp.reshape(keep, tuple(mask.shape[d] for d in order)), back)
