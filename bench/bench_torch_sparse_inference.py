"""Inference of a sparsified MLP at batch 1 on CPU, against the dense model (issue 3).

An MLP of 8 prunable 2048x2048 layers, pruned to 95% and to 50% sparsity, then
``sparsify``'d; the dense baseline is the same MLP of plain ``nn.Linear`` holding the
same masked weights, timed in the same run. Targets: at least 4x faster than dense at
95% sparsity, never more than 5% slower at 50% (where ``SparseLinear`` computes with a
dense copy, which is faster at that density).

Run: ``nox -s bench`` or ``python bench/bench_torch_sparse_inference.py``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from _measure import best_time
from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, PrunableLinear, PrunableModule, Pruner, sparsify


def per_call(model: nn.Module, x: torch.Tensor, calls: int, repeat: int) -> float:
    """Best time of one call of ``model`` on ``x``, from ``repeat`` runs of ``calls``."""
    with torch.inference_mode():
        return best_time(lambda: [model(x) for _ in range(calls)], repeat=repeat) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(
        f"MLP of {args.depth} layers {args.width}x{args.width}, batch 1, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; time of {args.calls} calls, best of {args.repeat}"
    )

    torch.manual_seed(0)
    x = torch.randn(1, args.width)
    for sparsity, target in ((0.95, "speed-up >= 4"), (0.5, "speed-up >= 0.95")):
        mods: list[nn.Module] = []
        for _ in range(args.depth):
            mods += [PrunableLinear(args.width, args.width), nn.ReLU()]
        model = nn.Sequential(*mods[:-1]).eval()
        Pruner([MagnitudePruneGroup([m for m in model if isinstance(m, PrunableModule)], sparsity)]).prune()
        dense = nn.Sequential(
            *[nn.Linear(args.width, args.width) if isinstance(m, PrunableModule) else m for m in model]
        )
        dense.load_state_dict(model.state_dict(), strict=False)
        sparse = sparsify(model).eval()
        with torch.inference_mode():
            torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-5)
        t_dense = per_call(dense, x, args.calls, args.repeat)
        t_sparse = per_call(sparse, x, args.calls, args.repeat)
        path = "dense copy" if sparse[0].dense_compute else "CSR"
        print(
            f"{sparsity:.0%} sparse: dense {t_dense * 1e3:7.3f} ms, sparsified {t_sparse * 1e3:7.3f} ms "
            f"({path}): speed-up {t_dense / t_sparse:5.2f}x   (target {target})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
