"""The selection's passes in the Array API standard alone: any namespace, any device.

Every pass walks each parameter in chunks of at least ``CHUNK`` flattened entries and
about ``1/CHUNKS`` of the group's, so that a step's temporaries stay small beside the
weights and a large group on an accelerator takes few launches, and compares the scores
as floats (the standard has no bit casts): a pivot key becomes the float it stands for.
Only counts and a strided sample of scores reach the host, the counts of a pass in one
transfer (each read of a device scalar waits for the device); the band stays on the
device, and its order statistic is taken there by ``kth_smallest``.
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
"""The fewest entries in a chunk."""
CHUNKS = 32
"""A pass over a large group takes about this many chunks."""
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


def _read_counts(xp: Namespace, counts: list[Array]) -> np.ndarray:
    """The 0-d device counts of one pass as host int64s, read in one transfer."""
    if not counts:
        return np.zeros(0, np.int64)
    return to_numpy(xp.stack(counts), allow_device_copy=True).astype(np.int64)


class ArrayAPIPasses:
    """``lotto_core.search.BandPasses`` over score sources and masks of any namespace.
    With ``scatter`` the new masks are built from the band by position; without it (a
    namespace that cannot assign by index), from the scores in one more pass."""

    def __init__(self, sources: Sequence[ScoreSource], masks: Sequence[Array], scatter: Scatter | None = None) -> None:
        self.sources, self.old, self.scatter = sources, masks, scatter
        self.xp = xp = array_namespace(*masks)
        self.fmt: KeyFormat = format_of(sources[0].flat(0, 1).dtype)
        self.size = sum(src.size for src in sources)
        self.chunk = max(CHUNK, -(-self.size // CHUNKS))
        self.zero_below = 0
        self.flat_masks: list[Array | None] = [xp.reshape(m, (-1,)) for m in masks]
        self.bands: list[tuple[Array, Array] | None] | None = None
        self.above: list[Array] = []

    def kept(self) -> list[int]:
        kept = [int(n) for n in _read_counts(self.xp, [self.xp.count_nonzero(m) for m in self.old])]
        # a mask that keeps every entry is left out of the passes
        sizes = [src.size for src in self.sources]
        self.flat_masks = [None if n == size else m for m, n, size in zip(self.flat_masks, kept, sizes, strict=True)]
        return kept

    def chunks(self, i: int) -> Iterator[tuple[int, Array, Array | None]]:
        """``(start, scores, kept or None)`` of each chunk of parameter ``i``."""
        src, mask = self.sources[i], self.flat_masks[i]
        for start in range(0, src.size, self.chunk):
            stop = min(start + self.chunk, src.size)
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
        counts, owner = [], []
        for i in range(len(self.sources)):
            for _, s, kept in self.chunks(i):
                for j, v in enumerate(values):
                    counts.append(xp.count_nonzero(s <= v if kept is None else (s <= v) & kept))
                    owner.append((i, j))
        out = np.zeros((len(self.sources), len(keys)), np.int64)
        if owner:
            rows, cols = np.asarray(owner, np.int64).T
            np.add.at(out, (rows, cols), _read_counts(xp, counts))
        return out

    def split(self, lo: int, hi: int, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
        xp, v_lo, v_hi = self.xp, self.fmt.value(lo), self.fmt.value(hi)
        below = np.zeros(len(self.sources), np.int64)
        bands: list[tuple[Array, Array] | None] = []
        above = []
        room = budget
        upto_counts, owner = [], []
        for i, mask in enumerate(self.old):
            values, positions, above_parts = [], [], []
            for start, s, kept in self.chunks(i):
                at_most = s <= v_hi
                le = at_most if kept is None else at_most & kept
                local = xp.nonzero(le & (s >= v_lo))[0]
                upto_counts.append(xp.count_nonzero(le))
                owner.append(i)
                below[i] -= int(local.shape[0])
                room -= int(local.shape[0])
                if room >= 0 and local.shape[0]:
                    values.append(xp.take(s, local))
                    positions.append(local + start)
                not_le = xp.logical_not(at_most)
                above_parts.append(not_le if kept is None else not_le & kept)
            bands.append((_concat(xp, values), _concat(xp, positions)) if values else None)
            above.append(xp.reshape(_concat(xp, above_parts), mask.shape))
        upto = np.zeros(len(self.sources), np.int64)
        np.add.at(upto, np.asarray(owner, np.int64), _read_counts(xp, upto_counts))
        below += upto
        self.bands, self.above = (bands, above) if room >= 0 else (None, [])
        return below, upto, room >= 0

    def _held_bands(self) -> list[tuple[int, Array]]:
        """``(parameter index, band scores)`` of each parameter with a band."""
        return [(i, b[0]) for i, b in enumerate(self.bands or []) if b is not None]

    def band_select(self, rank: int) -> tuple[int, np.ndarray, np.ndarray]:
        xp, held, n = self.xp, self._held_bands(), len(self.bands or [])
        t = kth_smallest(xp, _concat(xp, [band for _, band in held]), rank)
        read = _read_counts(
            xp, [xp.count_nonzero(band < t) for _, band in held] + [xp.count_nonzero(band == t) for _, band in held]
        )
        less, tied = np.zeros(n, np.int64), np.zeros(n, np.int64)
        where = [i for i, _ in held]
        less[where], tied[where] = read[: len(held)], read[len(held) :]
        return self.fmt.key(t), less, tied

    def band_count(self, keys: Sequence[int]) -> np.ndarray:
        xp, values, held = self.xp, [self.fmt.value(key) for key in keys], self._held_bands()
        read = _read_counts(xp, [xp.count_nonzero(band <= v) for _, band in held for v in values])
        out = np.zeros((len(self.bands or []), len(keys)), np.int64)
        out[[i for i, _ in held]] = read.reshape(len(held), len(keys))
        return out

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
