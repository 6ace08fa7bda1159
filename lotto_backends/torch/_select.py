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

import torch

from lotto_backends._host.search import host_group, select
from lotto_core.scores import ScoreSource
from lotto_core.selection import Cut, plan_cuts_portable, register_native_planner

from . import _cpu

__all__ = ["plan_cuts"]


def plan_cuts(
    sources: Sequence[ScoreSource], masks: Sequence[torch.Tensor], p: float, values: bool = False
) -> list[Cut]:
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
    values
        Not taken: torch's writer zeroes each weight in place, which needs no new
        weight at all.
    """
    group = host_group(sources, masks, _cpu.weight_keys, _cpu.bool_view)
    if group is None:
        return plan_cuts_portable(sources, masks, p)
    cuts = select(*group, p, _cpu.threads())
    return [
        cut if cut.mask is None else replace(cut, mask=torch.from_numpy(cut.mask).reshape(mask.shape))
        for cut, mask in zip(cuts, masks, strict=True)
    ]


register_native_planner(lambda mask: isinstance(mask, torch.Tensor), plan_cuts)
