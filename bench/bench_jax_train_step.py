"""Training-step cost of prunable NNX layers (issue 4).

An MLP of 8 prunable 2048x2048 layers at 50% sparsity, batch 256, one jitted step =
``nnx.value_and_grad`` and an optax Adam update through ``nnx.Optimizer``, against the
same MLP of plain ``nnx.Linear`` (the same masked weights) and against a naive
``kernel * mask`` in the call, in the same run. Target: prunable / plain at most 1.03.
Steps alternate between the models and the median step time of each is compared.

Run: ``nox -s bench`` or ``python bench/bench_jax_train_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lotto_backends.jax import MagnitudePruneGroup, PrunableLinear, Pruner


class NaiveMaskedLinear(nnx.Linear):
    """``kernel * mask`` in every call: the baseline the issue names."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.mask = nnx.Variable(jnp.ones(self.kernel.shape, self.kernel.dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ (self.kernel.get_value() * self.mask.get_value())
        return y + self.bias.get_value()


class MLP(nnx.Module):
    def __init__(self, layer: type[nnx.Linear], depth: int, width: int) -> None:
        rngs = nnx.Rngs(0)
        self.layers = nnx.List([layer(width, width, rngs=rngs) for _ in range(depth)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
        return self.layers[-1](x)


def train_step(model: MLP) -> Callable[[], jax.Array]:
    optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, target: jax.Array) -> jax.Array:
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    x = jax.random.normal(jax.random.key(1), (ARGS.batch, ARGS.width))
    target = jax.random.normal(jax.random.key(2), (ARGS.batch, ARGS.width))
    return lambda: step(model, optimizer, x, target).block_until_ready()


def main() -> int:
    prunable = MLP(PrunableLinear, ARGS.depth, ARGS.width)
    Pruner([MagnitudePruneGroup(list(prunable.layers), 0.5)]).prune()
    plain = MLP(nnx.Linear, ARGS.depth, ARGS.width)
    naive = MLP(NaiveMaskedLinear, ARGS.depth, ARGS.width)
    for ours, other, masked in zip(prunable.layers, plain.layers, naive.layers, strict=True):
        other.kernel.set_value(ours.kernel.get_value())
        masked.kernel.set_value(ours.kernel.get_value())
        masked.mask.set_value(ours.kernel_mask.get_value().astype(jnp.float32))
    steps = {
        "plain nnx.Linear": train_step(plain),
        "lotto PrunableLinear": train_step(prunable),
        "naive kernel * mask": train_step(naive),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # compile and warm up
        step()
        step()
    for _ in range(ARGS.steps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    still_zero = all(bool((m.kernel.get_value()[~m.kernel_mask.get_value()] == 0).all()) for m in prunable.layers)

    print(
        f"MLP of {ARGS.depth} layers {ARGS.width}x{ARGS.width} at 50% sparsity, batch {ARGS.batch}, optax Adam, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, median of {ARGS.steps} steps"
    )
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in median.items():
        print(f"{name:22s} {t * 1e3:8.1f} ms/step   ratio to plain {t / median['plain nnx.Linear']:.3f}")
    ratio = median["lotto PrunableLinear"] / median["plain nnx.Linear"]
    print(f"lotto / plain:  {ratio:.3f}   (target <= 1.03); pruned weights still exactly zero: {still_zero}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    ARGS = parser.parse_args()
    sys.exit(main())
