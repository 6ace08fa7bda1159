"""JAX arrays in host memory for the host kernels (``lotto_backends._host``).

XLA has no fast stream compaction on the CPU (``nonzero`` is a cumulative sum, some 80x
an elementwise pass), so it cannot extract a band of scores the way the core's search
does, and its counting passes need 16 pivots and three passes to pin a threshold down.
An array that lives whole on one CPU device is read instead through a zero-copy NumPy
view by the host kernels; their results are fresh 64-byte aligned NumPy buffers, which
``jax.device_put`` adopts without a copy (JAX keeps the buffer alive; nothing writes to
it again). Sharded arrays and arrays on accelerators keep the jit-compiled path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lotto_backends._host import buffers, pool
from lotto_core.keys import FORMATS, KeyFormat

__all__ = ["adopt", "bool_view", "key_format", "key_view", "threads", "weight_keys", "zero_pruned"]


def _on_one_cpu(x: object) -> bool:
    return (
        isinstance(x, jax.Array)
        and not isinstance(x, jax.core.Tracer)
        and x.is_fully_addressable
        and len(x.devices()) == 1
        and next(iter(x.devices())).platform == "cpu"
    )


def key_format(x: jax.Array) -> KeyFormat | None:
    """The key format of a float array's dtype, or ``None``."""
    return FORMATS.get(jnp.dtype(x.dtype).name)


def weight_keys(x: object) -> tuple[np.ndarray, KeyFormat] | None:
    """The flat integer view of the bits of a float array that lives whole on one CPU
    device (the kernels' keys; read-only, no copy) and their format, or ``None``."""
    fmt = key_format(x) if _on_one_cpu(x) else None  # type: ignore[arg-type]
    return None if fmt is None else (np.asarray(x).reshape(-1).view(fmt.int_dtype), fmt)


def key_view(x: object) -> np.ndarray | None:
    """The keys of ``weight_keys``, or ``None``."""
    keys = weight_keys(x)
    return None if keys is None else keys[0]


def bool_view(x: object) -> np.ndarray | None:
    """The flat read-only NumPy view of a boolean array on one CPU device, or ``None``."""
    if not isinstance(x, jax.Array) or not _on_one_cpu(x) or x.dtype != jnp.bool_:
        return None
    return np.asarray(x).reshape(-1)


def adopt(buffers: Sequence[np.ndarray], like: Sequence[jax.Array]) -> list[jax.Array]:
    """JAX arrays over ``buffers`` (fresh aligned NumPy buffers), each with the shape,
    dtype and device of its ``like``; no copy where XLA can adopt a buffer."""
    shaped = [b.view(np.asarray(x).dtype).reshape(x.shape) for b, x in zip(buffers, like, strict=True)]
    # committed to a device only where ``like`` is: a jitted step then sees the same
    # committedness before and after a prune, and compiles once
    return [jax.device_put(b, x.sharding if x.committed else None) for b, x in zip(shaped, like, strict=True)]


def threads() -> int:
    """The kernels run on every CPU this process may use, as XLA's own CPU ops do."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def zero_pruned(values: Sequence[jax.Array], masks: Sequence[jax.Array]) -> list[jax.Array] | None:
    """Each value with its pruned entries set to exactly +0.0, as new arrays written in
    one fused pass; ``None`` (nothing done) unless the kernels cover every pair."""
    views, bools = [key_view(v) for v in values], [bool_view(m) for m in masks]
    keys = [k for k in views if k is not None]
    flags = [f for f in bools if f is not None]
    if (
        pool.kernels() is None
        or len(keys) < len(views)
        or len(flags) < len(bools)
        or any(f.size != k.size for k, f in zip(keys, flags, strict=True))
    ):
        return None
    outs = [buffers.new(k.size, k.dtype) for k in keys]
    pool.zero_pruned(keys, flags, threads(), outs)
    return adopt(outs, like=values)
