"""Find the collectives that XLA compiled: run a script in a fresh process on 4 CPU
devices with ``--xla_dump_to``, then read every optimized HLO module it dumped.

Run as a script, it prunes sharded parameters through the pytree API (and trains them
one step with ``keep_pruned``), then compiles ``_gather_control``, which flattens a
column-sharded array and so must gather it: the control proves that a gather shows up.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROL = "_gather_control"
_OPS = "all-gather|all-to-all|collective-permute|all-reduce|reduce-scatter|ragged-all-to-all"
_OP = re.compile(rf"=\s*(?P<shape>\S+)\s+(?P<op>{_OPS})(?:-start)?\(")
_DIMS = re.compile(r"\[([0-9,]*)\]")


@dataclass(frozen=True)
class Collective:
    """One collective of a compiled module: its op and the elements of its result."""

    module: str
    op: str
    elements: int


def scan(dump: Path) -> list[Collective]:
    """Every collective in the optimized HLO modules under ``dump``."""
    found = []
    for path in sorted(dump.glob("*after_optimizations.txt")):
        module = path.name.split(".")[1]
        for line in path.read_text().splitlines():
            m = _OP.search(line)
            if m:
                sizes = [math.prod(int(d) for d in dims.split(",") if d) for dims in _DIMS.findall(m["shape"])]
                found.append(Collective(module, m["op"], max(sizes, default=1)))
    return found


def run_dumped(dump: Path) -> None:
    """Run this file as a script with XLA dumping every compiled module into ``dump``."""
    flags = f"--xla_force_host_platform_device_count=4 --xla_dump_to={dump} --xla_dump_hlo_as_text"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, __file__], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"the dumped run failed:\n{out.stdout}\n{out.stderr}")


def _main() -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import lotto_core.search as search
    from lotto_backends.jax import pytree
    from tests.jax_sharded.shared import mesh, sharded_params

    search.SAMPLE_SIZE = 16  # the sample is gathered: keep it far smaller than any leaf
    m = mesh()
    params = sharded_params(m)
    masks = pytree.init_masks(params)
    groups = [
        pytree.MagnitudeGroup("a/*", 0.3),
        pytree.LayerwiseMagnitudeGroup("b/*", 0.3),
        pytree.RandomGroup("c/*", 0.3),
    ]
    for r in range(2):
        params, masks = pytree.prune(params, masks, groups, round_index=r)
    pytree.report(masks)
    tx = pytree.keep_pruned(optax.adamw(0.1))
    step = jax.jit(lambda p, s, g, mk: tx.update(g, s, p, masks=mk))
    jax.block_until_ready(step(params, tx.init(params), params, masks))
    jax.block_until_ready(pytree.rewind(params, masks))

    x = jax.device_put(jnp.ones((8, 8)), NamedSharding(m, P(None, "x")))
    jax.block_until_ready(jax.jit(_gather_control)(x))


def _gather_control(x: Any) -> Any:
    """Flattening a column-sharded array moves its columns between devices."""
    import jax.numpy as jnp

    return jnp.cumsum(jnp.reshape(x, (-1,)))


if __name__ == "__main__":
    _main()
