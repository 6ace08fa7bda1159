"""Global magnitude pruning of JAX arrays: 8 weights of 2048x2048 (33.5M values) at p=0.2 on CPU.

The core's ``MagnitudePruneGroup`` over ``ArrayLayer``s of JAX arrays and over the NNX
``PrunableLinear`` layers, and the pytree API (``lotto_backends.jax.pytree.prune``),
against one jitted elementwise pass over the same values (``jnp.abs(w) > t``, all 8
arrays in one call) measured in the same run. Target (issue 14): the core's prune within
7x that pass. The same search through the core's Array API passes (one eager op at a
time, with ``nonzero`` band extraction) and through the JAX backend's XLA passes (the
path of sharded arrays and accelerators, forced here) is timed too.

A prune also writes new float32 weights with the pruned entries zeroed (JAX arrays are
immutable), so a second reference is printed: one jitted pass that writes new float32
arrays (``jnp.where(m, w, 0)``). On the CPU that write alone costs two to six times
the boolean pass, much of it page faults on the fresh output buffers.

The core runs the JAX backend for JAX arrays (same masks): for arrays that live whole
on one CPU device (these) the host kernels of
``lotto_backends._host`` run (numba loops over zero-copy NumPy views; the new masks and
weights are fresh buffers that JAX adopts without a copy), for sharded arrays and
accelerators the jit-compiled counting passes. A prune writes 167 MB of new arrays
(weights and masks; a lone group's new weights in the pass that writes its masks) into
buffers recycled from the outputs of earlier prunes once JAX has freed them
(``lotto_backends._host.buffers``), as in a pruning loop, where training replaces the
pruned weights; only the first prune (the untimed first call) takes fresh pages, which
the operating system zeroes one by one. The float32 write pass allocates through XLA.

Times are the best of ``--repeat`` runs after one untimed run that compiles (the pass,
the floor of every ratio: the best of three times as many).

Run: ``nox -s bench`` or ``python bench/bench_jax_global_prune.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _measure import best_time
from flax import nnx

import lotto_core.backend as backend_module
import lotto_core.groups as groups_module
from lotto_backends.jax import PrunableLinear, pytree
from lotto_backends.jax._backend import JaxBackend
from lotto_core import ArrayLayer, MagnitudePruneGroup
from lotto_core.backend import ArrayAPIBackend, Backend


def make_weights(layers: int, size: int) -> list[jax.Array]:
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.standard_normal((size, size), dtype=np.float32)) for _ in range(layers)]


def array_layer_method(weights: list[jax.Array], p: float) -> tuple[Callable[[], None], Callable[[], None]]:
    """(setup, prune) for the core's group over fresh ArrayLayers of the weights."""
    layers: list[ArrayLayer] = []

    def setup() -> None:
        layers.clear()
        layers.extend(ArrayLayer({"weight": w}) for w in weights)

    def prune() -> None:
        MagnitudePruneGroup(layers, p).prune()
        jax.block_until_ready([layer["weight"] for layer in layers])

    return setup, prune


def nnx_method(weights: list[jax.Array], p: float) -> tuple[Callable[[], None], Callable[[], None]]:
    """(setup, prune) for the core's group over NNX PrunableLinear layers of the weights."""
    layers = [PrunableLinear(*w.shape, use_bias=False, rngs=nnx.Rngs(0)) for w in weights]
    ones = [layer.kernel_mask.get_value() for layer in layers]

    def setup() -> None:
        for layer, w, mask in zip(layers, weights, ones, strict=True):
            layer.kernel.set_value(w)
            layer.kernel_mask.set_value(mask)

    def prune() -> None:
        MagnitudePruneGroup(layers, p).prune()
        jax.block_until_ready([layer.kernel.get_value() for layer in layers])

    return setup, prune


def through(backend: Backend, method: Callable[[], None]) -> Callable[[], None]:
    """``method`` with every group planned and written by ``backend``."""

    def run() -> None:
        chosen = backend_module.backend_for
        for module in (backend_module, groups_module):
            module.backend_for = lambda array: backend  # type: ignore[attr-defined]
        try:
            method()
        finally:
            for module in (backend_module, groups_module):
                module.backend_for = chosen  # type: ignore[attr-defined]

    return run


def pytree_method(weights: list[jax.Array], p: float) -> tuple[Callable[[], None], Callable[[], None]]:
    """(setup, prune) for pytree.prune over a dict of the weights."""
    params = {f"layer{i}": {"kernel": w} for i, w in enumerate(weights)}
    masks = pytree.init_masks(params)
    groups = [pytree.MagnitudeGroup("*kernel", p)]

    def prune() -> None:
        jax.block_until_ready(pytree.prune(params, masks, groups))

    return lambda: None, prune


def timed(setup: Callable[[], None], fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(best time, first-call time including compilation)."""
    setup()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    return best_time(fn, repeat=repeat, setup=setup), first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--p", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    weights = make_weights(args.layers, args.size)
    masks = [jnp.abs(w) > 0.25 for w in weights]
    print(
        f"{args.layers} weights of {args.size}x{args.size} float32 ({4 * sum(w.size for w in weights) / 1e6:.0f} MB), "
        f"p={args.p}, jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"best of {args.repeat}"
    )
    bool_pass = jax.jit(lambda ws, t: [jnp.abs(w) > t for w in ws])
    write_pass = jax.jit(lambda ws, ms: [jnp.where(m, w, 0) for w, m in zip(ws, ms, strict=True)])
    # the pass is the floor of every ratio: its best time is taken over three times as many runs
    t_pass, _ = timed(lambda: None, lambda: jax.block_until_ready(bool_pass(weights, 0.5)), 3 * args.repeat)
    t_write, _ = timed(lambda: None, lambda: jax.block_until_ready(write_pass(weights, masks)), args.repeat)
    setup, prune = array_layer_method(weights, args.p)
    t_portable, c_portable = timed(setup, through(ArrayAPIBackend(), prune), max(1, args.repeat // 3))
    t_xla, c_xla = timed(setup, through(JaxBackend(host=False), prune), args.repeat)
    t_core, c_core = timed(setup, prune, args.repeat)
    t_nnx, c_nnx = timed(*nnx_method(weights, args.p), args.repeat)
    t_tree, c_tree = timed(*pytree_method(weights, args.p), args.repeat)

    def row(label: str, t: float, first: float | None = None) -> None:
        extra = f"   ({t / t_pass:5.1f}x the pass; first call {first:.2f} s)" if first is not None else ""
        print(f"{label:<52}{t * 1e3:8.1f} ms{extra}")

    row("elementwise pass (jnp.abs(w) > t, one jit):", t_pass)
    row("pass writing float32 (jnp.where(m, w, 0), one jit):", t_write)
    row("core selection, Array API passes:", t_portable, c_portable)
    row("core selection, XLA passes (sharded/GPU path):", t_xla, c_xla)
    row("core MagnitudePruneGroup over ArrayLayer:", t_core, c_core)
    row("core MagnitudePruneGroup over NNX PrunableLinear:", t_nnx, c_nnx)
    row("pytree.prune:", t_tree, c_tree)
    for label, t in (("ArrayLayer", t_core), ("NNX PrunableLinear", t_nnx), ("pytree.prune", t_tree)):
        verdict = "met" if t / t_pass <= 7 else "missed"
        print(f"{label + ' / elementwise pass:':<46}{t / t_pass:6.1f}x   (target <= 7x: {verdict})")
    print(f"{'float32 write pass / elementwise pass:':<46}{t_write / t_pass:6.1f}x   (part of any prune's cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
