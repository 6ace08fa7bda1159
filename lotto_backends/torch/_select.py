"""Exact selection on CPU tensors with the host kernels (``lotto_backends._host``).

torch's eager CPU ops run one kernel per operation, each writing a temporary: in the
core's portable selection a comparison to bool costs two to three elementwise float
passes and ``nonzero`` thirty. For a group of contiguous CPU tensors the search runs
instead over zero-copy NumPy views of their memory in fused numba loops, on torch's
threads, and gives the same cuts. Groups the kernels do not cover (CUDA tensors, score
sources other than the core's magnitudes and random scores, mixed dtypes, non-contiguous
weights, no numba) go to the core's portable selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from lotto_backends._host import pool
from lotto_backends._host.search import FORMATS, HostParam, KeyFormat, select
from lotto_core.scores import MagnitudeScores, RandomScores, ScoreSource
from lotto_core.selection import Cut, plan_cuts_portable, register_native_planner

from . import _cpu

__all__ = ["plan_cuts"]


def _score_keys(source: ScoreSource) -> tuple[np.ndarray, KeyFormat] | None:
    """The keys of a source's scores and their format, or ``None`` for a source the
    kernels do not cover. Magnitudes are the weight's own bits; the core's random
    scores are its float32 host values."""
    if type(source) is MagnitudeScores:
        keys = _cpu.key_view(source.weight)
        return None if keys is None else (keys, FORMATS[str(source.weight.dtype).removeprefix("torch.")])
    if type(source) is RandomScores and _cpu.key_view(source.weight) is not None:
        return source.host_values().reshape(-1).view(np.int32), FORMATS["float32"]
    return None


def _host_group(
    sources: Sequence[ScoreSource], masks: Sequence[torch.Tensor]
) -> tuple[list[HostParam], KeyFormat] | None:
    """The group as the kernels see it, or ``None`` where any part is not covered."""
    params, formats = [], set()
    for source, mask in zip(sources, masks, strict=True):
        keys, flags = _score_keys(source), _cpu.bool_view(mask)
        if keys is None or flags is None or keys[0].size != flags.size:
            return None
        params.append(HostParam(keys[0], flags))
        formats.add(keys[1])
    return (params, formats.pop()) if len(formats) == 1 else None


def plan_cuts(sources: Sequence[ScoreSource], masks: Sequence[torch.Tensor], p: float) -> list[Cut]:
    """``lotto_core.selection.plan_cuts`` for torch tensors: the same cuts (threshold,
    ties, counts), each carrying its new mask. Registered with the core on import, so
    the core's groups use it for every group of torch tensors; groups the kernels do not
    cover go to ``plan_cuts_portable``.

    Parameters
    ----------
    sources
        One score source per parameter, in group order (the kernels cover the core's
        ``MagnitudeScores`` and ``RandomScores``).
    masks
        The parameters' boolean masks (``True`` = kept), in the same order.
    p
        The rate, in [0, 1).
    """
    group = None if pool.kernels() is None else _host_group(sources, masks)
    if group is None:
        return plan_cuts_portable(sources, masks, p)
    cuts = select(*group, p, _cpu.threads())
    return [
        cut if cut.mask is None else replace(cut, mask=torch.from_numpy(cut.mask).reshape(mask.shape))
        for cut, mask in zip(cuts, masks, strict=True)
    ]


register_native_planner(lambda mask: isinstance(mask, torch.Tensor), plan_cuts)
