"""Many small NNX layers, and the jitted training step (issue 12.7).

Each figure against its baseline in the same run:

* ``make_prunable``, ``prune()`` and ``rewind()`` of 1,000 ``nnx.Linear(32, 32)``, per
  layer (target: ``prune()`` well under 1 ms per layer);
* the same ``prune()`` through the XLA passes, which an accelerator runs (forced here by
  hiding the host kernels), with alike small parameters batched into one call per pass,
  against one call per parameter and pass;
* the ``nnx.jit`` training step (forward, backward, Lotto's ``Optimizer`` with Adam) of
  a prunable 4 x 1024 MLP and of 100 prunable ``Linear(32, 32)`` against the same plain
  layers with ``nnx.Optimizer`` (target at most 1.05), in NNX's graph mode (Flax's
  default; also with the arguments donated) and tree mode (``nnx.set_graph_mode(False)``);
  beside it, the plain layers with one more variable each, which NNX's traversal of the
  model charges for whatever the variable is: the floor for a layer that keeps its mask
  as a variable.

Run: ``nox -s bench`` or ``JAX_PLATFORMS=cpu python bench/bench_jax_many_layers.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import lotto_backends._host.pool as pool
import lotto_backends.jax._passes as _passes
from lotto_backends.jax import MagnitudePruneGroup, Optimizer, Pruner, make_prunable


class Stack(nnx.Module):
    def __init__(self, n: int, width: int, rngs: nnx.Rngs, layer: type[nnx.Module] = nnx.Linear) -> None:
        self.layers = nnx.List([layer(width, width, rngs=rngs) for _ in range(n)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return x


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def many_layers(n: int = 1000) -> None:
    model = Stack(n, 32, nnx.Rngs(0))
    made = _timed(lambda: make_prunable(model))
    pruner = Pruner([MagnitudePruneGroup(list(model.layers), 0.5)], model=model)
    pruner.prune()  # compile and warm the kernels
    prune = min(_timed(pruner.prune) for _ in range(3))
    rewind = min(_timed(pruner.rewind) for _ in range(3))
    print(f"{n:,} nnx.Linear(32, 32), per layer: make_prunable {made / n * 1e3:.3f} ms, ", end="")
    print(f"prune {prune / n * 1e3:.3f} ms (target well under 1), rewind {rewind / n * 1e3:.3f} ms")


def xla_passes(n: int = 1000) -> None:
    """``prune()`` of ``n`` small layers through the XLA passes: batched (up to
    ``_passes._BATCH`` parameters a call) against one call per parameter."""
    hidden, batch = pool.kernels, _passes._BATCH
    pool.kernels = lambda: None  # no host kernels: the XLA passes run, as on an accelerator
    try:
        times = {}
        for name, size in (("one call per parameter", 1), ("batched", batch)):
            _passes._BATCH = size
            model = make_prunable(Stack(n, 32, nnx.Rngs(0)))
            pruner = Pruner([MagnitudePruneGroup(list(model.layers), 0.5)], model=model)
            pruner.prune()  # compile the passes for full masks, then for pruned ones
            pruner.prune()
            times[name] = min(_timed(pruner.prune) for _ in range(3))
    finally:
        pool.kernels, _passes._BATCH = hidden, batch
    base, batched = times["one call per parameter"], times["batched"]
    print(f"{n:,} nnx.Linear(32, 32), prune() through the XLA passes, per layer: ", end="")
    print(f"batched {batched / n * 1e3:.3f} ms, one call per parameter {base / n * 1e3:.3f} ms: ", end="")
    print(f"ratio {batched / base:.2f}")


class _WithOneVariable(nnx.Linear):
    """``nnx.Linear`` with one more variable (any, here a boolean like a mask): what NNX
    charges per step for every variable a layer holds, whoever adds it."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs) -> None:
        super().__init__(in_features, out_features, rngs=rngs)
        self.extra = nnx.Variable(jnp.ones((in_features, out_features), bool))


def _steps(x: jax.Array) -> dict[str, Callable[[nnx.Module, nnx.Optimizer], jax.Array]]:
    """The training step as graph mode writes it (``nnx.grad`` of the model), also with
    the model and optimizer donated (graph mode otherwise copies every variable that the
    step leaves alone: rewind points, masks), and as tree mode does (``nnx.split`` of the
    parameters), each under ``nnx.jit`` in its mode."""

    def loss(model: nnx.Module) -> jax.Array:
        return jnp.mean(model(x) ** 2)

    def graph_step(model: nnx.Module, optimizer: nnx.Optimizer) -> jax.Array:
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    @nnx.jit(graph=False)
    def tree_step(model: nnx.Module, optimizer: nnx.Optimizer) -> jax.Array:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        value, grads = nnx.value_and_grad(lambda p, r: loss(nnx.merge(graphdef, p, r)))(params, rest)
        optimizer.update(model, grads)
        return value

    donated = nnx.jit(graph_step, donate_argnames=("model", "optimizer"))
    return {"graph": nnx.jit(graph_step), "graph, donated": donated, "tree": tree_step}


def step_ratio(n: int, width: int, batch: int, steps: int = 30) -> None:
    """The step of the prunable model and of the plain one with one extra variable per
    layer, each against the plain model's, in each of ``_steps``' modes."""
    x = jax.random.normal(jax.random.key(1), (batch, width))
    plain = Stack(n, width, nnx.Rngs(0))
    prunable = make_prunable(Stack(n, width, nnx.Rngs(0)))
    Pruner([MagnitudePruneGroup(list(prunable.layers), 0.5)], model=prunable).prune()
    extra = Stack(n, width, nnx.Rngs(0), layer=_WithOneVariable)
    runs = {
        "plain": (plain, nnx.Optimizer(plain, optax.adam(1e-4), wrt=nnx.Param)),
        "prunable": (prunable, Optimizer(prunable, optax.adam(1e-4), wrt=nnx.Param)),
        "one more variable": (extra, nnx.Optimizer(extra, optax.adam(1e-4), wrt=nnx.Param)),
    }
    for mode, step in _steps(x).items():
        with nnx.set_graph_mode(mode != "tree"):
            times: dict[str, list[float]] = {name: [] for name in runs}
            for model, optimizer in runs.values():
                step(model, optimizer).block_until_ready()  # compile
            for _ in range(steps):
                for name, (model, optimizer) in runs.items():
                    times[name].append(_timed(lambda s=step, m=model, o=optimizer: s(m, o).block_until_ready()))
        base = statistics.median(times["plain"])
        ratios = ", ".join(f"{name} {statistics.median(times[name]) / base:.3f}" for name in runs if name != "plain")
        print(f"nnx.jit step, {mode} mode, {n} x Linear({width}, {width}), batch {batch}: ", end="")
        print(f"plain {base * 1e3:.2f} ms; against it: {ratios} (target <= 1.05)")


def main() -> int:
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    many_layers()
    xla_passes()
    step_ratio(4, 1024, 256)
    step_ratio(100, 32, 64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
