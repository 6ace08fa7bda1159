"""The prunable twins behave like their torch.nn layers everywhere."""

from __future__ import annotations

import copy
import inspect
import io

import pytest
import torch
from torch import nn

from lotto_backends.torch import PRUNABLE_TYPES, MagnitudePruneGroup, PrunableModule, Pruner, make_prunable, sparsify

from .cases import CASES, assert_same_outputs, first_tensor

TYPES = list(PRUNABLE_TYPES)


def test_every_layer_has_a_case():
    assert set(CASES) == set(PRUNABLE_TYPES)


@pytest.mark.parametrize("base", TYPES, ids=lambda t: t.__name__)
def test_same_constructor_signature(base):
    twin = PRUNABLE_TYPES[base]
    assert inspect.signature(twin) == inspect.signature(base)
    assert issubclass(twin, base)
    assert twin.__name__ == "Prunable" + base.__name__


def _pair(base):
    """A built layer, its prunable twin adopting it, and a plain deep copy."""
    torch.manual_seed(0)
    make, inputs = CASES[base]
    built = make()
    plain = copy.deepcopy(built)
    twin = PRUNABLE_TYPES[base](built)
    return built, twin, plain, inputs


def _prune(layer, p=0.5):
    Pruner([MagnitudePruneGroup([layer], p)]).prune()


@pytest.mark.parametrize("base", TYPES, ids=lambda t: t.__name__)
def test_adopts_a_built_layer_and_matches_it(base):
    built, twin, plain, inputs = _pair(base)
    for name, param in built.named_parameters():
        assert twin.get_parameter(name) is param
    assert_same_outputs(twin, plain, inputs)


@pytest.mark.parametrize("base", TYPES, ids=lambda t: t.__name__)
def test_after_pruning_equals_the_plain_layer_with_masked_weights(base):
    _, twin, plain, inputs = _pair(base)
    _prune(twin)
    masks = {name: h.get_mask() for name, h in twin.parameter_handles().items() if h.get_mask() is not None}
    assert masks, "every case has a prunable weight"
    with torch.no_grad():
        for name, mask in masks.items():
            plain.get_parameter(name).mul_(mask)
            assert int(mask.sum()) < mask.numel()
            assert (twin.get_parameter(name)[~mask] == 0).all()
    assert_same_outputs(twin, plain, inputs)


@pytest.mark.parametrize("base", TYPES, ids=lambda t: t.__name__)
def test_state_dict_round_trips_into_a_fresh_prunable_layer(base):
    _, twin, plain, inputs = _pair(base)
    _prune(twin)
    torch.manual_seed(1)
    fresh = PRUNABLE_TYPES[base](CASES[base][0]())
    fresh.load_state_dict(twin.state_dict())
    for key, value in twin.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # a plain layer takes the pruned weights, ignoring masks and rewind points
    missing, unexpected = plain.load_state_dict(twin.state_dict(), strict=False)
    assert missing == []
    assert all(k.endswith(("_mask", "_rewind")) for k in unexpected)
    assert_same_outputs(plain, fresh, inputs)


@pytest.mark.parametrize("base", TYPES, ids=lambda t: t.__name__)
def test_deepcopy_save_load_and_to(base):
    _, twin, _, inputs = _pair(base)
    _prune(twin)
    args = inputs()
    expected = first_tensor(twin(*args))
    clone = copy.deepcopy(twin)
    buffer = io.BytesIO()
    torch.save(twin, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        assert type(other) is type(twin)
        torch.testing.assert_close(first_tensor(other(*args)), expected, rtol=0, atol=0)
    doubled = copy.deepcopy(twin).to(torch.float64)
    for name, handle in doubled.parameter_handles().items():
        assert handle.get_value().dtype == torch.float64
        assert handle.get_rewind_point().dtype == torch.float64
        mask = handle.get_mask()
        assert mask is None or mask.dtype == torch.bool, name


def test_make_prunable_converts_nested_models_in_place():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)
            self.inner = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 5))

        def forward(self, x):
            return self.inner(self.norm(self.conv(x)))

    model = nn.Sequential(Block(), nn.ReLU(), nn.Linear(5, 2))
    weights = {name: p for name, p in model.named_parameters()}
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    assert make_prunable(model) is model
    assert isinstance(model[0].conv, PrunableModule)
    assert isinstance(model[0].inner[1], PrunableModule)
    assert isinstance(model[2], PrunableModule)
    assert not isinstance(model[1], PrunableModule)
    for name, p in model.named_parameters():
        assert weights[name] is p
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert make_prunable(model) is model  # converting twice changes nothing


def test_make_prunable_on_a_transformer():
    torch.manual_seed(0)
    model = nn.Transformer(
        d_model=16,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        dim_feedforward=32,
        dropout=0.0,
        batch_first=True,
    )
    src, tgt = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
    expected = model(src, tgt)
    make_prunable(model)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"PrunableMultiheadAttention", "PrunableLinear", "PrunableLayerNorm"} <= kinds
    torch.testing.assert_close(model(src, tgt), expected)
    layers = [m for m in model.modules() if isinstance(m, PrunableModule)]
    pruner = Pruner([MagnitudePruneGroup(layers, 0.3)], model=model)
    pruner.prune_and_rewind()
    assert 0.69 < pruner.report().remaining < 0.71


def test_make_prunable_returns_the_twin_of_a_bare_layer():
    layer = nn.Linear(3, 2)
    twin = make_prunable(layer)
    assert type(twin).__name__ == "PrunableLinear"
    assert twin.weight is layer.weight


def test_make_prunable_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        make_prunable([nn.Linear(2, 2)])


def test_rewind_points_can_stay_in_host_memory():
    torch.manual_seed(0)
    layer = PRUNABLE_TYPES[nn.Linear](6, 4).set_rewind_device("cpu")
    start = layer.weight.detach().clone()
    layer.to("meta")  # stands in for an accelerator: parameters move, rewind points stay
    assert layer.weight.device.type == "meta"
    assert layer.weight_mask.device.type == "meta"
    assert layer.weight_rewind.device.type == "cpu"
    assert torch.equal(layer.weight_rewind, start)
    other = PRUNABLE_TYPES[nn.Linear](6, 4).set_rewind_device("cpu").to(torch.float64)
    assert other.weight_rewind.dtype == torch.float64  # dtype follows the parameter
    assert list(other.state_dict()) == ["weight", "bias", "weight_mask", "weight_rewind", "bias_rewind"]


def test_rewind_from_host_memory_restores_the_layer():
    torch.manual_seed(0)
    layer = PRUNABLE_TYPES[nn.Linear](6, 4).set_rewind_device("cpu")
    start = layer.weight.detach().clone()
    pruner = Pruner([MagnitudePruneGroup([layer], 0.5)], model=layer)
    with torch.no_grad():
        layer.weight.mul_(3)
    pruner.prune_and_rewind()
    assert torch.equal(layer.weight, torch.where(layer.weight_mask, start, 0.0))


class _BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out (torchvision's PyPI wheels do not
    install beside torch==2.13.0 on this project's machines)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 else None
        )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


def test_make_prunable_on_a_resnet():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        _BasicBlock(8, 8, 1),
        _BasicBlock(8, 16, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    make_prunable(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6
    assert all(isinstance(m, PrunableModule) for m in convs)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    pruner = Pruner([MagnitudePruneGroup([*convs, model[7]], 0.5)])
    pruner.prune()
    small = sparsify(model)
    torch.testing.assert_close(small(x), model(x))


def test_sparsify_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        sparsify(None)
