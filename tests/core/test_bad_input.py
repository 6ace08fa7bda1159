"""Bad input: a clear error that names the argument, and nothing changed."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from lotto_core import ArrayLayer, LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, Pruner, RandomPruneGroup
from lotto_core.pruner import type_code

from .helpers import masks, values


def _layers(xp, device, n=2):
    rng = np.random.default_rng(0)
    return [
        ArrayLayer({"w": xp.asarray(rng.standard_normal((4, 5)), dtype=xp.float32, device=device)}) for _ in range(n)
    ]


@pytest.mark.parametrize("group", [MagnitudePruneGroup, LayerwiseMagnitudePruneGroup, RandomPruneGroup])
@pytest.mark.parametrize(
    ("p", "error"), [(1.0, ValueError), (-0.5, ValueError), (float("nan"), ValueError), ("0.2", TypeError)]
)
def test_rate_outside_zero_one(xp, device, group, p, error):
    with pytest.raises(error, match="p must be"):
        group(_layers(xp, device), p)


def test_empty_group(xp, device):
    with pytest.raises(ValueError, match="layers must not be empty"):
        MagnitudePruneGroup([], 0.2)


def test_layers_not_a_sequence(xp, device):
    with pytest.raises(TypeError, match="layers must be a sequence"):
        MagnitudePruneGroup(_layers(xp, device)[0], 0.2)


def test_something_that_is_not_prunable(xp, device):
    with pytest.raises(TypeError, match=r"layers\[1\] is a ndarray, which is not prunable"):
        MagnitudePruneGroup([_layers(xp, device)[0], np.ones(3)], 0.2)


def test_layer_without_prunable_parameters(xp, device):
    layer = ArrayLayer({"b": xp.ones(3, device=device)}, prunable=[])
    with pytest.raises(ValueError, match=r"layers\[0\] \(ArrayLayer\) has no prunable parameter"):
        MagnitudePruneGroup([layer], 0.2)


def test_same_layer_twice_in_a_group(xp, device):
    layer = _layers(xp, device)[0]
    with pytest.raises(ValueError, match=r"layers\[1\] is the same layer as layers\[0\]"):
        MagnitudePruneGroup([layer, layer], 0.2)


def test_layer_in_two_groups_of_one_pruner(xp, device):
    a, b = _layers(xp, device)
    with pytest.raises(ValueError, match=r"groups\[1\].layers\[1\] is already in groups\[0\].layers\[0\]"):
        Pruner([MagnitudePruneGroup([a], 0.2), MagnitudePruneGroup([b, a], 0.2)])


@pytest.mark.parametrize(
    ("groups", "error", "message"),
    [
        ([], ValueError, "groups must not be empty"),
        ("groups", TypeError, "groups must be a sequence"),
        ([object()], TypeError, r"groups\[0\] is a object, not a PruneGroup"),
    ],
)
def test_bad_groups(groups, error, message):
    with pytest.raises(error, match=message):
        Pruner(groups)


def test_a_single_group_not_in_a_list(xp, device):
    with pytest.raises(TypeError, match="wrap a single group in a list"):
        Pruner(MagnitudePruneGroup(_layers(xp, device), 0.2))


def test_random_seed_must_be_an_int(xp, device):
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        RandomPruneGroup(_layers(xp, device), 0.2, seed=1.5)


def test_array_layer_checks_its_names(xp, device):
    with pytest.raises(ValueError, match=r"prunable names \['x'\] are not among params"):
        ArrayLayer({"w": xp.ones(3, device=device)}, prunable=["x"])
    with pytest.raises(ValueError, match="params must be a non-empty mapping"):
        ArrayLayer({})


def test_integer_weights_are_refused(xp, device):
    layer = ArrayLayer({"w": xp.asarray([1, 2, 3], device=device)})
    with pytest.raises(TypeError, match=r"weight layers\[0\].w must have a real floating dtype"):
        MagnitudePruneGroup([layer], 0.2).prune()


def _mutate(state, path, value):
    state = copy.copy(state)
    node = state
    for key in path[:-1]:
        node[key] = copy.copy(node[key])
        node = node[key]
    node[path[-1]] = value
    return state


@pytest.mark.parametrize("case", ["format", "rounds", "groups", "config", "layers", "names", "shape", "dtype", "kind"])
def test_a_state_that_does_not_match_changes_nothing(xp, device, case):
    layers = _layers(xp, device)
    pruner = Pruner([MagnitudePruneGroup(layers, 0.2)])
    pruner.prune()
    other_layers = _layers(xp, device)
    other = Pruner([MagnitudePruneGroup(other_layers, 0.2)])
    other.prune()
    other.prune()
    state = other.state_dict()
    entry = ["groups", 0, "layers", 0]
    bad, message, error = {
        "format": (_mutate(state, ["format"], "v0"), "format", ValueError),
        "rounds": (_mutate(state, ["rounds"], -1), r"state\['rounds'\]", ValueError),
        "groups": (_mutate(state, ["groups"], []), "state has 0 groups, the pruner has 1", ValueError),
        "config": (
            _mutate(state, ["groups", 0, "config"], {"type": type_code("MagnitudePruneGroup"), "p": 0.5}),
            "was saved for another group",
            ValueError,
        ),
        "layers": (
            _mutate(state, ["groups", 0, "layers"], state["groups"][0]["layers"][:1]),
            "does not have 2 layers",
            ValueError,
        ),
        "names": (
            _mutate(state, [*entry, "masks"], {"v": state["groups"][0]["layers"][0]["masks"]["w"]}),
            "holds masks",
            ValueError,
        ),
        "shape": (
            _mutate(state, [*entry, "masks"], {"w": xp.ones((2, 2), dtype=xp.bool, device=device)}),
            r"has shape \(2, 2\)",
            ValueError,
        ),
        "dtype": (
            _mutate(state, [*entry, "masks"], {"w": xp.ones((4, 5), dtype=xp.float32, device=device)}),
            "expected bool",
            TypeError,
        ),
        "kind": (
            _mutate(state, [*entry, "rewind"], {"w": [[0.0] * 5] * 4}),
            "must be an array of the layer's own kind",
            TypeError,
        ),
    }[case]
    before_masks, before_values = masks(layers), values(layers)
    before_rewind = (
        [np.array(layer.params["w"].rewind_point) for layer in layers] if xp.__name__.endswith("numpy") else None
    )
    with pytest.raises(error, match=message):
        pruner.load_state_dict(bad)
    assert pruner.rounds == 1
    assert pruner.groups[0].rounds == 1
    for a, b in zip(before_masks, masks(layers), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before_values, values(layers), strict=True):
        np.testing.assert_array_equal(a, b)
    if before_rewind is not None:
        for a, layer in zip(before_rewind, layers, strict=True):
            np.testing.assert_array_equal(a, layer.params["w"].rewind_point)
