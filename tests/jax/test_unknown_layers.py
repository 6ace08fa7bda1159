"""Layers the JAX adapter does not know: ``make_prunable`` never leaves one with weights
dense without a word; subclasses of supported layers and registered types get twins;
``include``/``exclude`` pick what is converted."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lotto_backends.jax import (
    MagnitudePruneGroup,
    Optimizer,
    PrunableLinear,
    PrunableModule,
    Pruner,
    dense_layers,
    make_prunable,
    register_prunable,
)


class _Gated(nnx.Module):
    """A layer of its own: a weight matrix, a gate vector (not a weight: 1-D)."""

    def __init__(self, n: int, rngs: nnx.Rngs) -> None:
        self.w = nnx.Param(jax.random.normal(rngs.params(), (n, n)))
        self.gate = nnx.Param(jnp.ones(n))

    def __call__(self, x: jax.Array) -> jax.Array:
        return (x @ self.w[...]) * self.gate[...]


class _ScaledLinear(nnx.Linear):
    """A subclass of a supported layer with a call of its own."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return 2.0 * super().__call__(x)


class _OnlyVectors(nnx.Module):
    def __init__(self) -> None:
        self.token = nnx.Param(jnp.zeros(4))


class _Net(nnx.Module):
    def __init__(self, gated: type[nnx.Module] = _Gated) -> None:
        rngs = nnx.Rngs(0)
        self.blocks = nnx.List([gated(4, rngs), _ScaledLinear(4, 4, rngs=rngs)])
        self.extra = nnx.Dict({"vectors": _OnlyVectors()})
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = nnx.relu(block(x))
        return self.head(x)


def _converted(model: nnx.Module, **kwargs: object) -> tuple[nnx.Module, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = make_prunable(model, **kwargs)  # type: ignore[arg-type]
    return made, [str(w.message) for w in caught]


def test_make_prunable_names_each_module_it_leaves_dense():
    model, said = _converted(_Net())
    assert len(said) == 1
    assert "left 1 module(s) with weights dense: blocks.0: unknown type _Gated (weights w)" in said[0]
    assert "register_prunable" in said[0]
    assert "exclude" in said[0]
    assert dense_layers(model) == {"blocks.0": "unknown type _Gated (weights w)"}  # not the 1-D token
    assert isinstance(model.head, PrunableLinear)
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module, got dict"):
        dense_layers({"w": jnp.ones((2, 2))})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exclude", [_Gated, "blocks.0", "blocks.*", lambda path, module: isinstance(module, _Gated)], ids=str
)
def test_an_excluded_module_stays_dense_without_a_warning(exclude):
    model, said = _converted(_Net(), exclude=exclude)
    assert said == []
    assert type(model.blocks[0]) is _Gated


def test_include_converts_only_what_it_selects():
    model, said = _converted(_Net(), include="head")
    assert said == []
    assert type(model.blocks[1]) is _ScaledLinear
    assert isinstance(model.head, PrunableLinear)
    assert dense_layers(model)["blocks.1"] == "not converted (a known type: make_prunable was not asked to)"
    with pytest.raises(TypeError, match="include must be a module type, a name glob"):
        make_prunable(_Net(), include=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exclude holds 3"):
        make_prunable(_Net(), exclude=["head", 3])  # type: ignore[list-item]


def test_a_subclass_of_a_supported_layer_gets_a_twin_that_keeps_its_own_call():
    x = jax.random.normal(jax.random.key(1), (3, 4))
    model = _Net()
    expected = model(x)
    make_prunable(model, exclude=_Gated)
    twin = model.blocks[1]
    assert type(twin).__name__ == "Prunable_ScaledLinear"
    assert isinstance(twin, _ScaledLinear)
    assert isinstance(twin, PrunableModule)
    np.testing.assert_array_equal(model(x), expected)  # still doubles its output
    Pruner([MagnitudePruneGroup([twin], 0.5)], model=model).prune()
    grads = nnx.grad(lambda m: (m(x) ** 2).sum())(model)
    pruned = ~twin.kernel_mask[...]
    assert pruned.any()
    assert bool((grads["blocks"][1]["kernel"][...][pruned] == 0).all())
    assert type(make_prunable(_ScaledLinear(2, 2, rngs=nnx.Rngs(0)))) is type(twin)  # one twin per type


def test_a_registered_layer_trains_as_a_ticket():
    class Gated(_Gated):  # a type of this test's own: the registry is global
        pass

    register_prunable(Gated, ["w"])
    x = jax.random.normal(jax.random.key(1), (8, 4))
    model = _Net(Gated)
    start, expected = np.asarray(model.blocks[0].w[...]), model(x)
    model, said = _converted(model)
    layer = model.blocks[0]
    assert said == []
    assert type(layer).__name__ == "PrunableGated"
    assert dense_layers(model) == {}
    assert layer.w_mask.get_value().shape == (4, 4)
    assert not hasattr(layer, "gate_mask")
    np.testing.assert_array_equal(model(x), expected)
    pruner = Pruner([MagnitudePruneGroup([layer, model.head], 0.5)], model=model)
    optimizer = Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(lambda m: (m(x) ** 2).mean())(model))

    for _ in range(2):
        for _ in range(3):
            step(model, optimizer)
        pruner.prune_and_rewind()
    mask = np.asarray(layer.w_mask[...])
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(layer.w[...], np.where(mask, start, 0))
    np.testing.assert_array_equal(layer.gate[...], np.ones(4))  # rewound too


def test_register_prunable_refuses_bad_input_and_a_layer_without_the_parameters():
    class Other(nnx.Module):
        def __init__(self) -> None:
            self.v = nnx.Param(jnp.ones((2, 2)))

    with pytest.raises(TypeError, match=r"layer_type must be a flax\.nnx\.Module subclass"):
        register_prunable(int, ["w"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="_ScaledLinear is already prunable"):
        register_prunable(_ScaledLinear, ["kernel"])
    with pytest.raises(TypeError, match="parameters must be a non-empty sequence"):
        register_prunable(Other, "v")
    with pytest.raises(ValueError, match="methods must name methods of Other"):
        register_prunable(Other, ["v"], methods=["forward"])
    register_prunable(Other, ["w"])
    model = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), Other())
    with pytest.raises(ValueError, match=r"Other was registered with parameters \['w'\].*nnx.Param are \['v'\]"):
        make_prunable(model)
    assert type(model.layers[0]) is nnx.Linear  # nothing was converted
