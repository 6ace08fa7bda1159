"""DDP training step of prunable layers against plain layers, on 2 gloo processes.

An MLP of 4 prunable 1024x1024 layers with BatchNorm at 50% sparsity under
``DistributedDataParallel`` (``broadcast_buffers=True``, its default), one step =
forward, backward and an SGD step, against the same plain MLP, in the same run; and the
bytes of buffers DDP broadcasts per forward for each. Target: prunable / plain at most
1.05, and the same broadcast bytes (masks and rewind points never travel).

Run: ``nox -s bench`` or ``python bench/bench_torch_ddp.py`` (it starts its two ranks
with torchrun on 127.0.0.1).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lotto_backends.torch import MagnitudePruneGroup, PrunableModule, Pruner, make_prunable


def mlp(depth: int = 4, width: int = 1024) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(*layers)


def rank_main(steps: int = 20) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    prunable = make_prunable(mlp())
    Pruner([MagnitudePruneGroup([m for m in prunable if isinstance(m, PrunableModule)], 0.5)], model=prunable).prune()
    plain = mlp()
    plain.load_state_dict(prunable.state_dict(), strict=False)
    models = {"plain": DistributedDataParallel(plain), "prunable": DistributedDataParallel(prunable)}
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-3) for name, m in models.items()}
    x = torch.randn(128, 1024)
    times: dict[str, list[float]] = {name: [] for name in models}

    def step(name: str) -> float:
        start = time.perf_counter()
        loss = models[name](x).pow(2).mean()
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for name in models:
        step(name)
    for _ in range(steps):
        for name in models:
            times[name].append(step(name))
    if dist.get_rank() == 0:
        median = {name: statistics.median(t) for name, t in times.items()}
        sent = {}
        for name, ddp in models.items():
            ddp._assign_modules_buffers()
            sent[name] = sum(b.numel() * b.element_size() for b in ddp.modules_buffers)
        print("DDP on 2 gloo ranks, MLP of 4 x 1024 with BatchNorm at 50% sparsity, batch 128 per rank, SGD")
        print(f"  plain {median['plain'] * 1e3:.1f} ms/step, prunable {median['prunable'] * 1e3:.1f} ms/step")
        print(f"  prunable / plain: {median['prunable'] / median['plain']:.3f}   (target <= 1.05)")
        print(f"  buffers broadcast per forward: plain {sent['plain']:,} B, prunable {sent['prunable']:,} B")
    dist.destroy_process_group()


def main() -> int:
    if "RANK" in os.environ:
        rank_main()
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1"]
    command += ["--master-addr=127.0.0.1", f"--master-port={port}", __file__]
    return subprocess.run(command, check=False, timeout=600).returncode


if __name__ == "__main__":
    sys.exit(main())
