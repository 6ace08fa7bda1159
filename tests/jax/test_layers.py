"""The prunable NNX layers: same constructor, masks as non-trainable state, masked calls,
and NNX's transforms."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import (
    PRUNABLE_TYPES,
    MagnitudePruneGroup,
    Mask,
    PrunableLinear,
    PrunableLSTMCell,
    PrunableModule,
    Pruner,
    RewindPoint,
    make_prunable,
)

from .cases import CASES, Case, copy_parameters, scramble

ALL = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


def pruned(case: Case, p: float = 0.5) -> PrunableModule:
    layer = case.build(PRUNABLE_TYPES[case.base])
    scramble(layer)
    Pruner([MagnitudePruneGroup([layer], p)]).prune()
    return layer


def test_every_issue_layer_has_a_twin() -> None:
    names = {cls.__name__ for cls in PRUNABLE_TYPES.values()}
    wanted = "Linear LinearGeneral Einsum Conv ConvTranspose Embed MultiHeadAttention LSTMCell OptimizedLSTMCell"
    wanted += " GRUCell SimpleCell BatchNorm LayerNorm RMSNorm GroupNorm InstanceNorm"
    assert names == {"Prunable" + n for n in wanted.split()}
    assert {case.base for case in CASES} == set(PRUNABLE_TYPES)


@pytest.mark.parametrize(("base", "cls"), PRUNABLE_TYPES.items(), ids=lambda x: x.__name__)
def test_same_signature_and_a_subclass(base: type[nnx.Module], cls: type[nnx.Module]) -> None:
    expected = inspect.signature(base.__init__)  # NNX's metaclass shows (*args, **kwargs) for the class
    assert "rngs" in expected.parameters
    assert inspect.signature(cls.__init__) == expected
    assert list(inspect.signature(cls).parameters) == list(expected.parameters)[1:]
    assert issubclass(cls, base)
    assert issubclass(cls, PrunableModule)


@ALL
def test_fresh_layer_computes_like_its_base(case: Case) -> None:
    plain, prunable = case.build(), case.build(PRUNABLE_TYPES[case.base])
    args = case.inputs(plain)
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(prunable(*args))[0]), jax.tree.leaves(plain(*args))[0])


@ALL
def test_wrapping_a_built_layer_shares_its_variables(case: Case) -> None:
    built = case.build()
    twin = PRUNABLE_TYPES[case.base](built)
    assert isinstance(twin, case.base)
    for path, handle in twin.parameter_handles().items():
        assert handle.variable is dict(nnx.iter_graph(built))[tuple(_key(k) for k in path.split("."))]
    args = case.inputs(built)
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(twin(*args))[0]), jax.tree.leaves(built(*args))[0])


def _key(part: str) -> str | int:
    return int(part) if part.isdigit() else part


@ALL
def test_pruned_call_equals_the_masked_base_layer(case: Case) -> None:
    layer = pruned(case)
    handles = layer.parameter_handles()
    assert any(h.get_mask() is not None for h in handles.values())
    plain = case.build()
    copy_parameters(layer, plain)
    for handle in handles.values():
        mask = handle.get_mask()
        if mask is not None:
            assert not bool(mask.all())
            assert bool((handle.get_value()[~mask] == 0).all())
    args = case.inputs(plain)
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(layer(*args))[0]), jax.tree.leaves(plain(*args))[0])


@ALL
def test_gradients_of_pruned_weights_are_zero(case: Case) -> None:
    layer = pruned(case)
    plain = case.build()
    copy_parameters(layer, plain)
    args = case.inputs(plain)
    if case.base is nnx.Embed:
        args = (args[0],)

    def loss(model: nnx.Module) -> jax.Array:
        return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(model(*args)))

    grads, plain_grads = nnx.grad(loss)(layer), nnx.grad(loss)(plain)
    flat, plain_flat = dict(nnx.to_flat_state(grads)), dict(nnx.to_flat_state(plain_grads))
    for path, handle in layer.parameter_handles().items():
        key = tuple(_key(k) for k in path.split("."))
        g, expected = flat[key].get_value(), plain_flat[key].get_value()
        mask = handle.get_mask()
        if mask is None:
            np.testing.assert_allclose(g, expected, rtol=1e-6)
        else:
            assert bool((g[~mask] == 0).all())
            np.testing.assert_allclose(g[mask], expected[mask], rtol=1e-5, atol=1e-6)


def test_masks_and_rewind_points_are_not_parameters() -> None:
    layer = PrunableLinear(4, 3, rngs=nnx.Rngs(0))
    assert isinstance(layer.kernel_mask, Mask)
    assert layer.kernel_mask.get_value().dtype == jnp.bool_
    assert isinstance(layer.kernel_rewind, RewindPoint)
    assert isinstance(layer.bias_rewind, RewindPoint)
    assert not hasattr(layer, "bias_mask")
    params = nnx.state(layer, nnx.Param)
    assert set(dict(nnx.to_flat_state(params))) == {("kernel",), ("bias",)}
    optimizer = nnx.Optimizer(layer, optax.adam(1e-3), wrt=nnx.Param)
    leaves = jax.tree.leaves(nnx.state(optimizer.opt_state))
    assert all(leaf.dtype != jnp.bool_ for leaf in leaves)


def test_split_merge_and_state_round_trip_the_masks() -> None:
    layer = PrunableLSTMCell(3, 4, rngs=nnx.Rngs(0))
    scramble(layer)
    Pruner([MagnitudePruneGroup([layer], 0.5)]).prune()
    graphdef, state = nnx.split(layer)
    twin = nnx.merge(graphdef, state)
    assert type(twin) is PrunableLSTMCell
    for path, handle in twin.parameter_handles().items():
        original = layer.parameter_handles()[path]
        np.testing.assert_array_equal(handle.get_value(), original.get_value())
        if original.get_mask() is not None:
            np.testing.assert_array_equal(handle.get_mask(), original.get_mask())
    masks = nnx.state(layer, Mask)
    assert len(jax.tree.leaves(masks)) == 8
    fresh = PrunableLSTMCell(3, 4, rngs=nnx.Rngs(1))
    nnx.update(fresh, nnx.state(layer))
    np.testing.assert_array_equal(fresh.ii.kernel_mask.get_value(), layer.ii.kernel_mask.get_value())
    # and the core reads the restored state the same way
    report = Pruner([MagnitudePruneGroup([fresh], 0.5)]).report()
    assert report.parameters == Pruner([MagnitudePruneGroup([layer], 0.5)]).report().parameters
    assert report.kept < report.total


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.List([nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)])
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.head = self.hidden[1]  # one layer reached along two paths
        self.out = nnx.Sequential(nnx.Linear(8, 3, rngs=rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return self.out(self.norm(x))


def test_make_prunable_converts_every_supported_layer_in_place() -> None:
    model = _MLP(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 6))
    before = model(x)
    kernel = model.hidden[0].kernel
    assert make_prunable(model) is model
    assert type(model.hidden[0]).__name__ == "PrunableLinear"
    assert model.hidden[0].kernel is kernel
    assert model.head is model.hidden[1]
    assert isinstance(model.head, PrunableModule)
    assert type(model.norm).__name__ == "PrunableLayerNorm"
    assert type(model.out.layers[0]).__name__ == "PrunableLinear"
    np.testing.assert_array_equal(model(x), before)
    converted = model.hidden[0]
    assert make_prunable(model).hidden[0] is converted  # already prunable: left alone


def test_make_prunable_leaves_the_insides_of_prunable_layers_alone() -> None:
    model = nnx.Sequential(PrunableLSTMCell(3, 4, rngs=nnx.Rngs(0)), nnx.Linear(4, 2, rngs=nnx.Rngs(1)))
    make_prunable(model)
    assert type(model.layers[0].ii) is nnx.Linear  # the cell's own projections, masked by the cell
    assert type(model.layers[1]).__name__ == "PrunableLinear"
    assert make_prunable(model.layers[0]) is model.layers[0]


def test_make_prunable_of_a_supported_layer_returns_its_twin() -> None:
    layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    twin = make_prunable(layer)
    assert isinstance(twin, PrunableLinear)
    assert twin.kernel is layer.kernel


def test_make_prunable_rejects_what_is_not_an_nnx_module() -> None:
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        make_prunable({"kernel": jnp.ones((2, 2))})  # type: ignore[arg-type]


def test_set_mask_on_a_parameter_without_one_is_refused() -> None:
    layer = PrunableLinear(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="'bias' of PrunableLinear is not prunable"):
        layer.parameter_handles()["bias"].set_mask(jnp.ones((2,), bool))


def _pruned_linear() -> PrunableLinear:
    layer = PrunableLinear(6, 5, rngs=nnx.Rngs(0))
    Pruner([MagnitudePruneGroup([layer], 0.6)]).prune()
    return layer


def test_under_jit_vmap_and_scan() -> None:
    layer = _pruned_linear()
    plain = nnx.Linear(6, 5, rngs=nnx.Rngs(0))
    copy_parameters(layer, plain)
    xs = jax.random.normal(jax.random.key(3), (4, 2, 6))
    expected = jax.vmap(plain)(xs)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(layer, xs[0]), expected[0], rtol=1e-6)
    np.testing.assert_allclose(nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(layer, xs), expected, rtol=1e-6)

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def scanned(m: PrunableLinear, x: jax.Array) -> tuple[PrunableLinear, jax.Array]:
        return m, m(x)

    _, ys = scanned(layer, xs)
    np.testing.assert_allclose(ys, expected, rtol=1e-6)


@pytest.mark.parametrize("cell", [nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell, nnx.SimpleCell])
def test_cells_inside_nnx_rnn(cell: type[nnx.Module]) -> None:
    prunable = PRUNABLE_TYPES[cell](3, 4, rngs=nnx.Rngs(0))
    scramble(prunable)
    Pruner([MagnitudePruneGroup([prunable], 0.5)]).prune()
    plain = cell(3, 4, rngs=nnx.Rngs(0))
    copy_parameters(prunable, plain)
    xs = jax.random.normal(jax.random.key(2), (2, 6, 3))
    rnn, plain_rnn = nnx.RNN(prunable), nnx.RNN(plain)
    np.testing.assert_allclose(rnn(xs), plain_rnn(xs), rtol=1e-6)
    grads = nnx.grad(lambda r: jnp.sum(r(xs) ** 2))(rnn)
    for path, handle in prunable.parameter_handles().items():
        mask = handle.get_mask()
        if mask is not None:
            g = dict(nnx.to_flat_state(grads))[("cell", *(_key(k) for k in path.split(".")))].get_value()
            assert bool((g[~mask] == 0).all())
            assert bool((g[mask] != 0).any())
