"""Exact global selection: which kept weights a round prunes.

Given the score sources and masks of a group's parameters and a count ``k``, choose
exactly ``k`` kept entries with one shared threshold ``t``: every kept entry scored
below ``t`` goes, and of those scored exactly ``t`` the first ones go, in order of
parameter and then of flattened (C-order) index.

The threshold is found by counting, never by sorting or concatenating the group:

1. a strided sample of the kept scores brackets ``t`` in ``[lo, hi]``;
2. one pass per parameter counts the kept scores below ``lo`` and up to ``hi`` and
   extracts the few scores in between, if they fit in a small budget;
3. ``t`` is the right order statistic of that band. If the band did not fit, the
   bracket is bisected in the scores' own float order with counting passes, which need
   only scalar reductions, until it fits or holds a single value.

Order statistics of the small arrays (sample, band) use the same bracketing on a
sub-sample, so nothing larger than a few thousand values is ever sorted. Time is O(N)
in the number of weights; extra memory is one parameter's temporaries plus the sample
and band. Arrays never leave their device; only counts and a few threshold values cross
to the host. Kept scores that are NaN are never pruned.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from array_api_compat import is_jax_array, is_numpy_array, is_torch_array

from ._array_api import Array, Namespace, array_namespace, count_true, index_dtype
from .rate import prune_count
from .scores import ScoreSource

__all__ = ["Cut", "Planner", "apply_cut", "kth_smallest", "plan_cuts", "plan_cuts_portable", "register_native_planner"]

_SAMPLE_SIZE = 1 << 18
_SORT_SIZE = 1 << 12
_MIN_BAND = 1 << 18
_CHUNK = 1 << 19
_STD_MARGIN = 5.0


@dataclass(frozen=True)
class Cut:
    """What one round removes from one parameter.

    Kept entries scored below ``threshold`` are pruned, and so are the first ``ties``
    (C order) of the ``tied`` kept entries scored exactly ``threshold``. ``everything``
    prunes every kept entry. ``mask``, when the selection pass already built the new
    mask, saves ``apply_cut`` a pass over the scores; ``values``, the parameter's new
    weight (pruned entries exactly +0.0) when the pass wrote that too (asked for with
    ``plan_cuts(..., values=True)``), saves the writer another.
    """

    threshold: float
    ties: int
    tied: int
    pruned: int
    everything: bool = False
    mask: Array | None = field(default=None, compare=False, repr=False)
    values: Array | None = field(default=None, compare=False, repr=False)


_NOTHING = Cut(threshold=-math.inf, ties=0, tied=0, pruned=0)


def apply_cut(xp: Namespace, source: ScoreSource, mask: Array, cut: Cut) -> Array:
    """The new mask after ``cut``; the old mask itself is not modified. Scores are
    computed only when the selection pass did not already build the mask."""
    if cut.mask is not None:
        return cut.mask
    if cut.everything:
        return xp.zeros_like(mask)
    if cut.pruned == 0:
        return mask
    scores = source.full()
    t = cut.threshold
    if cut.ties == cut.tied:
        return mask & xp.logical_not(scores <= t)
    keep = mask & xp.logical_not(scores < t)
    if cut.ties == 0:
        return keep
    tied = xp.reshape(mask & (scores == t), (-1,))
    return keep & xp.logical_not(xp.reshape(_first(xp, tied, cut.ties), mask.shape))


def _first(xp: Namespace, flags: Array, n: int) -> Array:
    """The first ``n`` ``True`` entries of the 1-D boolean ``flags`` (the tied entries a
    cut prunes, in C order)."""
    order = xp.cumulative_sum(xp.astype(flags, index_dtype(xp, flags)))
    return flags & (order <= n)


def kth_smallest(xp: Namespace, x: Array, k: int) -> float:
    """The ``k``-th smallest (0-based) value of the 1-D array ``x`` (no NaN).

    Sorts only sub-samples of at most a few thousand values; the rest is counting.
    """
    n = int(x.shape[0])
    if not 0 <= k < n:
        raise ValueError(f"k must be in [0, {n}), got {k}")
    while n > _SORT_SIZE:
        step = n // _SORT_SIZE
        sub = xp.sort(x[::step])
        m = int(sub.shape[0])
        centre = (k + 0.5) / n * m
        margin = _STD_MARGIN * math.sqrt(m * 0.25) + 2.0
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


class _FloatOrder:
    """Maps the values of one float dtype to integers in the same order, so that a
    bracket can be bisected down to adjacent representable values."""

    def __init__(self, double: bool) -> None:
        self.fmt, self.ifmt, self.bits = ("<d", "<q", 64) if double else ("<f", "<i", 32)

    def key(self, value: float) -> int:
        bits: int = struct.unpack(self.ifmt, struct.pack(self.fmt, value))[0]
        return bits if bits >= 0 else -(bits & ((1 << (self.bits - 1)) - 1))

    def value(self, key: int) -> float:
        bits = key if key >= 0 else (-key) | (1 << (self.bits - 1))
        if bits >= 1 << (self.bits - 1):
            bits -= 1 << self.bits
        result: float = struct.unpack(self.fmt, struct.pack(self.ifmt, bits))[0]
        return result


@dataclass(frozen=True)
class _Band:
    """One parameter's kept scores inside the bracket and their flat (C-order)
    positions; both ``None`` when the parameter has none there."""

    values: Array | None
    positions: Array | None

    def count(self, xp: Namespace, condition: Callable[[Array], Array]) -> int:
        return 0 if self.values is None else count_true(xp, condition(self.values))


def _set_true(xp: Namespace, mask: Array, positions: Array) -> Array | None:
    """``mask`` with the flat ``positions`` set, or ``None`` where the namespace cannot
    scatter (array-api-strict); the caller then rebuilds the mask from the scores."""
    if is_numpy_array(mask) or is_torch_array(mask):
        xp.reshape(mask, (-1,))[positions] = True
        return mask
    if is_jax_array(mask):
        return xp.reshape(xp.reshape(mask, (-1,)).at[positions].set(True), mask.shape)
    return None


def _concat(xp: Namespace, parts: list[Array]) -> Array:
    return parts[0] if len(parts) == 1 else xp.concat(parts)


class _Selection:
    """One exact selection over a group (see the module docstring).

    Every pass walks each parameter in chunks of ``_CHUNK`` flattened entries, so that
    the temporaries of a step stay in cache and small beside the weights.
    """

    def __init__(self, sources: Sequence[ScoreSource], masks: Sequence[Array], k: int, kept: list[int]) -> None:
        self.sources = sources
        self.k = k
        self.kept = sum(kept)
        self.xp = xp = array_namespace(*masks)
        self.shapes = [tuple(m.shape) for m in masks]
        sizes = [math.prod(shape) for shape in self.shapes]
        # None where every entry is kept: the passes then skip the mask entirely
        self.flat_masks = [
            None if n == size else xp.reshape(m, (-1,)) for m, n, size in zip(masks, kept, sizes, strict=True)
        ]
        self.total = sum(sizes)
        self.band_budget = max(_MIN_BAND, self.total >> 6)

    def chunks(self, i: int) -> Iterator[tuple[int, Array, Array | None]]:
        """``(start, scores, kept)`` for each chunk of parameter ``i``; ``kept`` is
        ``None`` where every entry of the parameter is kept."""
        src, mask = self.sources[i], self.flat_masks[i]
        for start in range(0, src.size, _CHUNK):
            stop = min(start + _CHUNK, src.size)
            yield start, src.flat(start, stop), None if mask is None else mask[start:stop]

    def sample(self) -> Array:
        xp = self.xp
        step = max(1, self.total // _SAMPLE_SIZE)
        parts = []
        for src, mask in zip(self.sources, self.flat_masks, strict=True):
            s = src.sample(step)
            parts.append(s if mask is None else s[mask[::step]])
        sample = _concat(xp, parts)
        return sample[sample == sample]  # drop NaN

    def count(
        self, lo: float, hi: float, *, keep_above: bool
    ) -> tuple[list[int], list[int], list[_Band] | None, list[Array]]:
        """One pass: per parameter, the kept scores < lo and <= hi, the band of kept
        scores in [lo, hi] if all bands fit in the budget (else None), and, if asked,
        the kept entries above hi (the new mask before the band is decided)."""
        xp = self.xp
        below, upto, bands, above = [], [], [], []
        room = self.band_budget
        for i, shape in enumerate(self.shapes):
            n_le = n_in = 0
            values, positions, above_parts = [], [], []
            for start, s, kept in self.chunks(i):
                at_most = s <= hi
                le = at_most if kept is None else at_most & kept
                inside = le & (s >= lo)
                n_le += count_true(xp, le)
                local = xp.nonzero(inside)[0]
                n_in += int(local.shape[0])
                room -= int(local.shape[0])
                if room >= 0 and local.shape[0]:
                    values.append(xp.take(s, local))
                    positions.append(local + start)
                if keep_above:
                    not_le = xp.logical_not(at_most)
                    above_parts.append(not_le if kept is None else not_le & kept)
            below.append(n_le - n_in)
            upto.append(n_le)
            if room >= 0:
                bands.append(_Band(_concat(xp, values), _concat(xp, positions)) if values else _Band(None, None))
            if keep_above:
                above.append(xp.reshape(_concat(xp, above_parts), shape))
        return below, upto, bands if room >= 0 else None, above

    def count_upto(self, value: float) -> list[int]:
        xp = self.xp
        return [
            sum(count_true(xp, s <= value if kept is None else (s <= value) & kept) for _, s, kept in self.chunks(i))
            for i in range(len(self.sources))
        ]

    def kept_extreme(self, largest: bool) -> float:
        xp = self.xp
        fill = -math.inf if largest else math.inf
        best = fill
        for i in range(len(self.sources)):
            for _, s, kept in self.chunks(i):
                comparable = s == s if kept is None else (s == s) & kept
                masked = xp.where(comparable, s, xp.full_like(s, fill))
                v = float(xp.max(masked) if largest else xp.min(masked))
                best = max(best, v) if largest else min(best, v)
        return best

    def run(self) -> list[Cut]:
        xp, k = self.xp, self.k
        sample = self.sample()
        n = int(sample.shape[0])
        order = _FloatOrder(sample.dtype == xp.float64)
        q = k / self.kept
        centre = q * n - 1.0
        margin = _STD_MARGIN * math.sqrt(n * q * (1.0 - q)) + 2.0

        def at(i: float) -> float:
            if i < 0:
                return -math.inf
            if i >= n:
                return math.inf
            return kth_smallest(xp, sample, int(i))

        lo, hi = at(math.floor(centre - margin)), at(math.ceil(centre + margin))
        first = True
        while True:
            below, upto, bands, above = self.count(lo, hi, keep_above=first)
            if sum(below) >= k:  # t < lo: move the bracket down, wider
                margin *= 4
                hi, lo = lo, at(math.floor(centre - margin))
            elif sum(upto) < k:  # t > hi
                if hi == math.inf:
                    raise ValueError(
                        f"only {sum(upto)} kept scores are comparable (the rest are NaN); cannot prune {k}"
                    )
                margin *= 4
                lo, hi = hi, at(math.ceil(centre + margin))
            else:
                break
            first = False
        if bands is None:
            above = []
            if lo != hi:
                lo, hi, below, upto = self.bisect(order, lo, hi, below, upto)
            if lo != hi:
                below, upto, bands, _ = self.count(lo, hi, keep_above=False)

        if bands is None:
            t = lo
            less = below
            tied = [u - b for u, b in zip(upto, below, strict=True)]
        else:
            t = kth_smallest(xp, _concat(xp, [b.values for b in bands if b.values is not None]), k - sum(below) - 1)
            less = [b + band.count(xp, lambda v: v < t) for b, band in zip(below, bands, strict=True)]
            tied = [band.count(xp, lambda v: v == t) for band in bands]

        ties_left = k - sum(less)
        cuts = []
        for i, (n_less, n_tied) in enumerate(zip(less, tied, strict=True)):
            ties = min(ties_left, n_tied)
            ties_left -= ties
            cut = Cut(threshold=t, ties=ties, tied=n_tied, pruned=n_less + ties)
            if above and bands is not None:
                cut = self.with_mask(cut, above[i], bands[i])
            cuts.append(cut)
        return cuts

    def bisect(
        self, order: _FloatOrder, lo: float, hi: float, below: list[int], upto: list[int]
    ) -> tuple[float, float, list[int], list[int]]:
        """Narrow ``[lo, hi]`` by counting until its band fits the budget or it holds a
        single value; at most one pass per bit of the scores' dtype."""
        if lo == -math.inf:
            lo = self.kept_extreme(largest=False)
        if hi == math.inf:
            hi = self.kept_extreme(largest=True)
        while lo != hi and sum(upto) - sum(below) > self.band_budget:
            mid = order.value((order.key(lo) + order.key(hi)) // 2)
            at_mid = self.count_upto(mid)
            if sum(at_mid) >= self.k:
                hi, upto = mid, at_mid
            else:
                lo, below = order.value(order.key(mid) + 1), at_mid
        return lo, hi, below, upto

    def with_mask(self, cut: Cut, above: Array, band: _Band) -> Cut:
        """``cut`` with its new mask built from this pass: the entries kept above the
        bracket, plus the band entries that the cut keeps."""
        xp = self.xp
        if band.values is None or band.positions is None:
            return replace(cut, mask=above)
        keep = xp.logical_not(band.values < cut.threshold)
        if cut.ties:
            keep = keep & xp.logical_not(_first(xp, band.values == cut.threshold, cut.ties))
        mask = _set_true(xp, above, band.positions[keep])
        return cut if mask is None else replace(cut, mask=mask)


Planner = Callable[[Sequence[ScoreSource], Sequence[Array], float, bool], list[Cut]]
"""``(sources, masks, p, values) -> cuts``: the signature of ``plan_cuts``."""

_NATIVE_PLANNERS: list[tuple[Callable[[Array], bool], Planner]] = []


def register_native_planner(accepts: Callable[[Array], bool], planner: Planner) -> None:
    """Let an adapter select with its framework's own kernels (a native fast path, as in
    einops' backends: the core never names a framework). ``plan_cuts`` hands a group to
    the first ``planner`` whose ``accepts`` takes the group's first mask; the planner
    must return exactly the cuts that ``plan_cuts_portable`` defines, and may attach
    new weights (``Cut.values``) only where ``values`` asks for them."""
    _NATIVE_PLANNERS.append((accepts, planner))


def plan_cuts(sources: Sequence[ScoreSource], masks: Sequence[Array], p: float, *, values: bool = False) -> list[Cut]:
    """Decide, without writing anything, which kept entries of a group one round at rate
    ``p`` prunes: exactly ``prune_count(p, kept)`` of them, with one shared threshold.

    A native planner registered for the masks' arrays runs it (``lotto_backends.jax``
    registers jit-compiled counting passes for JAX arrays); any other array goes to
    ``plan_cuts_portable``.

    Parameters
    ----------
    sources
        One score source per parameter, in group order.
    masks
        The parameters' boolean masks (``True`` = kept), in the same order.
    p
        The rate, in [0, 1).
    values
        Let a native planner that reads each weight once for both (JAX's host kernels)
        also write the new weights (``Cut.values``). They then exist before any weight
        is replaced, so the groups ask only when the round is written right after.

    Returns
    -------
    list of Cut
        One per parameter; ``apply_cut`` turns each into the new mask.
    """
    live = [i for i, m in enumerate(masks) if math.prod(m.shape) > 0]
    if len(live) < len(masks):  # an empty parameter is pruned as if it were not there
        cuts = [_NOTHING] * len(masks)
        if live:
            inner = plan_cuts([sources[i] for i in live], [masks[i] for i in live], p, values=values)
            for i, cut in zip(live, inner, strict=True):
                cuts[i] = cut
        return cuts
    cuts = _planner(masks[0])(sources, masks, p, values)
    if any(cut.everything for cut in cuts):
        _refuse_kept_nan(sources, masks)
    return cuts


def _planner(mask: Array) -> Planner:
    for accepts, planner in _NATIVE_PLANNERS:
        if accepts(mask):
            return planner
    return lambda sources, masks, p, values: plan_cuts_portable(sources, masks, p)


def _refuse_kept_nan(sources: Sequence[ScoreSource], masks: Sequence[Array]) -> None:
    """Raise if a round that prunes every kept weight would prune a kept NaN score (a
    kept NaN is never pruned, whatever the count)."""
    xp = array_namespace(*masks)
    nan = 0
    for src, mask in zip(sources, masks, strict=True):
        flat = xp.reshape(mask, (-1,))
        for start in range(0, src.size, _CHUNK):
            stop = min(start + _CHUNK, src.size)
            s = src.flat(start, stop)
            nan += count_true(xp, xp.isnan(s) & flat[start:stop])
    if nan:
        kept = sum(count_true(xp, m) for m in masks)
        raise ValueError(
            f"only {kept - nan} kept scores are comparable (the rest are NaN); cannot prune {kept}: "
            "a kept NaN is never pruned"
        )


def plan_cuts_portable(sources: Sequence[ScoreSource], masks: Sequence[Array], p: float) -> list[Cut]:
    """``plan_cuts`` in the Array API standard alone: the selection of this module's
    docstring, on any namespace and device."""
    xp = array_namespace(*masks)
    kept = [count_true(xp, m) for m in masks]
    k = prune_count(p, sum(kept))
    if k == 0:
        return [_NOTHING] * len(masks)
    if k == sum(kept):
        return [Cut(threshold=math.inf, ties=0, tied=0, pruned=n, everything=True) for n in kept]
    return _Selection(sources, masks, k, kept).run()
