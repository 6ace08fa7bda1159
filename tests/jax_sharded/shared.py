"""Sharded parameters for the tests: a 2x2 mesh of CPU devices and a pytree whose
leaves are sharded along different axes (and one replicated along a mesh axis)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# leaf: (shape, partition over the ("x", "y") mesh)
LAYOUT: dict[str, dict[str, tuple[tuple[int, ...], P]]] = {
    "a": {"kernel": ((16, 12), P("x", "y"))},
    "b": {"kernel": ((10, 8), P(None, "x")), "bias": ((8,), P("x"))},
    "c": {"kernel": ((4, 6, 8), P("y", None, "x"))},
}


def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("x", "y"))


def host_params(seed: int = 0) -> dict[str, Any]:
    """NumPy values with many ties (quarters), so that tie order across shards matters."""
    rng = np.random.default_rng(seed)
    return {
        group: {
            name: (np.round(rng.standard_normal(shape) * 4) / 4).astype(np.float32)
            for name, (shape, _) in leaves.items()
        }
        for group, leaves in LAYOUT.items()
    }


def shardings(m: Mesh) -> dict[str, Any]:
    return {g: {n: NamedSharding(m, spec) for n, (_, spec) in leaves.items()} for g, leaves in LAYOUT.items()}


def sharded_params(m: Mesh, seed: int = 0) -> dict[str, Any]:
    return jax.device_put(host_params(seed), shardings(m))
