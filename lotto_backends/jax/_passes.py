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
reduces every shard, then adds up one count per shard and pivot across devices. Alike
small parameters on one device share each pass's call (up to ``_BATCH``), since a call's
dispatch costs more than the pass over a small weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any, cast

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

Batch = tuple[jax.Array, ...]
"""The parameters (or masks) one call of a pass takes: alike in shape, dtype and placement."""
MaskBatch = tuple[jax.Array | None, ...]
"""Their masks; all ``None`` where they keep every entry."""


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


def _each(one: Callable[..., jax.Array], xs: Batch, masks: MaskBatch, *args: Any) -> jax.Array:
    """``one(x, mask, *args)`` of every parameter of the batch, stacked: called on a
    lone parameter as it is (XLA reduces a big weight whole, more than twice as fast as
    a row of a stack of one), vmapped over the stacked batch otherwise (XLA fuses the
    stacking into the pass that reads it)."""
    if len(xs) == 1:
        return one(xs[0], masks[0], *args)[None]
    stacked = None if masks[0] is None else jnp.stack(cast(Batch, masks))
    axes = (0, None if stacked is None else 0, *(None for _ in args))
    result: jax.Array = jax.vmap(one, in_axes=axes)(jnp.stack(xs), stacked, *args)
    return result


def _explicit_mesh(x: jax.Array) -> Any:
    """The mesh of ``x`` if it has Explicit axes (``jax.make_mesh``'s default), else None."""
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, NamedSharding) and any(t == AxisType.Explicit for t in sharding.mesh.axis_types):
        return sharding.mesh
    return None


def _on_explicit(fn: Callable[..., Any], xs: Batch, *args: Any, like: bool = False) -> Any:
    """``fn(xs, *args)``; on Explicit mesh axes, with them treated as Auto for the call
    (``jax.sharding.auto_axes``: the passes' reshapes and strided slices need no
    sharding annotations), the output replicated, or (``like``) one array per parameter
    sharded like it."""
    mesh = _explicit_mesh(xs[0])
    if mesh is None:
        return fn(xs, *args)
    out: Any = [getattr(x.sharding, "spec", None) for x in xs] if like else P()  # type: ignore[no-untyped-call]
    with jax.set_mesh(mesh):
        return jax.sharding.auto_axes(fn, out_sharding=out)(xs, *args)


_BATCH = 64
"""The most parameters one call of a pass takes. A call costs a dispatch (some 70 us on
a GPU), far more than a pass over a small weight: 1,000 layers of 32 x 32 then take 16
calls per pass instead of 1,000."""

_SMALL = 1 << 16
"""Parameters with more entries (or sharded over several devices) get a call each."""


def _batches(keys: Sequence[Hashable | None]) -> list[list[int]]:
    """Indices with equal keys in batches of 64, 32, ..., 1 (so that few distinct calls
    compile); an index keyed ``None`` alone."""
    alike: dict[Hashable, list[int]] = {}
    out: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            out.append([i])
        else:
            alike.setdefault(key, []).append(i)
    for indices in alike.values():
        start = 0
        while start < len(indices):
            size = min(_BATCH, 1 << ((len(indices) - start).bit_length() - 1))
            out.append(indices[start : start + size])
            start += size
    return out


def _batch_key(x: jax.Array, *more: Hashable) -> Hashable | None:
    """What parameters that one call takes together share; ``None`` for one that goes
    alone (big, or sharded over several devices)."""
    if math.prod(x.shape) > _SMALL or len(x.sharding.device_set) != 1:
        return None
    return (tuple(x.shape), x.dtype, x.sharding, *more)


@partial(jax.jit, static_argnames=("strides", "magnitude"))
def _sample(xs: Batch, masks: MaskBatch, strides: tuple[int, ...], magnitude: bool) -> jax.Array:
    """Every ``strides``-th entry along each axis of each parameter, one row each;
    pruned and NaN entries read NaN."""
    where = tuple(slice(None, None, r) for r in strides)

    def one(x: jax.Array, mask: jax.Array | None) -> jax.Array:
        s = _scores(x[where], magnitude)
        usable = s == s if mask is None else (s == s) & mask[where]
        return jnp.reshape(jnp.where(usable, s, jnp.nan), (-1,))

    return _each(one, xs, masks)


@jax.jit
def _kept(masks: Batch) -> jax.Array:
    return _each(lambda m, _: _add_up([m])[0], masks, (None,) * len(masks))


@partial(jax.jit, static_argnames="magnitude")
def _count_upto(xs: Batch, masks: MaskBatch, pivots: jax.Array, magnitude: bool) -> jax.Array:
    """For each parameter (rows) and pivot, the kept scores ``<=`` it (NaN counts
    nowhere)."""

    def one(x: jax.Array, mask: jax.Array | None, pivots: jax.Array) -> jax.Array:
        s = _scores(x, magnitude)
        flags = [s <= pivots[j] for j in range(pivots.shape[0])]
        return _add_up(flags if mask is None else [f & mask for f in flags])

    return _each(one, xs, masks, pivots)


@partial(jax.jit, static_argnames="magnitude")
def _count_tied_before(xs: Batch, masks: MaskBatch, t: jax.Array, limits: jax.Array, magnitude: bool) -> jax.Array:
    """For each limit, the kept scores equal to ``t`` at flat indices below it, of the
    one parameter of ``xs``."""
    (x,), (mask,) = xs, masks
    s = _scores(x, magnitude)
    tied = s == t if mask is None else (s == t) & mask
    index = _flat_index(s.shape)
    return _add_up([tied & (index < limits[j]) for j in range(limits.shape[0])])


@partial(jax.jit, static_argnames=("magnitude", "mode"))
def _new_mask(
    xs: Batch, masks: MaskBatch, t: jax.Array, limit: jax.Array, magnitude: bool, mode: str
) -> list[jax.Array]:
    """Each parameter's mask after the cut: kept entries scored below ``t`` go, and so
    do those equal to ``t`` (``mode="all"``), none of them (``"none"``), or those at flat
    indices below ``limit`` (``"first"``). One elementwise pass per parameter, not over
    the stacked batch: XLA compiles 64 of them several times faster than 64 slices."""

    def one(x: jax.Array, mask: jax.Array | None) -> jax.Array:
        s = _scores(x, magnitude)
        if mode == "all":
            drop = s <= t
        elif mode == "none":
            drop = s < t
        else:
            drop = (s < t) | ((s == t) & (_flat_index(s.shape) < limit))
        keep = jnp.logical_not(drop)
        return keep if mask is None else mask & keep

    return [one(x, m) for x, m in zip(xs, masks, strict=True)]


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
    """``lotto_core.search.Passes`` over JAX arrays, as jit-compiled calls, each over a
    batch of alike small parameters or over one big or sharded parameter. Every call of
    a pass is dispatched before any count is read back."""

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
        self.batches = self._batches()

    def _batches(self, *more: Sequence[Hashable], only: Sequence[int] | None = None) -> list[list[int]]:
        """The parameters (those in ``only``) in batches that one call takes: alike
        arrays, score kinds and mask presence, and alike in each of ``more``."""
        keys = [
            _batch_key(x, magnitude, mask is None, *(m[i] for m in more))
            for i, ((x, magnitude), mask) in enumerate(zip(self.inputs, self.flags, strict=True))
        ]
        if only is None:
            return _batches(keys)
        return [[only[j] for j in batch] for batch in _batches([keys[i] for i in only])]

    def _call(self, kernel: Callable[..., Any], batch: list[int], *args: Any, like: bool = False, **static: Any) -> Any:
        """``kernel`` over the batch's parameters and masks, with their score kind and
        the ``static`` arguments (``like``: its outputs sharded like the parameters)."""
        xs = tuple(self.inputs[i][0] for i in batch)
        masks = tuple(self.flags[i] for i in batch)
        fn = partial(kernel, magnitude=self.inputs[batch[0]][1], **static)
        return _on_explicit(fn, xs, masks, *args, like=like)

    def value(self, key: int) -> float:
        """The score of ``key`` as XLA compares it (a subnormal is 0)."""
        v = self.fmt.value(key)
        return 0.0 if abs(v) < self.tiny else v

    def kept(self) -> list[int]:
        flags = [m for m in self.flags if m is not None]
        batches = _batches([_batch_key(m) for m in flags])
        counts = jax.device_get([_on_explicit(_kept, tuple(flags[i] for i in batch)) for batch in batches])
        kept = [0] * len(flags)
        for batch, row in zip(batches, counts, strict=True):
            for i, c in zip(batch, row, strict=True):
                kept[i] = int(c)
        # a mask that keeps every entry is left out of the passes
        sizes = [math.prod(x.shape) for x, _ in self.inputs]
        self.flags = [None if n == size else m for m, n, size in zip(self.flags, kept, sizes, strict=True)]
        self.batches = self._batches()
        return kept

    def sample(self, step: int) -> np.ndarray:
        parts = [
            self._call(_sample, batch, strides=_strides(tuple(self.inputs[batch[0]][0].shape), step))
            for batch in self.batches
        ]
        values = np.concatenate([np.asarray(v, dtype=self.dtype).ravel() for v in jax.device_get(parts)])
        return self.fmt.keys(values[~np.isnan(values)])

    def count(self, keys: Sequence[int]) -> np.ndarray:
        values = np.full(PIVOTS, np.inf, dtype=self.dtype)
        values[: len(keys)] = [self.value(key) for key in keys]
        pivots = jnp.asarray(values)  # sent once, not with each call
        calls = [self._call(_count_upto, batch, pivots) for batch in self.batches]
        out = np.empty((len(self.inputs), PIVOTS), dtype=np.int64)
        for batch, counts in zip(self.batches, jax.device_get(calls), strict=True):
            out[batch] = counts
        return out[:, : len(keys)]

    def first_tied(self, i: int, t: jax.Array, ties: int) -> int:
        """The smallest flat index before which parameter ``i`` has ``ties`` kept
        entries scored ``t``."""
        lo, hi = 1, math.prod(self.inputs[i][0].shape)  # the answer is in [lo, hi]
        while lo < hi:
            keys = even_split(lo, hi)
            limits = np.asarray(keys + [hi] * (PIVOTS - len(keys)), dtype=np.int32)
            counts = jax.device_get(self._call(_count_tied_before, [i], t, limits))
            for limit, c in zip(keys, counts, strict=False):
                if c >= ties:
                    hi = limit
                    break
                lo = limit + 1
        return lo

    def masks(self, t: int, cuts: Sequence[Cut]) -> list[tuple[Any, Any]]:
        threshold = jnp.asarray(self.value(t), dtype=self.dtype)  # sent once, not with each call
        no_limit = jnp.int32(0)
        modes = ["none" if cut.ties == 0 else "all" if cut.ties == cut.tied else "first" for cut in cuts]
        out: list[tuple[Any, Any]] = [(None, None)] * len(cuts)
        pruned = [i for i, cut in enumerate(cuts) if cut.pruned and modes[i] != "first"]
        for batch in self._batches(modes, only=pruned):
            new = self._call(_new_mask, batch, threshold, no_limit, mode=modes[batch[0]], like=True)
            for i, mask in zip(batch, new, strict=True):
                out[i] = (mask, None)
        for i, cut in enumerate(cuts):
            if cut.pruned and modes[i] == "first":
                limit = np.int32(self.first_tied(i, threshold, cut.ties))
                (mask,) = self._call(_new_mask, [i], threshold, limit, mode="first", like=True)
                out[i] = (mask, None)
        return out
