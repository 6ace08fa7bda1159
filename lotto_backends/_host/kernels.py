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

__all__ = ["count_band", "mask_at", "sample", "split_band", "zero_into", "zero_pruned"]

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
def split_band(
    bits: Any, mask: Any, sign_off: Any, floor: Any, lo: Any, hi: Any, above: Any, flags: Any, positions: Any, keys: Any
) -> tuple[int, int]:
    """Sort a chunk's kept entries three ways in one pass: keys < ``lo`` are counted,
    keys > ``hi`` are set in ``above`` (written in full), and keys in ``[lo, hi]`` go
    to ``keys`` with their indices in ``positions`` (both at least one entry longer
    than the chunk). ``flags`` is scratch space as long as the chunk.

    Returns (kept keys < ``lo``, kept keys in the band)."""
    below = 0
    inside = 0
    for i in range(bits.size):  # one vectorized loop: no branch, no data-dependent index
        u = _key(bits[i], sign_off, floor)
        kept = True if mask is None else mask[i]
        below += kept & (u < lo)
        above[i] = kept & (u > hi)
        flag = kept & (u >= lo) & (u <= hi)
        flags[i] = flag
        inside += flag
    if inside:  # gather the band: skip 8 clear flags at a time, copy set ones without a branch
        n = 0
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
    return below, inside


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
