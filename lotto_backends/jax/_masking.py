"""How a prunable NNX layer keeps its pruned weights at exactly zero.

``prune()`` and ``rewind()`` write exact zeros under the mask. For the span of each
call, every masked weight is then read through ``mask_gradient(w, mask)``: the weight
itself going forward, with a gradient that is zero wherever the mask is ``False``. Any
optimizer whose update is zero where the gradient has always been zero (SGD with or
without momentum, Adam, AdamW, ...) so leaves pruned weights at exactly 0.0. Under
``jit`` XLA fuses the select into the optimizer's elementwise update, so the training
step costs what the plain layer's does (``bench/bench_jax_train_step.py``); masking the
weight in the forward pass instead would add a pass over every weight per step.

An optimizer state made before a prune still carries momentum for the weights it just
pruned: build the optimizer after each ``prune()`` (as the lottery-ticket procedure
does anyway), or wrap the transformation with ``lotto_backends.jax.pytree``'s optax
wrapper, which zeroes pruned updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["KeptElsewhere", "Mask", "RewindPoint", "mask_gradient", "masked_weights"]


class Mask(nnx.Variable[jax.Array]):
    """A boolean keep-mask (``True`` = kept). Not a ``nnx.Param``: optimizers built with
    ``wrt=nnx.Param`` never see it."""


class RewindPoint(nnx.Variable[Any]):
    """The value a parameter returns to on rewind: a JAX array beside the weight, or a
    :class:`KeptElsewhere` after ``set_rewind_device``. Not a ``nnx.Param``."""


@jax.tree_util.register_pytree_node_class
class KeptElsewhere:
    """A rewind point kept on another device than its weight (``set_rewind_device``),
    in ``array``. A pytree with no leaves: ``nnx.jit`` or ``jax.jit`` over the model
    neither takes it as an argument nor moves it (an argument committed to another
    device would make a jitted training step run there, or fail with incompatible
    devices), and ``nnx.state`` holds no array for it. Compared by identity, so a
    jitted step compiles again only when the point is replaced (``set_rewind_point``)."""

    __slots__ = ("array",)

    def __init__(self, array: jax.Array) -> None:
        self.array = array

    def tree_flatten(self) -> tuple[tuple[()], KeptElsewhere]:
        return (), self

    @classmethod
    def tree_unflatten(cls, kept: KeptElsewhere, _children: Any) -> KeptElsewhere:
        return kept

    def __repr__(self) -> str:
        devices = ", ".join(sorted(str(d) for d in self.array.devices()))
        return f"KeptElsewhere({self.array.dtype}{list(self.array.shape)} on {devices})"


@jax.custom_vjp
def mask_gradient(weight: jax.Array, mask: jax.Array) -> jax.Array:
    """``weight`` itself, whose gradient is zero where ``mask`` is ``False``; ``mask``
    gets no gradient."""
    return weight


def _mask_gradient_fwd(weight: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    return weight, mask


def _mask_gradient_bwd(mask: jax.Array, grad: jax.Array) -> tuple[jax.Array, None]:
    return jnp.where(mask, grad, jnp.zeros((), grad.dtype)), None


mask_gradient.defvjp(_mask_gradient_fwd, _mask_gradient_bwd)


@contextmanager
def masked_weights(pairs: list[tuple[nnx.Variable[Any], Mask]]) -> Iterator[None]:
    """Within the block, each variable of ``pairs`` reads ``mask_gradient(value, mask)``;
    its own value is put back afterwards, also under NNX transforms (``nnx.scan`` runs a
    cell's call at a deeper trace level, where a plain write would be refused)."""
    saved = [variable.get_raw_value() for variable, _ in pairs]
    try:
        for (variable, mask), raw in zip(pairs, saved, strict=True):
            variable.set_raw_value(mask_gradient(raw, mask.get_raw_value()), _unsafe_bypass_check=True)
        yield
    finally:
        for (variable, _), raw in zip(pairs, saved, strict=True):
            variable.set_raw_value(raw, _unsafe_bypass_check=True)
