"""Random and layer-wise groups on every namespace."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import ArrayLayer, LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, RandomPruneGroup, prune_count

from .helpers import assert_on, layers_of, masks, reference_prune, values


def _weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((20, 30)), rng.standard_normal((7, 3, 5)), rng.standard_normal(50)]


@given(seed=st.integers(0, 2**32 - 1), p=st.sampled_from([0.1, 0.2, 0.5]))
def test_random_group_is_reproducible_from_its_seed(xp, device, seed, p):
    runs = []
    for _ in range(2):
        layers = layers_of(xp, device, _weights())
        group = RandomPruneGroup(layers, p, seed=seed)
        group.prune()
        group.prune()
        runs.append(masks(layers))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_group_prunes_the_exact_count_anywhere(xp, device):
    weights = _weights()
    layers = layers_of(xp, device, weights)
    group = RandomPruneGroup(layers, 0.2, seed=1)
    remaining = sum(w.size for w in weights)
    previous = masks(layers)
    for _ in range(3):
        group.prune()
        remaining -= prune_count(0.2, remaining)
        current = masks(layers)
        assert sum(int(m.sum()) for m in current) == remaining
        assert all(not (c & ~p).any() for c, p in zip(current, previous, strict=True))
        previous = current
    # random, not magnitude: some small weights survive where magnitude pruning cuts them
    magnitude = reference_prune(weights, [np.ones(w.shape, bool) for w in weights], 0.2)
    assert any((c != m).any() for c, m in zip(masks(layers), magnitude, strict=True))
    assert_on(layers[0].params["w"].mask, xp, device)


def test_random_group_seeds_differ_and_match_across_namespaces(xp, device):
    import array_api_compat.numpy as np_xp

    ours = layers_of(xp, device, _weights())
    ref, other = layers_of(np_xp, "cpu", _weights()), layers_of(np_xp, "cpu", _weights())
    RandomPruneGroup(ours, 0.3, seed=5).prune()
    RandomPruneGroup(ref, 0.3, seed=5).prune()
    RandomPruneGroup(other, 0.3, seed=6).prune()
    for a, b in zip(masks(ours), masks(ref), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any((a != b).any() for a, b in zip(masks(ref), masks(other), strict=True))


def test_layerwise_group_prunes_each_layer_by_its_own_count(xp, device):
    weights = _weights()
    weights[0] *= 100  # a global threshold would spare this layer entirely
    layers = layers_of(xp, device, weights)
    group = LayerwiseMagnitudePruneGroup(layers, 0.25)
    kept = [np.ones(w.shape, bool) for w in weights]
    for _ in range(2):
        expected = [reference_prune([v], [k], 0.25)[0] for v, k in zip(values(layers), kept, strict=True)]
        group.prune()
        kept = masks(layers)
        for g, e in zip(kept, expected, strict=True):
            np.testing.assert_array_equal(g, e)


def test_layerwise_group_shares_the_threshold_within_a_layer(xp, device):
    big, small = np.arange(1.0, 11.0) * 10, np.arange(1.0, 11.0) / 2
    layer = ArrayLayer({"a": xp.asarray(big, device=device), "b": xp.asarray(small, device=device)})
    LayerwiseMagnitudePruneGroup([layer], 0.5).prune()
    assert int(masks([layer], "a")[0].sum()) == 10  # 10 of the 20 go, all from "b"
    assert int(masks([layer], "b")[0].sum()) == 0


def test_a_native_writer_gets_a_groups_new_masks_in_one_call(monkeypatch):
    import lotto_core.commit as commit

    calls = []

    def writer(writes):
        calls.append(len(writes))
        for handle, mask, _ in writes:
            handle.set_mask(mask)

    monkeypatch.setattr(commit, "_NATIVE_WRITERS", [])
    commit.register_native_writer(lambda mask: mask.shape == (10,), writer)
    layers = [ArrayLayer({"w": np.arange(10.0)}), ArrayLayer({"w": -np.arange(10.0)})]
    MagnitudePruneGroup(layers, 0.5).prune()
    assert calls == [2]
    assert int(sum(np.sum(layer.params["w"].mask) for layer in layers)) == 10
    MagnitudePruneGroup([ArrayLayer({"w": np.arange(12.0)})], 0.5).prune()  # not accepted: handle by handle
    assert calls == [2]


def _recording_planner(monkeypatch, asked: list[bool], write_values: bool) -> None:
    """A native planner for NumPy masks: the portable cuts, each with the new weight
    (pruned entries zeroed) when asked and ``write_values``; records what it was asked."""
    from dataclasses import replace

    import lotto_core.selection as selection

    def planner(sources, masks, p, values):
        asked.append(values)
        cuts = selection.plan_cuts_portable(sources, masks, p)
        if not (values and write_values):
            return cuts
        out = []
        for source, mask, cut in zip(sources, masks, cuts, strict=True):
            new_mask = selection.apply_cut(np, source, mask, cut)
            out.append(replace(cut, values=np.where(new_mask, 100.0 + source.weight, 0.0)))
        return out

    monkeypatch.setattr(selection, "_NATIVE_PLANNERS", [])
    selection.register_native_planner(lambda mask: isinstance(mask, np.ndarray), planner)


def test_only_a_round_written_right_after_its_plan_asks_for_new_weights(monkeypatch):
    from lotto_core import Pruner

    asked: list[bool] = []
    _recording_planner(monkeypatch, asked, write_values=False)
    layers = [ArrayLayer({"w": np.arange(1.0, 11.0)}) for _ in range(3)]
    MagnitudePruneGroup(layers[:1], 0.5).prune()
    Pruner([MagnitudePruneGroup(layers[1:2], 0.5)]).prune()
    Pruner([MagnitudePruneGroup(layers[1:2], 0.5), MagnitudePruneGroup(layers[2:], 0.5)]).prune()
    LayerwiseMagnitudePruneGroup(layers[2:], 0.5).prune()
    # a lone group writes right after planning; two groups would hold both rounds' weights at once
    assert asked == [True, True, False, False, True]
    np.testing.assert_array_equal(layers[0]["w"], [0, 0, 0, 0, 0, 6, 7, 8, 9, 10])


def test_new_weights_from_the_planner_are_stored_with_their_masks(monkeypatch):
    import lotto_core.commit as commit

    _recording_planner(monkeypatch, [], write_values=True)
    monkeypatch.setattr(commit, "_NATIVE_WRITERS", [])
    layer = ArrayLayer({"w": np.arange(1.0, 11.0)})
    MagnitudePruneGroup([layer], 0.3).prune()
    # the planner's weights (offset by 100 where kept, so they are told apart) are stored as written
    np.testing.assert_array_equal(layer["w"], [0, 0, 0, 104, 105, 106, 107, 108, 109, 110])
    np.testing.assert_array_equal(layer.params["w"].mask, np.arange(10) >= 3)
