"""One rank of a DDP run on gloo (started by torchrun from test_ddp.py): ``python
ddp_worker.py CASE``; exits non-zero, with the assertion, if the case fails."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lotto_backends.torch import MagnitudePruneGroup, PrunableModule, Pruner, make_prunable


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def _train(ddp: nn.Module, steps: int, rank: int) -> None:
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    for _ in range(steps):
        x = torch.randn(8, 8, generator=gen)
        loss = nn.functional.cross_entropy(ddp(x), torch.randint(0, 4, (8,), generator=gen))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _broadcast_bytes(ddp: DistributedDataParallel) -> int:
    ddp._assign_modules_buffers()
    return sum(b.numel() * b.element_size() for b in ddp.modules_buffers)


def no_broadcast(rank: int) -> None:
    """Masks and rewind points stay out of DDP's broadcast; BatchNorm statistics do not."""
    plain = DistributedDataParallel(_model())
    model = make_prunable(_model())
    layers = [m for m in model.modules() if isinstance(m, PrunableModule)]
    pruner = Pruner([MagnitudePruneGroup(layers, 0.5)], model=model)
    if rank == 1:
        with torch.no_grad():
            model[0].weight_rewind.add_(1.0)  # a rank-local value DDP must not overwrite
    ddp = DistributedDataParallel(model)
    assert _broadcast_bytes(ddp) == _broadcast_bytes(plain), (_broadcast_bytes(ddp), _broadcast_bytes(plain))
    _train(ddp, 3, rank)
    assert bool((model[0].weight_rewind != _model()[0].weight).all()) == (rank == 1)
    pruner.prune()
    masks = [m.weight_mask.clone() for m in (model[0], model[3])]
    gathered = [[torch.empty_like(m) for _ in range(2)] for m in masks]
    for g, m in zip(gathered, masks, strict=True):
        dist.all_gather(g, m)
        assert torch.equal(g[0], g[1])
    _train(ddp, 2, rank)
    for layer in (model[0], model[3]):
        assert (layer.weight[~layer.weight_mask] == 0).all()


def ranks_disagree(rank: int) -> None:
    """Weights that differ between ranks give different masks: every rank raises."""
    model = make_prunable(_model())
    layers = [m for m in model.modules() if isinstance(m, PrunableModule)]
    pruner = Pruner([MagnitudePruneGroup(layers, 0.5)], model=model)
    if rank == 1:
        with torch.no_grad():
            model[0].weight.mul_(torch.linspace(0.1, 10.0, 8))
    with pytest.raises(RuntimeError, match="the ranks hold different masks"):
        pruner.prune()


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        {"no_broadcast": no_broadcast, "ranks_disagree": ranks_disagree}[sys.argv[1]](rank)
    finally:
        dist.destroy_process_group()
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe
    # past the checks, skip the interpreter's teardown: destroying DDP's C++ reducer after its
    # process group has gone aborts now and then ("terminate called without an active exception")
    os._exit(0)
