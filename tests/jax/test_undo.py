"""An NNX model's prune, rewind, rewind point and loaded state are all or nothing: with a
failure injected at the third layer's write (its new kernel and mask stored, its rewind
point set, or the batched zeroing of a rewind after the biases were set), every
variable, mask, rewind point and round counter is as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lotto_backends.jax.pruner as jax_pruner
from lotto_backends.jax import MagnitudePruneGroup, Pruner, make_prunable
from lotto_backends.jax.layers import JaxParameterHandle

from ..failures import failing, pruner_calls


def _model() -> tuple[nnx.Module, Pruner]:
    rngs = nnx.Rngs(0)
    model = make_prunable(
        nnx.Sequential(
            nnx.Linear(6, 8, rngs=rngs),
            nnx.relu,
            nnx.Linear(8, 8, rngs=rngs),
            nnx.BatchNorm(8, rngs=rngs),
            nnx.Linear(8, 8, rngs=rngs),
            nnx.Linear(8, 3, rngs=rngs),
        )
    )
    layers = [model.layers[i] for i in (0, 2, 4, 5)]
    pruner = Pruner([MagnitudePruneGroup(layers[:3], 0.3), MagnitudePruneGroup(layers[3:], 0.2)], model=model)
    pruner.prune()
    _train(model)
    return model, pruner


def _train(model: nnx.Module) -> None:
    """Move every parameter and statistic (pruned entries stay 0)."""
    for _, variable in nnx.iter_graph(model):
        if isinstance(variable, nnx.Param | nnx.BatchStat):
            variable.set_value(variable.get_value() * 1.5 + 0.25)
    for layer in (model.layers[i] for i in (0, 2, 4, 5)):
        layer.kernel.set_value(jnp.where(layer.kernel_mask.get_value(), layer.kernel.get_value(), 0.0))


def _state(model: nnx.Module, pruner: Pruner) -> list[Any]:
    leaves = jax.tree.leaves(nnx.state(model))
    return [pruner.rounds, [g.rounds for g in pruner.groups], [np.asarray(x) for x in leaves]]


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert a[:2] == b[:2]
    assert len(a[2]) == len(b[2])
    for x, y in zip(a[2], b[2], strict=True):
        np.testing.assert_array_equal(x, y)


def _failing(method: Callable[..., Any], third: nnx.Module) -> Callable[..., Any]:
    return failing(method, lambda handle: handle.owner is third and handle.name == "kernel")


@pytest.mark.parametrize(
    ("call", "where"),
    [
        ("prune", "set_masked"),
        ("rewind", "zero_pruned"),
        ("set_rewind_point", "set_rewind_point"),
        ("load_state_dict", "set_rewind_point"),
        ("load_state_dict", "set_masked"),
        ("shuffle_masks", "set_masked"),
    ],
)
def test_a_call_failing_at_the_third_layer_changes_nothing(monkeypatch, call, where):
    model, pruner = _model()
    saved = pruner.state_dict()
    pruner.prune()
    pruner.set_rewind_point()
    _train(model)
    before = _state(model, pruner)
    third = model.layers[4]
    runs = pruner_calls(pruner, saved)
    with monkeypatch.context() as patch:
        if where == "zero_pruned":  # the biases and statistics are set by then

            def zero_pruned(*args: Any) -> Any:
                raise MemoryError("injected")

            patch.setattr(jax_pruner, "zero_pruned", zero_pruned)
        else:
            patch.setattr(JaxParameterHandle, where, _failing(getattr(JaxParameterHandle, where), third))
        with pytest.raises(MemoryError, match="injected"):
            runs[call]()
        _assert_same(_state(model, pruner), before)
    runs[call]()


def test_a_failed_zeroing_of_jax_weights_is_undone_whole_and_claims_no_loss(monkeypatch):
    """JAX weights are kept as they are, so a failure while the backend writes them is
    undone entirely, with no note about weights that could not be put back."""
    from lotto_backends.jax._backend import JaxBackend
    from lotto_core import ArrayLayer
    from lotto_core.undo import Undo, write_masks

    layers = [ArrayLayer({"w": jnp.arange(1.0, 7.0)}) for _ in range(3)]
    before = [np.asarray(layer["w"]) for layer in layers]

    def failing(self: JaxBackend, writes: Any) -> None:
        raise MemoryError("injected")

    monkeypatch.setattr(JaxBackend, "write", failing)

    def call() -> None:
        with Undo() as undo:
            write_masks(undo, [(layer.params["w"], jnp.arange(6) > 2, None) for layer in layers])

    with pytest.raises(MemoryError) as caught:
        call()
    assert not getattr(caught.value, "__notes__", [])
    for layer, w in zip(layers, before, strict=True):
        assert bool(layer.params["w"].mask.all())
        np.testing.assert_array_equal(np.asarray(layer["w"]), w)
