"""The selection's passes as jit-compiled XLA calls: for JAX arrays that are sharded or
live on an accelerator (arrays whole on one CPU device take the host kernels).

The search is the core's (``lotto_core.search``). XLA has no fast stream compaction
(``nonzero`` is a cumulative sum, some 80x an elementwise pass, and on a sharded array
it gathers the whole parameter onto every device), so these passes extract no band: a
pass is one fused reduction that counts the kept scores at or below up to 16 pivots at
once, and the search narrows its bracket down to one key with them (on 33.5M Gaussian
weights, three passes). XLA flushes subnormal floats to zero when it compares them, so a
pivot is taken as XLA sees it (a subnormal pivot is 0) and counts stay monotone in the
key. The new mask is one more elementwise pass; where only some of the entries tied at
the threshold go, counting over flat indices finds where the cut ends.

Only pivot values go to the devices and only counts and a strided sample come back; no
parameter is flattened or sliced, and a sharded parameter stays sharded: each pass
reduces every shard, then adds up one count per shard and pivot across devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from lotto_core.keys import FORMATS
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource, _as_float_scores
from lotto_core.search import PIVOTS, Cut, even_split

__all__ = ["XLAPasses"]


def _kernel_input(source: ScoreSource) -> tuple[jax.Array, bool]:
    """(array, whether the passes take its absolute value) for a score source. Magnitude
    scores are computed inside the passes, in the weight's own shape, so a sharded
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
def _kept(mask: jax.Array) -> jax.Array:
    return _add_up([mask])[0]


@partial(jax.jit, static_argnames="magnitude")
def _count_upto(x: jax.Array, mask: jax.Array | None, pivots: jax.Array, magnitude: bool) -> jax.Array:
    """For each pivot, the kept scores ``<=`` it (NaN counts nowhere)."""
    s = _scores(x, magnitude)
    flags = [s <= pivots[j] for j in range(pivots.shape[0])]
    return _add_up(flags if mask is None else [f & mask for f in flags])


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


class XLAPasses:
    """``lotto_core.search.Passes`` over JAX arrays, as jit-compiled calls. Every
    parameter's call is dispatched before any count is read back."""

    def __init__(self, sources: Sequence[ScoreSource], masks: Sequence[jax.Array]) -> None:
        for m in masks:
            if math.prod(m.shape) >= 2**31:
                raise ValueError(f"a parameter of shape {tuple(m.shape)} has 2**31 entries or more; the limit is int32")
        self.inputs = [_kernel_input(src) for src in sources]
        self.flags: list[jax.Array | None] = list(masks)
        double = self.inputs[0][0].dtype == jnp.float64
        self.dtype: np.dtype[np.floating] = np.dtype(np.float64 if double else np.float32)
        self.fmt = FORMATS[self.dtype.name]
        self.tiny = float(np.finfo(self.dtype).tiny)
        self.zero_below = self.fmt.smallest_normal
        self.size = sum(math.prod(x.shape) for x, _ in self.inputs)

    def value(self, key: int) -> float:
        """The score of ``key`` as XLA compares it (a subnormal is 0)."""
        v = self.fmt.value(key)
        return 0.0 if abs(v) < self.tiny else v

    def kept(self) -> list[int]:
        counts = jax.device_get([_on_explicit(_kept, m) for m in self.flags if m is not None])
        kept = [int(c) for c in counts]
        # a mask that keeps every entry is left out of the passes
        sizes = [math.prod(x.shape) for x, _ in self.inputs]
        self.flags = [None if n == size else m for m, n, size in zip(self.flags, kept, sizes, strict=True)]
        return kept

    def sample(self, step: int) -> np.ndarray:
        parts = [
            _on_explicit(partial(_sample, strides=_strides(tuple(x.shape), step), magnitude=mag), x, m)
            for (x, mag), m in zip(self.inputs, self.flags, strict=True)
        ]
        values = np.concatenate([np.asarray(v, dtype=self.dtype) for v in jax.device_get(parts)])
        return self.fmt.keys(values[~np.isnan(values)])

    def count(self, keys: Sequence[int]) -> np.ndarray:
        values = np.full(PIVOTS, np.inf, dtype=self.dtype)
        values[: len(keys)] = [self.value(key) for key in keys]
        pivots = jnp.asarray(values)  # sent once, not with each parameter's call
        out = [
            _on_explicit(partial(_count_upto, magnitude=mag), x, m, pivots)
            for (x, mag), m in zip(self.inputs, self.flags, strict=True)
        ]
        return np.asarray(jax.device_get(out), dtype=np.int64)[:, : len(keys)]

    def first_tied(self, i: int, t: jax.Array, ties: int) -> int:
        """The smallest flat index before which parameter ``i`` has ``ties`` kept
        entries scored ``t``."""
        (x, mag), mask = self.inputs[i], self.flags[i]
        lo, hi = 1, math.prod(x.shape)  # the answer is in [lo, hi]
        while lo < hi:
            keys = even_split(lo, hi)
            limits = np.asarray(keys + [hi] * (PIVOTS - len(keys)), dtype=np.int32)
            counts = jax.device_get(_on_explicit(partial(_count_tied_before, magnitude=mag), x, mask, t, limits))
            for limit, c in zip(keys, counts, strict=False):
                if c >= ties:
                    hi = limit
                    break
                lo = limit + 1
        return lo

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Any, Any]]:
        threshold = jnp.asarray(self.value(t), dtype=self.dtype)  # sent once, not with each call
        no_limit = jnp.int32(0)
        out: list[tuple[Any, Any]] = []
        for i, ((x, mag), mask) in enumerate(zip(self.inputs, self.flags, strict=True)):
            cut = cuts[i]
            if not cut.pruned:
                out.append((None, None))
                continue
            mode = "none" if cut.ties == 0 else "all" if cut.ties == cut.tied else "first"
            limit = np.int32(self.first_tied(i, threshold, cut.ties)) if mode == "first" else no_limit
            new = partial(_new_mask, magnitude=mag, mode=mode)
            out.append((_on_explicit(new, x, mask, threshold, limit, like=x), None))
        return out
