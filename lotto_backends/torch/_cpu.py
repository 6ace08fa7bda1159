"""The fast path for CPU tensors: zero-copy NumPy views of their memory, and a thread
pool that runs the numba kernels of ``_kernels`` over chunks of them.

torch's eager CPU ops run one kernel per operation, each writing a temporary; a
comparison to bool alone costs two to three elementwise float passes and ``nonzero``
thirty. The kernels fuse a whole pass into one loop instead. numba is imported the first
time a kernel is needed, not with ``lotto_backends.torch``; without numba every caller
takes its portable torch path, which gives the same results.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import torch
from torch.autograd.graph import increment_version

__all__ = [
    "CHUNK",
    "INT_OF",
    "bool_view",
    "chunks",
    "kernels",
    "key_view",
    "map_chunks",
    "scratch",
    "sign_off",
    "zero_pruned",
]

CHUNK = 1 << 20  # entries per task: big enough to hide the pool's overhead, small enough to share out
T = TypeVar("T")

INT_OF = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
"""The integer dtype of each float dtype's width: the dtype of its keys."""


@functools.cache
def kernels() -> ModuleType | None:
    """The compiled kernels, or ``None`` where numba cannot be imported."""
    try:
        return importlib.import_module("lotto_backends.torch._kernels")
    except ImportError:
        return None


def _plain_cpu(t: object) -> bool:
    return (
        isinstance(t, torch.Tensor)
        and t.device.type == "cpu"
        and t.layout == torch.strided
        and type(t.detach()) is torch.Tensor  # not a tensor subclass (FakeTensor, DTensor, ...)
        and t.is_contiguous()
    )


def key_view(t: object) -> np.ndarray | None:
    """The flat integer view of a contiguous CPU float tensor's bits (the kernels'
    keys), or ``None`` where the fast path does not apply."""
    if not _plain_cpu(t) or t.dtype not in INT_OF:  # type: ignore[union-attr]
        return None
    view: np.ndarray = t.detach().view(INT_OF[t.dtype]).reshape(-1).numpy()  # type: ignore[union-attr]
    return view


def bool_view(t: object) -> np.ndarray | None:
    """The flat NumPy view of a contiguous CPU bool tensor, or ``None``."""
    if not _plain_cpu(t) or t.dtype != torch.bool:  # type: ignore[union-attr]
        return None
    view: np.ndarray = t.reshape(-1).numpy()  # type: ignore[union-attr]
    return view


def sign_off(keys: np.ndarray) -> np.integer[Any]:
    """The mask that clears the sign bit of ``keys``' integer type."""
    info = np.iinfo(keys.dtype)
    return keys.dtype.type(info.max)


def chunks(size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``size`` flat entries."""
    return [(start, min(start + CHUNK, size)) for start in range(0, size, CHUNK)]


_LOCAL = threading.local()


def scratch(size: int) -> np.ndarray:
    """A bool buffer of ``size`` entries owned by the calling thread and reused by its
    next call (a fresh one would cost a page fault per 4 KiB, every pass)."""
    buffer: np.ndarray | None = getattr(_LOCAL, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _LOCAL.buffer = np.empty(max(size, CHUNK), dtype=bool)
    return buffer[:size]


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="lotto-cpu")


def map_chunks(fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
    """``fn(*task)`` for every task, in order, on as many threads as torch uses
    (``torch.get_num_threads()``); inline when there is one task or one thread."""
    threads = min(torch.get_num_threads(), len(tasks))
    if threads <= 1:
        return [fn(*task) for task in tasks]
    return list(_pool(threads).map(lambda task: fn(*task), tasks))


def zero_pruned(param: torch.Tensor, mask: torch.Tensor) -> bool:
    """Set the entries of ``param`` that ``mask`` prunes to exactly +0.0, in place, in
    one fused pass; ``False`` (nothing done) where the fast path does not apply."""
    k = kernels()
    keys, flags = key_view(param), bool_view(mask)
    if k is None or keys is None or flags is None or math.prod(param.shape) != flags.size:
        return False
    map_chunks(lambda a, b: k.zero_pruned(keys[a:b], flags[a:b]), chunks(keys.size))
    increment_version(param)  # as an in-place torch op would: autograd and the masking hooks see the write
    return True
