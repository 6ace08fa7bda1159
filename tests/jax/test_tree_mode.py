"""The JAX adapter under NNX's tree mode (``nnx.set_graph_mode(False)``, Flax's FLIP 5310),
where ``nnx.jit`` and ``nnx.grad`` take a model as a plain pytree and gradients come from
``nnx.split(model, nnx.Param, ...)``, as Flax writes them for that mode. What graph mode
promises holds here too: pruned weights stay zero, the step compiles as often as the
plain model's, the rewind is whole, gradient scores read tree-mode gradients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import (
    SNIP,
    MagnitudePruneGroup,
    Optimizer,
    PruneGroup,
    Pruner,
    Sparsity,
    layer_gradients,
    make_prunable,
)

from .models import MLP, WithRest, flat_state, imp_compilations, pruned_nonzero, run_tied, tied_loss

pytestmark = pytest.mark.skipif(not hasattr(nnx, "set_graph_mode"), reason="NNX's tree mode came in Flax 0.12.5")


@pytest.fixture(autouse=True)
def tree_mode() -> Iterator[None]:
    with nnx.set_graph_mode(False):
        yield


def _tree_step(loss: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """A jitted training step written for tree mode: the gradient of the parameters, the
    rest of the state (BatchNorm statistics) updated through it."""

    @nnx.jit(graph=False)
    def tree_step(model: nnx.Module, optimizer: nnx.Optimizer, *args: Any) -> jax.Array:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        value, grads = nnx.value_and_grad(lambda p, r: loss(nnx.merge(graphdef, p, r), *args))(params, rest)
        optimizer.update(model, grads)
        return value

    return tree_step


@pytest.mark.parametrize("transform", ["adam", "noise"])
def test_the_lotto_optimizer_keeps_pruned_weights_zero_in_tree_mode(transform):
    model, pruner = run_tied(_tree_step(tied_loss), Optimizer, transform)
    assert pruned_nonzero(model) == 0
    assert pruner.report().revived == 0
    plain_model, plain_pruner = run_tied(_tree_step(tied_loss), nnx.Optimizer, transform)
    assert pruned_nonzero(plain_model) > 0  # what the Lotto optimizer prevents, in this mode too
    with pytest.warns(UserWarning, match="pruned weights are not zero"):
        assert plain_pruner.report().revived == pruned_nonzero(plain_model)


@pytest.mark.parametrize("reuse", [True, False], ids=["kept-optimizer", "new-optimizer"])
def test_an_imp_run_in_tree_mode_compiles_the_step_as_often_as_the_plain_model(reuse):
    step = _tree_step(lambda m, x: (m(x) ** 2).mean())
    counts = [imp_compilations(step, "tree_step", prunable=p, reuse=reuse) for p in (True, False)]
    assert counts[0] == counts[1]


def test_rewind_in_tree_mode_restores_every_parameter_and_batch_statistic():
    model = WithRest(nnx.Rngs(0))
    start = flat_state(model)
    pruner = Pruner([MagnitudePruneGroup([model.hidden], 0.5)], model=model)
    x = jax.random.normal(jax.random.key(1), (16, 6))
    y = (x[:, 0] > 0).astype(jnp.int32)
    step = _tree_step(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())
    optimizer = Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    for _ in range(3):
        step(model, optimizer)
    trained = flat_state(model)
    assert not np.array_equal(trained["('bn', 'mean')"], start["('bn', 'mean')"])  # the statistics moved
    pruner.prune_and_rewind()
    mask = np.asarray(model.hidden.kernel_mask[...])
    for key, value in flat_state(model).items():
        if key == "('hidden', 'kernel')":
            np.testing.assert_array_equal(value, np.where(mask, start[key], 0))
        elif "kernel_mask" not in key:
            np.testing.assert_array_equal(value, start[key], err_msg=key)


def test_snip_reads_the_gradients_tree_mode_gives():
    """``nnx.grad`` of a model gives a module of the model's type in tree mode; of split
    parameters, a state. ``layer_gradients`` reads both, as it reads graph mode's."""
    x = jax.random.normal(jax.random.key(3), (5, 4))

    def loss(m: nnx.Module) -> jax.Array:
        return (m(x) ** 2).sum()

    def snip_mask(grads_of: Callable[[nnx.Module], Any]) -> np.ndarray:
        model = make_prunable(MLP(nnx.Rngs(0)))
        PruneGroup([model.a, model.b], Sparsity(0.5), score=SNIP(layer_gradients(model, grads_of(model)))).prune()
        return np.concatenate([np.ravel(model.a.kernel_mask[...]), np.ravel(model.b.kernel_mask[...])])

    def of_split(model: nnx.Module) -> Any:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return nnx.grad(lambda p, r: loss(nnx.merge(graphdef, p, r)))(params, rest)

    def of_module(model: nnx.Module) -> Any:
        grads = nnx.grad(loss, allow_int=True)(model)  # the masks are boolean leaves
        assert isinstance(grads, MLP)
        return grads

    with nnx.set_graph_mode(True):
        expected = snip_mask(lambda model: nnx.grad(loss)(model))
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(snip_mask(of_split), expected)
    np.testing.assert_array_equal(snip_mask(of_module), expected)


def test_the_lotto_command_s_training_step_runs_alike_in_both_modes():
    from lotto_backends.experiment.data import digits
    from lotto_backends.experiment.jax_backend import BACKEND

    def train(graph: bool) -> dict[str, Any]:
        with nnx.set_graph_mode(graph), BACKEND.session():
            arrays = BACKEND.arrays(digits())
            model = BACKEND.build("lenet", 64, 10, 0)
            Pruner([MagnitudePruneGroup(list(BACKEND.prunable_layers(model)), 0.5)], model=model).prune()
            optimizer = BACKEND.optimizer(model)
            for first in (0, 32):
                BACKEND.train_step(model, optimizer, arrays, np.arange(first, first + 32), 1e-2)
            return BACKEND.model_state(model)

    tree, graph = train(graph=False), train(graph=True)
    assert tree.keys() == graph.keys()
    for path, value in graph.items():
        np.testing.assert_array_equal(tree[path], value, err_msg=path)
