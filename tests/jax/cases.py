"""One small instance of every supported NNX layer, with inputs to call it on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@dataclass(frozen=True)
class Case:
    """How to build a layer (plain or prunable, from the same seed) and call it."""

    base: type[nnx.Module]
    make: Callable[[type[nnx.Module], nnx.Rngs], nnx.Module]
    inputs: Callable[[nnx.Module], tuple[Any, ...]]

    @property
    def id(self) -> str:
        return self.base.__name__

    def build(self, cls: type[nnx.Module] | None = None, seed: int = 0) -> nnx.Module:
        return self.make(cls or self.base, nnx.Rngs(seed))


def _x(*shape: int) -> Callable[[nnx.Module], tuple[Any, ...]]:
    return lambda _: (jax.random.normal(jax.random.key(7), shape),)


def _cell_inputs(layer: nnx.Module) -> tuple[Any, ...]:
    x = jax.random.normal(jax.random.key(7), (3, 4))
    carry = jax.tree.map(lambda c: c + 0.5, layer.initialize_carry(x.shape, rngs=nnx.Rngs(1)))
    return carry, x


CASES = [
    Case(nnx.Linear, lambda c, r: c(6, 5, rngs=r), _x(3, 6)),
    Case(nnx.LinearGeneral, lambda c, r: c(6, (2, 3), rngs=r), _x(3, 6)),
    Case(nnx.Einsum, lambda c, r: c("ab,bc->ac", (6, 5), (5,), rngs=r), _x(3, 6)),
    Case(nnx.Conv, lambda c, r: c(2, 4, kernel_size=(3,), rngs=r), _x(2, 7, 2)),
    Case(nnx.ConvTranspose, lambda c, r: c(2, 4, kernel_size=(3,), rngs=r), _x(2, 7, 2)),
    Case(nnx.Embed, lambda c, r: c(10, 4, rngs=r), lambda _: (jnp.array([[1, 2, 9], [0, 0, 3]]),)),
    Case(
        nnx.MultiHeadAttention,
        lambda c, r: c(num_heads=2, in_features=4, qkv_features=8, decode=False, rngs=r),
        _x(2, 5, 4),
    ),
    Case(nnx.LSTMCell, lambda c, r: c(4, 5, rngs=r), _cell_inputs),
    Case(nnx.OptimizedLSTMCell, lambda c, r: c(4, 5, rngs=r), _cell_inputs),
    Case(nnx.GRUCell, lambda c, r: c(4, 5, rngs=r), _cell_inputs),
    Case(nnx.SimpleCell, lambda c, r: c(4, 5, rngs=r), _cell_inputs),
    Case(nnx.BatchNorm, lambda c, r: c(4, use_running_average=True, rngs=r), _x(3, 4)),
    Case(nnx.LayerNorm, lambda c, r: c(4, rngs=r), _x(3, 4)),
    Case(nnx.RMSNorm, lambda c, r: c(4, rngs=r), _x(3, 4)),
    Case(nnx.GroupNorm, lambda c, r: c(4, num_groups=2, rngs=r), _x(2, 5, 4)),
    Case(nnx.InstanceNorm, lambda c, r: c(4, rngs=r), _x(2, 5, 4)),
]


def scramble(layer: nnx.Module) -> None:
    """Give every parameter distinct random values (a fresh norm scale is all ones)."""
    for i, (_, variable) in enumerate(nnx.iter_graph(layer)):
        if isinstance(variable, nnx.Param):
            value = variable.get_value()
            variable.set_value(jax.random.normal(jax.random.key(100 + i), value.shape, value.dtype))


def copy_parameters(source: nnx.Module, target: nnx.Module) -> None:
    """Set ``target``'s parameters to ``source``'s effective (masked) values, by path."""
    handles = source.parameter_handles()
    for path, variable in nnx.iter_graph(target):
        if isinstance(variable, nnx.Param):
            variable.set_value(handles[".".join(map(str, path))].get_value())
