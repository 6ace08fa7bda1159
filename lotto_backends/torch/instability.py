"""Instability analysis of a torch model (``lotto_core.instability``): two copies of the
model trained by the user's ``train`` with different data orders, evaluated along the
linear path between them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lotto_core.instability import Instability, leaf_path, linear_path, trained_pair

__all__ = ["instability"]


def instability(
    model: nn.Module,
    train: Callable[[nn.Module, Any], None],
    evaluate: Callable[[nn.Module], float],
    *,
    points: int = 30,
    data_orders: Sequence[Any] = (0, 1),
) -> Instability:
    """Train two copies of ``model`` from where it is now (a ticket rewound to step k, say),
    ``train(copy, data_orders[i])`` each, then ``evaluate`` (the test error, say) at
    ``points`` evenly spaced points of the straight line between their parameters and
    buffers (BatchNorm statistics interpolated too); ``model`` is left as it was.

    ``train`` trains the copy in place with its own optimizer, the data shuffled by the
    order it is given; ``evaluate`` returns a number. Two copies trained alike give a
    barrier of exactly 0.

    Raises
    ------
    TypeError, ValueError
        If ``model`` is not a module, ``data_orders`` not two values, ``points`` not an
        int of at least 2, ``evaluate`` returns no number, or a non-floating entry
        (a mask) differs between the trained copies.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False)
    >>> def train(copy, order):
    ...     with torch.no_grad():
    ...         copy.weight.fill_(1.0 if order == 0 else -1.0)
    >>> result = instability(model, train, lambda m: 1 - float(m.weight.detach().square().sum()), points=3)
    >>> result.values, result.barrier
    ((-1.0, 1.0, -1.0), 2.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    first, second = trained_pair(model, copy.deepcopy, train, data_orders)
    a, b = first.state_dict(), second.state_dict()
    at = leaf_path(list(a), list(a.values()), list(b.values()), floating=torch.is_floating_point, same=torch.equal)
    probe = copy.deepcopy(first)

    def evaluate_at(alpha: float) -> float:
        with torch.no_grad():
            probe.load_state_dict(dict(zip(a, at(alpha), strict=True)))
        return evaluate(probe)

    return linear_path(evaluate_at, points)
