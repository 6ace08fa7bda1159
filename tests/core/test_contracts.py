"""Contracts a sweep of the public API found broken: rates of any float type, NaN in a
round that prunes everything, empty layers, arrays that stay the user's, shared
parameters counted once, saved states that do not change."""

from __future__ import annotations

import numpy as np
import pytest

from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, RandomPruneGroup, prune_count
from lotto_core.rate import validate_rate

from .helpers import host, layers_of, masks, values


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (np.float32(0.07), 7),
        (np.float32(0.1), 10),
        (np.float16(0.6), 60),
        (np.float32(0.2), 20),
        (np.float64(0.07), 7),
        (0.07, 7),
    ],
)
def test_a_rate_prunes_the_decimal_written_whatever_its_float_type(rate, expected):
    assert prune_count(rate, 100) == expected
    assert validate_rate(rate) == float(f"{expected / 100}")


def test_a_float32_rate_prunes_the_same_count_through_a_group(xp, device):
    (layer,) = layers_of(xp, device, [np.arange(1.0, 101.0)])
    MagnitudePruneGroup([layer], np.float32(0.07)).prune()
    assert int(masks([layer])[0].sum()) == 93


def test_a_negative_seed_is_a_value_error(xp, device):
    (layer,) = layers_of(xp, device, [np.arange(1.0, 5.0)])
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        RandomPruneGroup([layer], 0.2, seed=-1)


@pytest.mark.parametrize(
    ("weights", "p"), [([np.nan, np.nan, 1.0], 0.99), ([np.nan], 0.2), ([np.nan, np.nan, 1.0], 0.5)]
)
def test_a_kept_nan_is_never_pruned_even_when_a_round_takes_everything(xp, device, weights, p):
    (layer,) = layers_of(xp, device, [np.asarray(weights)])
    before_w, before_m = values([layer])[0], masks([layer])[0]
    with pytest.raises(ValueError, match="NaN"):
        Pruner([MagnitudePruneGroup([layer], p)]).prune()
    np.testing.assert_array_equal(values([layer])[0], before_w)
    np.testing.assert_array_equal(masks([layer])[0], before_m)


def test_an_empty_layer_is_pruned_as_if_it_were_not_there(xp, device):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 5))
    empty, full = layers_of(xp, device, [np.zeros((0, 4)), w])
    (alone,) = layers_of(xp, device, [w])
    pruner = Pruner([MagnitudePruneGroup([empty, full], 0.3)])
    pruner.prune()
    MagnitudePruneGroup([alone], 0.3).prune()
    np.testing.assert_array_equal(masks([full])[0], masks([alone])[0])
    assert pruner.report().kept == 30 - prune_count(0.3, 30)


def test_rewind_writes_into_the_users_own_array():
    w = np.arange(1.0, 11.0)
    layer = ArrayLayer({"w": w})
    pruner = Pruner([MagnitudePruneGroup([layer], 0.2)])
    w *= 10  # training, in place
    pruner.prune_and_rewind()
    assert layer["w"] is w
    np.testing.assert_array_equal(w, [0, 0, 3, 4, 5, 6, 7, 8, 9, 10])
    w += 100.0  # the next round trains the same array in place: prune() sees it
    w[:2] = 0.0  # (an optimizer that respects the mask)
    pruner.prune()
    assert int(masks([layer])[0].sum()) == 6


def test_a_shared_array_is_one_parameter_with_one_mask(xp, device):
    rng = np.random.default_rng(1)
    shared = xp.asarray(rng.standard_normal((4, 5)), dtype=xp.float32, device=device)
    emb = ArrayLayer({"w": shared})
    head = ArrayLayer({"w": shared, "b": xp.zeros(4, device=device)}, prunable=["w"])
    assert emb.params["w"] is head.params["w"]
    pruner = Pruner([RandomPruneGroup([emb, head], 0.5)])
    pruner.prune()
    report = pruner.report()
    assert report.total == 20
    assert report.kept == 10 == int(np.count_nonzero(host(emb["w"])))


def test_a_parameter_shared_across_groups_is_refused(xp, device):
    shared = xp.ones((3,), device=device)
    a, b = ArrayLayer({"w": shared}), ArrayLayer({"w": shared})
    with pytest.raises(ValueError, match="a parameter belongs to one group"):
        Pruner([MagnitudePruneGroup([a], 0.2), MagnitudePruneGroup([b], 0.2)])


def test_a_saved_state_does_not_change_when_the_pruner_does(xp, device):
    (layer,) = layers_of(xp, device, [np.arange(1.0, 11.0)])
    pruner = Pruner([MagnitudePruneGroup([layer], 0.2)])
    saved = pruner.state_dict()
    start = values([layer])[0]
    layer.params["w"].set_value(layer["w"] * 3)
    pruner.set_rewind_point()
    pruner.prune()
    pruner.load_state_dict(saved)
    pruner.rewind()
    np.testing.assert_array_equal(values([layer])[0], start)
    assert masks([layer])[0].all()


@pytest.mark.parametrize(
    "bad",
    [
        lambda xp, d: xp.ones((5, 4), dtype=xp.bool, device=d),
        lambda xp, d: xp.ones((4,), dtype=xp.bool, device=d),
        lambda xp, d: xp.ones((4, 5), dtype=xp.uint8, device=d),
        lambda xp, d: xp.ones((4, 5), dtype=xp.float32, device=d),
        lambda xp, d: [[True] * 5] * 4,
    ],
)
def test_a_bad_hand_set_mask_is_refused_and_changes_nothing(xp, device, bad):
    (layer,) = layers_of(xp, device, [np.arange(1.0, 21.0).reshape(4, 5)])
    handle = layer.params["w"]
    before_w, before_m = values([layer])[0], masks([layer])[0]
    with pytest.raises((TypeError, ValueError), match="mask"):
        handle.set_mask(bad(xp, device))
    np.testing.assert_array_equal(values([layer])[0], before_w)
    np.testing.assert_array_equal(masks([layer])[0], before_m)


def test_a_read_only_numpy_weight_is_pruned_by_replacing_it():
    w = np.arange(1.0, 11.0)
    w.flags.writeable = False
    layer = ArrayLayer({"w": w})
    pruner = Pruner([MagnitudePruneGroup([layer], 0.2)])
    pruner.prune_and_rewind()
    np.testing.assert_array_equal(layer["w"], [0, 0, 3, 4, 5, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(w, np.arange(1.0, 11.0))  # the user's read-only array is untouched
