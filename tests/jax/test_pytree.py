"""The functional pytree API: the same masks as the core (a NumPy reference) on plain
dicts and on a Flax linen model, pure prune / rewind, the optax wrapper under jax.jit,
the report, and bad input. The JAX selection's own exactness is tested against the
core's in every path, with its constants shrunk."""

from __future__ import annotations

import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import pytree
from lotto_core import ArrayLayer, LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, RandomPruneGroup

CORE_GROUPS = {
    pytree.MagnitudeGroup: MagnitudePruneGroup,
    pytree.LayerwiseMagnitudeGroup: LayerwiseMagnitudePruneGroup,
    pytree.RandomGroup: RandomPruneGroup,
}


def host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


def core_rounds(values: list[np.ndarray], group: type, p: float, rounds: int, **kw: Any) -> list[list[np.ndarray]]:
    """The core's masks after each round, on NumPy ArrayLayers over ``values``."""
    layers = [ArrayLayer({"w": v.copy()}) for v in values]
    core = CORE_GROUPS[group](layers, p, **kw)
    out = []
    for _ in range(rounds):
        core.prune()
        out.append([layer.params["w"].mask.copy() for layer in layers])
    return out


def plain_params(seed: int = 0) -> dict[str, Any]:
    """A plain dict of arrays, with ties, zeros and a bias: a/kernel, b/bias, b/kernel."""
    rng = np.random.default_rng(seed)
    a = np.round(rng.standard_normal((6, 7)) * 4) / 4  # many ties
    a[0, :3] = 0.0
    b = rng.standard_normal((3, 4, 5))
    return {
        "a": {"kernel": jnp.asarray(a, jnp.float32)},
        "b": {"kernel": jnp.asarray(b, jnp.float32), "bias": jnp.ones(5)},
    }


@pytest.mark.parametrize(
    ("group", "kw"),
    [(pytree.MagnitudeGroup, {}), (pytree.LayerwiseMagnitudeGroup, {}), (pytree.RandomGroup, {"seed": 4})],
    ids=["magnitude", "layerwise", "random"],
)
def test_plain_dict_rounds_match_the_core(group: type, kw: dict[str, Any]) -> None:
    params = plain_params()
    kernels = [np.asarray(params["a"]["kernel"]), np.asarray(params["b"]["kernel"])]
    expected = core_rounds(kernels, group, 0.3, 3, **kw)
    masks = pytree.init_masks(params)
    assert masks["b"]["bias"] is None
    for r in range(3):
        params, masks = pytree.prune(params, masks, [group("*kernel", 0.3, **kw)], round_index=r)
        for got, want in zip([masks["a"]["kernel"], masks["b"]["kernel"]], expected[r], strict=True):
            np.testing.assert_array_equal(np.asarray(got), want)
    out = host(params)
    assert not out["a"]["kernel"][~np.asarray(masks["a"]["kernel"])].any()
    np.testing.assert_array_equal(out["b"]["bias"], np.ones(5))


def test_prune_is_pure_and_keeps_structure() -> None:
    params = plain_params()
    before = host(params)
    masks = pytree.init_masks(params)
    new_params, new_masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.5)])
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    assert jax.tree.structure(new_masks, is_leaf=lambda x: x is None) == jax.tree.structure(
        masks, is_leaf=lambda x: x is None
    )
    for a, b in zip(jax.tree.leaves(host(params)), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(bool(m.all()) for m in jax.tree.leaves(masks))
    assert new_params["b"]["bias"] is params["b"]["bias"]  # not in a group: the same array


def test_pruned_entries_come_back_zero_even_where_a_leaf_loses_nothing() -> None:
    # trained values under old masks need not be 0; prune returns them zeroed in every
    # grouped leaf, also one that this round leaves alone (its weights are all large)
    params = {"big": jnp.full((3, 4), 100.0), "small": jnp.arange(1.0, 13.0).reshape(3, 4)}
    masks = {"big": jnp.arange(12).reshape(3, 4) % 3 != 0, "small": jnp.ones((3, 4), bool)}
    new, new_masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*", 0.25)])
    assert (np.asarray(new_masks["big"]) == np.asarray(masks["big"])).all()
    np.testing.assert_array_equal(np.asarray(new["big"]), np.where(np.asarray(masks["big"]), 100.0, 0.0))
    assert int(new_masks["small"].sum()) == 12 - 5  # k = ceil(0.25 * 20): the five smallest


def test_groups_prune_their_own_leaves_at_their_own_rates() -> None:
    params = plain_params()
    masks = pytree.init_masks(params)
    groups = [pytree.MagnitudeGroup("a/*", 0.5), pytree.RandomGroup(re.compile(r"^b/kern"), 0.2, seed=1)]
    params, masks = pytree.prune(params, masks, groups)
    kept = pytree.report(masks)
    assert [(row.name, row.kept) for row in kept.parameters] == [("a/kernel", 21), ("b/kernel", 48)]


def test_a_predicate_selects_by_leaf() -> None:
    params = plain_params()
    masks = pytree.init_masks(params)
    big = pytree.MagnitudeGroup(lambda path, leaf: leaf.size > 50, 0.5)
    _, masks = pytree.prune(params, masks, [big])
    assert bool(masks["a"]["kernel"].all())
    assert int(masks["b"]["kernel"].sum()) == 30


class _CNN(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Dense(16)(x.reshape((x.shape[0], -1))))
        return nn.Dense(3)(x)


def _linen() -> tuple[_CNN, Any, jax.Array, jax.Array]:
    model = _CNN()
    x = jax.random.normal(jax.random.key(0), (32, 6, 6, 1))
    y = (x[:, 0, 0, 0] > 0).astype(jnp.int32) + (x[:, 3, 3, 0] > 0).astype(jnp.int32)
    return model, model.init(jax.random.key(1), x), x, y


def _loss(model: _CNN, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()


def test_linen_model_matches_the_core_and_still_runs() -> None:
    model, params, x, _ = _linen()
    assert pytree.paths(params) == [
        "params/Conv_0/bias",
        "params/Conv_0/kernel",
        "params/Dense_0/bias",
        "params/Dense_0/kernel",
        "params/Dense_1/bias",
        "params/Dense_1/kernel",
    ]
    masks = pytree.init_masks(params)
    assert [m is None for m in jax.tree.leaves(masks, is_leaf=lambda m: m is None)] == [True, False] * 3
    kernels = [np.asarray(params["params"][n]["kernel"]) for n in ("Conv_0", "Dense_0", "Dense_1")]
    expected = core_rounds(kernels, pytree.MagnitudeGroup, 0.2, 2)
    for r in range(2):
        params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*/kernel", 0.2)])
        for name, want in zip(("Conv_0", "Dense_0", "Dense_1"), expected[r], strict=True):
            np.testing.assert_array_equal(np.asarray(masks["params"][name]["kernel"]), want)
    report = pytree.report(masks, rounds=2)
    assert report.total == sum(k.size for k in kernels)
    assert report.kept == report.total - math.ceil(0.2 * report.total) - math.ceil(
        0.2 * (report.total - math.ceil(0.2 * report.total))
    )
    assert "params/Dense_0/kernel" in str(report)
    assert model.apply(params, x).shape == (32, 3)


OPTIMIZERS = {
    "sgd-momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
}


def _train(tx: optax.GradientTransformation, params: Any, masks: Any, steps: int, state: Any = None) -> Any:
    model, _, x, y = _linen()
    state = tx.init(params) if state is None else state

    @jax.jit
    def step(params: Any, state: Any, masks: Any) -> tuple[Any, Any]:
        grads = jax.grad(lambda p: _loss(model, p, x, y))(params)
        extra = {} if masks is None else {"masks": masks}
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state, masks)
    return params, state


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_keep_pruned_holds_pruned_entries_at_exactly_zero(name: str) -> None:
    model, params, x, y = _linen()
    masks = pytree.init_masks(params)
    params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.5)])
    start, loss0 = params, _loss(model, params, x, y)
    tx = pytree.keep_pruned(OPTIMIZERS[name]())
    params, state = _train(tx, params, masks, 25)
    # the optimizer never saw a gradient for a pruned entry: its first moment is 0 there
    moment = optax.tree_utils.tree_get(state, "trace" if name == "sgd-momentum" else "mu")
    for path, mask in jax.tree_util.tree_flatten_with_path(masks)[0]:
        assert (np.asarray(_at(moment, path))[~np.asarray(mask)] == 0).all()
    # a second round mid-training: new masks, same optimizer state
    params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.5)])
    params, state = _train(tx, params, masks, 25, state)
    for path, mask in jax.tree_util.tree_flatten_with_path(masks)[0]:
        value, mask = np.asarray(_at(params, path)), np.asarray(mask)
        assert (value[~mask] == 0.0).all(), jax.tree_util.keystr(path)
        assert (value[mask] != np.asarray(_at(start, path))[mask]).mean() > 0.5  # the kept ones train
    assert _loss(model, params, x, y) < loss0
    # without the wrapper the same training moves pruned weights: the check above can fail
    plain, _ = _train(OPTIMIZERS[name](), pytree.apply_masks(start, masks), None, 5)
    kernel, mask = np.asarray(plain["params"]["Dense_0"]["kernel"]), np.asarray(masks["params"]["Dense_0"]["kernel"])
    assert (kernel[~mask] != 0).any()


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key.key]
    return tree


def test_keep_pruned_through_nnx_optimizer() -> None:
    model = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
    masks = pytree.init_masks(nnx.as_pure(nnx.state(model, nnx.Param)))
    params, masks = pytree.prune(
        nnx.as_pure(nnx.state(model, nnx.Param)), masks, [pytree.MagnitudeGroup("kernel", 0.5)]
    )
    nnx.update(model, params)
    optimizer = nnx.Optimizer(model, pytree.keep_pruned(optax.adam(0.1)), wrt=nnx.Param)
    x = jnp.ones((2, 6))

    @nnx.jit
    def step(model: nnx.Linear, optimizer: nnx.Optimizer, masks: Any) -> None:
        grads = nnx.grad(lambda m: (m(x) ** 2).sum())(model)
        optimizer.update(model, grads, masks=masks)

    for _ in range(5):
        step(model, optimizer, masks)
    kernel, mask = np.asarray(model.kernel[...]), np.asarray(masks["kernel"])
    assert (kernel[~mask] == 0).all()
    assert (kernel[mask] != np.asarray(params["kernel"])[mask]).all()


def test_rewind_restores_everything_masked() -> None:
    _, initial, _, _ = _linen()
    masks = pytree.init_masks(initial)
    trained = jax.tree.map(lambda a: a * 3 + 1, initial)
    _, masks = pytree.prune(trained, masks, [pytree.MagnitudeGroup("*kernel", 0.4)])
    rewound = pytree.rewind(initial, masks)
    assert jax.tree.structure(rewound) == jax.tree.structure(initial)
    for path, value in jax.tree_util.tree_flatten_with_path(rewound)[0]:
        assert isinstance(value, jax.Array)
        assert value.shape == _at(initial, path).shape
        mask = _at(masks, path)
        want = np.asarray(_at(initial, path))
        if mask is None:
            np.testing.assert_array_equal(np.asarray(value), want)  # biases too
        else:
            np.testing.assert_array_equal(np.asarray(value), np.where(np.asarray(mask), want, 0))
    jitted = jax.jit(pytree.apply_masks)(initial, masks)
    assert jax.tree.structure(jitted) == jax.tree.structure(initial)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(rewound), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_outputs_stay_on_a_non_default_device() -> None:
    device = jax.devices()[-1]
    params = jax.device_put(plain_params(), device)
    masks = pytree.init_masks(params)
    params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.3)])
    for leaf in jax.tree.leaves([params, masks, pytree.rewind(params, masks)]):
        assert leaf.devices() == {device}


def test_random_group_seeds_and_rounds_differ() -> None:
    params = plain_params()
    masks = pytree.init_masks(params)

    def kernel_mask(seed: int, r: int) -> np.ndarray:
        return np.asarray(
            pytree.prune(params, masks, [pytree.RandomGroup("*kernel", 0.3, seed=seed)], round_index=r)[1]["b"][
                "kernel"
            ]
        )

    np.testing.assert_array_equal(kernel_mask(1, 0), kernel_mask(1, 0))
    assert (kernel_mask(1, 0) != kernel_mask(2, 0)).any()
    assert (kernel_mask(1, 0) != kernel_mask(1, 1)).any()


# --- bad input ----------------------------------------------------------------------------


def test_bad_groups() -> None:
    params = plain_params()
    masks = pytree.init_masks(params)
    with pytest.raises(ValueError, match=r"groups\[0\] = MagnitudeGroup\('\*kernal', p=0.2\) selects no leaf"):
        pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernal", 0.2)])
    with pytest.raises(ValueError, match=r"matches only leaves without a mask, \['b/bias'\]"):
        pytree.prune(params, masks, [pytree.MagnitudeGroup("*bias", 0.2)])
    with pytest.raises(ValueError, match=r"'b/kernel' is selected by groups\[0\] and groups\[1\]"):
        pytree.prune(params, masks, [pytree.MagnitudeGroup("*", 0.2), pytree.RandomGroup("b/*", 0.2)])
    with pytest.raises(TypeError, match="wrap a single group in a list"):
        pytree.prune(params, masks, pytree.MagnitudeGroup("*", 0.2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups must not be empty"):
        pytree.prune(params, masks, [])
    with pytest.raises(TypeError, match=r"groups\[0\] is a MagnitudePruneGroup, not a pytree group"):
        pytree.prune(params, masks, [MagnitudePruneGroup([ArrayLayer({"w": np.ones(3)})], 0.2)])  # type: ignore[list-item]
    for p in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            pytree.MagnitudeGroup("*", p)
    with pytest.raises(TypeError, match="p must be a real number"):
        pytree.LayerwiseMagnitudeGroup("*", "0.2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="select must be a glob string"):
        pytree.MagnitudeGroup(3, 0.2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        pytree.RandomGroup("*", 0.2, seed=-1)
    with pytest.raises(TypeError, match="round_index must be a non-negative int"):
        pytree.prune(params, masks, [pytree.MagnitudeGroup("*", 0.2)], round_index=1.0)  # type: ignore[arg-type]


def test_bad_masks() -> None:
    params = plain_params()
    masks = pytree.init_masks(params)
    group = [pytree.MagnitudeGroup("*kernel", 0.2)]
    missing = {"a": masks["a"], "b": {"kernel": masks["b"]["kernel"]}}
    with pytest.raises(ValueError, match="masks must have the structure of the parameters"):
        pytree.prune(params, missing, group)
    wrong_shape = {**masks, "a": {"kernel": jnp.ones((7, 6), bool)}}
    with pytest.raises(ValueError, match=r"masks\['a/kernel'\] has shape \(7, 6\), the parameter has \(6, 7\)"):
        pytree.prune(params, wrong_shape, group)
    wrong_dtype = {**masks, "a": {"kernel": jnp.ones((6, 7), jnp.float32)}}
    with pytest.raises(TypeError, match=r"masks\['a/kernel'\] must be boolean, got dtype float32"):
        pytree.rewind(params, wrong_dtype)
    not_array = {**masks, "a": {"kernel": np.ones((6, 7), bool)}}
    with pytest.raises(TypeError, match=r"masks\['a/kernel'\] must be a JAX boolean array or None, got ndarray"):
        pytree.apply_masks(params, not_array)
    on_int = {"i": jnp.ones(3, bool)}
    with pytest.raises(TypeError, match=r"masks\['i'\] is a mask for a leaf that cannot have one: a 1-d int32 array"):
        pytree.apply_masks({"i": jnp.arange(3)}, on_int)
    if len(jax.devices()) > 1:
        elsewhere = {**masks, "a": {"kernel": jax.device_put(masks["a"]["kernel"], jax.devices()[1])}}
        with pytest.raises(ValueError, match=r"masks\['a/kernel'\] is on devices"):
            pytree.prune(params, elsewhere, group)
    with pytest.raises(TypeError, match="must be a boolean JAX array or None"):
        pytree.report({"a": np.ones(3, bool)})


def test_bad_init_and_traced_prune() -> None:
    params = {"w": jnp.ones((2, 3)), "step": jnp.asarray(3)}
    with pytest.raises(ValueError, match=r"no leaf for prunable='\*kernel'; its leaves are \['step', 'w'\]"):
        pytree.init_masks(params, prunable="*kernel")
    with pytest.raises(TypeError, match=r"prunable picks 'step', a 0-d int32 array"):
        pytree.init_masks(params, prunable="*")
    with pytest.raises(ValueError, match="no floating leaf with two or more dimensions"):
        pytree.init_masks({"b": jnp.ones(3)})
    with pytest.raises(TypeError, match="prunable must be a glob string"):
        pytree.init_masks(params, prunable=["w"])  # type: ignore[arg-type]
    masks = pytree.init_masks(params)
    assert masks["step"] is None
    with pytest.raises(TypeError, match=r"params\['w'\] is traced: prune runs outside jax.jit"):
        jax.jit(lambda p, m: pytree.prune(p, m, [pytree.MagnitudeGroup("w", 0.5)]))(params, masks)
    tx = pytree.keep_pruned(optax.sgd(0.1))
    with pytest.raises(TypeError, match="needs masks="):
        tx.update({"w": jnp.ones((2, 3)), "step": jnp.asarray(0.0)}, tx.init(params), params)


def test_nan_scores_too_few_to_prune() -> None:
    params = {"w": jnp.asarray([[np.nan, np.nan, np.nan, 1.0]])}
    masks = pytree.init_masks(params)
    with pytest.raises(ValueError, match="only 1 kept scores are comparable"):
        pytree.prune(params, masks, [pytree.MagnitudeGroup("w", 0.5)])
