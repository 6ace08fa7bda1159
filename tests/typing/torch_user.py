"""Code a PyTorch user writes, checked by mypy (``nox -s typecheck``): the prunable
layers are visible to type checkers as the torch layers they are."""

from __future__ import annotations

from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, PrunableConv2d, PrunableLinear, Pruner, make_prunable


def build() -> nn.Sequential:
    first = PrunableLinear(4, 3)
    features: int = first.in_features + first.out_features
    conv: nn.Conv2d = PrunableConv2d(1, 2, 3)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(3, features), conv)
    make_prunable(model, exclude=nn.Conv2d)
    Pruner([MagnitudePruneGroup([first], 0.2)], model=model).prune()
    return model
