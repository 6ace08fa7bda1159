"""Training-step cost of prunable layers, and their memory per weight (issue 3).

An MLP of 8 prunable 2048x2048 layers at 50% sparsity, batch 256, one step = forward,
backward and an Adam step, against the same MLP of plain ``nn.Linear`` (the same masked
weights) and against ``torch.nn.utils.prune``'s reparametrization, in the same run.
Target: prunable / plain at most 1.03. ``mask_gradients`` (pruned weights' gradients
exactly 0) is measured too. Steps alternate between the models and the
median step time of each is compared.

Run: ``nox -s bench`` or ``python bench/bench_torch_train_step.py``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.utils.prune as torch_prune
from _measure import synchronize
from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, PrunableLinear, PrunableModule, Pruner, mask_gradients


def mlp(layer: type[nn.Module], depth: int, width: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(depth):
        mods += [layer(width, width), nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, or cuda on a GPU machine")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    torch.manual_seed(0)
    prunable = mlp(PrunableLinear, args.depth, args.width).to(args.device)
    layers = [m for m in prunable if isinstance(m, PrunableModule)]
    Pruner([MagnitudePruneGroup(layers, 0.5)], model=prunable).prune()
    masked_grads = copy.deepcopy(prunable)
    mask_gradients(masked_grads)
    plain = mlp(nn.Linear, args.depth, args.width).to(args.device)
    plain.load_state_dict(prunable.state_dict(), strict=False)
    reparam = mlp(nn.Linear, args.depth, args.width).to(args.device)
    reparam.load_state_dict(prunable.state_dict(), strict=False)
    for mod, ours in zip(reparam, prunable, strict=True):
        if isinstance(ours, PrunableModule):
            torch_prune.custom_from_mask(mod, "weight", ours.weight_mask)

    models = {
        "plain nn.Linear": plain,
        "lotto PrunableLinear": prunable,
        "lotto, masked grads": masked_grads,
        "torch.nn.utils.prune": reparam,
    }
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    x = torch.randn(args.batch, args.width, device=args.device)
    target = torch.randn(args.batch, args.width, device=args.device)
    times: dict[str, list[float]] = {name: [] for name in models}

    def step(name: str) -> float:
        model, opt = models[name], optimizers[name]
        synchronize(args.device)
        start = time.perf_counter()
        loss = nn.functional.mse_loss(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(args.device)
        return time.perf_counter() - start

    for name in models:  # warm-up
        step(name)
        step(name)
    for _ in range(args.steps):
        for name in models:
            times[name].append(step(name))
    still_zero = all(bool((m.weight[~m.weight_mask] == 0).all()) for m in layers)

    weights = sum(m.weight.numel() for m in layers)
    extra = sum(m.weight_mask.numel() * m.weight_mask.element_size() for m in layers)
    extra += sum(m.weight_rewind.numel() * m.weight_rewind.element_size() for m in layers)

    print(
        f"MLP of {args.depth} layers {args.width}x{args.width} at 50% sparsity, batch {args.batch}, Adam, "
        f"on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.steps} steps"
    )
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in median.items():
        print(f"{name:22s} {t * 1e3:8.1f} ms/step   ratio to plain {t / median['plain nn.Linear']:.3f}")
    ratio = median["lotto PrunableLinear"] / median["plain nn.Linear"]
    print(f"lotto / plain:  {ratio:.3f}   (target <= 1.03); pruned weights still exactly zero: {still_zero}")
    print(
        f"memory beyond the weights: {extra / weights:.2f} bytes per prunable weight "
        "(target <= 5: a 1-byte mask and one float32 rewind copy); "
        "set_rewind_device('cpu') keeps the 4-byte copy in host memory for a model on an accelerator"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
