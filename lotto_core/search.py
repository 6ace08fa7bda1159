"""Exact global selection, written once: which kept weights a round prunes.

Given a group's scores and masks and a rate ``p``, choose exactly
``k = prune_count(p, kept)`` kept entries with one shared threshold ``t``: every kept
entry scored below ``t`` goes, and of those scored exactly ``t`` the first ones go, in
order of parameter and then of flattened (C-order) index. Kept NaN scores never go.

The threshold is found by counting, never by sorting or concatenating the group. Scores
are ranked as integer keys (``lotto_core.keys``), so a bracket ``[lo, hi]`` of keys that
holds ``t`` can be narrowed down to a single key:

1. a strided sample of the kept scores brackets ``t`` around the target rank;
2. passes that can extract a *band* (the kept scores in the bracket, with their
   positions) split the group by the bracket in one pass, and ``t`` is the band's order
   statistic; the new masks come from the same pass. A bracket the sample missed is
   widened, and one whose band is too wide for the budget is narrowed as in 3;
3. passes that cannot (XLA, where stream compaction costs some 80 elementwise passes)
   count the kept scores at or below up to ``_PIVOTS`` pivots per pass: first the
   sample's order statistics around the target, then pivots aimed where the target would
   be if the bracket's scores were spread evenly over its values, or an even split when
   that narrowed little, until the bracket is one key;
4. the new masks: from the band, or from one pass at ``t``.

Time is O(N) in the number of weights and only counts and pivots cross between the
search and the arrays. The passes (``Passes``, ``BandPasses``) are what a backend
supplies: ``lotto_core.passes`` in the Array API standard, and the adapters' host
kernels and jit-compiled XLA passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np

from ._array_api import Array
from .keys import FORMATS, KeyFormat
from .rate import prune_count

__all__ = ["NOTHING", "BandPasses", "Count", "Cut", "Passes", "even_split", "select"]

SAMPLE_SIZE = 1 << 18
"""Entries in the strided sample that brackets the threshold."""
MIN_BAND = 1 << 18
"""The smallest band budget; the budget is 1/64 of the group's entries from 16M up."""
STD_MARGIN = 5.0
"""The first bracket reaches this many standard deviations of the sample's rank."""
PIVOTS = 16
"""Pivots per counting pass (16 counters stay in registers on x86; 32 spill)."""
SPAN = 2.5
"""Pivots cover the guessed rank +- this many standard deviations (98.8% of the time)."""


@dataclass(frozen=True)
class Cut:
    """What one round removes from one parameter.

    Kept entries scored below ``threshold`` are pruned, and so are the first ``ties``
    (C order) of the ``tied`` kept entries scored exactly ``threshold``. ``everything``
    prunes every kept entry. ``mask`` is the new mask where the cut prunes anything and
    not everything; ``values``, the parameter's new weight (pruned entries exactly
    +0.0) where the passes wrote that too. ``kept`` is how many entries the mask kept before
    the round, where the selection counted them.
    """

    threshold: float
    ties: int
    tied: int
    pruned: int
    everything: bool = False
    kept: int | None = field(default=None, compare=False)
    mask: Array | None = field(default=None, compare=False, repr=False)
    values: Array | None = field(default=None, compare=False, repr=False)


NOTHING = Cut(threshold=-math.inf, ties=0, tied=0, pruned=0)
"""The cut that prunes nothing."""


class Passes(Protocol):
    """The passes a backend runs over a group's scores and masks for one selection.

    Counts are of *kept* entries whose key lies in ``[-fmt.inf, fmt.inf]`` (NaN never
    counts). Arrays stay where they are; counts and sampled keys come back as NumPy."""

    fmt: KeyFormat
    """The format whose keys rank the scores."""
    size: int
    """Entries in the group, kept or not."""
    zero_below: int
    """Keys of magnitude below it rank as 0 (XLA compares subnormal floats as 0); 0 for
    passes that rank every float apart."""

    def kept(self) -> list[int]:
        """Kept entries per parameter."""
        ...

    def sample(self, step: int) -> np.ndarray:
        """The integer keys of every ``step``-th flattened entry that is kept and not NaN."""
        ...

    def count(self, keys: Sequence[int]) -> np.ndarray:
        """For each parameter (rows) and ascending pivot key (columns), the kept entries
        with key ``<=`` it; at most ``PIVOTS`` keys."""
        ...

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Array | None, Array | None]]:
        """Per parameter, ``(new mask, new weight or None)`` after its cut at key ``t``
        (which also prunes the first ``cut.ties`` kept entries keyed ``t``); ``(None,
        None)`` where the cut prunes nothing."""
        ...


@runtime_checkable
class BandPasses(Passes, Protocol):
    """Passes that can also extract a band of scores, and then build the new masks from
    that same pass (``masks`` uses the band of the last ``split`` that fitted)."""

    def split(self, lo: int, hi: int, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Per parameter, the kept keys ``< lo`` and ``<= hi``; and whether the band, the
        kept keys in ``[lo, hi]``, fitted in ``budget`` entries and is held."""
        ...

    def band_select(self, rank: int) -> tuple[int, np.ndarray, np.ndarray]:
        """The ``rank``-th smallest key of the held band and, per parameter, its keys
        below and equal to it."""
        ...

    def band_count(self, keys: Sequence[int]) -> np.ndarray:
        """For each parameter (rows) and ascending key (columns), the held band's keys
        ``<=`` it: what passes over several processes add up to select in their bands
        together (``band_select`` over all of them)."""
        ...


Count = Callable[[int, int], int]
"""``count(kept, size) -> k``: how many of the ``kept`` weights, of ``size`` in all, go."""


def select(passes: Passes, amount: float | Count) -> list[Cut]:
    """The cuts of one round over a group, through a backend's passes: at rate
    ``amount`` (``prune_count``), or ``amount(kept, size)`` of the kept weights."""
    kept = passes.kept()
    k = amount(sum(kept), passes.size) if callable(amount) else prune_count(amount, sum(kept))
    if not 0 <= k <= sum(kept):
        raise ValueError(f"a round must prune between 0 and the {sum(kept)} kept weights, not {k}")
    if k == 0:
        return [NOTHING] * len(kept)
    if k == sum(kept):
        comparable = int(passes.count([passes.fmt.inf]).sum())
        if comparable < k:
            raise ValueError(_too_few(comparable, k) + ": a kept NaN is never pruned")
        return [Cut(threshold=math.inf, ties=0, tied=0, pruned=n, everything=True, kept=n) for n in kept]
    return _Search(passes, kept, k).run()


def _too_few(comparable: int, k: int) -> str:
    return f"only {comparable} kept scores are comparable (the rest are NaN); cannot prune {k}"


def _key_near(fmt: KeyFormat, value: float) -> int:
    """The key of the value of ``fmt`` nearest ``value`` (bfloat16: truncated)."""
    if fmt.name == "bfloat16":
        key = FORMATS["float32"].key(float(np.float32(value)))
        return key >> 16 if key >= 0 else -((-key) >> 16)
    return fmt.key(float(np.asarray(value, dtype=f"f{fmt.width // 8}")))


class _Search:
    """One selection (see the module docstring). The threshold's key lies in
    ``[lo, hi]``; per parameter, ``below`` counts the kept keys under ``lo`` and
    ``upto`` those up to ``hi``, so that ``sum(below) < k <= sum(upto)``. Until a pass
    has counted up to ``+inf``, ``hi`` is one past it."""

    def __init__(self, passes: Passes, kept: list[int], k: int) -> None:
        self.passes, self.fmt, self.k, self.kept = passes, passes.fmt, k, kept
        self.q = k / sum(kept)
        self.lo, self.hi = -self.fmt.inf, self.fmt.inf + 1
        self.below = np.zeros(len(kept), np.int64)
        self.upto = self.below

    def run(self) -> list[Cut]:
        sample = self.passes.sample(max(1, self.passes.size // SAMPLE_SIZE))
        n = int(sample.size)
        centre = self.q * n - 1.0
        if isinstance(self.passes, BandPasses):
            margin = STD_MARGIN * math.sqrt(n * self.q * (1.0 - self.q)) + 2.0
            i_lo, i_hi = math.floor(centre - margin), math.ceil(centre + margin)
            # one partition at both ranks: 2-10x faster than one per rank (NumPy 2.4), a sort 6x slower
            kth = [i for i in (i_lo, i_hi) if 0 <= i < n]
            part = np.partition(sample, kth) if kth else sample
            lo = int(part[i_lo]) if i_lo >= 0 else -self.fmt.inf
            hi = int(part[i_hi]) if i_hi < n else self.fmt.inf
            if self.split(self.passes, lo, hi):
                t, less, tied = self.passes.band_select(self.k - int(self.below.sum()) - 1)
                return self.cuts(t, self.below + less, tied)
        else:
            sample = np.sort(sample)
            sd = math.sqrt(n * self.q * (1.0 - self.q)) + 1.0
            ranks = np.clip(np.round(centre + np.linspace(-SPAN, SPAN, PIVOTS - 2) * sd), 0, n - 1)
            keys = [*sorted({int(sample[int(r)]) for r in ranks} if n else set()), self.fmt.inf]
            self.narrow(keys, self.passes.count(keys))
        self.pin()
        return self.cuts(self.lo, self.below, self.upto - self.below)

    def split(self, passes: BandPasses, lo: int, hi: int) -> bool:
        """Split by ``[lo, hi]`` until the bracket holds the threshold (a bracket the
        sample missed is replaced by the side beyond it); whether the band fitted."""
        inf = self.fmt.inf
        while True:
            below, upto, banded = passes.split(lo, hi, max(MIN_BAND, passes.size >> 6))
            if below.sum() >= self.k:
                lo, hi = -inf, lo - 1
            elif upto.sum() < self.k:
                if hi >= inf:
                    raise ValueError(_too_few(int(upto.sum()), self.k))
                lo, hi = hi + 1, inf
            else:
                self.lo, self.hi, self.below, self.upto = lo, hi, below, upto
                return banded

    def narrow(self, keys: Sequence[int], counts: np.ndarray) -> None:
        """Move the bracket to the pivots on either side of the target."""
        for j, key in enumerate(keys):
            if not self.lo <= key < self.hi:
                continue
            if int(counts[:, j].sum()) >= self.k:
                self.hi, self.upto = key, counts[:, j]
                break
            self.lo, self.below = key + 1, counts[:, j]
        if self.lo > self.fmt.inf:
            raise ValueError(_too_few(int(self.below.sum()), self.k))

    def pin(self) -> None:
        """Narrow the bracket to one key by counting passes; an even split follows a
        pass that narrowed less than one would have, so a search ends within ``width``
        bits / log2(17) passes."""
        even = False
        while self.lo != self.hi:
            width = self.hi - self.lo
            keys = ([] if even or width <= PIVOTS else self.aimed()) or even_split(self.lo, self.hi)
            self.narrow(keys, self.passes.count(keys))
            even = (self.hi - self.lo) * (PIVOTS + 1) > width

    def aimed(self) -> list[int]:
        """Keys in ``[lo, hi)`` around where the target would be if the bracket's scores
        were spread evenly over its values, +-``SPAN`` standard deviations of that guess;
        the keys next to the guess once they are that few."""
        lo, hi = self.lo, self.hi
        v_lo, v_hi = self.fmt.value(lo), self.fmt.value(min(hi, self.fmt.inf))
        if not (math.isfinite(v_lo) and math.isfinite(v_hi)):
            return []
        rank, inside = self.k - int(self.below.sum()), int((self.upto - self.below).sum())
        f = (rank - 0.5) / inside
        sd = math.sqrt(inside * f * (1.0 - f)) + 1.0

        def key_at(fraction: float) -> int:
            return min(hi - 1, max(lo, _key_near(self.fmt, v_lo + min(1.0, max(0.0, fraction)) * (v_hi - v_lo))))

        spread = [key_at((rank - 0.5 + z * sd) / inside) for z in np.linspace(-SPAN, SPAN, PIVOTS)]
        if spread[-1] - spread[0] > 3 * PIVOTS:
            return sorted(set(spread))
        start = min(max(lo, key_at(f) - PIVOTS // 2), hi - PIVOTS)
        return list(range(start, start + PIVOTS))

    def cuts(self, t: int, less: np.ndarray, tied: np.ndarray) -> list[Cut]:
        """The cuts at key ``t``: each parameter's ``less`` entries below it go, and the
        ties left over from the earlier parameters."""
        if abs(t) < self.passes.zero_below:  # the first of the keys that rank as 0 stands for them
            t = 0
        ties_left = self.k - int(less.sum())
        ties = []
        for n_tied in tied:
            ties.append(min(ties_left, int(n_tied)))
            ties_left -= ties[-1]
        threshold = self.fmt.value(t)
        cuts = [
            Cut(threshold=threshold, ties=m, tied=int(n_tied), pruned=int(n) + m, kept=kept)
            for n, m, n_tied, kept in zip(less, ties, tied, self.kept, strict=True)
        ]
        written = self.passes.masks(t, cuts)
        return [replace(cut, mask=mask, values=values) for cut, (mask, values) in zip(cuts, written, strict=True)]


def even_split(lo: int, hi: int) -> list[int]:
    """At most ``PIVOTS`` integers in ``[lo, hi)`` that cut ``[lo, hi]`` into equal ranges."""
    width = hi - lo + 1
    if width <= PIVOTS + 1:
        return list(range(lo, hi))
    return [lo + (j * width) // (PIVOTS + 1) - 1 for j in range(1, PIVOTS + 1)]
