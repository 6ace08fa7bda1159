"""The controls as functions: masks shuffled within each parameter and random pruning to
another ticket's per-parameter counts keep exactly those counts, on every namespace;
bad input changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, random_prune_like, shuffle_masks

from .helpers import host, layers_of, masks, values


def _ticket(xp, device, sizes=((6, 7), (30,), (4, 4, 2)), p=0.6, seed=0):
    rng = np.random.default_rng(seed)
    layers = layers_of(xp, device, [rng.standard_normal(s) for s in sizes])
    pruner = Pruner([MagnitudePruneGroup(layers, p)])
    pruner.prune()
    return layers, pruner


def test_shuffle_keeps_each_parameters_count_and_moves_the_masks(xp, device):
    layers, pruner = _ticket(xp, device)
    before = masks(layers)
    shuffle_masks(pruner, seed=3)
    after = masks(layers)
    for old, new, value in zip(before, after, values(layers), strict=True):
        assert new.sum() == old.sum()
        assert not np.array_equal(new, old)
        assert np.all(value[~new] == 0)  # set_mask zeroes what the new mask prunes


def test_shuffle_is_the_same_on_every_namespace_and_depends_on_the_seed(xp, device):
    layers, pruner = _ticket(xp, device)
    reference_layers, reference = _ticket(np, None)
    shuffle_masks(pruner, seed=5)
    shuffle_masks(reference, seed=5)
    for got, want in zip(masks(layers), masks(reference_layers), strict=True):
        np.testing.assert_array_equal(got, want)
    other_layers, other = _ticket(np, None)
    shuffle_masks(other, seed=6)
    assert any(not np.array_equal(a, b) for a, b in zip(masks(other_layers), masks(reference_layers), strict=True))


def test_shuffled_masks_are_uniform_over_the_entries():
    counts = np.zeros(20)
    for seed in range(400):
        layer = ArrayLayer({"w": np.arange(1.0, 21.0)})
        pruner = Pruner([MagnitudePruneGroup([layer], 0.75)])
        pruner.prune()  # keeps the 5 largest
        shuffle_masks(pruner, seed=seed)
        counts += layer.params["w"].get_mask()
    assert counts.sum() == 400 * 5
    assert counts.min() > 60  # 100 expected per entry
    assert counts.max() < 140


def test_random_prune_like_matches_the_tickets_counts_among_kept_weights(xp, device):
    ticket_layers, ticket = _ticket(xp, device, p=0.8)
    layers, pruner = _ticket(xp, device, p=0.3, seed=1)
    before = masks(layers)
    random_prune_like(pruner, ticket, seed=0)
    for old, new, want in zip(before, masks(layers), masks(ticket_layers), strict=True):
        assert new.sum() == want.sum()
        assert not np.any(new & ~old)  # nothing revived
    assert pruner.rounds == 1  # its own round only


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_random_prune_like_reaches_any_counts_from_masks_or_states(fractions, seed):
    sizes = [(3 + i, 5) for i in range(len(fractions))]
    target = [np.arange(np.prod(s)).reshape(s) < round(f * np.prod(s)) for s, f in zip(sizes, fractions, strict=True)]
    layers = layers_of(np, None, [np.ones(s) for s in sizes])
    pruner = Pruner([MagnitudePruneGroup(layers, 0.5)])
    random_prune_like(pruner, target, seed=seed)
    assert [int(m.sum()) for m in masks(layers)] == [int(t.sum()) for t in target]
    again = layers_of(np, None, [np.ones(s) for s in sizes])
    copy = Pruner([MagnitudePruneGroup(again, 0.5)])
    random_prune_like(copy, pruner.state_dict(), seed=seed)
    for a, b in zip(masks(layers), masks(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_shared_parameter_is_shuffled_once():
    layer = ArrayLayer({"w": np.arange(1.0, 13.0)})
    pruner = Pruner([MagnitudePruneGroup([layer], 0.5)])
    pruner.prune()
    shared = Pruner([MagnitudePruneGroup([layer], 0.5)], others=())
    shuffle_masks(shared, seed=1)
    assert int(host(layer.params["w"].get_mask()).sum()) == 6


@pytest.mark.parametrize(
    ("like", "match"),
    [
        ([np.ones(3, bool)], "holds 1 masks"),
        ([np.ones(4, bool), np.zeros(6, bool)], "shape"),
        ([np.zeros(5, bool), np.ones(6, bool)], "cannot revive"),
        (42, "like must be"),
    ],
)
def test_bad_like_raises_and_changes_nothing(like, match):
    layers = layers_of(np, None, [np.arange(1.0, 6.0), np.arange(1.0, 7.0)])
    pruner = Pruner([MagnitudePruneGroup(layers, 0.5)])
    pruner.prune()
    before = masks(layers), values(layers)
    with pytest.raises((TypeError, ValueError), match=match):
        random_prune_like(pruner, like, seed=0)
    for got, want in zip((masks(layers), values(layers)), before, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("control", [shuffle_masks, lambda p, seed: random_prune_like(p, p, seed=seed)])
@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_a_bad_seed_is_named(control, seed, error):
    _, pruner = _ticket(np, None)
    with pytest.raises(error, match="seed"):
        control(pruner, seed=seed)


def test_a_pruner_is_required():
    with pytest.raises(TypeError, match="pruner must be a Pruner"):
        shuffle_masks([np.ones(3, bool)], seed=0)  # type: ignore[arg-type]
