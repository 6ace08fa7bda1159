"""Global magnitude prune of DTensor weights sharded over 2 and 4 gloo processes, against
the same prune of the whole weights in one process, in the same run.

8 weights of 2048x2048 float32 (134 MB), ``Shard(0)`` over every rank, rate 0.2: the time
of ``MagnitudePruneGroup.prune`` on the sharded weights (the slowest rank, best of 5)
against the one-process prune (best of 5, with as many threads as ranks), and the bytes
that Lotto's collectives move per prune (all ranks together) against the weights' bytes.
Targets: the masks equal the one-process masks (checked), and the collectives move at
most 1% of the weights' bytes (the gathered sample: one key per 128 weights at most).

Run: ``nox -s bench`` or ``python bench/bench_torch_sharded_prune.py`` (it starts its
ranks with torchrun on 127.0.0.1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist

from lotto_backends.torch import MagnitudePruneGroup, Pruner
from lotto_core import ArrayLayer

SHAPE, COUNT, RATE, REPEAT = (2048, 2048), 8, 0.2, 5


def weights() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(SHAPE, generator=gen) for _ in range(COUNT)]


def one_process(threads: int) -> tuple[float, list[torch.Tensor]]:
    """Best time of the whole prune in this process, and its masks."""
    torch.set_num_threads(threads)
    ws = weights()
    best = float("inf")
    for _ in range(REPEAT):
        layers = [ArrayLayer({"w": w.clone()}) for w in ws]
        start = time.perf_counter()
        MagnitudePruneGroup(layers, RATE).prune()
        best = min(best, time.perf_counter() - start)
    return best, [layer.parameter_handles()["w"].get_mask() for layer in layers]


def rank_main(out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    world = dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    ws = weights()
    moved = [0]
    reduce, gather = dist.all_reduce, dist.all_gather

    def counted_reduce(tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        moved[0] += tensor.numel() * tensor.element_size() * world  # every rank sends its tensor
        return reduce(tensor, *args, **kwargs)

    def counted_gather(parts: list[torch.Tensor], tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        moved[0] += tensor.numel() * tensor.element_size() * world
        return gather(parts, tensor, *args, **kwargs)

    best = float("inf")
    for _ in range(REPEAT):
        layers = [ArrayLayer({"w": distribute_tensor(w.clone(), mesh, [Shard(0)])}) for w in ws]
        pruner = Pruner([MagnitudePruneGroup(layers, RATE)])
        dist.barrier()
        moved[0] = 0
        dist.all_reduce, dist.all_gather = counted_reduce, counted_gather
        start = time.perf_counter()
        pruner.prune()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce, dist.all_gather = reduce, gather
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        best = min(best, float(elapsed))
    masks = [layer.parameter_handles()["w"].get_mask().full_tensor() for layer in layers]
    if dist.get_rank() == 0:
        torch.save({"time": best, "bytes": moved[0], "masks": masks}, out)
    dist.destroy_process_group()


def sharded(ranks: int, out: str) -> dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}", "--nnodes=1"]
    command += ["--master-addr=127.0.0.1", f"--master-port={port}", __file__, out]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, timeout=600, env=env, stdout=subprocess.DEVNULL)
    result: dict[str, object] = torch.load(out)
    return result


def main() -> int:
    if "RANK" in os.environ:
        rank_main(sys.argv[1])
        return 0
    import tempfile

    weight_bytes = COUNT * SHAPE[0] * SHAPE[1] * 4
    print(f"{COUNT} weights of {SHAPE[0]}x{SHAPE[1]} float32 ({weight_bytes / 1e6:.0f} MB), Shard(0), p={RATE}, gloo")
    missed = []
    with tempfile.TemporaryDirectory() as folder:
        for ranks in (2, 4):
            alone, masks = one_process(ranks)
            result = sharded(ranks, os.path.join(folder, f"{ranks}.pt"))
            same = all(torch.equal(a, b) for a, b in zip(masks, result["masks"], strict=True))  # type: ignore[call-overload]
            share = int(result["bytes"]) / weight_bytes  # type: ignore[call-overload]
            print(
                f"{ranks} ranks: {float(result['time']) * 1e3:7.1f} ms   one process, {ranks} threads: "  # type: ignore[arg-type]
                f"{alone * 1e3:7.1f} ms   ratio {float(result['time']) / alone:5.2f}x"  # type: ignore[arg-type]
            )
            print(
                f"  collectives moved {int(result['bytes']):,} B = {100 * share:.3f}% of the weights' bytes "  # type: ignore[call-overload]
                f"(target <= 1%); masks equal to one process: {same}"
            )
            if share > 0.01 or not same:
                missed.append(f"{ranks} ranks")
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
