"""Structured pruning against the unstructured magnitude prune of the same weights.

8 weights of 2048x2048 (33.5M float32 values) as torch ``PrunableLinear`` layers on the
CPU: one round of each structure of ``lotto_core.strategy`` (whole output channels,
4x4 blocks, 2:4 along the inputs) against one round of global magnitude pruning of the
same weights, measured in the same run. Channels and blocks reduce each weight to unit
scores (one reduction) and select the units with the exact search; N:M ranks each entry
in its block of four with one elementwise comparison pass per position (the Array API
has no top-k), which is the slow part.

Run: ``nox -s bench`` or ``python bench/bench_structures.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from _measure import best_time

from lotto_backends.torch import NM, Blocks, Channels, PrunableLinear, PruneGroup, Rate, Sparsity


def layers_of(weights: list[torch.Tensor]) -> list[PrunableLinear]:
    layers = [PrunableLinear(w.shape[1], w.shape[0], bias=False) for w in weights]
    for layer, w in zip(layers, weights, strict=True):
        layer.parameter_handles()["weight"].set_value(w)
    return layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(args.size, args.size, generator=gen) for _ in range(args.layers)]
    print(
        f"{args.layers} weights of {args.size}x{args.size} float32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, best of {args.repeat}"
    )

    def timed(make: Callable[[list[PrunableLinear]], PruneGroup]) -> float:
        layers: list[PrunableLinear] = []

        def setup() -> None:
            layers[:] = layers_of(weights)

        return best_time(lambda: make(layers).prune(), repeat=args.repeat, setup=setup)

    t_plain = timed(lambda layers: PruneGroup(layers, Sparsity(0.5)))
    print(f"{'unstructured magnitude, Sparsity(0.5):':<44}{t_plain * 1e3:8.1f} ms")
    for label, make in (
        ("Channels(), Rate(0.5):", lambda layers: PruneGroup(layers, Rate(0.5), structure=Channels())),
        ("Blocks(4, 4), Rate(0.5):", lambda layers: PruneGroup(layers, Rate(0.5), structure=Blocks(4, 4))),
        ("NM(2, 4):", lambda layers: PruneGroup(layers, None, structure=NM(2, 4))),
    ):
        t = timed(make)
        print(f"{label:<44}{t * 1e3:8.1f} ms   ({t / t_plain:5.1f}x the unstructured prune)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
