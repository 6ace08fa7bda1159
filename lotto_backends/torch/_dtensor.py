"""The selection's passes over DTensor weights (FSDP2, tensor parallelism): each rank
runs the local passes over its own shards, and the ranks agree through one all-gather
of the strided sample that brackets the threshold (one key per ``SAMPLE_SHARE``
entries, ``MAX_SAMPLE`` at most) and all-reduces of counts. Each rank splits its
shards by the bracket and holds its part of the band; the threshold is the order
statistic of all the ranks' bands, found by counting them at a few pivots per round
(``band_count``). Only when a tie at the threshold is split inside a parameter, a
bisection over the tied entries' global positions follows (one integer per step). No
weight, score or mask crosses; where a rank's band is too wide for the budget,
counting passes over the shards narrow the threshold instead.

The masks are those of the same weights pruned whole in one process, bit for bit: the
counts are the global counts, and the first ties in C order are found by their global
flat index. A weight replicated over a mesh dimension is counted once, by the ranks at
coordinate 0 of that dimension. Every rank of the default process group must prune (as
with DDP, the usual SPMD program).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from lotto_core.scores import ArrayScores, MagnitudeScores, RandomScores, ScoreSource
from lotto_core.search import BandPasses, Cut, Passes, even_split

__all__ = ["DTensorPasses", "LocalPasses"]

SAMPLE_SHARE, MIN_SAMPLE, MAX_SAMPLE = 128, 1 << 13, 1 << 17
"""The ranks gather one sampled key per ``SAMPLE_SHARE`` entries, at least
``MIN_SAMPLE`` and at most ``MAX_SAMPLE`` keys (512 KiB): at most 0.8% of float32
weights' bytes, 0.4% of 134 MB of them, and enough to bracket the threshold within the
band's budget (1/64 of the entries, which needs some 10^5 keys at a rate of 0.5)."""

LocalPasses = Callable[[Sequence[ScoreSource], Sequence[torch.Tensor]], Passes]
"""``local(sources, masks) -> Passes``: the backend's passes over plain local tensors."""


def _check_all_dtensors(masks: Sequence[Any]) -> None:
    if not all(isinstance(m, DTensor) for m in masks):
        raise TypeError(
            "a group mixes DTensor weights with plain tensors: put the sharded layers (fully_shard, "
            "parallelize_module) and the unsharded ones in separate groups"
        )


def _settled(x: DTensor) -> DTensor:
    """``x`` with its partial placements reduced to ``Replicate``: the per-unit scores and
    masks of a structure reduced over a sharded dimension (a few numbers per channel)."""
    if not any(p.is_partial() for p in x.placements):
        return x
    return x.redistribute(x.device_mesh, [Replicate() if p.is_partial() else p for p in x.placements])


class _Shard:
    """Where one rank's local shard of a DTensor lies in the whole tensor."""

    def __init__(self, mask: DTensor) -> None:
        for placement in mask.placements:
            if not isinstance(placement, Shard | Replicate) or type(placement) not in (Shard, Replicate):
                raise TypeError(
                    f"DTensor placements {mask.placements} are not supported for pruning: "
                    "use Shard(dim) and Replicate() placements"
                )
        self.mesh, self.placements = mask.device_mesh, mask.placements
        self.shape, self.stride = tuple(mask.shape), mask.stride()
        local_shape, offset = compute_local_shape_and_global_offset(self.shape, self.mesh, self.placements)
        self.region = tuple(slice(o, o + n) for o, n in zip(offset, local_shape, strict=True))
        self.offset = tuple(offset)
        coordinate = self.mesh.get_coordinate()
        self.counts = coordinate is not None and all(
            c == 0 for c, p in zip(coordinate, self.placements, strict=True) if isinstance(p, Replicate)
        )
        """Whether this rank's shard counts: once per shard, not once per replica."""

    def local_part(self, x: Any) -> Any:
        """This rank's part of ``x`` (a weight or its scores) laid out as the mask: a
        DTensor redistributed to the mask's placements first if they differ, a whole
        tensor cut to the shard."""
        if not isinstance(x, DTensor):
            return x[self.region]
        x = _settled(x)
        if (x.device_mesh, x.placements) != (self.mesh, self.placements):
            x = x.redistribute(self.mesh, self.placements)
        return x.to_local()

    def global_index(self, positions: torch.Tensor, local_shape: Sequence[int]) -> torch.Tensor:
        """The flat index in the whole tensor (C order) of local flat ``positions``."""
        index = torch.zeros_like(positions)
        rest = positions
        strides = [math.prod(self.shape[d + 1 :]) for d in range(len(self.shape))]
        for d in reversed(range(len(local_shape))):
            index += (rest % local_shape[d] + self.offset[d]) * strides[d]
            rest = rest // local_shape[d]
        return index


class _RandomShard(RandomScores):
    """The random scores of one shard: the whole parameter's stream (which depends only
    on the key), cut to the shard, so every layout draws the same scores."""

    def __init__(self, whole: RandomScores, local: torch.Tensor, region: tuple[slice, ...]) -> None:
        super().__init__(local, whole.key)
        self.whole, self.region = whole, region

    def host_values(self) -> np.ndarray:
        return np.ascontiguousarray(self.whole.host_values()[self.region])


def _local_source(source: ScoreSource, shard: _Shard, local: torch.Tensor) -> ScoreSource:
    """``source``'s scores on this rank's shard of its weight."""
    if isinstance(source, MagnitudeScores):
        return MagnitudeScores(local)
    if isinstance(source, RandomScores):
        return _RandomShard(source, local, shard.region)
    scores = source.scores if isinstance(source, ArrayScores) else source.full()
    return ArrayScores(local, shard.local_part(scores), type(source).__name__)


class DTensorPasses:
    """``lotto_core.search.BandPasses`` over DTensor weights: the local passes of each
    rank, summed over the ranks (see the module docstring)."""

    def __init__(self, sources: Sequence[ScoreSource], masks: Sequence[DTensor], local: LocalPasses) -> None:
        _check_all_dtensors(masks)
        masks = [_settled(m) for m in masks]
        self.shards = [_Shard(m) for m in masks]
        self.whole = masks
        self.local_masks = [m.to_local() for m in masks]
        weights = [shard.local_part(src.weight) for src, shard in zip(sources, self.shards, strict=True)]
        self.sources = [
            _local_source(src, shard, w) for src, shard, w in zip(sources, self.shards, weights, strict=True)
        ]
        self.local = local
        self.inner = self._band_passes()
        self.bracket: tuple[int, int] | None = None  # of the last split, if every rank's band fitted
        self.fmt, self.zero_below = self.inner.fmt, self.inner.zero_below
        self.size = sum(math.prod(m.shape) for m in masks)
        self.device = self.local_masks[0].device
        self.counting = np.asarray([s.counts for s in self.shards], np.int64)

    def _sum(self, counts: np.ndarray) -> np.ndarray:
        """The counts of every rank's shards, added up (rows: parameters)."""
        mine = counts * self.counting.reshape((-1,) + (1,) * (counts.ndim - 1))
        total = torch.as_tensor(np.ascontiguousarray(mine, np.int64), device=self.device)
        dist.all_reduce(total)
        out: np.ndarray = total.cpu().numpy()
        return out

    def kept(self) -> list[int]:
        return [int(n) for n in self._sum(np.asarray(self.inner.kept(), np.int64))]

    def sample(self, step: int) -> np.ndarray:
        """The ranks' samples, gathered: one key per ``SAMPLE_SHARE`` entries at most."""
        step = max(step, self.size // min(MAX_SAMPLE, max(MIN_SAMPLE, self.size // SAMPLE_SHARE)))
        counted = [i for i in range(len(self.sources)) if self.counting[i]]
        wide = np.dtype(self.fmt.int_dtype).itemsize > 4
        mine = np.zeros(0, np.int64 if wide else np.int32)
        if len(counted) == len(self.sources):
            mine = self.inner.sample(step).astype(mine.dtype)
        elif counted:  # this rank holds replicas of some parameters: sample the counted ones alone
            own = self.local([self.sources[i] for i in counted], [self.local_masks[i] for i in counted])
            mine = own.sample(step).astype(mine.dtype)
        sizes = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([mine.size], dtype=torch.int64, device=self.device))
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.int64 if wide else torch.int32, device=self.device)
        padded[: mine.size] = torch.from_numpy(mine)
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        keys = np.concatenate([p[: int(n)].cpu().numpy() for p, n in zip(parts, sizes, strict=True)])
        return keys.astype(self.fmt.int_dtype)

    def count(self, keys: Sequence[int]) -> np.ndarray:
        return self._sum(self.inner.count(keys))

    def split(self, lo: int, hi: int, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Every rank splits its shards, holding a band of up to ``budget`` entries; the
        band is held if every rank's fitted."""
        below, upto, banded = self.inner.split(lo, hi, budget)
        counted = self._sum(np.stack([below, upto], axis=1))
        missed = torch.tensor([0 if banded else 1], dtype=torch.int64, device=self.device)
        dist.all_reduce(missed)
        self.bracket = (lo, hi) if int(missed) == 0 else None
        return counted[:, 0], counted[:, 1], self.bracket is not None

    def band_select(self, rank: int) -> tuple[int, np.ndarray, np.ndarray]:
        """The ``rank``-th smallest key of all ranks' bands: the bracket narrowed by
        counting the bands at up to ``PIVOTS`` keys per round (one all-reduce each)."""
        assert self.bracket is not None
        lo, hi = self.bracket
        while lo < hi:
            keys = even_split(lo, hi)
            totals = self._sum(self.inner.band_count(keys)).sum(axis=0)
            for key, total in zip(keys, totals, strict=True):
                if total > rank:
                    hi = key
                    break
                lo = key + 1
        counts = self._sum(self.inner.band_count([lo - 1, lo]))
        return lo, counts[:, 0], counts[:, 1] - counts[:, 0]

    def band_count(self, keys: Sequence[int]) -> np.ndarray:
        return self._sum(self.inner.band_count(keys))

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Any, Any]]:
        """Each rank's new local masks, with the ties split by global position, as
        DTensors of the weights' layout."""
        local_cuts = []
        for i, cut in enumerate(cuts):
            if cut.pruned and 0 < cut.ties < cut.tied:
                ties = self._local_ties(i, t, cut.ties)
            else:
                ties = 0 if cut.ties == 0 else self.local_masks[i].numel()  # none or every tied entry
            local_cuts.append(Cut(cut.threshold, ties, cut.tied, cut.pruned, cut.everything))
        # the local passes build masks from their band if they hold one: from the bracket of the
        # last split only if every rank's band fitted, else from fresh passes, at t
        inner = self.inner if self.bracket is not None else self._fresh()
        written = inner.masks(t, local_cuts)
        out: list[tuple[Any, Any]] = []
        for i, (cut, (mask, _)) in enumerate(zip(cuts, written, strict=True)):
            if not cut.pruned:
                out.append((None, None))
                continue
            local = self.local_masks[i].clone() if mask is None else mask.reshape(self.local_masks[i].shape)
            shard = self.shards[i]
            whole = DTensor.from_local(
                local, shard.mesh, shard.placements, run_check=False, shape=self.whole[i].shape, stride=shard.stride
            )
            out.append((whole, None))
        return out

    def _band_passes(self) -> BandPasses:
        passes = self.local(self.sources, self.local_masks)
        if not isinstance(passes, BandPasses):
            raise TypeError(f"the local passes of a sharded group must hold a band, got {type(passes).__name__}")
        return passes

    def _fresh(self) -> BandPasses:
        """Local passes that hold no band."""
        fresh = self._band_passes()
        fresh.kept()
        return fresh

    def _local_ties(self, i: int, t: int, ties: int) -> int:
        """How many of this rank's entries keyed ``t`` are among the first ``ties`` of
        the whole parameter in C order: a bisection over global flat indices."""
        scores = self.sources[i].full()
        value = self.fmt.value(t)
        tied = (scores == value) & self.local_masks[i]
        positions = torch.nonzero(tied.reshape(-1)).reshape(-1)
        index = self.shards[i].global_index(positions, tuple(tied.shape)).cpu().numpy()
        index.sort()
        lo, hi = 0, math.prod(self.whole[i].shape)  # the answer: the least X with ties entries below it
        while lo < hi:
            mid = (lo + hi) // 2
            below = self._sum(
                np.asarray([[np.searchsorted(index, mid) if j == i else 0] for j in range(len(self.whole))])
            )
            if int(below[i, 0]) >= ties:
                hi = mid
            else:
                lo = mid + 1
        return int(np.searchsorted(index, lo))
