"""Global magnitude pruning of 8 weights of 2048x2048 (33.5M values) at p=0.2 on CPU.

Lotto's core (through ``ArrayLayer`` over plain torch tensors) against
``torch.nn.utils.prune.global_unstructured`` on the same weights, in the same run, with
one elementwise pass (``w.abs().sum()``) as the floor. Targets (issue 2): at least 20x
faster than torch, within 10x of the elementwise pass, and peak extra memory during the
prune at most half the weights' bytes.

Run it with ``nox -s bench`` (or ``python bench/bench_global_prune.py``).
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.utils.prune as torch_prune
from _measure import best_time, peak_extra_bytes

from lotto_core import ArrayLayer, MagnitudePruneGroup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--p", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    weights = [torch.randn(args.size, args.size) for _ in range(args.layers)]
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    print(
        f"{args.layers} weights of {args.size}x{args.size} float32 ({weight_bytes / 1e6:.0f} MB), p={args.p}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    def elementwise() -> None:
        for w in weights:
            w.abs().sum()

    layers: list[ArrayLayer] = []

    def fresh_lotto() -> None:
        layers.clear()
        layers.extend(ArrayLayer({"weight": w.clone()}) for w in weights)

    def lotto_prune() -> None:
        MagnitudePruneGroup(layers, args.p).prune()

    modules: list[torch.nn.Linear] = []

    def fresh_torch() -> None:
        modules.clear()
        for w in weights:
            m = torch.nn.Linear(args.size, args.size, bias=False)
            with torch.no_grad():
                m.weight.copy_(w)
            modules.append(m)

    def torch_global() -> None:
        torch_prune.global_unstructured(
            [(m, "weight") for m in modules], pruning_method=torch_prune.L1Unstructured, amount=args.p
        )

    t_pass = best_time(elementwise, repeat=args.repeat)
    t_lotto = best_time(lotto_prune, repeat=args.repeat, setup=fresh_lotto)
    t_torch = best_time(torch_global, repeat=max(1, args.repeat // 2), setup=fresh_torch)

    fresh_lotto()
    mem_lotto = peak_extra_bytes(lotto_prune)
    fresh_torch()
    mem_torch = peak_extra_bytes(torch_global)

    kept = sum(int(layer.params["weight"].mask.sum()) for layer in layers)
    kept_torch = sum(int(m.weight_mask.sum()) for m in modules)
    print(f"kept after one round: lotto {kept:,}, torch {kept_torch:,} of {args.layers * args.size**2:,}")
    print(f"elementwise pass (w.abs().sum()): {t_pass * 1e3:8.1f} ms")
    print(f"torch global_unstructured:        {t_torch * 1e3:8.1f} ms   peak extra {mem_torch / 1e6:7.1f} MB")
    print(f"lotto MagnitudePruneGroup.prune:  {t_lotto * 1e3:8.1f} ms   peak extra {mem_lotto / 1e6:7.1f} MB")
    speedup, vs_pass, mem_ratio = t_torch / t_lotto, t_lotto / t_pass, mem_lotto / weight_bytes
    print(f"speed-up over torch:        {speedup:6.1f}x   (target >= 20x)")
    print(f"time / elementwise pass:    {vs_pass:6.1f}x   (target <= 10x)")
    print(f"peak extra / weight bytes:  {mem_ratio:6.2f}    (target <= 0.50)")
    ok = speedup >= 20 and vs_pass <= 10 and mem_ratio <= 0.5
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
