"""Compiled training step of prunable layers against the same compiled plain layers.

An MLP of prunable 1024x1024 layers at 50% sparsity, ``torch.compile``d (inductor), one
step = forward, backward and an Adam step, against the same MLP of plain ``nn.Linear``
(the same masked weights) compiled the same way, in the same run. Steps alternate
between the models and the median step time of each is compared. Target: prunable /
plain at most 1.03, and the same number of graphs (no graph break, no recompile).

Run: ``nox -s bench`` or ``python bench/bench_torch_compile_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _measure import synchronize
from torch import nn
from torch._dynamo.utils import counters

from lotto_backends.torch import MagnitudePruneGroup, PrunableModule, Pruner, make_prunable


def mlp(depth: int, width: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(depth):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, or cuda on a GPU machine")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    prunable = make_prunable(mlp(args.depth, args.width)).to(args.device)
    layers = [m for m in prunable if isinstance(m, PrunableModule)]
    Pruner([MagnitudePruneGroup(layers, 0.5)], model=prunable).prune()
    plain = mlp(args.depth, args.width).to(args.device)
    plain.load_state_dict(prunable.state_dict(), strict=False)

    graphs = {}
    compiled = {}
    for name, model in {"plain nn.Linear": plain, "lotto PrunableLinear": prunable}.items():
        torch._dynamo.reset()
        counters.clear()
        compiled[name] = torch.compile(model)
        compiled[name](torch.randn(2, args.width, device=args.device)).sum().backward()  # compile now, count its graphs
        graphs[name] = (counters["stats"]["unique_graphs"], len(counters["graph_break"]))
    optimizers = {"plain nn.Linear": plain, "lotto PrunableLinear": prunable}
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in optimizers.items()}
    x = torch.randn(args.batch, args.width, device=args.device)
    target = torch.randn(args.batch, args.width, device=args.device)
    times: dict[str, list[float]] = {name: [] for name in compiled}

    def step(name: str) -> float:
        synchronize(args.device)
        start = time.perf_counter()
        loss = nn.functional.mse_loss(compiled[name](x), target)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        synchronize(args.device)
        return time.perf_counter() - start

    for name in compiled:  # warm-up at the measured batch size
        step(name)
        step(name)
    for _ in range(args.steps):
        for name in compiled:
            times[name].append(step(name))
    still_zero = all(bool((m.weight[~m.weight_mask] == 0).all()) for m in layers)

    print(
        f"torch.compile (inductor), MLP of {args.depth} layers {args.width}x{args.width} at 50% sparsity, "
        f"batch {args.batch}, Adam, on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.steps} steps"
    )
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in median.items():
        unique, breaks = graphs[name]
        print(f"{name:22s} {t * 1e3:8.2f} ms/step   graphs {unique}, graph breaks {breaks}")
    ratio = median["lotto PrunableLinear"] / median["plain nn.Linear"]
    print(f"lotto / plain:  {ratio:.3f}   (target <= 1.03); pruned weights still exactly zero: {still_zero}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
