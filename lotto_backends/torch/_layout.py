"""Masks and rewind points that follow their parameter's layout. A layer made prunable
before ``fully_shard`` or ``parallelize_module`` holds whole masks and rewind points
while its parameters become DTensors; the first time Lotto touches the layer after that
(a prune, a rewind, the first step of an optimizer over the sharded parameters) each
buffer becomes the DTensor of this rank's shard, with the parameter's mesh and
placements, cut from the whole buffer that every rank holds (or from the replicated
DTensor that ``parallelize_module`` makes of it): no communication.

``torch.distributed.tensor`` is only looked up, never imported: no DTensor exists
before it is imported.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .layers import PrunableModule

__all__ = ["LAYERS", "follow_layout", "is_dtensor", "same_layout", "shard_like"]

LAYERS: weakref.WeakSet[PrunableModule] = weakref.WeakSet()
"""Every live prunable layer: what the optimizer hook looks through for parameters that
were sharded after the layer was made prunable."""


def is_dtensor(x: object) -> bool:
    """Whether ``x`` is a DTensor (without importing ``torch.distributed.tensor``)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(x, module.DTensor)


def same_layout(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are DTensors on one mesh with the same placements."""
    return is_dtensor(a) and is_dtensor(b) and (a.device_mesh, a.placements) == (b.device_mesh, b.placements)


def shard_like(whole: torch.Tensor, param: Any) -> Any:
    """``whole`` (the full tensor, on every rank) as a DTensor laid out like ``param``."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    region = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
    local = whole[region].to(param.to_local().device).clone()
    return DTensor.from_local(
        local, param.device_mesh, param.placements, run_check=False, shape=param.shape, stride=param.stride()
    )


def follow_layout(layer: PrunableModule) -> bool:
    """Turn each whole mask and rewind point of ``layer`` whose parameter is now a
    DTensor into that DTensor's layout; whether any changed. Every handle access calls
    it: without ``torch.distributed.tensor`` loaded, no DTensor exists to look for."""
    if "torch.distributed.tensor" not in sys.modules:
        return False
    changed = False
    for name, parameter in layer.named_parameters():
        if not is_dtensor(parameter):
            continue
        param: Any = parameter
        stem = name.replace(".", "_")
        for key in (stem + "_mask", stem + "_rewind"):
            buffer: Any = layer._buffers.get(key)
            if buffer is None:
                continue
            if is_dtensor(buffer):
                if (buffer.device_mesh, buffer.placements) != (param.device_mesh, param.placements):
                    # parallelize_module replicates buffers: cut to the parameter's shards (no communication)
                    layer._buffers[key] = buffer.redistribute(param.device_mesh, param.placements)
                    changed = True
                continue
            if tuple(buffer.shape) != tuple(param.shape):
                raise ValueError(
                    f"{type(layer).__name__}.{key} has shape {tuple(buffer.shape)}, its parameter "
                    f"{tuple(param.shape)}: make the model prunable before sharding it"
                )
            layer._buffers[key] = shard_like(buffer, param)
            changed = True
    return changed
