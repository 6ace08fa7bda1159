"""The controls on torch models: re-initialization from the modules' own initializers
keeps every mask, the shuffled and randomly pruned controls keep the ticket's exact
per-parameter counts (a tied weight once), and bad input changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lotto_backends.torch import (
    MagnitudePruneGroup,
    Pruner,
    hf,
    make_prunable,
    random_prune_like,
    reinitialize,
    shuffle_masks,
)
from lotto_core.pruner import masked_parameters


def _ticket(seed: int = 0) -> tuple[nn.Module, Pruner]:
    torch.manual_seed(seed)
    model = make_prunable(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))
    )
    pruner = Pruner([MagnitudePruneGroup([model[0], model[4]], 0.7)], model=model)
    with torch.no_grad():
        model[1].running_mean.add_(1.0)
    pruner.prune_and_rewind()
    return model, pruner


def _masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith("_mask")}


def test_reinitialize_draws_every_parameter_afresh_and_keeps_the_masks():
    model, pruner = _ticket()
    masks, before = _masks(model), copy.deepcopy(model.state_dict())
    state = torch.random.get_rng_state()
    reinitialize(model, pruner, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    assert all(torch.equal(_masks(model)[k], v) for k, v in masks.items())
    for layer in (model[0], model[4]):
        assert torch.all(layer.weight[~layer.weight_mask] == 0)
        kept = layer.weight_mask
        assert not torch.equal(layer.weight[kept], before[f"{'0' if layer is model[0] else '4'}.weight"][kept])
    assert not torch.equal(model[0].bias, before["0.bias"])
    assert torch.equal(model[1].running_mean, torch.zeros(8))  # BatchNorm's reset_parameters resets statistics
    again, again_pruner = _ticket()
    reinitialize(again, again_pruner, seed=7)
    for k, v in again.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_the_new_values_are_the_rewind_point():
    model, pruner = _ticket()
    reinitialize(model, pruner, seed=1)
    drawn = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    pruner.rewind()
    for k, v in model.state_dict().items():
        assert torch.equal(v, drawn[k]), k


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


def test_a_module_without_an_initializer_is_named_and_nothing_changes():
    model = make_prunable(_Scaled(), exclude=[""])
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"the model \(_Scaled\).*init="):
        reinitialize(model, seed=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])

    def init(module: nn.Module) -> None:
        for p in module.parameters(recurse=False):
            nn.init.normal_(p)

    reinitialize(model, seed=0, init=init)
    assert not torch.equal(model.scale, before["scale"])


@pytest.mark.parametrize("where", ["initializer", "rewind point"])
def test_a_reinitialize_failing_part_way_changes_nothing(monkeypatch, where):
    model, pruner = _ticket()
    with torch.no_grad():
        model[1].running_mean.add_(2.0)  # statistics that reset_parameters() would reset
    before = copy.deepcopy(model.state_dict())
    calls = []

    def init(module: nn.Module) -> None:
        calls.append(module)
        if where == "initializer" and len(calls) == 2:
            raise MemoryError("injected")
        module.reset_parameters()  # type: ignore[operator]

    if where == "rewind point":
        monkeypatch.setattr(Pruner, "set_rewind_point", lambda self: (_ for _ in ()).throw(MemoryError("injected")))
    with pytest.raises(MemoryError, match="injected"):
        reinitialize(model, pruner, seed=0, init=init)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(("kwargs", "error"), [({"seed": -1}, ValueError), ({"seed": 0, "init": 3}, TypeError)])
def test_bad_arguments_are_named(kwargs, error):
    model, _ = _ticket()
    with pytest.raises(error, match=r"seed|init"):
        reinitialize(model, **kwargs)
    with pytest.raises(TypeError, match="model"):
        reinitialize(object(), seed=0)  # type: ignore[arg-type]


def test_gpt2_reinitializes_through_its_own_init_weights():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
    model = make_prunable(transformers.GPT2LMHeadModel(config))
    pruner = Pruner([MagnitudePruneGroup([model.transformer.h[0].mlp.c_fc, model.transformer.wte], 0.5)], model=model)
    pruner.prune_and_rewind()
    counts = [int(mask.sum()) for _, _, mask in masked_parameters(pruner)]
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="Conv1D"):
        reinitialize(model, pruner, seed=0)  # transformers' Conv1D has no reset_parameters
    for p in model.parameters():
        p._is_hf_initialized = True  # as from_pretrained marks what it loaded
    with pytest.raises(ValueError, match=r"left transformer\.wte\.weight.*restored"):
        reinitialize(model, pruner, seed=5, init=model._init_weights)  # skips what transformers marked initialized
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    wte = model.transformer.wte.weight.clone()
    reinitialize(model, pruner, seed=5, init=hf.init_weights(model))
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    assert not torch.equal(model.transformer.wte.weight, wte)
    assert [int(mask.sum()) for _, _, mask in masked_parameters(pruner)] == counts
    for _, handle, mask in masked_parameters(pruner):
        assert torch.all(handle.parameter[~mask] == 0)


def test_shuffled_and_randomly_pruned_controls_keep_the_tickets_counts():
    model, pruner = _ticket()
    counts = [int(m.sum()) for m in _masks(model).values()]
    shuffled, shuffled_pruner = _ticket()
    shuffle_masks(shuffled_pruner, seed=0)
    assert [int(m.sum()) for m in _masks(shuffled).values()] == counts
    assert any(not torch.equal(a, b) for a, b in zip(_masks(shuffled).values(), _masks(model).values(), strict=True))
    torch.manual_seed(1)
    dense = make_prunable(copy.deepcopy(model))
    random_pruner = Pruner([MagnitudePruneGroup([dense[0], dense[4]], 0.7)], model=dense)
    for m in _masks(dense):
        dense.get_buffer(m).fill_(True)
    random_prune_like(random_pruner, pruner, seed=0)
    assert [int(m.sum()) for m in _masks(dense).values()] == counts
    for layer in (dense[0], dense[4]):
        assert torch.all(layer.weight[~layer.weight_mask] == 0)


def test_a_tied_weight_is_shuffled_once():
    embedding = nn.Embedding(10, 6)
    head = nn.Linear(6, 10, bias=False)
    head.weight = embedding.weight
    model = make_prunable(nn.ModuleDict({"embedding": embedding, "head": head}))
    pruner = Pruner([MagnitudePruneGroup([model["embedding"], model["head"]], 0.5)], model=model)
    pruner.prune()
    shuffle_masks(pruner, seed=2)
    ((_, handle, mask),) = masked_parameters(pruner)  # one mask, held by one of the layers
    assert int(mask.sum()) == 30
    assert not torch.any((handle.parameter != 0) & ~mask)  # newly kept entries read 0 until a rewind
