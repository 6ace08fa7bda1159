"""Instability analysis on NNX models and pytrees: the known barrier of a path with a
bump, exactly 0 for two copies trained alike, masks kept along the path, the model
left as it was, and masks that differ refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, Optimizer, Pruner, instability, make_prunable, pytree


def _ticket() -> nnx.Module:
    model = make_prunable(
        nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(16, 1, rngs=nnx.Rngs(1)))
    )
    Pruner([MagnitudePruneGroup([model.layers[0], model.layers[2]], 0.5)], model=model).prune_and_rewind()
    return model


def _data(seed: int) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(seed), (64, 8))
    return x, x.sum(axis=1, keepdims=True)


def _train(model: nnx.Module, order: int) -> None:
    optimizer = Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)
    x, y = _data(order)
    for start in range(0, 64, 8):
        batch_x, batch_y = x[start : start + 8], y[start : start + 8]
        grads = nnx.grad(lambda m, bx=batch_x, by=batch_y: ((m(bx) - by) ** 2).mean())(model)
        optimizer.update(model, grads)


def _loss(model: nnx.Module) -> float:
    x, y = _data(99)
    return float(((model(x) - y) ** 2).mean())


def test_nnx_known_barrier_and_the_model_left_as_it_was():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(model))

    def train(m: nnx.Module, order: str) -> None:
        sign = 1.0 if order == "a" else -1.0
        m.kernel.set_value(jnp.full((3, 2), sign))
        m.bias.set_value(jnp.full((2,), sign))

    result = instability(
        model,
        train,
        lambda m: 1 - float((m.kernel[...] ** 2).sum() + (m.bias[...] ** 2).sum()),
        points=3,
        data_orders=("a", "b"),
    )
    assert result.values == (-7.0, 1.0, -7.0)
    assert result.barrier == 8.0
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, nnx.state(model)), before)


def test_nnx_copies_trained_alike_give_exactly_zero_and_masks_hold_along_the_path():
    model = _ticket()
    assert instability(model, lambda m, order: _train(m, 0), _loss, points=5).barrier == 0.0
    held = []

    def evaluate(m: nnx.Module) -> float:
        held.append(
            all(
                bool(jnp.all(jnp.where(layer.kernel_mask[...], True, layer.kernel[...] == 0)))
                for layer in (m.layers[0], m.layers[2])
            )
        )
        return _loss(m)

    result = instability(model, _train, evaluate, points=5)
    assert held == [True] * 5
    assert result.values[0] != result.values[-1]


def test_nnx_masks_that_differ_are_refused():
    model = _ticket()

    def train(m: nnx.Module, order: int) -> None:
        if order == 1:
            m.layers[0].kernel_mask.set_value(~m.layers[0].kernel_mask[...])

    with pytest.raises(ValueError, match=r"kernel_mask.*is not floating and differs"):
        instability(model, train, _loss, points=3)


def test_pytree_known_barrier_and_zero_for_copies_trained_alike():
    params = {"w": jnp.zeros((2, 2)), "step": jnp.asarray(0)}

    def train(p, order):
        return {"w": jnp.full((2, 2), 1.0 if order == 0 else -1.0), "step": p["step"] + 1}

    result = pytree.instability(params, train, lambda p: 1 - float((p["w"] ** 2).sum()), points=3)
    assert result.values == (-3.0, 1.0, -3.0)
    assert pytree.instability(params, lambda p, o: train(p, 0), lambda p: float(p["w"].sum()), points=4).barrier == 0.0
    with pytest.raises(ValueError, match=r"\['step'\] is not floating"):
        pytree.instability(params, lambda p, o: {"w": p["w"], "step": p["step"] + o}, lambda p: 0.0, points=2)
    with pytest.raises(TypeError, match="data_orders"):
        pytree.instability(params, train, lambda p: 0.0, data_orders=[0, 1, 2])
