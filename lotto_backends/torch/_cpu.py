"""CPU tensors for the host kernels (``lotto_backends._host``): zero-copy NumPy views of
their memory, and zeroing in place."""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np
import torch
from torch.autograd.graph import increment_version

from lotto_backends._host import pool
from lotto_core.keys import FORMATS, KeyFormat

__all__ = ["INT_OF", "bool_view", "key_view", "threads", "weight_keys", "zero_pruned"]

INT_OF = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
"""The integer dtype of each float dtype's width: the dtype of its keys."""


def _plain_cpu(t: object) -> TypeGuard[torch.Tensor]:
    return (
        isinstance(t, torch.Tensor)
        and t.device.type == "cpu"
        and t.layout == torch.strided
        and type(t.detach()) is torch.Tensor  # not a tensor subclass (FakeTensor, DTensor, ...)
    )


def key_view(t: object, *, in_place: bool = False) -> np.ndarray | None:
    """The flat integer view of a CPU float tensor's bits in C order (the kernels'
    keys), or ``None`` where the kernels do not apply. A tensor laid out otherwise
    (``channels_last``, a transposed view) is read through a C-ordered copy, unless the
    view is to be written (``in_place``)."""
    if not _plain_cpu(t) or t.dtype not in INT_OF or (in_place and not t.is_contiguous()):
        return None
    view: np.ndarray = t.detach().contiguous().view(INT_OF[t.dtype]).reshape(-1).numpy()
    return view


def weight_keys(t: object) -> tuple[np.ndarray, KeyFormat] | None:
    """A weight's keys (``key_view``) and their format, or ``None``."""
    keys = key_view(t)
    if keys is None or not isinstance(t, torch.Tensor):
        return None
    return keys, FORMATS[str(t.dtype).removeprefix("torch.")]


def bool_view(t: object) -> np.ndarray | None:
    """The flat NumPy view of a CPU bool tensor in C order (through a copy for another
    layout), or ``None``."""
    if not _plain_cpu(t) or t.dtype != torch.bool:
        return None
    view: np.ndarray = t.contiguous().reshape(-1).numpy()
    return view


def threads() -> int:
    """The kernels run on as many threads as torch's own CPU ops."""
    return torch.get_num_threads()


def _memory_order(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its dimensions permuted into the order they lie in memory: a contiguous
    view for a dense tensor of any layout (``channels_last``), ``t`` itself otherwise."""
    strides = t.stride()
    order = sorted(range(t.dim()), key=lambda d: -strides[d])
    view = t.permute(order)
    return view if view.is_contiguous() else t


def zero_pruned(param: torch.Tensor, mask: torch.Tensor) -> bool:
    """Set the entries of ``param`` that ``mask`` prunes to exactly +0.0, in place, in
    one fused pass; ``False`` (nothing done) where the kernels do not apply. A dense
    parameter of another layout (``channels_last``) is walked in memory order, with its
    mask when that has the same layout."""
    if isinstance(param, torch.Tensor) and not param.is_contiguous() and mask.stride() == param.stride():
        param, mask = _memory_order(param), _memory_order(mask)
    keys, flags = key_view(param, in_place=True), bool_view(mask)
    if pool.kernels() is None or keys is None or flags is None or math.prod(param.shape) != flags.size:
        return False
    pool.zero_pruned([keys], [flags], threads())
    increment_version(param)  # as an in-place torch op would: autograd and the masking hooks see the write
    return True
