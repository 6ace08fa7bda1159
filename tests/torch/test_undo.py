"""A torch model's prune, rewind, rewind point and loaded state are all or nothing: with a
failure injected at the third layer's write (its mask stored, its rewind point set, its
weight copied on its own in a rewind) or at the look-up of its rewind point (a rewind's
batched copies come after every look-up), every parameter, buffer, mask and rewind
point, the round counters and the parameters' storage are as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, Pruner, make_prunable
from lotto_backends.torch.layers import TorchParameterHandle

from ..failures import failing, pruner_calls


def _model() -> tuple[nn.Module, Pruner]:
    torch.manual_seed(0)
    model = make_prunable(
        nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 8), nn.Linear(8, 4))
    )
    layers = [model[0], model[2], model[4], model[5]]
    pruner = Pruner([MagnitudePruneGroup(layers[:3], 0.3), MagnitudePruneGroup(layers[3:], 0.2)], model=model)
    pruner.prune()
    _train(model)
    return model, pruner


def _train(model: nn.Module) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(16, 8)).square().mean().backward()
        optimizer.step()


def _state(model: nn.Module, pruner: Pruner) -> dict[str, Any]:
    out: dict[str, Any] = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    out.update({f"{k}.ptr": p.data_ptr() for k, p in model.named_parameters()})
    for i, layer in enumerate(pruner.layers()):
        for name, handle in layer.parameter_handles().items():
            out[f"{i}.{name}.rewind"] = handle.get_rewind_point().clone()
            mask = handle.get_mask()
            out[f"{i}.{name}.mask"] = None if mask is None else mask.clone()
    out["rounds"] = (pruner.rounds, [g.rounds for g in pruner.groups])
    return out


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key, x in a.items():
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, b[key]), key
        else:
            assert x == b[key], key


def _failing(method: Callable[..., Any], third: nn.Module) -> Callable[..., Any]:
    return failing(method, lambda handle: handle.layer is third and handle.name == "weight")


@pytest.mark.parametrize(
    ("call", "where"),
    [
        ("prune", "store_mask"),
        ("rewind", "get_rewind_point"),
        ("rewind", "copy_"),
        ("set_rewind_point", "set_rewind_point"),
        ("load_state_dict", "set_rewind_point"),
        ("load_state_dict", "store_mask"),
        ("shuffle_masks", "store_mask"),
    ],
)
def test_a_call_failing_at_the_third_layer_changes_nothing(monkeypatch, call, where):
    model, pruner = _model()
    saved = pruner.state_dict()
    pruner.prune()
    pruner.set_rewind_point()
    _train(model)
    third = model[4]
    if where == "copy_":  # rewind points of another dtype are copied one tensor at a time
        for layer in (model[0], model[2], model[4]):
            layer._buffers["weight_rewind"] = layer._buffers["weight_rewind"].double()
    before = _state(model, pruner)
    runs = pruner_calls(pruner, saved)
    with monkeypatch.context() as patch:
        if where == "copy_":
            patch.setattr(torch.Tensor, "copy_", failing(torch.Tensor.copy_, lambda tensor: tensor is third.weight))
        else:
            patch.setattr(TorchParameterHandle, where, _failing(getattr(TorchParameterHandle, where), third))
        with pytest.raises(MemoryError, match="injected"):
            runs[call]()
    _assert_same(_state(model, pruner), before)
    runs[call]()  # and without the failure the call goes through
    assert _state(model, pruner)["rounds"] != before["rounds"] or call != "prune"


def test_a_failed_prune_leaves_the_forward_as_it_was(monkeypatch):
    model, pruner = _model()
    x = torch.randn(4, 8)
    model.eval()
    expected = model(x)
    with monkeypatch.context() as patch:
        patch.setattr(TorchParameterHandle, "store_mask", _failing(TorchParameterHandle.store_mask, model[4]))
        with pytest.raises(MemoryError):
            pruner.prune()
    assert torch.equal(model(x), expected)
