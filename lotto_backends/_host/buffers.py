"""The buffers the kernels write their results into (new masks, new JAX weights),
recycled from 1 MiB up: a buffer that everything has released goes back to a free
list, and the next buffer of the same size reuses its pages.

A prune writes new masks and, for JAX, new weights: 167 MB for 33.5M float32 weights.
Fresh memory costs a page fault and a zeroed page per 4 KiB (or 2 MiB) the first time
it is written, and the C allocator returns large freed blocks to the system, so every
prune would pay that again: on a 2-core VM, 30-40 ms per prune, more than the
selection itself. Frameworks' allocators keep freed memory for the same reason (torch's
caching allocator, XLA's BFC allocator on GPUs).

A buffer is released when the array handed out, and every view of it, is gone: JAX
keeps the NumPy array it adopted without a copy until it frees its own array, torch's
``from_numpy`` keeps it while the tensor lives. The free list holds at most as many
bytes as were ever handed out at once (so never more than a prune's outputs at their
peak), and marks what it holds ``MADV_FREE`` where the system has it: the kernel takes
those pages back whenever it needs memory, and until then reusing them costs nothing.
``release()`` unmaps it all.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["held", "new", "peak", "release", "sparse"]

_HUGE = 4 << 20  # NumPy asks for transparent huge pages from this size up; so do these
_RECYCLED = 1 << 20  # bytes from which buffers are mapped and recycled
_ALIGN = 64  # XLA's CPU client adopts a NumPy buffer without a copy when it is this aligned
_lock = threading.RLock()  # re-entrant: a garbage collection inside ``new`` may release a buffer
_free: dict[int, list[mmap.mmap]] = {}
_bytes = {"free": 0, "out": 0, "peak": 0}


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _map(length: int, huge: bool = True) -> mmap.mmap:
    """New anonymous private memory (page aligned, so 64-byte aligned as XLA needs), on
    transparent huge pages from ``_HUGE`` bytes up if ``huge``."""
    if os.name == "nt":
        return mmap.mmap(-1, length)
    pages = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge and length >= _HUGE:
        _advise(pages, "MADV_HUGEPAGE")
    return pages


def _advise(pages: mmap.mmap, advice: str) -> None:
    """``madvise`` where the system has ``advice``; a hint, so a refusal is ignored."""
    if hasattr(mmap, advice):
        with contextlib.suppress(OSError):
            pages.madvise(getattr(mmap, advice))


def new(size: int, dtype: Any) -> np.ndarray:
    """A flat array of ``size`` entries of ``dtype`` (contents undefined), 64-byte
    aligned. From ``_RECYCLED`` bytes up it is page aligned, on recycled pages where a
    released buffer of its length is free, else on fresh ones; a smaller one comes from
    the C allocator, which reuses small blocks itself (and a mapping each could run into
    the system's limit on their number)."""
    nbytes = size * np.dtype(dtype).itemsize
    if nbytes < _RECYCLED:
        raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
        start = -raw.ctypes.data % _ALIGN
        return raw[start : start + nbytes].view(dtype)
    length = _length(nbytes)
    with _lock:
        free = _free.get(length)
        pages = free.pop() if free else None
        if pages is not None:
            _bytes["free"] -= length
        _bytes["out"] += length
        _bytes["peak"] = max(_bytes["peak"], _bytes["out"])
    if pages is None:
        pages = _map(length)
    # every NumPy view of ``array`` has it as its base (views of views collapse to the
    # first array whose base is not an array, here the memoryview over the pages), so
    # ``array`` lives as long as any view of it
    array = np.frombuffer(pages, dtype=dtype, count=size)
    weakref.finalize(array, _released, pages, length).atexit = False
    return array


def sparse(size: int, dtype: Any) -> np.ndarray:
    """A flat array on fresh small pages, not recycled: long-lived scratch space of
    which a pass writes only the start takes up only the pages written (a huge page
    would take 2 MiB for the first entry)."""
    return np.frombuffer(_map(_length(size * np.dtype(dtype).itemsize), huge=False), dtype=dtype, count=size)


def _length(nbytes: int) -> int:
    return max(1, -(-nbytes // mmap.PAGESIZE)) * mmap.PAGESIZE


def _released(pages: mmap.mmap, length: int) -> None:
    """Called once the array over ``pages``, and every view of it, is gone."""
    with _lock:
        _bytes["out"] -= length
        if _bytes["free"] + length > _bytes["peak"]:
            return  # over the bound: dropping the last reference unmaps it
        _bytes["free"] += length
        _free.setdefault(length, []).append(pages)
    _advise(pages, "MADV_FREE")


def held() -> int:
    """Bytes on the free list."""
    return _bytes["free"]


def peak() -> int:
    """The most bytes handed out at once so far: the free list's bound."""
    return _bytes["peak"]


def release() -> None:
    """Unmap every free buffer (later buffers start fresh)."""
    with _lock:
        dropped = [pages for free in _free.values() for pages in free]
        _free.clear()
        _bytes["free"] = 0
    for pages in dropped:
        pages.close()
