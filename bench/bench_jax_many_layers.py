"""Many small NNX layers, and the jitted training step (issue 12.7).

Each figure against its baseline in the same run:

* ``make_prunable``, ``prune()`` and ``rewind()`` of 1,000 ``nnx.Linear(32, 32)``, per
  layer (target: ``prune()`` well under 1 ms per layer);
* the ``nnx.jit`` training step (forward, backward, Lotto's ``Optimizer`` with Adam) of
  a prunable 4 x 1024 MLP and of 100 prunable ``Linear(32, 32)`` against the same plain
  layers with ``nnx.Optimizer``: target at most 1.05.

Run: ``nox -s bench`` or ``JAX_PLATFORMS=cpu python bench/bench_jax_many_layers.py``.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, Optimizer, Pruner, make_prunable


class Stack(nnx.Module):
    def __init__(self, n: int, width: int, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(n)])

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


def step_ratio(n: int, width: int, batch: int, steps: int = 30) -> None:
    x = jax.random.normal(jax.random.key(1), (batch, width))

    @nnx.jit
    def train_step(model: Stack, optimizer: nnx.Optimizer) -> jax.Array:
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    plain = Stack(n, width, nnx.Rngs(0))
    prunable = make_prunable(Stack(n, width, nnx.Rngs(0)))
    Pruner([MagnitudePruneGroup(list(prunable.layers), 0.5)], model=prunable).prune()
    runs = {
        "plain": (plain, nnx.Optimizer(plain, optax.adam(1e-4), wrt=nnx.Param)),
        "prunable": (prunable, Optimizer(prunable, optax.adam(1e-4), wrt=nnx.Param)),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for model, optimizer in runs.values():
        train_step(model, optimizer).block_until_ready()  # compile
    for _ in range(steps):
        for name, (model, optimizer) in runs.items():
            times[name].append(_timed(lambda m=model, o=optimizer: train_step(m, o).block_until_ready()))
    plain_t, ours = statistics.median(times["plain"]), statistics.median(times["prunable"])
    print(
        f"nnx.jit step, {n} x Linear({width}, {width}), batch {batch}: plain {plain_t * 1e3:.2f} ms, "
        f"prunable {ours * 1e3:.2f} ms = {ours / plain_t:.3f} (target <= 1.05)"
    )


def main() -> int:
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    many_layers()
    step_ratio(4, 1024, 256)
    step_ratio(100, 32, 64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
