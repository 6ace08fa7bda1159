"""The controls on NNX models and pytrees: re-initialization from the model's own
constructor or initializer keeps every mask, the shuffled and randomly pruned controls
keep the ticket's exact per-leaf counts and match the core's masks, and bad input
changes nothing."""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lotto_core
from lotto_backends.jax import (
    MagnitudePruneGroup,
    Pruner,
    make_prunable,
    pytree,
    random_prune_like,
    reinitialize,
    shuffle_masks,
)
from lotto_core import ArrayLayer


def _build(rngs: nnx.Rngs) -> nnx.Module:
    return make_prunable(
        nnx.Sequential(
            nnx.Linear(6, 12, rngs=rngs), nnx.BatchNorm(12, rngs=rngs), nnx.relu, nnx.Linear(12, 3, rngs=rngs)
        )
    )


def _ticket(seed: int = 0) -> tuple[nnx.Module, Pruner]:
    model = _build(nnx.Rngs(seed))
    pruner = Pruner([MagnitudePruneGroup([model.layers[0], model.layers[3]], 0.7)], model=model)
    model.layers[1].mean.set_value(jnp.ones(12))
    pruner.prune_and_rewind()
    return model, pruner


def _kernels(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(model.layers[i].kernel[...]) for i in (0, 3)]


def _masks(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(model.layers[i].kernel_mask[...]) for i in (0, 3)]


def test_nnx_reinitialize_draws_afresh_keeps_masks_and_moves_the_rewind_point():
    model, pruner = _ticket()
    masks, before = _masks(model), _kernels(model)
    reinitialize(model, _build, pruner, seed=9)
    assert all(np.array_equal(a, b) for a, b in zip(_masks(model), masks, strict=True))
    for kernel, old, mask in zip(_kernels(model), before, masks, strict=True):
        assert np.all(kernel[~mask] == 0)
        assert not np.array_equal(kernel[mask], old[mask])
    assert np.array_equal(model.layers[1].mean[...], np.zeros(12))  # a fresh BatchNorm's statistics
    drawn = _kernels(model)
    model.layers[0].kernel.set_value(model.layers[0].kernel[...] + 1.0)
    pruner.rewind()
    assert all(np.array_equal(a, b) for a, b in zip(_kernels(model), drawn, strict=True))
    again, again_pruner = _ticket()
    reinitialize(again, _build, again_pruner, seed=9)
    assert all(np.array_equal(a, b) for a, b in zip(_kernels(again), drawn, strict=True))


def test_nnx_reinitialize_refuses_another_architecture_and_changes_nothing():
    model, pruner = _ticket()
    before = _kernels(model)

    def wider(rngs: nnx.Rngs) -> nnx.Module:
        return nnx.Sequential(
            nnx.Linear(6, 13, rngs=rngs), nnx.BatchNorm(13, rngs=rngs), nnx.relu, nnx.Linear(13, 3, rngs=rngs)
        )

    with pytest.raises(ValueError, match=r"layers.0.bias of float32\[13\], model has float32\[12\]"):
        reinitialize(model, wider, pruner, seed=0)
    with pytest.raises(ValueError, match="other parameters"):
        reinitialize(model, lambda rngs: nnx.Linear(6, 12, rngs=rngs), pruner, seed=0)
    with pytest.raises(TypeError, match="build must return"):
        reinitialize(model, lambda rngs: {"w": 1}, seed=0)
    with pytest.raises(ValueError, match="seed"):
        reinitialize(model, _build, seed=-2)
    assert all(np.array_equal(a, b) for a, b in zip(_kernels(model), before, strict=True))


def test_nnx_reinitialize_failing_at_the_rewind_point_changes_nothing(monkeypatch):
    model, pruner = _ticket()
    before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]

    def failing(self: Pruner) -> None:
        raise MemoryError("injected")

    monkeypatch.setattr(Pruner, "set_rewind_point", failing)
    with pytest.raises(MemoryError, match="injected"):
        reinitialize(model, _build, pruner, seed=9)
    after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))


def test_nnx_shuffle_and_random_prune_keep_the_tickets_counts():
    model, pruner = _ticket()
    counts = [int(m.sum()) for m in _masks(model)]
    shuffled, shuffled_pruner = _ticket()
    shuffle_masks(shuffled_pruner, seed=1)
    assert [int(m.sum()) for m in _masks(shuffled)] == counts
    assert not np.array_equal(_masks(shuffled)[0], _masks(model)[0])
    dense = _build(nnx.Rngs(4))
    random_pruner = Pruner([MagnitudePruneGroup([dense.layers[0], dense.layers[3]], 0.5)], model=dense)
    random_prune_like(random_pruner, pruner, seed=0)
    assert [int(m.sum()) for m in _masks(dense)] == counts
    for kernel, mask in zip(_kernels(dense), _masks(dense), strict=True):
        assert np.all(kernel[~mask] == 0)


def _params() -> dict:
    rng = np.random.default_rng(0)
    return {
        "a": {"kernel": jnp.asarray(rng.standard_normal((5, 8)), jnp.float32), "bias": jnp.zeros(8)},
        "b": {"kernel": jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)},
    }


def test_pytree_shuffle_matches_the_core_on_the_same_leaves():
    params = _params()
    params, masks = pytree.prune(params, pytree.init_masks(params), [pytree.MagnitudeGroup("*kernel", 0.6)])
    new_params, new_masks = pytree.shuffle_masks(params, masks, seed=3)
    layers = [ArrayLayer({"value": np.asarray(params[k]["kernel"])}) for k in ("a", "b")]
    for layer, k in zip(layers, ("a", "b"), strict=True):
        layer.params["value"].set_mask(np.asarray(masks[k]["kernel"]))
    lotto_core.shuffle_masks(lotto_core.Pruner([lotto_core.MagnitudePruneGroup(layers, 0.5)]), seed=3)
    for layer, k in zip(layers, ("a", "b"), strict=True):
        want = layer.params["value"].get_mask()
        np.testing.assert_array_equal(np.asarray(new_masks[k]["kernel"]), want)
        assert int(want.sum()) == int(masks[k]["kernel"].sum())
        assert np.all(np.asarray(new_params[k]["kernel"])[~want] == 0)
    assert new_masks["a"]["bias"] is None


def test_pytree_random_prune_like_takes_a_masks_pytree():
    params = _params()
    ticket_params, ticket = pytree.prune(params, pytree.init_masks(params), [pytree.MagnitudeGroup("*kernel", 0.75)])
    new_params, new_masks = pytree.random_prune_like(params, pytree.init_masks(params), ticket, seed=0)
    for k in ("a", "b"):
        assert int(new_masks[k]["kernel"].sum()) == int(ticket[k]["kernel"].sum())
        assert np.all(np.asarray(new_params[k]["kernel"])[~np.asarray(new_masks[k]["kernel"])] == 0)
    with pytest.raises(ValueError, match="cannot revive"):
        pytree.random_prune_like(ticket_params, ticket, pytree.init_masks(params), seed=0)


def test_pytree_reinitialize_draws_from_a_linen_models_own_init():
    model = linen.Dense(4)
    x = jnp.ones((1, 3))
    params = model.init(jax.random.key(0), x)
    params, masks = pytree.prune(params, pytree.init_masks(params), [pytree.MagnitudeGroup("*kernel", 0.5)])
    fresh = pytree.reinitialize(lambda key: model.init(key, x), masks, seed=1)
    mask = np.asarray(masks["params"]["kernel"])
    kernel = np.asarray(fresh["params"]["kernel"])
    assert np.all(kernel[~mask] == 0)
    assert np.all(kernel[mask] != 0)
    assert not np.array_equal(kernel[mask], np.asarray(params["params"]["kernel"])[mask])
    np.testing.assert_array_equal(
        kernel, np.asarray(pytree.reinitialize(lambda key: model.init(key, x), masks, seed=1)["params"]["kernel"])
    )
    with pytest.raises((ValueError, TypeError)):
        pytree.reinitialize(lambda key: {"params": {"kernel": jnp.ones((3, 5))}}, masks, seed=1)
    with pytest.raises(ValueError, match="seed"):
        pytree.reinitialize(lambda key: params, masks, seed=-1)
