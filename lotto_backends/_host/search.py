"""Exact selection over arrays in host memory, with the fused kernels of ``kernels``.

The rule is the core's (``lotto_core.selection``): exactly ``k = prune_count(p, kept)``
of a group's kept entries, one shared threshold ``t``, ties at ``t`` broken by parameter
order and then flattened (C-order) index, kept NaN scores never pruned. So is the search:
a strided sample brackets ``t`` in ``[lo, hi]``, one pass counts the kept scores below
``lo`` and extracts the band in between, and ``t`` is an order statistic of the band; a
band too wide for the budget is narrowed by bisecting with counting passes. What
differs is the pass: the core's is a dozen eager ops per chunk (an abs, two comparisons
to bool, two ands, two counts, a ``nonzero``), here it is one numba loop
(``kernels.split_band``) that also writes the new mask of every entry above the band,
run on a thread pool.

Scores are compared as integer keys (the float's bits without the sign bit; see
``kernels``), so half-precision weights need no widened copy. The adapters hand over
zero-copy NumPy views of their arrays and wrap the new masks, which are fresh 64-byte
aligned NumPy arrays, in their own array type.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from lotto_core.rate import prune_count
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource
from lotto_core.selection import Cut

from . import buffers, pool

__all__ = ["FORMATS", "HostParam", "KeyFormat", "host_group", "select"]

T = TypeVar("T")
_SAMPLE_SIZE = 1 << 18
_MIN_BAND = 1 << 18
_STD_MARGIN = 5.0


@dataclass(frozen=True)
class KeyFormat:
    """A float format as keys: the integer type of its width, the key of +inf, and
    ``value(key)``, the score a key stands for (exactly, as a Python float)."""

    name: str
    int_dtype: np.dtype
    inf: int
    exponent_bits: int
    mantissa_bits: int

    @property
    def smallest_normal(self) -> int:
        """The key of the smallest normal float."""
        return 1 << self.mantissa_bits

    def value(self, key: int) -> float:
        width = 1 + self.exponent_bits + self.mantissa_bits
        if width == 16 and self.exponent_bits == 8:  # bfloat16: the top half of a float32
            return float(np.array(key << 16, dtype=np.int32).view(np.float32))
        return float(np.array(key, dtype=self.int_dtype).view(f"f{width // 8}"))


def _format(name: str, exponent_bits: int, mantissa_bits: int) -> KeyFormat:
    width = 1 + exponent_bits + mantissa_bits
    inf = ((1 << exponent_bits) - 1) << mantissa_bits
    return KeyFormat(name, np.dtype(f"i{width // 8}"), inf, exponent_bits, mantissa_bits)


FORMATS = {
    f.name: f
    for f in (
        _format("float16", 5, 10),
        _format("bfloat16", 8, 7),
        _format("float32", 8, 23),
        _format("float64", 11, 52),
    )
}
"""The float formats the kernels rank, by dtype name."""


@dataclass(frozen=True)
class HostParam:
    """One parameter as the kernels see it: its scores' bits as a flat integer array of
    the format's width (only read), its flat boolean mask (``None``: all kept), and
    whether those bits are the weight's own (magnitude scores), from which the new
    weight can be written in the same pass."""

    keys: np.ndarray
    mask: np.ndarray | None
    weight: bool = False


@dataclass(frozen=True)
class _Split:
    """A parameter sorted by a bracket: its new mask so far (the kept entries above the
    bracket), its kept entries in the bracket, the band: flat positions (C order) and
    keys, and, if written, its new weight so far (cleared below the bracket)."""

    above: np.ndarray
    values: np.ndarray | None
    positions: np.ndarray
    keys: np.ndarray


@dataclass
class _Counts:
    """Per parameter: kept keys below ``lo`` and up to ``hi``."""

    below: list[int]
    upto: list[int]


class _Search:
    """One exact selection over a group (see the module docstring)."""

    def __init__(
        self,
        kernels: ModuleType,
        params: list[HostParam],
        fmt: KeyFormat,
        kept: list[int],
        k: int,
        threads: int,
        floor: int,
        values: bool,
    ) -> None:
        self.kernels = kernels
        self.params = params
        self.fmt = fmt
        self.kept = kept
        self.k = k
        self.threads = threads
        self.sign_off = fmt.int_dtype.type(np.iinfo(fmt.int_dtype).max)
        self.inf = fmt.int_dtype.type(fmt.inf)
        self.zero = fmt.int_dtype.type(0)
        self.floor = fmt.int_dtype.type(floor)
        self.values = values
        self.budget = max(_MIN_BAND, sum(p.keys.size for p in params) >> 6)
        self.tasks = [(i, a, b) for i, p in enumerate(params) for a, b in pool.chunks(p.keys.size)]
        """``(parameter, start, stop)`` of every chunk, the unit of a pass."""

    def map(self, fn: Callable[..., T], tasks: list[tuple[Any, ...]]) -> list[T]:
        return pool.map_chunks(fn, tasks, self.threads)

    def bracket(self) -> tuple[np.integer, np.integer]:
        """Keys around the target rank in a strided sample of the kept comparable keys,
        ``_STD_MARGIN`` standard deviations of the sample's rank on either side."""
        total = sum(p.keys.size for p in self.params)
        step = max(1, total // _SAMPLE_SIZE)

        def run(p: HostParam) -> np.ndarray:
            out = np.empty(-(-p.keys.size // step) + 1, dtype=p.keys.dtype)
            return out[: self.kernels.sample(p.keys, p.mask, self.sign_off, self.floor, self.inf, step, out)]

        sample = np.concatenate(self.map(run, [(p,) for p in self.params]))
        n = int(sample.size)
        q = self.k / sum(self.kept)
        centre = q * n - 1.0
        margin = _STD_MARGIN * math.sqrt(n * q * (1.0 - q)) + 2.0
        i_lo, i_hi = math.floor(centre - margin), math.ceil(centre + margin)
        # one partition per rank: numpy partitions for two ranks at once ten times slower
        lo = np.partition(sample, i_lo)[i_lo] if 0 <= i_lo < n else self.zero
        hi = np.partition(sample, i_hi)[i_hi] if 0 <= i_hi < n else self.inf
        return lo, hi

    def count(self, lo: np.integer, hi: np.integer) -> _Counts:
        kernels, so, floor = self.kernels, self.sign_off, self.floor

        def run(i: int, a: int, b: int) -> tuple[int, int]:
            p = self.params[i]
            below, upto = kernels.count_band(p.keys[a:b], None if p.mask is None else p.mask[a:b], so, floor, lo, hi)
            return int(below), int(upto)

        return self._sum(self.map(run, self.tasks))

    def _sum(self, results: Sequence[tuple[Any, ...]]) -> _Counts:
        below, upto = [0] * len(self.params), [0] * len(self.params)
        for (i, _, _), (b, u, *_) in zip(self.tasks, results, strict=True):
            below[i] += b
            upto[i] += u
        return _Counts(below, upto)

    def split(self, lo: np.integer, hi: np.integer) -> tuple[_Counts, list[_Split] | None]:
        """One pass: the counts, and every parameter split by ``[lo, hi]``, or ``None``
        when the band exceeds the budget (its entries are dropped as soon as that is
        known, and the rest of the pass only counts). New weights are written for the
        parameters whose keys are their weights, if asked."""
        kernels, so, floor = self.kernels, self.sign_off, self.floor
        above = [buffers.new(p.keys.size, bool) for p in self.params]
        values = [buffers.new(p.keys.size, p.keys.dtype) if self.values and p.weight else None for p in self.params]
        lock, full = threading.Lock(), threading.Event()
        room = [self.budget]

        def run(i: int, a: int, b: int) -> tuple[int, int, tuple[np.ndarray, np.ndarray] | None]:
            keys, mask = self.params[i].keys[a:b], self.params[i].mask
            mask = None if mask is None else mask[a:b]
            if full.is_set():
                below, upto = kernels.count_band(keys, mask, so, floor, lo, hi)
                return below, upto, None
            positions = pool.scratch("positions", b - a + 1, np.int64)
            band = pool.scratch("band", b - a + 1, keys.dtype)
            flags, new = pool.scratch("flags", b - a, bool), values[i]
            below, inside = kernels.split_band(
                keys, mask, so, floor, lo, hi, above[i][a:b], flags, positions, band, None if new is None else new[a:b]
            )
            with lock:
                room[0] -= inside
                fits = room[0] >= 0
            if not fits:
                full.set()
                return below, below + inside, None
            return below, below + inside, (positions[:inside] + a, band[:inside].copy())

        results = self.map(run, self.tasks)
        counts = self._sum(results)
        if full.is_set():
            return counts, None
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.params]
        for (i, _, _), (_, _, band) in zip(self.tasks, results, strict=True):
            if band is not None:
                parts[i].append(band)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.zero.dtype))
        return counts, [
            _Split(new, value, *(np.concatenate(column) for column in zip(*part, strict=True)) if part else empty)
            for new, value, part in zip(above, values, parts, strict=True)
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
        cut keeps (a new weight: the band's entries that the cut prunes cleared)."""
        rank = self.k - sum(counts.below) - 1
        t = np.partition(np.concatenate([s.keys for s in splits]), rank)[rank]
        less = [below + int(np.count_nonzero(s.keys < t)) for below, s in zip(counts.below, splits, strict=True)]
        ties_left = self.k - sum(less)
        cuts = []
        for split, n_less in zip(splits, less, strict=True):
            tied = split.keys == t
            n_tied = int(np.count_nonzero(tied))
            ties = min(ties_left, n_tied)
            ties_left -= ties
            kept = (split.keys > t) | (tied & (np.cumsum(tied) > ties))
            split.above[split.positions[kept]] = True
            if split.values is not None:
                split.values[split.positions[~kept]] = 0
            cuts.append(self.cut(t, ties, n_tied, n_less + ties, split.above, split.values))
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
        masks = [buffers.new(p.keys.size, bool) for p in self.params]

        def run(i: int) -> None:
            p = self.params[i]
            self.kernels.mask_at(p.keys, p.mask, self.sign_off, self.floor, t, plan[i][1], masks[i])

        self.map(run, [(i,) for i in range(len(self.params))])
        return [self.cut(t, ties, tied, below + ties, m) for (below, ties, tied), m in zip(plan, masks, strict=True)]

    def cut(
        self, t: np.integer, ties: int, tied: int, pruned: int, mask: np.ndarray, values: np.ndarray | None = None
    ) -> Cut:
        return Cut(threshold=self.fmt.value(int(t)), ties=ties, tied=tied, pruned=pruned, mask=mask, values=values)


def host_group(
    sources: Sequence[ScoreSource],
    masks: Sequence[Any],
    weight_keys: Callable[[Any], tuple[np.ndarray, KeyFormat] | None],
    bool_view: Callable[[Any], np.ndarray | None],
) -> tuple[list[HostParam], KeyFormat] | None:
    """A group as the kernels see it, or ``None`` where any part of it is not covered
    or numba is missing.

    ``weight_keys`` and ``bool_view`` are the adapter's zero-copy views of its arrays
    (``None`` for an array they do not cover). Magnitude scores are the weight's own
    keys; the core's random scores are their float32 host values, for weights the
    kernels cover; other score sources, and groups of mixed formats, are not covered.
    """
    if pool.kernels() is None:
        return None
    params, formats = [], set()
    for source, mask in zip(sources, masks, strict=True):
        weight, flags = weight_keys(source.weight), bool_view(mask)
        if weight is None or flags is None or weight[0].size != flags.size:
            return None
        if type(source) is MagnitudeScores:
            (keys, fmt), own = weight, True
        elif type(source) is RandomScores:
            keys, fmt, own = source.host_values().reshape(-1).view(np.int32), FORMATS["float32"], False
        else:
            return None
        params.append(HostParam(keys, flags, own))
        formats.add(fmt)
    return (params, formats.pop()) if len(formats) == 1 else None


_NOTHING = Cut(threshold=-math.inf, ties=0, tied=0, pruned=0)


def select(
    params: Sequence[HostParam],
    fmt: KeyFormat,
    p: float,
    threads: int,
    *,
    flush_subnormals: bool = False,
    values: bool = False,
) -> list[Cut]:
    """``lotto_core.selection.plan_cuts`` over host arrays: the same cuts (threshold,
    ties, counts), each new mask a fresh, flat, 64-byte aligned NumPy array (``None``
    where the cut prunes nothing or everything), and so is each new weight, if asked.

    Parameters
    ----------
    params
        The group's parameters, in group order, all in ``fmt`` (as ``host_group``
        returns them).
    fmt
        The float format of every parameter's scores.
    p
        The rate, in [0, 1).
    threads
        How many threads the passes may use.
    flush_subnormals
        Rank subnormal scores as 0, as XLA's comparisons on the CPU do (JAX), where the
        scores' float type has subnormals that float32 does not hold as normal floats.
    values
        Also write the new weight (its bits, pruned entries cleared: exactly +0.0) of
        each parameter whose keys are its weight, in the pass that splits the keys: for
        frameworks whose arrays are immutable (JAX), which write a new weight anyway.
        Written when the band holds the threshold, as it nearly always does; where a
        cut comes otherwise, ``values`` is ``None`` and the writer zeroes the weight.
    """
    kernels = pool.kernels()
    if kernels is None:
        raise RuntimeError("numba is not installed: the host kernels are unavailable")
    kept = pool.map_chunks(
        lambda q: q.keys.size if q.mask is None else int(np.count_nonzero(q.mask)), [(q,) for q in params], threads
    )
    k = prune_count(p, sum(kept))
    if k == 0:
        return [_NOTHING] * len(params)
    if k == sum(kept):
        return [Cut(threshold=math.inf, ties=0, tied=0, pruned=n, everything=True) for n in kept]
    # a mask that keeps every entry is left out of the passes
    lean = [q if n < q.keys.size else replace(q, mask=None) for q, n in zip(params, kept, strict=True)]
    floor = fmt.smallest_normal if flush_subnormals and fmt.exponent_bits >= 8 else 0
    return _Search(kernels, lean, fmt, kept, k, threads, floor, values).run()
