"""Instability analysis on torch models: the known barrier of a path with a bump, exactly
0 for two copies trained alike, a ticket's masks kept along the path, the model left as
it was, and masks that differ refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lotto_backends.torch import MagnitudePruneGroup, Pruner, instability, make_prunable


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_a_known_barrier_and_the_model_left_as_it_was():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = copy.deepcopy(model.state_dict())
    result = instability(
        model,
        lambda m, order: _set(m, 1.0 if order == "a" else -1.0),
        lambda m: -sum(float(p.detach().square().sum()) for p in m.parameters()),
        points=3,
        data_orders=("a", "b"),
    )
    n = sum(p.numel() for p in model.parameters())
    assert result.values == (-n, 0.0, -n)
    assert result.barrier == n
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def _train(model: nn.Module, order: int, *, honour_order: bool = True) -> None:
    generator = torch.Generator().manual_seed(order if honour_order else 0)
    x = torch.randn(64, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for start in range(0, 64, 8):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x[start : start + 8]), y[start : start + 8]).backward()
        optimizer.step()


def _ticket() -> tuple[nn.Module, Pruner]:
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
    pruner = Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)], model=model)
    pruner.prune_and_rewind()
    return model, pruner


def _loss(model: nn.Module) -> float:
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True)))


def test_two_copies_trained_alike_have_a_barrier_of_exactly_zero():
    model, _ = _ticket()
    result = instability(model, lambda m, order: _train(m, order, honour_order=False), _loss, points=7)
    assert result.barrier == 0.0
    assert len(set(result.values)) == 1


def test_the_path_between_two_trained_tickets_keeps_their_masks():
    model, _ = _ticket()
    seen = []

    def evaluate(m: nn.Module) -> float:
        seen.append(all(torch.all(layer.weight[~layer.weight_mask] == 0) for layer in (m[0], m[2])))
        return _loss(m)

    result = instability(model, _train, evaluate, points=5)
    assert seen == [True] * 5
    assert result.values[0] != result.values[-1]
    assert result.barrier == max(result.values) - (result.values[0] + result.values[-1]) / 2


def test_masks_that_differ_between_the_copies_are_refused():
    model, _ = _ticket()

    def train(m: nn.Module, order: int) -> None:
        if order == 1:
            m[0].weight_mask[0, 0] = not bool(m[0].weight_mask[0, 0])

    with pytest.raises(ValueError, match=r"0\.weight_mask is not floating and differs"):
        instability(model, train, _loss, points=3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"data_orders": (0,)}, TypeError, "data_orders must be two values"), ({"points": 1}, ValueError, "points")],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        instability(nn.Linear(2, 2), lambda m, o: None, lambda m: 0.0, **kwargs)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        instability(object(), lambda m, o: None, lambda m: 0.0)  # type: ignore[arg-type]
