"""Training with the user's own loop: pruned weights stay exactly zero with any
optimizer, rewinding is bit-for-bit, and the seed library's example runs as written."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lotto_backends.torch import (
    MagnitudePruneGroup,
    PrunableLinear,
    PrunableLSTM,
    PrunableModule,
    Pruner,
    sparsify,
)
from lotto_core import prune_count

OPTIMIZERS = {
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


class LastStep(nn.Module):
    """The adaptor for an LSTM's tuple output: the last time step of its output."""

    def forward(self, out: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        return out[0][:, -1]


def _seed_model() -> nn.Sequential:
    lstm = PrunableLSTM(256, 256, batch_first=True)
    return nn.Sequential(
        PrunableLinear(1024, 256), nn.ReLU(), lstm, LastStep(), PrunableLinear(256, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def _masked(model):
    for layer in model.modules():
        if isinstance(layer, PrunableModule):
            for name, handle in layer.parameter_handles().items():
                if handle.get_mask() is not None:
                    yield f"{type(layer).__name__}.{name}", layer.get_parameter(name), handle.get_mask()


def _train(model, optimizer, steps, make_batch):
    for _ in range(steps):
        x, y = make_batch()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for name, param, mask in _masked(model):
            assert (param[~mask] == 0).all(), f"{name} has a pruned weight that is not zero"


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_pruned_weights_stay_zero_and_rewind_is_exact(opt):
    torch.manual_seed(0)
    model = nn.Sequential(PrunableLinear(20, 32), nn.ReLU(), PrunableLinear(32, 5))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    pruner = Pruner([MagnitudePruneGroup([model[0], model[2]], 0.4)], model=model)

    def batch():
        return torch.randn(16, 20), torch.randint(0, 5, (16,))

    optimizer = OPTIMIZERS[opt](model.parameters())  # one optimizer for the whole run
    for _ in range(3):
        _train(model, optimizer, 5, batch)
        pruner.prune_and_rewind()
        for i in (0, 2):
            mask = model[i].weight_mask
            assert torch.equal(model[i].weight, torch.where(mask, initial[f"{i}.weight"], 0.0))
            assert torch.equal(model[i].bias, initial[f"{i}.bias"])
    _train(model, optimizer, 5, batch)  # momentum from before the prune cannot revive
    assert pruner.report().remaining == pytest.approx(0.6**3, abs=2e-3)


def test_a_hand_written_update_is_masked_before_the_next_forward():
    torch.manual_seed(0)
    layer = PrunableLinear(6, 4)
    Pruner([MagnitudePruneGroup([layer], 0.5)]).prune()
    with torch.no_grad():
        layer.weight.add_(1.0)  # no optimizer: the forward pre-hook catches it
    x = torch.randn(3, 6)
    out = layer(x)
    assert (layer.weight[~layer.weight_mask] == 0).all()
    torch.testing.assert_close(out, nn.functional.linear(x, layer.weight, layer.bias))


def test_seed_library_example_runs_as_written():
    torch.manual_seed(0)
    m = _seed_model()
    lstm = m[2]
    pruner = Pruner([MagnitudePruneGroup([m[0], lstm], 0.2), MagnitudePruneGroup([m[4]], 0.1)], model=m)
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-3)

    def batch():
        return torch.randn(4, 3, 1024), torch.randint(0, 10, (4,))

    for _ in range(3):
        _train(m, optimizer, 2, batch)
        pruner.prune_and_rewind()
    report = pruner.report()
    first, second = 1024 * 256 + 4 * 256 * 256 * 2, 256 * 64
    for _ in range(3):
        first -= prune_count(0.2, first)
        second -= prune_count(0.1, second)
    kept = report.parameters
    assert sum(p.kept for p in kept[:3]) == first
    assert kept[3].kept == second
    assert isinstance(m[2], nn.LSTM)
    assert isinstance(m[0], nn.Linear)
    m.eval()
    small = sparsify(m)
    x = torch.randn(2, 3, 1024)
    torch.testing.assert_close(small(x), m(x))


# torch's own inductor imports still call a deprecated torch.jit API
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_gives_the_eager_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(PrunableLinear(8, 16), nn.ReLU(), PrunableLinear(16, 4))
    Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)]).prune()
    x = torch.randn(5, 8)
    expected = model(x)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), expected)
    loss = compiled(x).sum()
    loss.backward()
    assert model[0].weight.grad is not None


def test_pruning_sets_even_non_finite_weights_to_exactly_zero():
    layer = PrunableLinear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[float("inf"), 1.0, 2.0, 3.0], [4.0, float("nan"), 5.0, 6.0]]))
    mask = torch.tensor([[False, True, True, True], [True, False, True, False]])
    layer.parameter_handles()["weight"].set_mask(mask)
    expected = torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 0.0, 5.0, 0.0]])
    assert torch.equal(layer.weight.detach(), expected)
