"""Timing and peak-memory helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device``: CUDA runs asynchronously, so a wall-clock
    time covers the kernels only once the host has waited for them."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


Case = tuple[Callable[[], Any], Callable[[], Any] | None]
"""``(fn, setup)``: what is timed, and what runs untimed before each call (or ``None``)."""


def best_times(cases: dict[str, Case], *, repeat: int, device: str = "cpu") -> dict[str, float]:
    """Smallest wall time of ``repeat`` calls of each case, the cases taking turns (so
    that a slow spell of a shared machine, or of its allocator, falls on all of them,
    not on one case's calls), waiting for ``device`` before and after each call."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, (fn, setup) in cases.items():
            if setup is not None:
                setup()
            gc.collect()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def best_time(
    fn: Callable[[], Any], *, repeat: int, setup: Callable[[], Any] | None = None, device: str = "cpu"
) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` (``setup`` runs untimed before
    each), waiting for ``device`` before and after each call."""
    return best_times({"fn": (fn, setup)}, repeat=repeat, device=device)["fn"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """Peak resident memory that ``fn`` adds above what the process held before it.

    Resets the kernel's high-water mark (Linux ``clear_refs``), runs ``fn`` and reads it
    back; large buffers are mmapped (``MALLOC_MMAP_THRESHOLD_``, set by the bench
    session), so freed temporaries leave the resident set at once.
    """
    gc.collect()
    before = _status_kib("VmRSS")
    with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
        f.write("5")
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024
