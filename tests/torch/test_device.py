"""The torch adapter where the model lives: each flow runs on the CPU and, on a machine
with one, on a CUDA device, against NumPy references or the same flow on the CPU.

On CUDA the core's search runs the Array API passes on the device (the numba kernels
take host memory only), so these tests are what shows that path exact at scale."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lotto_backends.torch import (
    ERK,
    NM,
    SNIP,
    Blocks,
    Channels,
    MagnitudePruneGroup,
    PerLayer,
    PrunableLinear,
    PrunableModule,
    PruneGroup,
    Pruner,
    Sparsity,
    SynFlow,
    make_prunable,
    sparsify,
    synaptic_flow,
)

ACCELERATORS = ["cuda"] if torch.cuda.is_available() else []
DEVICES = ["cpu", *ACCELERATORS]


def _prunable_layers(model: nn.Module) -> list[PrunableModule]:
    return [m for m in model.modules() if isinstance(m, PrunableModule)]


def _weighted_layers(model: nn.Module) -> list[PrunableModule]:
    """The convolutions and linear layers: the ones a magnitude group prunes."""
    return [m for m in _prunable_layers(model) if isinstance(m, nn.Conv2d | nn.Linear)]


def _convnet(device: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    return make_prunable(net).to(device)


def _reference_prune(scores: np.ndarray, kept: np.ndarray, p: float) -> np.ndarray:
    """The contract by brute force: remove ceil(p * kept) of the kept weights, lowest
    score first, the earlier position first among ties."""
    order = np.lexsort((np.arange(scores.size), scores))
    order = order[kept[order]]
    out = kept.copy()
    out[order[: math.ceil(p * int(kept.sum()))]] = False
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_global_magnitude_prune_of_large_tied_weights_matches_the_reference(device: str) -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(1024, 1024), (300, 700), (7, 3)]
    layers = []
    for rows, cols in shapes:  # values on a coarse grid: a great many ties
        layer = PrunableLinear(cols, rows, bias=False, device=device)
        weight = torch.randint(-200, 201, (rows, cols), generator=gen).float() / 100
        layer.parameter_handles()["weight"].set_value(weight.to(device))
        layers.append(layer)
    flat = np.concatenate([layer.weight.detach().cpu().numpy().ravel() for layer in layers])
    kept = np.ones(flat.size, bool)
    group = MagnitudePruneGroup(layers, 0.3)
    for _ in range(3):
        group.prune()
        kept = _reference_prune(np.abs(flat), kept, 0.3)
        got = np.concatenate([layer.weight_mask.cpu().numpy().ravel() for layer in layers])
        np.testing.assert_array_equal(got, kept)
    for layer in layers:
        assert layer.weight_mask.device.type == device
        assert layer.weight_mask.dtype == torch.bool
        assert bool((layer.weight[~layer.weight_mask] == 0).all())


@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda layers: PruneGroup(layers, Sparsity(0.7), scope=PerLayer()), id="per-layer"),
        pytest.param(lambda layers: PruneGroup(layers, Sparsity(0.7), scope=ERK()), id="erk"),
        pytest.param(lambda layers: PruneGroup(layers, Sparsity(0.5), structure=Channels()), id="channels"),
        pytest.param(lambda layers: PruneGroup(layers[2:], Sparsity(0.5), structure=Blocks(2, 4)), id="blocks"),
        pytest.param(lambda layers: PruneGroup(layers[2:], None, structure=NM(2, 4)), id="2:4"),
    ],
)
def test_scopes_and_structures_give_the_cpus_masks(device: str, make) -> None:
    on_cpu, on_device = _convnet("cpu"), _convnet(device)
    make(_prunable_layers(on_cpu)).prune()
    make(_prunable_layers(on_device)).prune()
    for ours, theirs in zip(_prunable_layers(on_device), _prunable_layers(on_cpu), strict=True):
        for name, handle in ours.parameter_handles().items():
            mask = handle.get_mask()
            if mask is not None:
                assert mask.device.type == device
                assert torch.equal(mask.cpu(), theirs.parameter_handles()[name].get_mask()), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rewind_on_cpu", [False, True])
def test_imp_rounds_keep_pruned_weights_zero_and_rewind_the_whole_model(device: str, rewind_on_cpu: bool) -> None:
    model = _convnet(device)
    layers = _prunable_layers(model)
    if rewind_on_cpu:
        for layer in layers:
            layer.set_rewind_device("cpu")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    weighted = _weighted_layers(model)
    pruner = Pruner([MagnitudePruneGroup(weighted, 0.5)], model=model)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 8, 8, generator=gen).to(device)
    y = torch.randint(0, 10, (32,), generator=gen).to(device)
    for _ in range(2):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # a new optimizer each round
        for _ in range(4):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            for layer in layers:
                mask = layer.weight_mask
                assert bool((layer.weight[~mask] == 0).all())
        pruner.prune_and_rewind()
        state = model.state_dict()
        for key, value in initial.items():
            if key.endswith(("_mask", "_rewind")):
                continue
            mask = state.get(f"{key}_mask")
            want = value if mask is None else torch.where(mask, value, 0.0)
            assert torch.equal(state[key], want), key  # BatchNorm statistics too
            assert state[key].device.type == device
    assert pruner.report().remaining == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("device", DEVICES)
def test_snip_and_synflow_keep_exact_counts_on_the_device(device: str) -> None:
    model = _convnet(device)
    layers = _weighted_layers(model)
    total = sum(m.weight.numel() for m in layers)
    x = torch.randn(16, 3, 8, 8).to(device)
    nn.functional.cross_entropy(model(x), torch.zeros(16, dtype=torch.long, device=device)).backward()
    PruneGroup(layers, Sparsity(0.5), score=SNIP(lambda layer, name: getattr(layer, name).grad)).prune()
    assert sum(int(m.weight_mask.sum()) for m in layers) == total - math.ceil(0.5 * total)
    PruneGroup(layers, Sparsity(0.8), score=SynFlow(synaptic_flow(model, x))).prune()
    assert sum(int(m.weight_mask.sum()) for m in layers) == total - math.ceil(0.8 * total)
    for m in layers:
        assert m.weight_mask.device.type == device
        assert bool((m.weight[~m.weight_mask] == 0).all())


@pytest.mark.parametrize("device", DEVICES)
def test_sparsified_model_computes_the_pruned_one(device: str) -> None:
    model = _convnet(device).eval()
    layers = _weighted_layers(model)
    Pruner([MagnitudePruneGroup(layers, 0.8)], model=model).prune()
    x = torch.randn(5, 3, 8, 8).to(device)
    with torch.no_grad():
        want = model(x)
        got = sparsify(copy.deepcopy(model))(x)
    assert got.device.type == device
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's import
@pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning")  # inductor's advice on float32 matmuls
def test_inductor_compiled_training_on_the_device(device: str) -> None:
    model = _convnet(device)
    layers = _weighted_layers(model)
    pruner = Pruner([MagnitudePruneGroup(layers, 0.6)], model=model)
    pruner.prune()
    compiled = torch.compile(model, fullgraph=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 3, 8, 8, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(compiled(x), y).backward()
        optimizer.step()
        for layer in layers:
            assert bool((layer.weight[~layer.weight_mask] == 0).all())
    pruner.prune()  # a new mask takes effect in the compiled model
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-3, atol=1e-4)
