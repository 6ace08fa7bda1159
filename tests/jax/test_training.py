"""Training prunable NNX models with optax: pruned weights stay exactly zero, rewind is
exact, and the core gives the same masks as on torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, PrunableConv, PrunableLinear, Pruner

OPTIMIZERS = {
    "sgd-momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
}


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv = PrunableConv(1, 4, kernel_size=(3,), rngs=rngs)
        self.hidden = PrunableLinear(32, 16, rngs=rngs)
        self.out = PrunableLinear(16, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.conv(x[..., None])).reshape(x.shape[0], -1)
        return self.out(nnx.relu(self.hidden(h)))


def _data() -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(0), (64, 8))
    return x, (x[:, 0] > 0).astype(jnp.int32) + (x[:, 1] > 0).astype(jnp.int32)


def _train(model: _Net, optimizer: nnx.Optimizer, steps: int) -> None:
    x, y = _data()

    @nnx.jit
    def step(model: _Net, optimizer: nnx.Optimizer) -> jax.Array:
        def loss_fn(model: _Net) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    for _ in range(steps):
        step(model, optimizer)


def _layers(model: _Net) -> list[nnx.Module]:
    return [model.conv, model.hidden, model.out]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_pruned_weights_stay_exactly_zero_and_rewind_is_exact(name: str) -> None:
    model = _Net(nnx.Rngs(0))
    start = {id(layer): {k: h.get_value() for k, h in layer.parameter_handles().items()} for layer in _layers(model)}
    pruner = Pruner([MagnitudePruneGroup(_layers(model), 0.5)], model=model)
    for _ in range(3):
        _train(model, nnx.Optimizer(model, OPTIMIZERS[name](), wrt=nnx.Param), 25)
        for layer in _layers(model):
            for handle in layer.parameter_handles().values():
                mask = handle.get_mask()
                if mask is not None:
                    value = np.asarray(handle.get_value())
                    assert (value[~np.asarray(mask)] == 0).all()
                    assert not np.signbit(value[~np.asarray(mask)]).any()  # +0.0, not -0.0
        trained = model.hidden.kernel.get_value()
        pruner.prune_and_rewind()
        assert not np.array_equal(trained, model.hidden.kernel.get_value())
        for layer in _layers(model):
            for key, handle in layer.parameter_handles().items():
                mask = handle.get_mask()
                expected = start[id(layer)][key] if mask is None else jnp.where(mask, start[id(layer)][key], 0)
                np.testing.assert_array_equal(handle.get_value(), expected)  # bit for bit, biases too
    assert pruner.report().remaining == pytest.approx(0.5**3, abs=0.01)


def test_late_rewinding_returns_to_the_chosen_step() -> None:
    model = _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    pruner = Pruner([MagnitudePruneGroup(_layers(model), 0.3)], model=model)
    _train(model, optimizer, 3)
    pruner.set_rewind_point()
    at_step_3 = model.out.kernel.get_value()
    _train(model, optimizer, 10)
    pruner.prune_and_rewind()
    mask = model.out.kernel_mask.get_value()
    np.testing.assert_array_equal(model.out.kernel.get_value(), jnp.where(mask, at_step_3, 0))


def test_state_dict_resumes_on_a_new_model() -> None:
    model = _Net(nnx.Rngs(0))
    pruner = Pruner([MagnitudePruneGroup(_layers(model), 0.4)], model=model)
    _train(model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param), 5)
    pruner.prune_and_rewind()
    other = _Net(nnx.Rngs(5))
    resumed = Pruner([MagnitudePruneGroup(_layers(other), 0.4)], model=other)
    resumed.load_state_dict(pruner.state_dict())  # masks, rewind points, rounds
    assert resumed.report() == pruner.report()
    pruner.rewind()
    resumed.rewind()
    for a, b in zip(_layers(model), _layers(other), strict=True):
        for key, handle in a.parameter_handles().items():
            np.testing.assert_array_equal(b.parameter_handles()[key].get_value(), handle.get_value())


def test_same_masks_as_torch_over_several_rounds() -> None:
    torch = pytest.importorskip("torch")
    from lotto_backends import torch as lotto_torch

    sizes = [(20, 16), (16, 12), (12, 4)]
    weights = [np.random.default_rng(i).standard_normal((i_, o)).astype(np.float32) for i, (i_, o) in enumerate(sizes)]
    jax_layers = [PrunableLinear(i, o, rngs=nnx.Rngs(0)) for i, o in sizes]
    torch_layers = [lotto_torch.PrunableLinear(i, o) for i, o in sizes]
    for w, jl, tl in zip(weights, jax_layers, torch_layers, strict=True):
        jl.kernel.set_value(jnp.asarray(w))  # Flax stores (in, out)
        with torch.no_grad():
            tl.weight.copy_(torch.from_numpy(w.T.copy()))  # torch stores (out, in)
    jax_pruner = Pruner([MagnitudePruneGroup(jax_layers[:2], 0.3), MagnitudePruneGroup(jax_layers[2:], 0.15)])
    torch_pruner = Pruner(
        [
            lotto_torch.MagnitudePruneGroup(torch_layers[:2], 0.3),
            lotto_torch.MagnitudePruneGroup(torch_layers[2:], 0.15),
        ]
    )
    for round_ in range(4):
        jax_pruner.prune()
        torch_pruner.prune()
        for jl, tl in zip(jax_layers, torch_layers, strict=True):
            np.testing.assert_array_equal(np.asarray(jl.kernel_mask.get_value()), tl.weight_mask.numpy().T)
        # both "train" the same way: every weight grows by a round-dependent factor
        for w, jl, tl in zip(weights, jax_layers, torch_layers, strict=True):
            w *= np.float32(1.0 + 0.1 * round_) * np.sign(np.sin(np.arange(w.size).reshape(w.shape) + round_))
            jl.parameter_handles()["kernel"].set_value(jnp.asarray(w))
            tl.parameter_handles()["weight"].set_value(torch.from_numpy(w.T.copy()))
    assert jax_pruner.report().kept == torch_pruner.report().kept


def test_a_round_writes_every_groups_weights_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from lotto_backends.jax import _backend

    calls = []
    zero_pruned = _backend.zero_pruned
    monkeypatch.setattr(
        _backend, "zero_pruned", lambda values, masks: calls.append(len(values)) or zero_pruned(values, masks)
    )
    model = _Net(nnx.Rngs(0))
    Pruner([MagnitudePruneGroup(_layers(model)[:2], 0.5), MagnitudePruneGroup(_layers(model)[2:], 0.2)]).prune()
    assert calls == [3]  # both groups' new weights, in one call
    for layer in _layers(model):
        mask = layer.kernel_mask.get_value()
        assert not bool(mask.all())
        assert bool((layer.kernel.get_value()[~mask] == 0).all())
