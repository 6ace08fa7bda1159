"""Exact selection on CPU tensors with fused numba kernels.

The rule is the core's (``lotto_core.selection``): exactly ``k = prune_count(p, kept)``
of a group's kept entries, one shared threshold ``t``, ties at ``t`` broken by parameter
order and then flattened (C-order) index, kept NaN scores never pruned. So is the search:
a strided sample brackets ``t`` in ``[lo, hi]``, one pass counts the kept scores below
``lo`` and extracts the band in between, and ``t`` is an order statistic of the band.
What differs is how a pass runs. The core's pass is a dozen eager torch ops per chunk
(an abs, two comparisons to bool, two ands, two counts, a ``nonzero``), here it is one
numba loop over zero-copy NumPy views of the tensors (``_kernels.split_band``) that
also writes the new mask of every entry above the band, run on torch's threads.

Scores are compared as integer keys (the float's bits without the sign bit; see
``_kernels``), so float16 and bfloat16 weights need no widened copy. A band too wide
for the budget is narrowed by bisecting the keys with counting passes, as the core
does. Groups the kernels do not cover (CUDA tensors, other score sources, mixed dtypes,
non-contiguous weights, no numba) go to the core's portable selection.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch

from lotto_core.rate import prune_count
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource
from lotto_core.selection import Cut, plan_cuts_portable, register_native_planner

from . import _cpu

__all__ = ["plan_cuts"]

_SAMPLE_SIZE = 1 << 18
_MIN_BAND = 1 << 18
_STD_MARGIN = 5.0


@dataclass(frozen=True)
class _Param:
    """One parameter as the kernels see it: flat keys, flat mask (``None``: all kept),
    the tensor shape, and the float dtype that gives a key its value."""

    keys: np.ndarray
    mask: np.ndarray | None
    shape: tuple[int, ...]
    dtype: torch.dtype


def _score_keys(source: ScoreSource) -> tuple[np.ndarray, torch.dtype] | None:
    """The keys of a source's scores and their float dtype, or ``None`` for a source
    the kernels do not cover. Magnitudes are the weight's own bits; the core's random
    scores are its float32 host values."""
    if type(source) is MagnitudeScores:
        keys = _cpu.key_view(source.weight)
        return None if keys is None else (keys, source.weight.dtype)
    if type(source) is RandomScores and _cpu.key_view(source.weight) is not None:
        return source.host_values().reshape(-1).view(np.int32), torch.float32
    return None


def _params(sources: Sequence[ScoreSource], masks: Sequence[torch.Tensor]) -> tuple[list[_Param], list[int]] | None:
    """The group for the kernels and each parameter's kept count, or ``None`` where
    any part of the group is not covered."""
    params, kept = [], []
    for source, mask in zip(sources, masks, strict=True):
        keys, flags = _score_keys(source), _cpu.bool_view(mask)
        if keys is None or flags is None or keys[0].size != flags.size:
            return None
        kept.append(int(np.count_nonzero(flags)))
        params.append(_Param(keys[0], None if kept[-1] == flags.size else flags, tuple(mask.shape), keys[1]))
    if len({p.keys.dtype for p in params}) != 1:
        return None
    return params, kept


@dataclass(frozen=True)
class _Split:
    """A parameter sorted by a bracket: its new mask so far (the kept entries above the
    bracket), and its kept entries in the bracket, the band: flat positions (C order)
    and keys."""

    above: np.ndarray
    positions: np.ndarray
    keys: np.ndarray


@dataclass
class _Counts:
    """Per parameter: kept keys below ``lo`` and up to ``hi``."""

    below: list[int]
    upto: list[int]


class _Search:
    """One exact selection over a group (see the module docstring)."""

    def __init__(self, kernels: ModuleType, params: list[_Param], kept: list[int], k: int) -> None:
        self.kernels = kernels
        self.params = params
        self.kept = kept
        self.k = k
        keys = params[0].keys
        self.sign_off = _cpu.sign_off(keys)
        self.inf = keys.dtype.type(_key_of(math.inf, params[0].dtype))
        self.zero = keys.dtype.type(0)
        self.budget = max(_MIN_BAND, sum(p.keys.size for p in params) >> 6)

    def tasks(self) -> list[tuple[int, int, int]]:
        return [(i, a, b) for i, p in enumerate(self.params) for a, b in _cpu.chunks(p.keys.size)]

    def bracket(self) -> tuple[np.integer, np.integer]:
        """Keys around the target rank in a strided sample of the kept comparable keys,
        ``_STD_MARGIN`` standard deviations of the sample's rank on either side."""
        total = sum(p.keys.size for p in self.params)
        step = max(1, total // _SAMPLE_SIZE)
        parts = []
        for p in self.params:
            keys = p.keys[::step] & self.sign_off
            parts.append(keys if p.mask is None else keys[p.mask[::step]])
        sample = np.concatenate(parts)
        sample = sample[sample <= self.inf]  # drop NaN
        n = int(sample.size)
        q = self.k / sum(self.kept)
        centre = q * n - 1.0
        margin = _STD_MARGIN * math.sqrt(n * q * (1.0 - q)) + 2.0
        i_lo, i_hi = math.floor(centre - margin), math.ceil(centre + margin)
        inner = [i for i in (i_lo, i_hi) if 0 <= i < n]
        if inner:
            sample = np.partition(sample, inner)
        lo = sample[i_lo] if 0 <= i_lo < n else self.zero
        hi = sample[i_hi] if 0 <= i_hi < n else self.inf
        return lo, hi

    def count(self, lo: np.integer, hi: np.integer) -> _Counts:
        kernels, so = self.kernels, self.sign_off

        def run(i: int, a: int, b: int) -> tuple[int, int]:
            p = self.params[i]
            return kernels.count_band(p.keys[a:b], None if p.mask is None else p.mask[a:b], so, lo, hi)

        return self._sum(_cpu.map_chunks(run, self.tasks()))

    def _sum(self, results: list[tuple[int, ...]]) -> _Counts:
        below, upto = [0] * len(self.params), [0] * len(self.params)
        for (i, _, _), (b, u, *_) in zip(self.tasks(), results, strict=True):
            below[i] += b
            upto[i] += u
        return _Counts(below, upto)

    def split(self, lo: np.integer, hi: np.integer) -> tuple[_Counts, list[_Split] | None]:
        """One pass: the counts, and every parameter split by ``[lo, hi]``, or ``None``
        when the band exceeds the budget (its entries are dropped as soon as that is
        known, and the rest of the pass only counts)."""
        kernels, so = self.kernels, self.sign_off
        above = [np.empty(p.keys.size, dtype=bool) for p in self.params]
        lock, full = threading.Lock(), threading.Event()
        room = [self.budget]

        def run(i: int, a: int, b: int) -> tuple[int, int, tuple[np.ndarray, np.ndarray] | None]:
            keys, mask = self.params[i].keys[a:b], self.params[i].mask
            mask = None if mask is None else mask[a:b]
            if full.is_set():
                below, upto = kernels.count_band(keys, mask, so, lo, hi)
                return below, upto, None
            positions, band = np.empty(b - a + 1, dtype=np.int64), np.empty(b - a + 1, dtype=keys.dtype)
            flags = _cpu.scratch(b - a)
            below, inside = kernels.split_band(keys, mask, so, lo, hi, above[i][a:b], flags, positions, band)
            with lock:
                room[0] -= inside
                fits = room[0] >= 0
            if not fits:
                full.set()
                return below, below + inside, None
            return below, below + inside, (positions[:inside] + a, band[:inside].copy())

        results = _cpu.map_chunks(run, self.tasks())
        counts = self._sum(results)
        if full.is_set():
            return counts, None
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.params]
        for (i, _, _), (_, _, band) in zip(self.tasks(), results, strict=True):
            if band is not None:
                parts[i].append(band)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.zero.dtype))
        return counts, [
            _Split(new, *(np.concatenate(column) for column in zip(*part, strict=True)) if part else empty)
            for new, part in zip(above, parts, strict=True)
        ]

    def run(self) -> list[Cut]:
        k = self.k
        lo, hi = self.bracket()
        while True:
            counts, splits = self.split(lo, hi)
            if sum(counts.below) >= k:  # t < lo: the sample missed; take the safe side
                lo, hi = self.zero, lo - 1
            elif sum(counts.upto) < k:  # t > hi
                if hi >= self.inf:
                    raise ValueError(
                        f"only {sum(counts.upto)} kept scores are comparable (the rest are NaN); cannot prune {k}"
                    )
                lo, hi = hi + 1, self.inf
            elif splits is not None:
                return self.cuts_from_band(counts, splits)
            else:  # the band is too wide: narrow it, then split again (or cut at a single key)
                lo, hi, counts = self.bisect(lo, hi, counts)
                if lo == hi:
                    return self.cuts_at(lo, counts)

    def bisect(self, lo: np.integer, hi: np.integer, counts: _Counts) -> tuple[np.integer, np.integer, _Counts]:
        """Narrow ``[lo, hi]`` by counting until its band fits the budget or it holds a
        single key; at most one pass per bit of the keys."""
        while lo != hi and sum(counts.upto) - sum(counts.below) > self.budget:
            mid = lo + (hi - lo) // 2
            at_mid = self.count(self.zero, mid)
            if sum(at_mid.upto) >= self.k:
                hi, counts = mid, _Counts(counts.below, at_mid.upto)
            else:
                lo, counts = mid + 1, _Counts(at_mid.upto, counts.upto)
        return lo, hi, counts

    def cuts_from_band(self, counts: _Counts, splits: list[_Split]) -> list[Cut]:
        """The cuts from a band that holds the threshold: ``t`` is its order statistic,
        and each new mask is the entries above the band plus those of the band that the
        cut keeps."""
        rank = self.k - sum(counts.below) - 1
        t = np.partition(np.concatenate([s.keys for s in splits]), rank)[rank]
        less = [below + int(np.count_nonzero(s.keys < t)) for below, s in zip(counts.below, splits, strict=True)]
        ties_left = self.k - sum(less)
        cuts = []
        for p, split, n_less in zip(self.params, splits, less, strict=True):
            tied = split.keys == t
            n_tied = int(np.count_nonzero(tied))
            ties = min(ties_left, n_tied)
            ties_left -= ties
            split.above[split.positions[(split.keys > t) | (tied & (np.cumsum(tied) > ties))]] = True
            cuts.append(self.cut(t, ties, n_tied, n_less + ties, split.above, p.shape))
        return cuts

    def cuts_at(self, t: np.integer, counts: _Counts) -> list[Cut]:
        """The cuts when the band is the single key ``t``: each parameter's new mask
        comes from one pass that skips the ties the earlier parameters did not take."""
        ties_left = self.k - sum(counts.below)
        plan = []
        for below, upto in zip(counts.below, counts.upto, strict=True):
            ties = min(ties_left, upto - below)
            ties_left -= ties
            plan.append((below, ties, upto - below))
        masks = [np.empty(p.keys.size, dtype=bool) for p in self.params]

        def run(i: int) -> None:
            p = self.params[i]
            self.kernels.mask_at(p.keys, p.mask, self.sign_off, t, plan[i][1], masks[i])

        _cpu.map_chunks(run, [(i,) for i in range(len(self.params))])
        return [
            self.cut(t, ties, tied, below + ties, m, p.shape)
            for (below, ties, tied), m, p in zip(plan, masks, self.params, strict=True)
        ]

    def cut(self, t: np.integer, ties: int, tied: int, pruned: int, mask: np.ndarray, shape: tuple[int, ...]) -> Cut:
        return Cut(
            threshold=_value_of(int(t), self.params[0].dtype),
            ties=ties,
            tied=tied,
            pruned=pruned,
            mask=torch.from_numpy(mask).reshape(shape),
        )


def _key_of(value: float, dtype: torch.dtype) -> int:
    """The key of a (non-negative) score value in ``dtype``."""
    return int(torch.tensor([value], dtype=dtype).view(_cpu.INT_OF[dtype]).item())


def _value_of(key: int, dtype: torch.dtype) -> float:
    """The score value of a key in ``dtype``."""
    return float(torch.tensor([key], dtype=_cpu.INT_OF[dtype]).view(dtype).item())


_NOTHING = Cut(threshold=-math.inf, ties=0, tied=0, pruned=0)


def plan_cuts(sources: Sequence[ScoreSource], masks: Sequence[torch.Tensor], p: float) -> list[Cut]:
    """``lotto_core.selection.plan_cuts`` for torch tensors: the same cuts (threshold,
    ties, counts), each carrying its new mask. Registered with the core on import, so
    the core's groups use it for every group of torch tensors; groups the kernels do not
    cover go to ``plan_cuts_portable``.

    Parameters
    ----------
    sources
        One score source per parameter, in group order (the kernels cover the core's
        ``MagnitudeScores`` and ``RandomScores``).
    masks
        The parameters' boolean masks (``True`` = kept), in the same order.
    p
        The rate, in [0, 1).
    """
    kernels = _cpu.kernels()
    group = None if kernels is None else _params(sources, masks)
    if kernels is None or group is None:
        return plan_cuts_portable(sources, masks, p)
    params, kept = group
    k = prune_count(p, sum(kept))
    if k == 0:
        return [_NOTHING] * len(params)
    if k == sum(kept):
        return [Cut(threshold=math.inf, ties=0, tied=0, pruned=n, everything=True) for n in kept]
    return _Search(kernels, params, kept, k).run()


register_native_planner(lambda mask: isinstance(mask, torch.Tensor), plan_cuts)
