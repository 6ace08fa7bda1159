"""The strategy pieces through the NNX layers and the pytree API: SNIP from ``nnx.grad``
and from a gradient pytree by path, a gradual schedule under ``Optimizer`` in a jitted
loop, ERK with the same shares as the core on NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lotto_backends.jax import (
    ERK,
    SNIP,
    Gradual,
    Optimizer,
    PrunableLinear,
    PruneGroup,
    Pruner,
    Sparsity,
    pytree,
)
from lotto_core import ArrayLayer


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.l1 = PrunableLinear(12, 24, rngs=rngs)
        self.l2 = PrunableLinear(24, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.l2(jax.nn.relu(self.l1(x)))


def _loss(model: _Net, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def _data() -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((64, 12)), jnp.float32), jnp.asarray(rng.integers(0, 4, 64))


def _reference(scores: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    flat = np.concatenate([s.ravel() for s in scores])
    order = np.lexsort((np.arange(flat.size), flat))
    keep = np.ones(flat.size, bool)
    keep[order[: math.ceil(sparsity * flat.size)]] = False
    return np.split(keep, np.cumsum([s.size for s in scores])[:-1])


def test_snip_from_nnx_grad() -> None:
    model = _Net(nnx.Rngs(0))
    grads = nnx.grad(_loss)(model, *_data())
    of_layer = {id(model.l1): grads["l1"], id(model.l2): grads["l2"]}
    layers = [model.l1, model.l2]
    scores = [
        np.abs(np.asarray(layer.kernel[...]) * np.asarray(of_layer[id(layer)]["kernel"][...])) for layer in layers
    ]
    snip = SNIP(lambda layer, name: of_layer[id(layer)][name][...])
    PruneGroup(layers, Sparsity(0.8), score=snip).prune()
    for layer, want in zip(layers, _reference(scores, 0.8), strict=True):
        np.testing.assert_array_equal(np.asarray(layer.kernel_mask[...]).ravel(), want)
        assert bool((layer.kernel[...][~layer.kernel_mask[...]] == 0).all())


def test_snip_through_the_pytree_api_by_leaf_path() -> None:
    rng = np.random.default_rng(1)
    params = {
        n: {"kernel": jnp.asarray(rng.standard_normal(s), jnp.float32)} for n, s in (("a", (8, 6)), ("b", (6, 3)))
    }
    grads = {n: {"kernel": jnp.asarray(rng.standard_normal(p["kernel"].shape), jnp.float32)} for n, p in params.items()}
    by_path = {path: leaf for path, leaf in zip(pytree.paths(grads), jax.tree_util.tree_leaves(grads), strict=True)}
    group = pytree.Group("*kernel", Sparsity(0.5), score=SNIP(lambda layer, name: by_path[layer.path]))
    new, masks = pytree.prune(params, pytree.init_masks(params), [group])
    scores = [np.abs(np.asarray(params[n]["kernel"]) * np.asarray(grads[n]["kernel"])) for n in ("a", "b")]
    for n, want in zip(("a", "b"), _reference(scores, 0.5), strict=True):
        np.testing.assert_array_equal(np.asarray(masks[n]["kernel"]).ravel(), want)
        assert bool((new[n]["kernel"][~masks[n]["kernel"]] == 0).all())


def test_gradual_pruning_under_the_optimizer_in_a_jitted_loop() -> None:
    model = _Net(nnx.Rngs(0))
    layers = [model.l1, model.l2]
    pruner = Pruner([PruneGroup(layers, Gradual(0.0, 0.6, begin_step=2, end_step=12, frequency=5))], model=model)
    optimizer = Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x, y = _data()

    @nnx.jit
    def step(model: _Net, optimizer: Optimizer) -> None:
        optimizer.update(model, nnx.grad(_loss)(model, x, y))

    pruned_at = []
    for t in range(15):
        step(model, optimizer)
        if pruner.step(t):
            pruned_at.append(t)
        for layer in layers:
            assert bool((layer.kernel[...][~layer.kernel_mask[...]] == 0).all())
    assert pruned_at == [2, 7, 12]
    total = sum(layer.kernel[...].size for layer in layers)
    assert pruner.report().kept == total - math.ceil(0.6 * total)


def test_erk_shares_the_same_on_nnx_and_numpy() -> None:
    model = _Net(nnx.Rngs(0))
    numpy_layers = [ArrayLayer({"w": np.asarray(layer.kernel[...])}) for layer in (model.l1, model.l2)]
    PruneGroup([model.l1, model.l2], Sparsity(0.7), scope=ERK()).prune()
    PruneGroup(numpy_layers, Sparsity(0.7), scope=ERK()).prune()
    for layer, reference in zip((model.l1, model.l2), numpy_layers, strict=True):
        np.testing.assert_array_equal(np.asarray(layer.kernel_mask[...]), reference.params["w"].mask)


def test_two_of_four_along_an_nnx_kernels_input_axis() -> None:
    from lotto_backends.jax import NM

    model = _Net(nnx.Rngs(0))
    PruneGroup([model.l1], None, structure=NM(2, 4, axis=0)).prune()  # NNX kernels are (in, out)
    blocks = np.asarray(model.l1.kernel_mask[...]).reshape(3, 4, 24)
    assert (blocks.sum(axis=1) == 2).all()
    assert bool((model.l1.kernel[...][~model.l1.kernel_mask[...]] == 0).all())


def test_synflow_gradient_of_an_nnx_model() -> None:
    from lotto_backends.jax import SynFlow, synaptic_flow

    model = _Net(nnx.Rngs(0))
    kernel = np.asarray(model.l1.kernel[...]).copy()
    flow = synaptic_flow(model, jnp.zeros((5, 12)))
    np.testing.assert_array_equal(np.asarray(model.l1.kernel[...]), kernel)  # the model is not changed

    def by_hand(w1: jax.Array, w2: jax.Array) -> jax.Array:
        b1, b2 = jnp.abs(model.l1.bias[...]), jnp.abs(model.l2.bias[...])
        return (jax.nn.relu(jnp.ones((5, 12)) @ jnp.abs(w1) + b1) @ jnp.abs(w2) + b2).sum()

    w1, w2 = jnp.abs(model.l1.kernel[...]), jnp.abs(model.l2.kernel[...])
    g1, g2 = jax.grad(by_hand, argnums=(0, 1))(w1, w2)
    np.testing.assert_allclose(np.asarray(flow(model.l1, "kernel")), np.asarray(g1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(flow(model.l2, "kernel")), np.asarray(g2), rtol=1e-6)
    PruneGroup([model.l1, model.l2], Sparsity(0.5), score=SynFlow(flow)).prune()
    assert int(model.l1.kernel_mask[...].sum()) + int(model.l2.kernel_mask[...].sum()) == (12 * 24 + 24 * 4) // 2
