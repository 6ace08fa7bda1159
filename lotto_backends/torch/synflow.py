"""SynFlow's gradient for torch models: data-free pruning at initialization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["synaptic_flow"]


def synaptic_flow(model: nn.Module, inputs: torch.Tensor) -> Callable[[nn.Module, str], torch.Tensor]:
    """``dR/dw`` for every parameter of ``model``, for ``lotto_core.strategy.SynFlow``:
    ``R`` is the sum of the outputs of the model in eval mode with every parameter
    replaced by its absolute value (pruned weights stay 0), on an input of ones shaped
    like ``inputs`` (Tanaka et al. 2020). The model is left exactly as it was: its
    parameters, mode and gradients.

    Returns
    -------
    callable
        ``flow(layer, name)``: the gradient of ``layer``'s parameter ``name``.
    """
    params = list(model.parameters())
    saved = [(p.detach().clone(), None if p.grad is None else p.grad.clone()) for p in params]
    training = model.training
    try:
        with torch.no_grad():
            for p in params:
                p.abs_()
        model.eval()
        for p in params:
            p.grad = None
        model(torch.ones_like(inputs)).sum().backward()
        flows = {id(p): torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params}
    finally:
        with torch.no_grad():
            for p, (value, grad) in zip(params, saved, strict=True):
                p.copy_(value)
                p.grad = grad
        model.train(training)

    def flow(layer: nn.Module, name: str) -> torch.Tensor:
        return flows[id(getattr(layer, name))]

    return flow
