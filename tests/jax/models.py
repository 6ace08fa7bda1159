"""Models and helpers shared by the tests of the JAX adapter on real training code (graph
and tree mode): a tied head with a penalty, a model with parts outside the groups, and a
counter of XLA compilations."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, Optimizer, PrunableLinear, Pruner, make_prunable

TRANSFORMS = {
    "sgd-momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "lion": lambda: optax.lion(1e-3),
    "noise": lambda: optax.chain(optax.add_noise(0.1, 0.5, 0), optax.sgd(0.05)),
}


class Tied(nnx.Module):
    """A GPT-2-style tied head (the embedding read outside its own call), a learned
    token, a BatchNorm, and an L1 penalty on a kernel read directly."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(16, 8, rngs=rngs)
        self.hidden = nnx.Linear(8, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.token = nnx.Param(jnp.zeros(8))

    def __call__(self, ids: jax.Array) -> jax.Array:
        h = self.bn(nnx.relu(self.hidden(self.embed(ids)))) + self.token[...]
        return h @ self.embed.embedding[...].T


def tied_loss(model: Tied, ids: jax.Array) -> jax.Array:
    logits = model(ids)
    return (
        optax.softmax_cross_entropy_with_integer_labels(logits, ids).mean()
        + 1e-2 * jnp.abs(model.hidden.kernel[...]).sum()
    )


def run_tied(
    step: Callable[[nnx.Module, nnx.Optimizer, jax.Array], jax.Array],
    optimizer_class: type[nnx.Optimizer],
    transform: str,
) -> tuple[Tied, Pruner]:
    """Two prunes of a prunable ``Tied`` model between training ``step``s, with one
    optimizer kept across them."""
    model = make_prunable(Tied(nnx.Rngs(0)))
    pruner = Pruner([MagnitudePruneGroup([model.embed, model.hidden], 0.5)], model=model)
    optimizer = optimizer_class(model, TRANSFORMS[transform](), wrt=nnx.Param)  # kept across the prunes
    ids = jnp.arange(12) % 16
    for _ in range(2):
        for _ in range(3):
            step(model, optimizer, ids)
        pruner.prune()
    for _ in range(5):
        step(model, optimizer, ids)
    return model, pruner


def pruned_nonzero(model: Tied) -> int:
    return sum(
        int(jnp.count_nonzero(w[...] * ~m[...]))
        for w, m in [
            (model.embed.embedding, model.embed.embedding_mask),
            (model.hidden.kernel, model.hidden.kernel_mask),
        ]
    )


class Compiles:
    """Counts XLA compilations of functions whose name contains ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)

    def __enter__(self) -> Compiles:
        jax.config.update("jax_log_compiles", True)
        logging.getLogger("jax").addHandler(self.handler)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("jax").removeHandler(self.handler)
        jax.config.update("jax_log_compiles", False)

    @property
    def count(self) -> int:
        return sum(1 for line in self.stream.getvalue().splitlines() if line.startswith(f"Compiling jit({self.name}"))


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.a = nnx.Linear(4, 8, rngs=rngs)
        self.b = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.b(nnx.relu(self.a(x)))


class WithRest(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.hidden = PrunableLinear(6, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.cls = nnx.Param(jnp.zeros(8))
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.bn(nnx.relu(self.hidden(x))) + self.cls[...])


def flat_state(model: nnx.Module) -> dict[str, np.ndarray]:
    return {str(path): np.asarray(v) for path, v in nnx.to_flat_state(nnx.as_pure(nnx.state(model)))}


def imp_compilations(
    step: Callable[[nnx.Module, nnx.Optimizer, jax.Array], Any],
    name: str,
    *,
    prunable: bool,
    reuse: bool,
    prune_first: bool = False,
) -> int:
    """XLA compilations of ``step`` (jitted, named ``name``) over three IMP rounds of an
    ``MLP``, plain or made prunable, with one optimizer or a new one each round."""
    model = MLP(nnx.Rngs(0))
    pruner = None
    if prunable:
        make_prunable(model)
        pruner = Pruner([MagnitudePruneGroup([model.a, model.b], 0.3)], model=model)
    optimizer = Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    with Compiles(name) as compiles:
        for _ in range(3):
            if not reuse:
                optimizer = Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
            if prune_first and pruner is not None:
                pruner.prune_and_rewind()
            for _ in range(2):
                step(model, optimizer, jnp.ones((3, 4)))
            if not prune_first and pruner is not None:
                pruner.prune_and_rewind()
    return compiles.count
