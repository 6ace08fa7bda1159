"""Running the kernels: loading them, cutting parameters into chunks, a thread pool,
per-thread scratch space, and the zeroing pass.

numba is imported the first time a kernel is needed, not with the adapters; without
numba, ``kernels()`` is ``None`` and the adapters take their framework's own path, which
gives the same results.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from . import buffers

__all__ = ["CHUNK", "chunks", "kernels", "map_chunks", "scratch", "zero_pruned"]

CHUNK = 1 << 20  # entries per task: big enough to hide the pool's overhead, small enough to share out
T = TypeVar("T")
_LOCAL = threading.local()


@functools.cache
def kernels() -> ModuleType | None:
    """The compiled kernels, or ``None`` where numba cannot be imported."""
    try:
        return importlib.import_module("lotto_backends._host.kernels")
    except ImportError:
        return None


def chunks(size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``size`` flat entries."""
    return [(start, min(start + CHUNK, size)) for start in range(0, size, CHUNK)]


@functools.cache
def _pool(pid: int, threads: int) -> ThreadPoolExecutor:
    """One pool per process (a forked child inherits its parent's pool without the
    threads) and thread count."""
    return ThreadPoolExecutor(threads, thread_name_prefix="lotto-host")


def map_chunks(fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], threads: int) -> list[T]:
    """``fn(*task)`` for every task, results in task order, on up to ``threads`` threads
    (inline for one task or one thread).

    Each thread takes the next task until none is left: one future per thread, not per
    task, so the caller does not contend for the GIL with the workers once per chunk."""
    threads = min(threads, len(tasks))
    if threads <= 1:
        return [fn(*task) for task in tasks]
    order = itertools.count()  # next() on a count is atomic under the GIL

    def work() -> list[tuple[int, T]]:
        done = []
        while (i := next(order)) < len(tasks):
            done.append((i, fn(*tasks[i])))
        return done

    futures = [_pool(os.getpid(), threads).submit(work) for _ in range(threads)]
    results: list[Any] = [None] * len(tasks)
    for future in futures:
        for i, result in future.result():
            results[i] = result
    return results


def scratch(name: str, size: int, dtype: Any) -> np.ndarray:
    """A buffer of ``size`` entries, owned by the calling thread under ``name`` and reused
    by its next call: a fresh one per chunk would cost page faults, a whole huge page
    zeroed for a few entries written, every pass."""
    owned: dict[str, np.ndarray] = _LOCAL.__dict__.setdefault("scratch", {})
    buffer = owned.get(name)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = owned[name] = buffers.sparse(max(size, CHUNK + 1), dtype)
    return buffer[:size]


def zero_pruned(
    keys: Sequence[np.ndarray], masks: Sequence[np.ndarray], threads: int, outs: Sequence[np.ndarray] | None = None
) -> None:
    """Set the entries that each ``masks[i]`` prunes to +0.0: in ``keys[i]`` itself, or
    into ``outs[i]`` (``keys[i]`` with them cleared); every chunk of every parameter on
    the thread pool. Only call where ``kernels()`` is not ``None``."""
    k = kernels()
    tasks = [(i, a, b) for i, key in enumerate(keys) for a, b in chunks(key.size)]
    if outs is None:
        map_chunks(lambda i, a, b: k.zero_pruned(keys[i][a:b], masks[i][a:b]), tasks, threads)  # type: ignore[union-attr]
    else:
        map_chunks(lambda i, a, b: k.zero_into(keys[i][a:b], masks[i][a:b], outs[i][a:b]), tasks, threads)  # type: ignore[union-attr]
