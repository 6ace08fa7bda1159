"""Exact selection on JAX arrays: the host kernels for arrays on one CPU device, and
jit-compiled counting passes for the rest (sharded arrays, accelerators).

The rule is the core's (``lotto_core.selection``): exactly
``k = prune_count(p, kept)`` of a group's kept entries, one shared threshold ``t``,
ties at ``t`` broken by parameter order and then flattened (C-order) index, kept NaN
scores never pruned. A group whose arrays all live whole on one CPU device goes to the
host kernels (``lotto_backends._host``, through ``_host``), which run the core's search
in fused numba loops over zero-copy views and rank subnormal scores as XLA does. For
every other group the search is written to suit XLA:

* the core extracts a band of scores around ``t`` with ``nonzero``; XLA computes that
  with a cumulative sum, some 80x slower than an elementwise pass on the CPU, and on a
  sharded array it gathers the whole parameter onto every device. Here a pass over a
  parameter is one fused reduction that counts the kept scores at or below 16 pivots at
  once (16 counters stay in registers; 32 spill);
* the first pass places its pivots at the order statistics of a small strided sample
  around the target rank, and also counts the kept entries (which alone would cost a
  pass). Each later pass aims 16 pivots at where the target would be if the scores in
  the bracket were spread evenly over its values, +-2.5 standard deviations of that
  guess, or at the 16 keys next to it once they are that few. A bracket is narrow enough
  for that to be close: on 33.5M Gaussian weights, three passes in all. A pass that
  narrows the bracket less than 17-fold is followed by one that cuts it into 17 equal
  ranges of the scores' float order, so a float32 search ends within 17 passes;
* XLA flushes subnormal floats to zero when it compares them, so a pivot is taken as XLA
  sees it (a subnormal pivot is 0): counts stay monotone in the key, and the threshold
  found is one that XLA's comparisons reproduce. Subnormal scores tie with 0;
* the new mask is one more elementwise pass (``mask & ~(s < t)``). When only some of
  the entries tied at ``t`` go, counting over flat indices finds where the cut ends.

Only pivot values go to the devices and only counts (and 14 sample values) come back;
no parameter is flattened or sliced. A sharded parameter stays sharded: each pass
reduces every shard and then adds up one count per shard and pivot across devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from lotto_backends._host.search import host_group, select
from lotto_core.rate import prune_count, validate_rate
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource, _as_float_scores
from lotto_core.selection import Cut, _FloatOrder, register_native_planner

from . import _host

__all__ = ["plan_cuts"]

_PIVOTS = 16  # counters per pass: 16 stay in registers on x86; 32 spill and run ~5x slower
_SAMPLE_SIZE = 1 << 14  # sorting this many values costs about one counting pass
_FIRST = 14  # sample pivots of the first pass; its other counters: +inf (the comparable) and the kept
_SPAN = 2.5  # aimed pivots cover the guess +- this many standard deviations (98.8% of the time)


def _kernel_input(source: ScoreSource) -> tuple[jax.Array, bool]:
    """(array, whether the kernels take its absolute value) for a score source. Magnitude
    scores are computed inside the kernels, in the weight's own shape, so a sharded
    weight is never flattened (which would move it between devices); the core's random
    scores are placed with the weight's sharding; any other source is read in full."""
    if isinstance(source, MagnitudeScores):
        return source.weight, True
    if isinstance(source, RandomScores):
        return jax.device_put(source.host_values(), source.weight.sharding), False
    return jnp.asarray(source.full()), False


def _scores(x: jax.Array, magnitude: bool) -> jax.Array:
    scores: jax.Array = _as_float_scores(jnp, jnp.abs(x) if magnitude else x)
    return scores


def _add_up(flags: list[jax.Array]) -> jax.Array:
    """The ``True`` count of each boolean array, in one fused variadic reduction."""
    ones = tuple(f.astype(jnp.int32) for f in flags)
    zeros = tuple(jnp.int32(0) for _ in flags)
    axes = tuple(range(flags[0].ndim))
    return jnp.stack(lax.reduce(ones, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), axes))


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
    """Every entry's flattened (C-order) index, built per shard from iotas."""
    index = jnp.zeros(shape, jnp.int32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.int32, shape, axis) * stride
        stride *= shape[axis]
    return index


def _explicit_mesh(x: jax.Array) -> Any:
    """The mesh of ``x`` if it has Explicit axes (``jax.make_mesh``'s default), else None."""
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, NamedSharding) and any(t == AxisType.Explicit for t in sharding.mesh.axis_types):
        return sharding.mesh
    return None


def _on_explicit(fn: Callable[..., jax.Array], x: jax.Array, *args: Any, like: jax.Array | None = None) -> jax.Array:
    """``fn(x, *args)``; on Explicit mesh axes, with them treated as Auto for the call
    (``jax.sharding.auto_axes``: the passes' reshapes and strided slices need no
    sharding annotations), the output replicated, or sharded like ``like``."""
    mesh = _explicit_mesh(x)
    if mesh is None:
        return fn(x, *args)
    out: Any = P() if like is None else getattr(like.sharding, "spec", None)  # type: ignore[no-untyped-call]
    with jax.set_mesh(mesh):
        result: jax.Array = jax.sharding.auto_axes(fn, out_sharding=out)(x, *args)
        return result


@partial(jax.jit, static_argnames=("strides", "magnitude"))
def _sample(x: jax.Array, mask: jax.Array | None, strides: tuple[int, ...], magnitude: bool) -> jax.Array:
    """Every ``strides``-th entry along each axis; pruned and NaN entries read NaN."""
    where = tuple(slice(None, None, r) for r in strides)
    s = _scores(x[where], magnitude)
    usable = s == s if mask is None else (s == s) & mask[where]
    return jnp.reshape(jnp.where(usable, s, jnp.nan), (-1,))


@jax.jit
def _quantiles(parts: list[jax.Array], p: jax.Array) -> jax.Array:
    """The sample's values at ``_FIRST`` ranks spread +-``_SPAN`` standard deviations
    around rank ``p * n`` of its ``n`` usable values (NaN: pruned or NaN entries,
    sorted last); all NaN when the sample has no usable value."""
    sample = jnp.sort(jnp.concatenate(parts))
    n = jnp.count_nonzero(jnp.logical_not(jnp.isnan(sample))).astype(jnp.float32)
    sd = jnp.sqrt(n * p * (1.0 - p)) + 1.0
    ranks = jnp.round(p * n - 1.0 + jnp.linspace(-_SPAN, _SPAN, _FIRST) * sd)
    return sample[jnp.clip(ranks, 0, jnp.maximum(n - 1.0, 0.0)).astype(jnp.int32)]


@partial(jax.jit, static_argnames=("magnitude", "with_kept"))
def _count_upto(
    x: jax.Array, mask: jax.Array | None, pivots: jax.Array, magnitude: bool, with_kept: bool = False
) -> jax.Array:
    """For each pivot, the kept scores ``<=`` it (NaN counts nowhere); then, if asked,
    the kept entries (counting them alone would cost as much as this whole pass)."""
    s = _scores(x, magnitude)
    flags = [s <= pivots[j] for j in range(pivots.shape[0])]
    if mask is not None:
        flags = [f & mask for f in flags]
        if with_kept:
            flags.append(mask)
    return _add_up(flags)


@partial(jax.jit, static_argnames="magnitude")
def _count_tied_before(
    x: jax.Array, mask: jax.Array | None, t: jax.Array, limits: jax.Array, magnitude: bool
) -> jax.Array:
    """For each limit, the kept scores equal to ``t`` at flat indices below it."""
    s = _scores(x, magnitude)
    tied = s == t if mask is None else (s == t) & mask
    index = _flat_index(s.shape)
    return _add_up([tied & (index < limits[j]) for j in range(limits.shape[0])])


@partial(jax.jit, static_argnames=("magnitude", "mode"))
def _new_mask(
    x: jax.Array, mask: jax.Array | None, t: jax.Array, limit: jax.Array, magnitude: bool, mode: str
) -> jax.Array:
    """The mask after the cut: kept entries scored below ``t`` go, and so do those
    equal to ``t`` (``mode="all"``), none of them (``"none"``), or those at flat indices
    below ``limit`` (``"first"``)."""
    s = _scores(x, magnitude)
    if mode == "all":
        drop = s <= t
    elif mode == "none":
        drop = s < t
    else:
        drop = (s < t) | ((s == t) & (_flat_index(s.shape) < limit))
    keep = jnp.logical_not(drop)
    return keep if mask is None else mask & keep


def _strides(shape: tuple[int, ...], step: int) -> tuple[int, ...]:
    """Per-axis strides whose product is about ``step``, spread over the axes."""
    strides = []
    left = float(step)
    for i, size in enumerate(reversed(shape)):
        r = max(1, min(size, round(left ** (1.0 / (len(shape) - i)))))
        strides.append(r)
        left /= r
    return tuple(reversed(strides))


def _split(lo: int, hi: int, parts: int = _PIVOTS) -> list[int]:
    """At most ``parts`` keys in ``[lo, hi)`` that cut ``[lo, hi]`` into equal ranges."""
    width = hi - lo + 1
    if width <= parts + 1:
        return list(range(lo, hi))
    return [lo + (j * width) // (parts + 1) - 1 for j in range(1, parts + 1)]


class _Search:
    """One exact selection over a group (see the module docstring).

    The threshold's key lies in the bracket ``[lo, hi]``; per parameter, ``below``
    counts the kept scores with keys under ``lo`` and ``upto`` those up to ``hi``, so
    that ``sum(below) < k <= sum(upto)``.
    """

    def __init__(self, inputs: list[tuple[jax.Array, bool]], masks: list[jax.Array], p: float) -> None:
        self.inputs = inputs
        self.masks: list[jax.Array | None] = list(masks)
        self.p = p
        self.k = 0
        x = inputs[0][0]
        self.dtype = np.dtype(x.dtype) if x.dtype in (jnp.float32, jnp.float64) else np.dtype(np.float32)
        self.order = _FloatOrder(self.dtype == np.float64)
        self.tiny = float(np.finfo(self.dtype).tiny)
        self.lo, self.hi = self.order.key(-math.inf), self.order.key(math.inf) + 1
        self.below = np.zeros(len(inputs), np.int64)
        self.upto = self.below

    def value(self, key: int) -> float:
        """The score value of ``key`` as XLA compares it: XLA flushes subnormal operands
        to zero, so a subnormal pivot counts like 0."""
        v = self.order.value(key)
        return 0.0 if abs(v) < self.tiny else v

    def count(self, keys: list[int], *, with_kept: bool = False) -> np.ndarray:
        """Per parameter (rows), the kept scores ``<=`` the value of each key (keys
        ascending), then the kept entries if asked. All parameters are dispatched
        before any count is read back."""
        pivots = np.asarray([self.value(key) for key in keys], dtype=self.dtype)
        width = _PIVOTS - 1 if with_kept else _PIVOTS
        padded = np.concatenate([pivots, np.full(width - len(keys), np.inf, dtype=self.dtype)])
        out = [
            _on_explicit(partial(_count_upto, magnitude=mag, with_kept=with_kept), x, m, padded)
            for (x, mag), m in zip(self.inputs, self.masks, strict=True)
        ]
        counts = np.asarray(jax.device_get(out), dtype=np.int64)
        return np.concatenate([counts[:, : len(keys)], counts[:, width:]], axis=1)

    def first_keys(self) -> list[int]:
        """Keys of sample values around the target rank, and +inf. The sample is
        strided along every axis; pruned and NaN entries read NaN, which sorts last."""
        total = sum(math.prod(x.shape) for x, _ in self.inputs)
        step = max(1, total // _SAMPLE_SIZE)
        parts = [
            _on_explicit(partial(_sample, strides=_strides(tuple(x.shape), step), magnitude=mag), x, m)
            for (x, mag), m in zip(self.inputs, self.masks, strict=True)
        ]
        values = jax.device_get(_quantiles(parts, np.float32(self.p)))
        return sorted({self.order.key(float(v)) for v in values if v == v} | {self.order.key(math.inf)})

    def narrow(self, keys: list[int], counts: np.ndarray) -> None:
        """Move the bracket to the pivots on either side of the target."""
        for j, key in enumerate(keys):
            if not self.lo <= key < self.hi:
                continue
            if int(counts[:, j].sum()) >= self.k:
                self.hi, self.upto = key, counts[:, j]
                break
            self.lo, self.below = key + 1, counts[:, j]
        if self.lo > self.order.key(math.inf):
            raise ValueError(
                f"only {int(self.below.sum())} kept scores are comparable (the rest are NaN); cannot prune {self.k}"
            )

    def aimed_keys(self) -> list[int]:
        """Keys in ``[lo, hi)`` around where the target would be if the bracket's scores
        were spread evenly over its values, +-``_SPAN`` standard deviations of that
        guess; a narrow bracket is close to even, so the next one is far narrower."""
        lo, hi = self.lo, self.hi
        v_lo, v_hi = self.value(lo), self.value(hi)
        if not (math.isfinite(v_lo) and math.isfinite(v_hi)):
            return []
        rank, inside = self.k - int(self.below.sum()), int((self.upto - self.below).sum())
        f = (rank - 0.5) / inside
        sd = math.sqrt(inside * f * (1.0 - f)) + 1.0

        def key_at(fraction: float) -> int:
            v = float(self.dtype.type(v_lo + min(1.0, max(0.0, fraction)) * (v_hi - v_lo)))
            return min(hi - 1, max(lo, self.order.key(v)))

        spread = [key_at((rank - 0.5 + z * sd) / inside) for z in np.linspace(-_SPAN, _SPAN, _PIVOTS)]
        if spread[-1] - spread[0] > 3 * _PIVOTS:
            return sorted(set(spread))
        # a few keys per pivot at most: the keys next to the guess pin the threshold down
        # in this pass unless it lies beyond them, where spaced pivots would need another
        start = min(max(lo, key_at(f) - _PIVOTS // 2), hi - _PIVOTS)
        return list(range(start, start + _PIVOTS))

    def threshold(self, split: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """``t`` and, per parameter, the kept scores below it and equal to it;
        ``split``: the next pass cuts the bracket evenly (the last one narrowed little)."""
        while self.lo != self.hi:
            width = self.hi - self.lo
            if width <= _PIVOTS:
                keys = list(range(self.lo, self.hi))
            else:
                keys = ([] if split else self.aimed_keys()) or _split(self.lo, self.hi)
            self.narrow(keys, self.count(keys))
            # a pass that narrowed less than an even split would have is followed by one
            split = (self.hi - self.lo) * (_PIVOTS + 1) > width
        return self.value(self.lo), self.below, self.upto - self.below

    def first_tied(self, i: int, t: np.ndarray, ties: int) -> int:
        """The smallest flat index before which parameter ``i`` has ``ties`` kept
        entries scored ``t``."""
        (x, mag), mask = self.inputs[i], self.masks[i]
        lo, hi = 1, math.prod(x.shape)  # the answer is in [lo, hi]
        while lo < hi:
            keys = _split(lo, hi)
            limits = np.asarray(keys + [hi] * (_PIVOTS - len(keys)), dtype=np.int32)
            counts = jax.device_get(_on_explicit(partial(_count_tied_before, magnitude=mag), x, mask, t, limits))
            for limit, c in zip(keys, counts, strict=False):
                if c >= ties:
                    hi = limit
                    break
                lo = limit + 1
        return lo

    def run(self) -> list[Cut]:
        keys = self.first_keys()
        counts = self.count(keys, with_kept=True)
        kept = [int(n) for n in counts[:, -1]]
        self.k = k = prune_count(self.p, sum(kept))
        if k == 0:
            return [_NOTHING] * len(kept)
        if k == sum(kept):
            return [Cut(threshold=math.inf, ties=0, tied=0, pruned=n, everything=True) for n in kept]
        # a mask that keeps every entry is left out of the later passes
        sizes = [math.prod(x.shape) for x, _ in self.inputs]
        self.masks = [None if n == size else m for m, n, size in zip(self.masks, kept, sizes, strict=True)]
        width = self.hi - self.lo
        self.narrow(keys, counts[:, :-1])
        value, less, tied = self.threshold(split=(self.hi - self.lo) * (_PIVOTS + 1) > width)
        t = np.asarray(value, dtype=self.dtype)
        ties_left = k - int(less.sum())
        cuts = []
        for i, ((x, mag), mask) in enumerate(zip(self.inputs, self.masks, strict=True)):
            ties = min(ties_left, int(tied[i]))
            ties_left -= ties
            cut = Cut(threshold=value, ties=ties, tied=int(tied[i]), pruned=int(less[i]) + ties)
            if cut.pruned:
                mode = "none" if ties == 0 else "all" if ties == cut.tied else "first"
                limit = self.first_tied(i, t, ties) if mode == "first" else 0
                new = partial(_new_mask, magnitude=mag, mode=mode)
                cut = replace(cut, mask=_on_explicit(new, x, mask, t, np.int32(limit), like=x))
            cuts.append(cut)
        return cuts


_NOTHING = Cut(threshold=-math.inf, ties=0, tied=0, pruned=0)


def plan_cuts(sources: Sequence[ScoreSource], masks: Sequence[jax.Array], p: float, values: bool = False) -> list[Cut]:
    """``lotto_core.selection.plan_cuts`` for JAX arrays: the same cuts (threshold,
    ties, counts), each carrying its new mask, and its new weight where asked and the
    host kernels wrote it. Registered with the core on import, so the core's groups use
    it for every group of JAX arrays.

    Parameters
    ----------
    sources
        One score source per parameter, in group order (the core's ``MagnitudeScores``
        and ``RandomScores`` are computed inside the kernels; any other source is read
        in full).
    masks
        The parameters' boolean masks (``True`` = kept), in the same order.
    p
        The rate, in [0, 1).
    values
        Also write each new weight (pruned entries exactly +0.0) where the magnitude
        scores of an array on one CPU device are read anyway: the host kernels write it
        in the pass that writes the mask, which saves the writer reading the weight and
        mask again. The jit-compiled passes do not.
    """
    if validate_rate(p) == 0.0:
        return [_NOTHING] * len(masks)
    group = host_group(sources, masks, _host.weight_keys, _host.bool_view)
    if group is not None:
        cuts = select(*group, p, _host.threads(), flush_subnormals=True, values=values)
        buffers, like, slots = [], [], []
        for i, cut in enumerate(cuts):
            for name, buffer, array in (("mask", cut.mask, masks[i]), ("values", cut.values, sources[i].weight)):
                if buffer is not None:
                    buffers.append(buffer)
                    like.append(array)
                    slots.append((i, name))
        for (i, name), adopted in zip(slots, _host.adopt(buffers, like=like), strict=True):
            cuts[i] = replace(cuts[i], mask=adopted) if name == "mask" else replace(cuts[i], values=adopted)
        return cuts
    for m in masks:
        if math.prod(m.shape) >= 2**31:
            raise ValueError(f"a parameter of shape {tuple(m.shape)} has 2**31 entries or more; the limit is int32")
    return _Search([_kernel_input(src) for src in sources], list(masks), p).run()


register_native_planner(lambda mask: isinstance(mask, jax.Array), plan_cuts)
