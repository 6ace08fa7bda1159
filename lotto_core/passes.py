"""The selection's passes in the Array API standard alone: any namespace, any device.

Every pass walks each parameter in chunks of ``CHUNK`` flattened entries, so that a
step's temporaries stay small beside the weights, and compares the scores as floats
(the standard has no bit casts): a pivot key becomes the float it stands for. Only
counts and a strided sample of scores reach the host; the band stays on the device,
and its order statistic is taken there by ``kth_smallest``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ._array_api import Array, Namespace, array_namespace, count_true, index_dtype, to_numpy
from .keys import KeyFormat, format_of
from .scores import ScoreSource
from .search import Cut

__all__ = ["ArrayAPIPasses", "Scatter", "kth_smallest", "set_in_place"]

CHUNK = 1 << 19
SORT_SIZE = 1 << 12
"""The largest sub-sample that ``kth_smallest`` sorts."""


def kth_smallest(xp: Namespace, x: Array, k: int) -> float:
    """The ``k``-th smallest (0-based) value of the 1-D array ``x`` (no NaN), on its
    device: sorts only sub-samples of at most ``SORT_SIZE`` values; the rest is counting."""
    n = int(x.shape[0])
    if not 0 <= k < n:
        raise ValueError(f"k must be in [0, {n}), got {k}")
    while n > SORT_SIZE:
        step = n // SORT_SIZE
        sub = xp.sort(x[::step])
        m = int(sub.shape[0])
        centre = (k + 0.5) / n * m
        margin = 5.0 * math.sqrt(m * 0.25) + 2.0
        i_lo, i_hi = math.floor(centre - margin), math.ceil(centre + margin)
        lo = float(sub[i_lo]) if i_lo >= 0 else -math.inf
        hi = float(sub[i_hi]) if i_hi < m else math.inf
        below = count_true(xp, x < lo)
        inside = (x >= lo) & (x <= hi)
        n_in = count_true(xp, inside)
        if below > k or below + n_in <= k:  # the sub-sample missed: take the safe side
            lo, hi = (-math.inf, lo) if below > k else (hi, math.inf)
            below = count_true(xp, x < lo)
            inside = (x >= lo) & (x <= hi)
            n_in = count_true(xp, inside)
        if lo == hi:
            return lo
        if n_in == n:  # every value is in the band: the sub-sample cannot narrow it
            break
        x, k, n = x[inside], k - below, n_in
    return float(xp.sort(x)[k])


def _first(xp: Namespace, flags: Array, n: int) -> Array:
    """The first ``n`` ``True`` entries of the 1-D boolean ``flags`` (C order)."""
    order = xp.cumulative_sum(xp.astype(flags, index_dtype(xp, flags)))
    return flags & (order <= n)


Scatter = Callable[[Array, Array], Array]
"""``scatter(mask, positions) -> mask``: the flat ``positions`` of ``mask`` set to
``True`` (in place where the arrays allow it); a backend's, as the standard has none."""


def set_in_place(mask: Array, positions: Array) -> Array:
    """The ``Scatter`` of arrays that take integer-array assignment (NumPy, torch)."""
    mask.reshape(-1)[positions] = True
    return mask


def _concat(xp: Namespace, parts: list[Array]) -> Array:
    return parts[0] if len(parts) == 1 else xp.concat(parts)


class ArrayAPIPasses:
    """``lotto_core.search.BandPasses`` over score sources and masks of any namespace.
    With ``scatter`` the new masks are built from the band by position; without it (a
    namespace that cannot assign by index), from the scores in one more pass."""

    def __init__(self, sources: Sequence[ScoreSource], masks: Sequence[Array], scatter: Scatter | None = None) -> None:
        self.sources, self.old, self.scatter = sources, masks, scatter
        self.xp = xp = array_namespace(*masks)
        self.fmt: KeyFormat = format_of(sources[0].flat(0, 1).dtype)
        self.size = sum(src.size for src in sources)
        self.zero_below = 0
        self.flat_masks: list[Array | None] = [xp.reshape(m, (-1,)) for m in masks]
        self.bands: list[tuple[Array, Array] | None] | None = None
        self.above: list[Array] = []

    def kept(self) -> list[int]:
        kept = [count_true(self.xp, m) for m in self.old]
        # a mask that keeps every entry is left out of the passes
        sizes = [src.size for src in self.sources]
        self.flat_masks = [None if n == size else m for m, n, size in zip(self.flat_masks, kept, sizes, strict=True)]
        return kept

    def chunks(self, i: int) -> Iterator[tuple[int, Array, Array | None]]:
        """``(start, scores, kept or None)`` of each chunk of parameter ``i``."""
        src, mask = self.sources[i], self.flat_masks[i]
        for start in range(0, src.size, CHUNK):
            stop = min(start + CHUNK, src.size)
            yield start, src.flat(start, stop), None if mask is None else mask[start:stop]

    def sample(self, step: int) -> np.ndarray:
        parts = []
        for src, mask in zip(self.sources, self.flat_masks, strict=True):
            s = src.sample(step)
            parts.append(s if mask is None else s[mask[::step]])
        sample = to_numpy(_concat(self.xp, parts), allow_device_copy=True)
        return self.fmt.keys(sample[~np.isnan(sample)])

    def count(self, keys: Sequence[int]) -> np.ndarray:
        xp, values = self.xp, [self.fmt.value(key) for key in keys]
        out = np.zeros((len(self.sources), len(keys)), np.int64)
        for i in range(len(self.sources)):
            for _, s, kept in self.chunks(i):
                for j, v in enumerate(values):
                    out[i, j] += count_true(xp, s <= v if kept is None else (s <= v) & kept)
        return out

    def split(self, lo: int, hi: int, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
        xp, v_lo, v_hi = self.xp, self.fmt.value(lo), self.fmt.value(hi)
        below, upto = np.zeros(len(self.sources), np.int64), np.zeros(len(self.sources), np.int64)
        bands: list[tuple[Array, Array] | None] = []
        above = []
        room = budget
        for i, mask in enumerate(self.old):
            values, positions, above_parts = [], [], []
            for start, s, kept in self.chunks(i):
                at_most = s <= v_hi
                le = at_most if kept is None else at_most & kept
                local = xp.nonzero(le & (s >= v_lo))[0]
                upto[i] += count_true(xp, le)
                below[i] -= int(local.shape[0])
                room -= int(local.shape[0])
                if room >= 0 and local.shape[0]:
                    values.append(xp.take(s, local))
                    positions.append(local + start)
                not_le = xp.logical_not(at_most)
                above_parts.append(not_le if kept is None else not_le & kept)
            below[i] += upto[i]
            bands.append((_concat(xp, values), _concat(xp, positions)) if values else None)
            above.append(xp.reshape(_concat(xp, above_parts), mask.shape))
        self.bands, self.above = (bands, above) if room >= 0 else (None, [])
        return below, upto, room >= 0

    def band_select(self, rank: int) -> tuple[int, np.ndarray, np.ndarray]:
        xp, bands = self.xp, self.bands or []
        t = kth_smallest(xp, _concat(xp, [b[0] for b in bands if b is not None]), rank)
        less = np.asarray([0 if b is None else count_true(xp, b[0] < t) for b in bands], np.int64)
        tied = np.asarray([0 if b is None else count_true(xp, b[0] == t) for b in bands], np.int64)
        return self.fmt.key(t), less, tied

    def band_count(self, keys: Sequence[int]) -> np.ndarray:
        xp, values = self.xp, [self.fmt.value(key) for key in keys]
        return np.asarray(
            [[0 if b is None else count_true(xp, b[0] <= v) for v in values] for b in self.bands or []], np.int64
        ).reshape(len(self.bands or []), len(keys))

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Array | None, Array | None]]:
        xp, v = self.xp, self.fmt.value(t)
        out: list[tuple[Array | None, Array | None]] = []
        for i, cut in enumerate(cuts):
            go, n_ties = cut.pruned > 0, cut.ties
            mask = self.from_band(i, v, n_ties) if go and self.bands is not None and self.scatter else None
            if go and mask is None:
                scores, old = self.sources[i].full(), self.old[i]
                mask = old & xp.logical_not(scores < v)
                if n_ties:
                    tied = xp.reshape(old & (scores == v), (-1,))
                    mask = mask & xp.logical_not(xp.reshape(_first(xp, tied, n_ties), old.shape))
            out.append((mask, None))
        return out

    def from_band(self, i: int, v: float, ties: int) -> Array:
        """Parameter ``i``'s new mask from the held split: the entries kept above the
        band, plus those of the band that the cut keeps."""
        xp, band = self.xp, (self.bands or [])[i]
        if band is None:
            return self.above[i]
        values, positions = band
        keep = xp.logical_not(values < v)
        if ties:
            keep = keep & xp.logical_not(_first(xp, values == v, ties))
        assert self.scatter is not None
        return self.scatter(self.above[i], positions[keep])
