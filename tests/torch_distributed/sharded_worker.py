"""One rank of a sharded run on gloo (started by torchrun from test_sharded.py): ``python
sharded_worker.py CASE``; exits non-zero, with the assertion, if the case fails."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from lotto_backends.torch import MagnitudePruneGroup, PruneGroup, Pruner, RandomPruneGroup, make_prunable, sparsify
from lotto_core import ArrayLayer


def _weights() -> list[torch.Tensor]:
    torch.manual_seed(0)
    ws = [torch.randn(64, 48), torch.randn(30, 7), torch.randn(5, 3), torch.randn(1024, 1024)]
    ws[1][3:9] = 0.25  # ties at the threshold, split across shards
    ws[0][10:40] = 0.5
    return ws


@contextmanager
def _collective_bytes() -> Iterator[list[int]]:
    """The bytes that ``dist.all_reduce`` and ``dist.all_gather`` move while inside."""
    moved = [0]
    reduce, gather = dist.all_reduce, dist.all_gather

    def counted_reduce(tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        moved[0] += tensor.numel() * tensor.element_size()
        return reduce(tensor, *args, **kwargs)

    def counted_gather(out: list[torch.Tensor], tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        moved[0] += tensor.numel() * tensor.element_size() * len(out)
        return gather(out, tensor, *args, **kwargs)

    dist.all_reduce, dist.all_gather = counted_reduce, counted_gather
    try:
        yield moved
    finally:
        dist.all_reduce, dist.all_gather = reduce, gather


def _placements() -> list[list[object]]:
    if dist.get_world_size() == 4:
        return [[Shard(0), Replicate()], [Shard(0), Shard(1)], [Replicate(), Shard(1)], [Shard(1), Shard(0)]]
    return [[Shard(0)], [Shard(1)], [Replicate()]]


def dtensor_masks_match(rank: int, path: str = "band") -> None:
    """Masks and weights equal those of the same weights pruned whole, bit for bit, for
    every layout; the collectives move a few percent of the weights' bytes. ``path``:
    ``band`` (the ranks' bands fit), ``counting`` (they never do: counting passes and
    masks from fresh passes), ``ties`` (small integers: ties at the threshold split
    inside parameters and across ranks)."""
    import lotto_core.search

    world = dist.get_world_size()
    mesh = init_device_mesh("cpu", (2, 2) if world == 4 else (world,))
    weights = _weights()
    if path == "counting":
        lotto_core.search.MIN_BAND = 4
    elif path == "ties":
        gen = torch.Generator().manual_seed(1)
        weights = [torch.randint(-4, 5, w.shape, generator=gen).float() for w in weights]
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    for placements in _placements():
        for make in (MagnitudePruneGroup, lambda layers, p: RandomPruneGroup(layers, p, seed=3)):
            whole = [ArrayLayer({"w": w.clone()}) for w in weights]
            sharded = [ArrayLayer({"w": distribute_tensor(w.clone(), mesh, placements)}) for w in weights]
            for layers in (whole, sharded):
                pruner = Pruner([make(layers, 0.37)])
                with _collective_bytes() as moved, CommDebugMode() as comms:
                    pruner.prune()
                    pruner.prune()
            assert moved[0] <= 0.05 * weight_bytes, (placements, moved[0], weight_bytes)
            ops = {str(op) for op in comms.get_comm_counts()}
            assert ops <= {"c10d.allreduce_", "c10d.allgather_"}, ops  # Lotto's own collectives, nothing of DTensor's
            for a, b in zip(whole, sharded, strict=True):
                mask = b.parameter_handles()["w"].get_mask()
                assert isinstance(mask, DTensor)
                assert mask.placements == tuple(placements)
                assert torch.equal(a.parameter_handles()["w"].get_mask(), mask.full_tensor()), placements
                assert torch.equal(
                    a.parameter_handles()["w"].get_value(), b.parameter_handles()["w"].get_value().full_tensor()
                )
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def strategies_match(rank: int) -> None:
    """Structures and scopes on sharded weights give the whole weights' masks (channel
    norms reduced over a sharded dimension included); N:M raises."""
    from lotto_core.strategy import ERK, NM, Blocks, Channels, PerLayer, Sparsity

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    gen = torch.Generator().manual_seed(2)  # the same weights on every rank
    weights = [torch.randn(16, 8, generator=gen), torch.randn(8, 12, generator=gen)]
    cases = [
        {"amount": 0.5, "structure": Channels(0)},
        {"amount": 0.5, "structure": Channels(1)},
        {"amount": 0.5, "structure": Blocks(2, 2)},
        {"amount": 0.3, "scope": PerLayer()},
        {"amount": Sparsity(0.5), "scope": ERK()},
    ]
    for placements in ([Shard(0)], [Shard(1)]):
        for options in cases:
            whole = [ArrayLayer({"w": w.clone()}) for w in weights]
            sharded = [ArrayLayer({"w": distribute_tensor(w.clone(), mesh, placements)}) for w in weights]
            PruneGroup(whole, **options).prune()
            PruneGroup(sharded, **options).prune()
            for a, b in zip(whole, sharded, strict=True):
                got = b.parameter_handles()["w"].get_mask().full_tensor()
                assert torch.equal(a.parameter_handles()["w"].get_mask(), got), (placements, options)
        with pytest.raises(RuntimeError):
            PruneGroup(sharded, None, structure=NM(2, 4, axis=1)).prune()
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def _fsdp(model: nn.Module, mesh: object) -> None:
    fully_shard(model, mesh=mesh)


def _fsdp_per_layer(model: nn.Module, mesh: object) -> None:
    """FSDP2's usual wrapping: each layer, then the root."""
    fully_shard(model[0], mesh=mesh)
    fully_shard(model[2], mesh=mesh)
    fully_shard(model, mesh=mesh)


def _tp(model: nn.Module, mesh: object) -> None:
    parallelize_module(model, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})


def _check_training(shard: Callable[[nn.Module, object], None], rank: int) -> None:
    """In both orders (shard then prune, prune then shard), the masks equal the unsharded
    model's, three Adam steps revive no pruned weight, and rewind restores the rewind
    point with the pruned weights at 0."""
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    reference = make_prunable(_model())
    reference_pruner = Pruner([MagnitudePruneGroup([reference[0], reference[2]], 0.5)], model=reference)
    reference_pruner.prune()
    for prune_first in (False, True):
        model = make_prunable(_model())
        pruner = Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)], model=model)
        if prune_first:
            pruner.prune()
        shard(model, mesh)
        if not prune_first:
            pruner.prune()
        for layer, ref in zip((model[0], model[2]), (reference[0], reference[2]), strict=True):
            assert torch.equal(_full(layer.weight_mask), ref.weight_mask), prune_first
        report, expected = pruner.report(), reference_pruner.report()
        assert [(p.kept, p.total, p.revived) for p in report.parameters] == [
            (p.kept, p.total, p.revived) for p in expected.parameters
        ], (report, expected)  # counted over all shards, on every rank
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(rank)
        for _ in range(3):
            loss = model(torch.randn(4, 8, generator=gen)).square().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for layer in (model[0], model[2]):
            assert isinstance(layer.weight_mask, DTensor)  # laid out like the weight by the first step at the latest
            assert layer.weight_mask.placements == layer.weight.placements
            mask = _full(layer.weight_mask)
            weight = _full(layer.weight.detach())
            assert int((weight[~mask] != 0).sum()) == 0, f"pruned weights revived (prune first: {prune_first})"
            assert not torch.equal(weight, _full(layer.weight_rewind) * mask)  # the kept ones trained
        pruner.rewind()
        for layer in (model[0], model[2]):
            mask = _full(layer.weight_mask)
            assert torch.equal(_full(layer.weight.detach()), _full(layer.weight_rewind) * mask)
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def fsdp_training(rank: int) -> None:
    _check_training(_fsdp, rank)


def fsdp_per_layer_training(rank: int) -> None:
    _check_training(_fsdp_per_layer, rank)


def tp_training(rank: int) -> None:
    _check_training(_tp, rank)


def what_cannot_work_is_refused(rank: int) -> None:
    """``make_prunable`` after ``fully_shard``, and ``sparsify`` of sharded weights, raise
    naming what to do."""
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = _model()
    fully_shard(model, mesh=mesh)
    with pytest.raises(ValueError, match=r"call make_prunable\(model\) before fully_shard"):
        make_prunable(model)
    model, _ = sharded_model(1)
    with pytest.raises(ValueError, match=r"sparsify\(\) needs whole weights, and '0.weight' is a DTensor shard"):
        sparsify(model)
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def _local_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """This rank's shards of every parameter and buffer (masks, rewind points)."""
    return {k: (v.to_local() if isinstance(v, DTensor) else v).detach().clone() for k, v in model.state_dict().items()}


def failed_calls_change_nothing(rank: int) -> None:
    """On FSDP2 shards, a prune failing at the second layer's mask and a rewind failing at
    its weight's copy leave every rank's shards, masks and rewind points as they were."""
    from lotto_backends.torch.layers import TorchParameterHandle

    model, pruner = sharded_model(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5)  # "training" (the pruned entries are re-zeroed below)
    pruner.rewind()
    pruner.set_rewind_point()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1.5)
    before = _local_state(model)
    second = model[2]
    store_mask, copy_ = TorchParameterHandle.store_mask, torch.Tensor.copy_

    def failing_store(self: TorchParameterHandle, mask: torch.Tensor) -> None:
        if self.layer is second:
            raise MemoryError("injected")
        store_mask(self, mask)

    def failing_copy(self: torch.Tensor, other: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if self is second.weight:
            raise MemoryError("injected")
        return copy_(self, other, *args, **kwargs)

    for call, attribute, failing in (
        (pruner.prune, "store_mask", failing_store),
        (pruner.rewind, "copy_", failing_copy),
    ):
        owner = TorchParameterHandle if attribute == "store_mask" else torch.Tensor
        real = getattr(owner, attribute)
        setattr(owner, attribute, failing)
        try:
            with pytest.raises(MemoryError, match="injected"):
                call()
        finally:
            setattr(owner, attribute, real)
        after = _local_state(model)
        assert after.keys() == before.keys()
        for key, value in before.items():
            assert torch.equal(after[key], value), (attribute, key)
    assert pruner.rounds == 1
    pruner.prune()  # and without the failures both go through
    pruner.rewind()
    assert pruner.rounds == 2
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def controls_on_shards(rank: int) -> None:
    """The random controls on FSDP2 shards give the masks they give the whole model:
    ``shuffle_masks`` of a ticket, and ``random_prune_like`` of a dense model down to the
    ticket's counts."""
    from lotto_backends.torch import random_prune_like, shuffle_masks

    def whole_model(rounds: int) -> tuple[nn.Module, Pruner]:
        whole = make_prunable(_model())
        pruner = Pruner([MagnitudePruneGroup([whole[0], whole[2]], 0.5)], model=whole)
        for _ in range(rounds):
            pruner.prune()
        return whole, pruner

    whole, whole_pruner = whole_model(1)
    ticket = full_masks(whole)
    shuffle_masks(whole_pruner, seed=3)
    model, pruner = sharded_model(1)
    shuffle_masks(pruner, seed=3)
    for got, want in zip(full_masks(model), full_masks(whole), strict=True):
        assert torch.equal(got, want)
    whole, whole_pruner = whole_model(0)
    random_prune_like(whole_pruner, ticket, seed=3)
    model, pruner = sharded_model(0)
    random_prune_like(pruner, ticket, seed=3)
    for got, want, like in zip(full_masks(model), full_masks(whole), ticket, strict=True):
        assert torch.equal(got, want)
        assert int(got.sum()) == int(like.sum())
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def sharded_model(prune_rounds: int) -> tuple[nn.Module, Pruner]:
    """The model of ``_model`` made prunable, its pruner, then ``fully_shard`` over every
    rank (with one rank: the plain model), pruned ``prune_rounds`` times."""
    model = make_prunable(_model())
    pruner = Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)], model=model)
    if dist.is_initialized() and dist.get_world_size() > 1:
        fully_shard(model, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    for _ in range(prune_rounds):
        pruner.prune()
    return model, pruner


def full_masks(model: nn.Module) -> list[torch.Tensor]:
    return [_full(layer.weight_mask).clone() for layer in (model[0], model[2])]


def dcp_save(rank: int, folder: str) -> None:
    """Save a sharded model pruned twice, and its pruner, through DCP."""
    import torch.distributed.checkpoint as dcp

    model, pruner = sharded_model(2)
    dcp.save({"model": model.state_dict(), "pruner": pruner.state_dict()}, checkpoint_id=folder)
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


def dcp_load(rank: int, folder: str, expected: str) -> None:
    """Load a checkpoint saved by another number of ranks into the sharded model: its
    masks, and those of one more round, are the ``expected`` ones."""
    import torch.distributed.checkpoint as dcp

    model, pruner = sharded_model(0)
    state = {"model": model.state_dict(), "pruner": pruner.state_dict()}
    dcp.load(state, checkpoint_id=folder)
    model.load_state_dict(state["model"])
    pruner.load_state_dict(state["pruner"])
    want = torch.load(expected)
    for got, mask in zip(full_masks(model), want["loaded"], strict=True):
        assert torch.equal(got, mask)
    assert pruner.rounds == 2
    pruner.prune()
    for got, mask in zip(full_masks(model), want["next"], strict=True):
        assert torch.equal(got, mask)
    os.write(1, f"rank {rank} ok\n".encode())  # one write: the ranks share the pipe


if __name__ == "__main__":
    dist.init_process_group("gloo")
    try:
        globals()[sys.argv[1]](dist.get_rank(), *sys.argv[2:])
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # past the checks, skip the interpreter's teardown (see ddp_worker.py)
