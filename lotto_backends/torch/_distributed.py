"""Data-parallel training (DDP): masks and rewind points stay out of DDP's buffer
broadcast, and ranks are checked to agree on the masks after a prune."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from ._layout import is_dtensor

__all__ = ["check_ranks_agree", "is_distributed", "keep_out_of_ddp_broadcast"]

_LOTTO_BUFFERS = ("_mask", "_rewind")


def keep_out_of_ddp_broadcast(model: nn.Module) -> None:
    """Add the masks and rewind points of ``model``'s prunable layers to the names
    ``DistributedDataParallel(model)`` neither broadcasts nor checks (its
    ``_ddp_params_and_buffers_to_ignore``): each rank prunes its own copy to the same
    masks, so sending them every forward would only double the traffic."""
    from .layers import PrunableModule

    names = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
    for prefix, layer in model.named_modules():
        if isinstance(layer, PrunableModule):
            for key in layer._buffers:
                if key.endswith(_LOTTO_BUFFERS):
                    names.add(f"{prefix}.{key}" if prefix else key)
    model._ddp_params_and_buffers_to_ignore = sorted(names)  # type: ignore[assignment]


def is_distributed() -> bool:
    """Whether ``torch.distributed`` runs with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_ranks_agree(masks: Sequence[torch.Tensor]) -> None:
    """Raise on every rank if the ranks of the default process group hold different
    ``masks`` (plain tensors; a DTensor mask is one mask over the ranks): a checksum per
    mask (kept count, sum and sum of squares of the kept positions), compared with two
    all-reduces of 3 integers per mask."""
    masks = [m for m in masks if not is_dtensor(m)]  # a DTensor's shards agree by construction
    if not masks or not is_distributed():
        return
    sums = []
    for mask in masks:
        flat = mask.reshape(-1)
        kept = torch.arange(flat.numel(), device=flat.device, dtype=torch.int64)[flat]
        sums += [kept.numel() * torch.ones((), dtype=torch.int64, device=flat.device), kept.sum(), (kept * kept).sum()]
    device = masks[0].device
    high = torch.stack([s.to(device) for s in sums])
    low = high.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    differ = [i // 3 for i in range(len(sums)) if high[i] != low[i]]
    if differ:
        raise RuntimeError(
            f"the ranks hold different masks after prune() (mask {differ[0]} of the pruner's {len(masks)} first "
            "differs): prune on every rank after the same training steps, so that each rank's weights are the same "
            "(DistributedDataParallel keeps them so)"
        )
