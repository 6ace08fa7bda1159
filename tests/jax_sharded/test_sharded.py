"""Pruning sharded weights through the pytree API, on 4 simulated CPU devices.

This directory runs in a pytest process of its own, started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (``nox -s tests-jax`` does; it
also sets ``LOTTO_REQUIRE_4_DEVICES``, which turns a missing device into a failure).
The masks must equal those of the same values unsharded (and the core's, on NumPy),
stay sharded as the weights are, and be chosen without gathering a weight: only counts
and a handful of sample values may cross between devices or to the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import pytest

import lotto_core.search as search_module
from lotto_backends.jax import pytree
from lotto_core import ArrayLayer, LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, RandomPruneGroup

from .collectives import CONTROL, run_dumped, scan
from .shared import host_params, mesh, sharded_params, shardings

if len(jax.devices()) < 4:
    reason = (
        f"needs 4 devices, found {len(jax.devices())}: run this directory in its own process with "
        "XLA_FLAGS=--xla_force_host_platform_device_count=4 (nox -s tests-jax does)"
    )
    if os.environ.get("LOTTO_REQUIRE_4_DEVICES"):
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

GROUPS = [
    pytree.MagnitudeGroup("a/*", 0.3),
    pytree.LayerwiseMagnitudeGroup("b/*", 0.3),
    pytree.RandomGroup("c/*", 0.3, seed=2),
]


def _core_masks(rounds: int) -> list[dict[str, np.ndarray]]:
    """The core's masks on NumPy, one core group per pytree group, after each round."""
    values = host_params()
    layers = {g: ArrayLayer({"w": values[g]["kernel"].copy()}) for g in "abc"}
    core = [
        MagnitudePruneGroup([layers["a"]], 0.3),
        LayerwiseMagnitudePruneGroup([layers["b"]], 0.3),
        RandomPruneGroup([layers["c"]], 0.3, seed=2),
    ]
    out = []
    for _ in range(rounds):
        for group in core:
            group.prune()
        out.append({g: layers[g].params["w"].mask.copy() for g in "abc"})
    return out


def _kernel_masks(masks: Any) -> dict[str, np.ndarray]:
    return {g: np.asarray(masks[g]["kernel"]) for g in "abc"}


def _assert_sharded_like(tree: Any, expected: Any) -> None:
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(expected), strict=True):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (leaf.sharding, sharding)


def test_sharded_masks_equal_unsharded_and_the_core() -> None:
    m = mesh()
    params, plain = sharded_params(m), jax.device_put(host_params(), jax.devices()[0])
    assert len(params["b"]["kernel"].sharding.device_set) == 4
    assert len(plain["b"]["kernel"].sharding.device_set) == 1
    masks, plain_masks = pytree.init_masks(params), pytree.init_masks(plain)
    _assert_sharded_like(
        {g: {"kernel": masks[g]["kernel"]} for g in "abc"},
        {g: {"kernel": s["kernel"]} for g, s in shardings(m).items()},
    )
    for r, core in enumerate(_core_masks(3)):
        params, masks = pytree.prune(params, masks, GROUPS, round_index=r)
        plain, plain_masks = pytree.prune(plain, plain_masks, GROUPS, round_index=r)
        for g in "abc":
            np.testing.assert_array_equal(_kernel_masks(masks)[g], _kernel_masks(plain_masks)[g])
            np.testing.assert_array_equal(_kernel_masks(masks)[g], core[g])
        _assert_sharded_like(params, shardings(m))
        assert masks["b"]["bias"] is None
        _assert_sharded_like(
            {g: {"kernel": masks[g]["kernel"]} for g in "abc"},
            {g: {"kernel": s["kernel"]} for g, s in shardings(m).items()},
        )
    for leaf, ref in zip(jax.tree.leaves(params), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(ref))
    _assert_sharded_like(pytree.rewind(sharded_params(m), masks), shardings(m))


def test_ties_across_shards_go_in_c_order() -> None:
    # every kernel entry is 1.0: the cut takes the first entries in C order, which lie in
    # several shards of a column-sharded kernel
    m = mesh()
    ones = jax.device_put(jax.tree.map(np.ones_like, host_params()), shardings(m))
    masks = pytree.init_masks(ones)
    _, masks = pytree.prune(ones, masks, [pytree.MagnitudeGroup("b/kernel", 0.35)])
    want = np.ones(80, bool)
    want[:28] = False
    np.testing.assert_array_equal(np.asarray(masks["b"]["kernel"]).ravel(), want)


def test_only_counts_and_sample_values_reach_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way a JAX array is read into host memory is watched during a round."""
    m = mesh()
    params = sharded_params(m)
    masks = pytree.init_masks(params)
    jax.block_until_ready((params, masks))
    monkeypatch.setattr(search_module, "SAMPLE_SIZE", 16)
    reads: list[tuple[str, int]] = []
    cls = type(params["a"]["kernel"])
    for name in ("__array__", "__int__", "__float__", "__index__", "__bool__", "item", "tolist"):
        original = getattr(cls, name)

        def watched(self: Any, *args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            reads.append((_name, self.size))
            return _original(self, *args, **kw)

        monkeypatch.setattr(cls, name, watched)
    pytree.prune(params, masks, GROUPS, round_index=0)
    assert reads, "the watch saw nothing: it would miss a gather too"
    assert max(size for _, size in reads) <= 2 * 16, sorted(set(reads))  # a strided sample: about 16 per group


def test_no_collective_moves_a_weight(tmp_path: Path) -> None:
    """XLA's own compiled modules, from a fresh process that prunes (twice), reports,
    rewinds and trains a step with keep_pruned: counting kernels exchange one count per
    device, sampling kernels a few sample values; nothing moves a shard of a weight or
    a mask (every shard has 40 entries or more). The control, which flattens a
    column-sharded array, must show its gather, or the check proves nothing."""
    run_dumped(tmp_path)
    found = scan(tmp_path)
    assert any(c.module == f"jit_{CONTROL}" and c.elements == 64 for c in found), found
    limits = {"jit__sample": 32, "jit__quantiles": 32}  # the sample: at most 2 x _SAMPLE_SIZE (16)
    moved = [c for c in found if c.module != f"jit_{CONTROL}" and c.elements > limits.get(c.module, 4)]
    assert not moved
    assert {c.module for c in found} >= {"jit__count_upto", "jit__sample"}


def test_keep_pruned_keeps_shardings_and_zeros() -> None:
    m = mesh()
    params = sharded_params(m)
    masks = pytree.init_masks(params)
    params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.5)])
    tx = pytree.keep_pruned(optax.adamw(0.1, weight_decay=0.1))
    state = tx.init(params)

    @jax.jit
    def step(params: Any, state: Any, masks: Any) -> tuple[Any, Any]:
        grads = jax.grad(lambda p: sum((x**2).sum() + x.sum() for x in jax.tree.leaves(p)))(params)
        updates, state = tx.update(grads, state, params, masks=masks)
        return optax.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state, masks)
    _assert_sharded_like(params, shardings(m))
    for g in "abc":
        kernel, mask = np.asarray(params[g]["kernel"]), np.asarray(masks[g]["kernel"])
        assert (kernel[~mask] == 0).all()
        assert (kernel[mask] != 0).all()
