"""Code a JAX user writes, checked by mypy (``nox -s typecheck``): the prunable NNX
layers are visible to type checkers as the Flax layers they are."""

from __future__ import annotations

import optax
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, Optimizer, PrunableConv, PrunableLinear, Pruner


def build() -> PrunableLinear:
    layer = PrunableLinear(4, 3, rngs=nnx.Rngs(0))
    features: int = layer.in_features + layer.out_features
    conv = PrunableConv(1, features, kernel_size=(3,), rngs=nnx.Rngs(1))
    plain: nnx.Conv = conv  # a PrunableConv is an nnx.Conv
    assert plain.in_features == 1
    Pruner([MagnitudePruneGroup([layer, conv], 0.2)], model=layer, rewind="groups").prune()
    Optimizer(layer, optax.adam(1e-3), wrt=nnx.Param)
    return layer
