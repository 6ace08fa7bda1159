"""The selection's passes over arrays in host memory, in the fused kernels of ``kernels``.

The search is the core's (``lotto_core.search``); these are its passes for scores >= 0
(magnitudes, the core's random scores) read through zero-copy NumPy views of a
framework's arrays. Where the Array API passes run a dozen eager ops per chunk (an abs,
two comparisons to bool, two ands, two counts, a ``nonzero``), a pass here is one numba
loop per chunk on a thread pool: ``split_band`` counts, extracts the band and writes the
new mask of every entry above it at once. A key is the score's bits with the sign bit
cleared (``lotto_core.keys`` for scores >= 0), so half-precision weights need no widened
copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from lotto_core.keys import FORMATS, KeyFormat
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource
from lotto_core.search import Cut

from . import buffers, pool

__all__ = ["HostParam", "HostPasses", "host_group"]

T = TypeVar("T")
Written = list[tuple[np.ndarray | None, np.ndarray | None]]


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
    """A parameter split by a bracket: its new mask so far (the kept entries above it),
    the band's flat positions and keys, and, if written, its new weight so far."""

    above: np.ndarray
    values: np.ndarray | None
    positions: np.ndarray
    keys: np.ndarray


def host_group(
    sources: Sequence[ScoreSource],
    masks: Sequence[Any],
    weight_keys: Callable[[Any], tuple[np.ndarray, KeyFormat] | None],
    bool_view: Callable[[Any], np.ndarray | None],
) -> tuple[list[HostParam], KeyFormat] | None:
    """A group as the kernels see it, or ``None`` where any part of it is not covered
    or numba is missing. ``weight_keys`` and ``bool_view`` are the adapter's zero-copy
    views of its arrays (``None`` for one they do not cover). Magnitude scores are the
    weight's own bits; the core's random scores their float32 host values; other score
    sources, and groups of mixed formats, are not covered."""
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


class HostPasses:
    """``lotto_core.search.BandPasses`` over host arrays. The new masks (and weights)
    are fresh, flat, 64-byte aligned NumPy buffers, handed to ``wrap`` to become the
    framework's arrays.

    Parameters
    ----------
    params, fmt
        The group as ``host_group`` gives it.
    threads
        How many threads the passes may use.
    floor
        Keys below it rank as 0: the key of the smallest normal float where XLA's CPU
        comparisons flush subnormals to zero (JAX), else 0.
    values
        Also write the new weight of each parameter whose keys are its weight, in the
        pass that splits the keys (for immutable arrays, which need a new one anyway).
    """

    def __init__(
        self,
        params: Sequence[HostParam],
        fmt: KeyFormat,
        threads: int,
        *,
        floor: int = 0,
        values: bool = False,
        wrap: Callable[[Written], list[tuple[Any, Any]]] = list,
    ) -> None:
        kernels = pool.kernels()
        if kernels is None:
            raise RuntimeError("numba is not installed: the host kernels are unavailable")
        self.kernels, self.params, self.fmt, self.threads = kernels, list(params), fmt, threads
        self.size = sum(q.keys.size for q in params)
        int_type = fmt.int_dtype.type
        self.int_type = int_type
        self.sign_off, self.floor = int_type(np.iinfo(fmt.int_dtype).max), int_type(floor)
        self.zero_below = 0  # the kernels rank keys under ``floor`` as 0 themselves
        self.values, self.wrap = values, wrap
        self.tasks = [(i, a, b) for i, q in enumerate(params) for a, b in pool.chunks(q.keys.size)]
        """``(parameter, start, stop)`` of every chunk, the unit of a pass."""
        self.splits: list[_Split] | None = None
        self.sorted_band: list[np.ndarray] | None = None

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        return pool.map_chunks(fn, tasks, self.threads)

    def kept(self) -> list[int]:
        kept = self.map(
            lambda q: q.keys.size if q.mask is None else int(np.count_nonzero(q.mask)), [(q,) for q in self.params]
        )
        # a mask that keeps every entry is left out of the passes
        self.params = [q if n < q.keys.size else replace(q, mask=None) for q, n in zip(self.params, kept, strict=True)]
        return kept

    def key(self, key: int) -> np.integer:
        """A key as the kernels' integer type (keys here are >= 0: -1 is below them all)."""
        key_as_int: np.integer = self.int_type(min(max(key, -1), self.fmt.inf + 1))
        return key_as_int

    def sample(self, step: int) -> np.ndarray:
        inf = self.int_type(self.fmt.inf)

        def run(q: HostParam) -> np.ndarray:
            out = np.empty(-(-q.keys.size // step) + 1, dtype=q.keys.dtype)
            return out[: self.kernels.sample(q.keys, q.mask, self.sign_off, self.floor, inf, step, out)]

        return np.concatenate(self.map(run, [(q,) for q in self.params]))

    def count(self, keys: Sequence[int]) -> np.ndarray:
        pivots = np.asarray([self.key(k) for k in keys], dtype=self.fmt.int_dtype)

        def run(i: int, a: int, b: int) -> np.ndarray:
            q, out = self.params[i], np.zeros(len(keys), np.int64)
            mask = None if q.mask is None else q.mask[a:b]
            self.kernels.count_upto(q.keys[a:b], mask, self.sign_off, self.floor, pivots, out)
            return out

        counts = np.zeros((len(self.params), len(keys)), np.int64)
        for (i, _, _), part in zip(self.tasks, self.map(run, self.tasks), strict=True):
            counts[i] += part
        return counts

    def split(self, lo: int, hi: int, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """One pass: the counts, and every parameter split by ``[lo, hi]`` if the band
        fits in ``budget`` (its entries are dropped as soon as it does not, and the rest
        of the pass only counts)."""
        kernels, so, floor, k_lo, k_hi = self.kernels, self.sign_off, self.floor, self.key(lo), self.key(hi)
        above = [buffers.new(q.keys.size, bool) for q in self.params]
        values = [buffers.new(q.keys.size, q.keys.dtype) if self.values and q.weight else None for q in self.params]
        lock, full = threading.Lock(), threading.Event()
        room = [budget]

        def run(i: int, a: int, b: int) -> tuple[int, int, tuple[np.ndarray, np.ndarray] | None]:
            keys, mask = self.params[i].keys[a:b], self.params[i].mask
            mask = None if mask is None else mask[a:b]
            if full.is_set():
                below, upto = kernels.count_band(keys, mask, so, floor, k_lo, k_hi)
                return below, upto, None
            positions = pool.scratch("positions", b - a + 1, np.int64)
            band = pool.scratch("band", b - a + 1, keys.dtype)
            flags, new = pool.scratch("flags", b - a, bool), values[i]
            new = None if new is None else new[a:b]
            below, inside = kernels.split_band(
                keys, mask, so, floor, k_lo, k_hi, above[i][a:b], flags, positions, band, new
            )
            with lock:
                room[0] -= inside
                fits = room[0] >= 0
            if not fits:
                full.set()
                return below, below + inside, None
            return below, below + inside, (positions[:inside] + a, band[:inside].copy())

        results = self.map(run, self.tasks)
        below, upto = np.zeros(len(self.params), np.int64), np.zeros(len(self.params), np.int64)
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.params]
        for (i, _, _), (b, u, band) in zip(self.tasks, results, strict=True):
            below[i] += b
            upto[i] += u
            if band is not None:
                parts[i].append(band)
        self.splits, self.sorted_band = None, None
        if not full.is_set():
            empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.fmt.int_dtype))
            self.splits = [
                _Split(new, value, *(np.concatenate(column) for column in zip(*part, strict=True)) if part else empty)
                for new, value, part in zip(above, values, parts, strict=True)
            ]
        return below, upto, self.splits is not None

    def band_select(self, rank: int) -> tuple[int, np.ndarray, np.ndarray]:
        splits = self.splits or []
        t = np.partition(np.concatenate([s.keys for s in splits]), rank)[rank]
        less = np.asarray([np.count_nonzero(s.keys < t) for s in splits], np.int64)
        tied = np.asarray([np.count_nonzero(s.keys == t) for s in splits], np.int64)
        return int(t), less, tied

    def band_count(self, keys: Sequence[int]) -> np.ndarray:
        """Binary searches in the held band's keys, sorted once per split."""
        if self.sorted_band is None:
            self.sorted_band = [np.sort(s.keys) for s in self.splits or []]
        wanted = np.asarray(keys, np.int64)
        rows = [np.searchsorted(band, wanted, side="right") for band in self.sorted_band]
        return np.asarray(rows, np.int64).reshape(len(self.sorted_band), len(keys))

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Any, Any]]:
        """From the held split: the band's kept entries set in the mask (its pruned ones
        cleared in the new weight); else one ``mask_at`` pass per parameter."""
        written: Written = [(None, None)] * len(self.params)
        if self.splits is not None:
            for i, split in enumerate(self.splits):
                if cuts[i].pruned:
                    tied = split.keys == t
                    kept = (split.keys > t) | (tied & (np.cumsum(tied) > cuts[i].ties))
                    split.above[split.positions[kept]] = True
                    if split.values is not None:
                        split.values[split.positions[~kept]] = 0
                    written[i] = (split.above, split.values)
            return self.wrap(written)
        key = self.key(t)

        def run(i: int) -> None:
            q = self.params[i]
            mask = buffers.new(q.keys.size, bool)
            self.kernels.mask_at(q.keys, q.mask, self.sign_off, self.floor, key, cuts[i].ties, mask)
            written[i] = (mask, None)

        self.map(run, [(i,) for i, cut in enumerate(cuts) if cut.pruned])
        return self.wrap(written)
