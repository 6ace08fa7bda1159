"""Fused numba kernels for the selection and zeroing passes over arrays in host memory.

Each kernel makes one pass over a chunk of a parameter, through a zero-copy NumPy view
of the framework's array, and compiles to one vectorized loop (torch's eager CPU ops
run a kernel, and write a temporary, per operation; XLA has no fast stream compaction). Scores are ranked by *keys*: the
float's bits with the sign bit cleared, read as a signed integer of the same width. For
scores >= 0 (magnitudes, uniform random numbers) the key order is the float order,
+0.0 and -0.0 share key 0, and NaN keys lie above the key of +inf, so integer
comparisons do what the core's float comparisons do. Keys below ``floor`` count as 0:
0 everywhere but for JAX, whose XLA comparisons flush subnormal floats to zero (the key
of the smallest normal float there). ``mask`` is ``None`` where every entry is kept;
numba compiles that case apart, without the mask reads.

The kernels release the GIL, so a thread pool runs chunks in parallel, and are cached
on disk after their first compilation.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["count_band", "count_upto", "mask_at", "sample", "split_band", "zero_into", "zero_pruned"]

_jit = numba.njit(nogil=True, cache=True)


@numba.njit(inline="always")
def _key(bits: Any, sign_off: Any, floor: Any) -> Any:
    """The key of one entry's bits: sign bit cleared, 0 below ``floor``."""
    u = bits & sign_off
    return u if u >= floor else u ^ u  # u ^ u: a zero of u's own type, so the loop stays vectorized


@_jit
def sample(bits: Any, mask: Any, sign_off: Any, floor: Any, inf: Any, step: int, out: Any) -> int:
    """Every ``step``-th key that is kept and not NaN, into ``out``; returns how many."""
    n = 0
    for i in range(0, bits.size, step):
        u = _key(bits[i], sign_off, floor)
        out[n] = u
        n += (True if mask is None else mask[i]) & (u <= inf)
    return n


@_jit
def count_band(bits: Any, mask: Any, sign_off: Any, floor: Any, lo: Any, hi: Any) -> tuple[int, int]:
    """(kept keys < ``lo``, kept keys <= ``hi``)."""
    below = 0
    upto = 0
    for i in range(bits.size):
        u = _key(bits[i], sign_off, floor)
        kept = True if mask is None else mask[i]
        below += kept & (u < lo)
        upto += kept & (u <= hi)
    return below, upto


@_jit
def count_upto(bits: Any, mask: Any, sign_off: Any, floor: Any, pivots: Any, out: Any) -> None:
    """Add to ``out[j]`` the kept keys ``<= pivots[j]``, for every pivot."""
    for i in range(bits.size):
        u = _key(bits[i], sign_off, floor)
        kept = True if mask is None else mask[i]
        for j in range(pivots.size):
            out[j] += kept & (u <= pivots[j])


@numba.njit(inline="always")
def _count(flags: Any) -> int:
    """The ``True`` entries of a bool array, summed eight bytes at a time."""
    whole = flags.size - flags.size % 8
    words = flags[:whole].view(np.uint64)
    bytes_, pairs = np.uint64(0x00FF00FF00FF00FF), np.uint64(0x0000FFFF0000FFFF)
    total = np.uint64(0)
    for w in range(words.size):
        x = words[w]
        x = (x & bytes_) + ((x >> np.uint64(8)) & bytes_)
        x = (x & pairs) + ((x >> np.uint64(16)) & pairs)
        total += (x & np.uint64(0xFFFFFFFF)) + (x >> np.uint64(32))
    n = np.int64(total)
    for i in range(whole, flags.size):
        n += np.int64(flags[i])
    return n


@_jit
def split_band(
    bits: Any,
    mask: Any,
    sign_off: Any,
    floor: Any,
    lo: Any,
    hi: Any,
    above: Any,
    flags: Any,
    positions: Any,
    keys: Any,
    values: Any,
) -> tuple[int, int]:
    """Sort a chunk's kept entries three ways in one pass: keys > ``hi`` are set in
    ``above`` (written in full), keys in ``[lo, hi]`` go to ``keys`` with their indices
    in ``positions`` (both at least one entry longer than the chunk), and the rest are
    counted. ``flags`` is scratch space as long as the chunk. ``values`` (``None``: not
    written) gets ``bits`` with every entry that is not kept or under ``lo`` cleared:
    the new weight once the band's pruned entries are cleared too.

    Returns (kept keys < ``lo``, kept keys in the band)."""
    for i in range(bits.size):  # stores only: a counter here takes int64 lanes, half the vector width
        u = _key(bits[i], sign_off, floor)
        kept = True if mask is None else mask[i]
        above[i] = kept & (u > hi)
        flags[i] = kept & (u >= lo) & (u <= hi)
        if values is not None:
            values[i] = bits[i] if kept & (u >= lo) else 0
    n = 0  # gather the band: skip 8 clear flags at a time, copy set ones without a branch
    whole = bits.size - bits.size % 8
    words = flags[:whole].view(np.uint64)
    for w in range(words.size):
        if words[w]:
            for i in range(8 * w, 8 * w + 8):
                positions[n] = i
                keys[n] = _key(bits[i], sign_off, floor)
                n += flags[i]
    for i in range(whole, bits.size):
        positions[n] = i
        keys[n] = _key(bits[i], sign_off, floor)
        n += flags[i]
    kept = bits.size if mask is None else _count(mask)
    return kept - _count(above) - n, n


@_jit
def mask_at(bits: Any, mask: Any, sign_off: Any, floor: Any, t: Any, ties: int, out: Any) -> None:
    """The mask after a cut at key ``t`` over a whole parameter: kept entries above
    ``t`` stay, and so do those at ``t`` after the first ``ties`` of them (C order)."""
    seen = 0
    for i in range(bits.size):
        u = _key(bits[i], sign_off, floor)
        kept = True if mask is None else mask[i]
        tied = kept & (u == t)
        out[i] = kept & ((u > t) | (tied & (seen >= ties)))
        seen += tied


@_jit
def zero_pruned(bits: Any, mask: Any) -> None:
    """Clear every bit of the entries that ``mask`` prunes, in place (torch): exactly
    +0.0, whatever they held (inf and NaN included). Not ``zero_into(bits, mask, bits)``:
    with its output aliasing its input that loop runs unvectorized, six times slower."""
    for i in range(bits.size):
        bits[i] = bits[i] if mask[i] else 0  # the form that LLVM vectorizes


@_jit
def zero_into(bits: Any, mask: Any, out: Any) -> None:
    """``out`` = ``bits`` with the entries that ``mask`` prunes cleared (+0.0): a new
    value for frameworks whose arrays are immutable (JAX)."""
    for i in range(bits.size):
        out[i] = bits[i] if mask[i] else 0
