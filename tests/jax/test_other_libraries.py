"""The pytree API on other libraries' models: Equinox (MLP with non-array leaves, Conv2d,
LSTMCell under lax.scan), Flax linen (Conv + BatchNorm with batch_stats and a residual,
a Transformer block) and a Haiku-style nested dict. Default masks pick the kernels, not
biases or scales; groups pick leaves by path; IMP rounds run with one optimizer state
through ``keep_pruned``, which composes with ``optax.chain(clip, ...)`` and
``optax.MultiSteps``; pruned entries stay exactly 0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto_backends.jax import pytree
from lotto_backends.jax._tree import leaves
from lotto_core import prune_count

eqx = pytest.importorskip("equinox")

TRANSFORMS = {
    "clip-adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    "multisteps": lambda: optax.MultiSteps(optax.sgd(0.05, momentum=0.9), every_k_schedule=2),
}


def _masked_leaves(params: Any, masks: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    flat, _ = leaves(params, masks)
    return [(np.asarray(leaf.value), np.asarray(leaf.mask)) for leaf in flat if leaf.mask is not None]


def _imp(
    params: Any,
    loss: Callable[[Any], jax.Array],
    groups: list[pytree.PytreeGroup],
    transform: str,
    rounds: int = 2,
    steps: int = 4,
) -> tuple[Any, Any]:
    """IMP rounds with one optimizer state across them; checks pruned entries stay 0."""
    masks = pytree.init_masks(params)
    start = params
    tx = pytree.keep_pruned(TRANSFORMS[transform]())
    state = tx.init(params)

    @jax.jit
    def step(params: Any, state: Any, masks: Any) -> tuple[Any, Any]:
        updates, state = tx.update(jax.grad(loss)(params), state, params, masks=masks)
        return optax.apply_updates(params, updates), state

    kept = sum(int(m.sum()) for _, m in _masked_leaves(params, masks))
    for r in range(rounds):
        for _ in range(steps):
            params, state = step(params, state, masks)
            for value, mask in _masked_leaves(params, masks):
                assert (value[~mask] == 0).all()
        params, masks = pytree.prune(params, masks, groups, round_index=r)
        params = pytree.rewind(start, masks)
        if len(groups) == 1 and type(groups[0]) is pytree.MagnitudeGroup:  # one global threshold
            kept -= prune_count(groups[0].p, kept)
            assert pytree.report(masks).kept == kept
    return params, masks


@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_equinox_mlp_and_conv(transform: str) -> None:
    key = jax.random.key(0)
    mlp = eqx.nn.MLP(4, 2, width_size=16, depth=2, key=key)
    conv = eqx.nn.Conv2d(1, 8, 3, key=key)
    model = (mlp, conv)
    params, static = eqx.partition(model, eqx.is_array)  # activations are non-array leaves
    masks = pytree.init_masks(params)
    assert masks[1].bias is None  # Conv2d's (8, 1, 1) bias is not a kernel
    assert masks[1].weight is not None
    assert all(layer.bias is None for layer in masks[0].layers)
    x, image = jnp.ones((5, 4)), jnp.ones((1, 6, 6))

    def loss(p: Any) -> jax.Array:
        m, c = eqx.combine(p, static)
        return jnp.sum(jax.vmap(m)(x) ** 2) + jnp.sum(c(image) ** 2)

    params, masks = _imp(params, loss, [pytree.MagnitudeGroup("*weight", 0.3)], transform)
    m, c = eqx.combine(params, static)
    assert jax.vmap(m)(x).shape == (5, 2)
    assert c(image).shape == (8, 4, 4)


def test_equinox_lstm_cell_under_scan() -> None:
    cell = eqx.nn.LSTMCell(3, 8, key=jax.random.key(1))
    params, static = eqx.partition(cell, eqx.is_array)
    masks = pytree.init_masks(params)
    assert masks.weight_ih is not None
    assert masks.weight_hh is not None
    assert masks.bias is None
    xs = jax.random.normal(jax.random.key(2), (6, 3))

    def loss(p: Any) -> jax.Array:
        c = eqx.combine(p, static)

        def body(carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
            carry = c(x, carry)
            return carry, carry[0]

        _, hs = jax.lax.scan(body, (jnp.zeros(8), jnp.zeros(8)), xs)
        return jnp.sum(hs**2)

    _imp(params, loss, [pytree.LayerwiseMagnitudeGroup("weight_*", 0.4)], "clip-adam")


class _Residual(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nn.Conv(8, (3, 3), padding="SAME")(x)
        h = nn.BatchNorm(use_running_average=not train)(h)
        h = nn.relu(h) + x
        return nn.Dense(3)(h.reshape(h.shape[0], -1))


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)(x)
        h = nn.LayerNorm()(h)
        return h + nn.Dense(8)(nn.relu(nn.Dense(16)(h)))


def test_linen_conv_batchnorm_residual_keeps_batch_stats_apart() -> None:
    model = _Residual()
    x = jax.random.normal(jax.random.key(0), (4, 5, 5, 8))
    variables = model.init(jax.random.key(1), x, train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    masks = pytree.init_masks(params)
    assert masks["BatchNorm_0"]["scale"] is None
    assert masks["Conv_0"]["bias"] is None

    def loss(p: Any) -> jax.Array:
        out, _ = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(out**2)

    params, masks = _imp(params, loss, [pytree.MagnitudeGroup("*kernel", 0.5)], "clip-adam")
    out, updated = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"])
    assert out.shape == (4, 3)
    assert set(updated) == {"batch_stats"}


def test_linen_transformer_block_masks_kernels_not_attention_biases() -> None:
    model = _Block()
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    params = model.init(jax.random.key(1), x)["params"]
    masks = pytree.init_masks(params)
    attention = masks["MultiHeadDotProductAttention_0"]
    for name in ("query", "key", "value", "out"):
        assert attention[name]["kernel"] is not None
        assert attention[name]["bias"] is None  # (heads, head_dim): 2-D, still a bias
    groups = [pytree.MagnitudeGroup("MultiHead*/kernel", 0.3), pytree.MagnitudeGroup("Dense_*/kernel", 0.5)]
    params, masks = _imp(params, lambda p: jnp.sum(model.apply({"params": p}, x) ** 2), groups, "multisteps")
    assert model.apply({"params": params}, x).shape == (2, 5, 8)


def test_haiku_style_nested_dict() -> None:
    rng = np.random.default_rng(0)
    params = {
        "mlp/~/linear_0": {"w": jnp.asarray(rng.standard_normal((4, 8)), jnp.float32), "b": jnp.zeros(8)},
        "mlp/~/linear_1": {"w": jnp.asarray(rng.standard_normal((8, 2)), jnp.float32), "b": jnp.zeros(2)},
        "layer_norm": {"scale": jnp.ones((1, 8)), "offset": jnp.zeros((1, 8))},
    }
    masks = pytree.init_masks(params)
    assert [k for k, v in masks.items() if any(m is not None for m in v.values())] == [
        "mlp/~/linear_0",
        "mlp/~/linear_1",
    ]
    x = jnp.ones((3, 4))

    def loss(p: Any) -> jax.Array:
        h = jnp.tanh(x @ p["mlp/~/linear_0"]["w"] + p["mlp/~/linear_0"]["b"]) * p["layer_norm"]["scale"][0]
        return jnp.sum((h @ p["mlp/~/linear_1"]["w"]) ** 2)

    _imp(params, loss, [pytree.MagnitudeGroup("mlp*/w", 0.25)], "clip-adam", rounds=3)
