"""The strategy pieces through the torch layers: SNIP from the layers' own gradients,
a gradual schedule in a training loop with Adam, ERK over convolutions."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lotto_backends.torch import (
    ERK,
    SNIP,
    Gradual,
    PrunableConv2d,
    PrunableLinear,
    PruneGroup,
    Pruner,
    Sparsity,
    make_prunable,
)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(PrunableLinear(20, 30), nn.ReLU(), PrunableLinear(30, 5))


def test_snip_at_init_prunes_the_lowest_connection_sensitivity() -> None:
    model = _mlp()
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    nn.functional.cross_entropy(model(x), y).backward()
    layers = [model[0], model[2]]
    scores = [(layer.weight * layer.weight.grad).abs().detach().numpy().ravel() for layer in layers]
    PruneGroup(layers, Sparsity(0.9), score=SNIP(lambda layer, name: getattr(layer, name).grad)).prune()
    flat = np.concatenate(scores)
    order = np.lexsort((np.arange(flat.size), flat))  # by score, then position: the core's tie rule
    want = np.ones(flat.size, bool)
    want[order[: math.ceil(0.9 * flat.size)]] = False
    got = np.concatenate([layer.weight_mask.numpy().ravel() for layer in layers])
    np.testing.assert_array_equal(got, want)
    assert all(bool((layer.weight[~layer.weight_mask] == 0).all()) for layer in layers)


def test_gradual_magnitude_pruning_in_a_training_loop() -> None:
    model = _mlp()
    layers = [model[0], model[2]]
    pruner = Pruner([PruneGroup(layers, Gradual(0.0, 0.75, begin_step=5, end_step=45, frequency=10))], model=model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    pruned_at = []
    for t in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if pruner.step(t):
            pruned_at.append(t)
        for layer in layers:  # pruned weights stay exactly zero through Adam's later steps
            assert bool((layer.weight[~layer.weight_mask] == 0).all())
    assert pruned_at == [5, 15, 25, 35, 45]
    total = sum(layer.weight.numel() for layer in layers)
    assert pruner.report().kept == total - math.ceil(0.75 * total)


def test_erk_over_convolutions_keeps_the_target_exactly() -> None:
    torch.manual_seed(0)
    net = make_prunable(nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(32, 10)))
    layers = [net[0], net[1], net[3]]
    assert isinstance(layers[0], PrunableConv2d)
    PruneGroup(layers, Sparsity(0.8), scope=ERK()).prune()
    kept = [int(layer.weight_mask.sum()) for layer in layers]
    sizes = [layer.weight.numel() for layer in layers]
    assert sum(kept) == sum(sizes) - math.ceil(0.8 * sum(sizes))
    density = [k / n for k, n in zip(kept, sizes, strict=True)]
    # ERK ratios (32+10)/320 > (16+3+3+3)/432 > (32+16+3+3)/4608: the linear layer ends up dense
    assert density[2] == 1.0 > density[0] > density[1]


def test_two_of_four_along_the_input_dimension() -> None:
    from lotto_backends.torch import NM

    layer = _mlp()[0]
    w = layer.weight.detach().clone()
    PruneGroup([layer], None, structure=NM(2, 4)).prune()
    blocks = layer.weight_mask.reshape(30, 5, 4)
    assert bool((blocks.sum(dim=-1) == 2).all())  # exactly 2 kept in every block of 4 inputs
    kept_min = torch.where(blocks, w.abs().reshape(30, 5, 4), torch.inf).amin(dim=-1)
    pruned_max = torch.where(~blocks, w.abs().reshape(30, 5, 4), -torch.inf).amax(dim=-1)
    assert bool((kept_min >= pruned_max).all())


def test_synflow_prunes_iteratively_without_data_and_leaves_the_model_as_it_was() -> None:
    from lotto_backends.torch import SynFlow, synaptic_flow

    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 20)
    flow = synaptic_flow(model, x)
    for key, value in model.state_dict().items():  # weights, masks, rewind points unchanged
        assert torch.equal(value, before[key]), key
    assert model.training
    # the flow by hand: every parameter absolute, an input of ones, dR/dW1
    w1, b1, w2, b2 = (
        p.detach().abs().requires_grad_() for p in (model[0].weight, model[0].bias, model[2].weight, model[2].bias)
    )
    torch.relu(torch.ones(8, 20) @ w1.T + b1).matmul(w2.T).add(b2).sum().backward()
    assert torch.allclose(flow(model[0], "weight"), w1.grad)
    assert torch.allclose(flow(model[2], "weight"), w2.grad)

    layers = [model[0], model[2]]
    n = 10
    for k in range(1, n + 1):  # the paper's exponential schedule to 99% sparsity
        score = SynFlow(synaptic_flow(model, x))
        PruneGroup(layers, Sparsity(1 - 0.01 ** (k / n)), score=score).prune()
    kept = [int(layer.weight_mask.sum()) for layer in layers]
    total = sum(layer.weight.numel() for layer in layers)
    assert sum(kept) == total - math.ceil((1 - 0.01) * total)
    assert min(kept) > 0  # no layer collapses
