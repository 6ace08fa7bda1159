"""Gradients by layer, for the scores that need them (SNIP, GraSP, SynFlow), from NNX
models: a gradient state looked up by layer, and SynFlow's data-free gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["layer_gradients", "synaptic_flow"]


def synaptic_flow(model: nnx.Module, inputs: jax.Array) -> Callable[[Any, str], jax.Array]:
    """``dR/dw`` for every ``nnx.Param`` of ``model``, for ``lotto_core.strategy.SynFlow``:
    ``R`` is the sum of the outputs of a copy of the model in eval mode with every
    parameter replaced by its absolute value (pruned weights stay 0), on an input of ones
    shaped like ``inputs`` (Tanaka et al. 2020). ``model`` itself is not changed.

    Returns
    -------
    callable
        ``flow(layer, name)``: the gradient of ``layer``'s parameter ``name``, for the
        layers of ``model``.
    """
    graphdef, params, *rest = nnx.split(model, nnx.Param, ...)
    ones = jnp.ones_like(inputs)

    def flow_sum(p: Any) -> jax.Array:
        copy = nnx.merge(graphdef, p, *rest)
        copy.eval()  # type: ignore[no-untyped-call]
        out: jax.Array = copy(ones).sum()
        return out

    return layer_gradients(model, jax.grad(flow_sum)(jax.tree.map(jnp.abs, params)))


def layer_gradients(model: nnx.Module, grads: Any) -> Callable[[Any, str], jax.Array]:
    """``gradient(layer, name)`` over ``grads``, a state of ``model``'s shape or a module
    of ``model``'s type (what ``nnx.grad`` returns in graph and in tree mode), for
    ``SNIP`` and ``GraSP``: the entry of parameter ``name`` of ``layer``, a layer of
    ``model``.

    >>> import jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> from lotto_backends.jax import SNIP, PrunableLinear, PruneGroup, Sparsity
    >>> model = PrunableLinear(4, 2, rngs=nnx.Rngs(0))
    >>> grads = nnx.grad(lambda m: (m(jnp.ones((3, 4))) ** 2).sum())(model)
    >>> PruneGroup([model], Sparsity(0.5), score=SNIP(layer_gradients(model, grads))).prune()
    >>> int(model.kernel_mask[...].sum())
    4
    """
    if isinstance(grads, nnx.Module):  # tree mode: the gradient has the model's type
        grads = nnx.state(grads)
    flat = {tuple(path): leaf for path, leaf in nnx.to_flat_state(grads)}
    where = {id(node): tuple(path) for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}

    def gradient(layer: Any, name: str) -> jax.Array:
        value = flat[(*where[id(layer)], name)]
        array: jax.Array = value.get_value() if isinstance(value, nnx.Variable) else value
        return array

    return gradient
