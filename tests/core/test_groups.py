"""Random and layer-wise groups on every namespace."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import ArrayLayer, LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, RandomPruneGroup, prune_count
from lotto_core.backend import Backend
from lotto_core.passes import ArrayAPIPasses

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


class _Recording(Backend):
    """The Array API backend, recording what it is asked; with ``write_values``, its
    passes attach new weights (offset by 100 where kept, to be told apart) when asked."""

    def __init__(self, write_values: bool = False) -> None:
        self.asked: list[bool] = []
        self.writes: list[int] = []
        self.write_values = write_values

    def passes(self, sources, masks, *, values=False):
        self.asked.append(values)
        inner = ArrayAPIPasses(sources, masks)
        if values and self.write_values:
            plain = inner.masks

            def masks_with_values(t, cuts):
                return [
                    (m, None if m is None else np.where(m, 100.0 + src.weight, 0.0))
                    for (m, _), src in zip(plain(t, cuts), sources, strict=True)
                ]

            inner.masks = masks_with_values
        return inner

    def write(self, writes):
        self.writes.append(len(writes))
        super().write(writes)


def _use(monkeypatch, recording: _Recording) -> _Recording:
    import lotto_core.backend as backend_module
    import lotto_core.undo as undo_module

    for module in (backend_module, undo_module):
        monkeypatch.setattr(module, "backend_for", lambda array: recording)
    return recording


def test_a_backend_writes_a_groups_new_masks_in_one_call(monkeypatch):
    recording = _use(monkeypatch, _Recording())
    layers = [ArrayLayer({"w": np.arange(10.0)}), ArrayLayer({"w": -np.arange(10.0)})]
    MagnitudePruneGroup(layers, 0.5).prune()
    assert recording.writes == [2]
    assert int(sum(np.sum(layer.params["w"].mask) for layer in layers)) == 10


def test_only_a_round_written_right_after_its_plan_asks_for_new_weights(monkeypatch):
    from lotto_core import Pruner

    asked = _use(monkeypatch, _Recording()).asked
    layers = [ArrayLayer({"w": np.arange(1.0, 11.0)}) for _ in range(3)]
    MagnitudePruneGroup(layers[:1], 0.5).prune()
    Pruner([MagnitudePruneGroup(layers[1:2], 0.5)]).prune()
    Pruner([MagnitudePruneGroup(layers[1:2], 0.5), MagnitudePruneGroup(layers[2:], 0.5)]).prune()
    LayerwiseMagnitudePruneGroup(layers[2:], 0.5).prune()
    # a lone group writes right after planning; two groups would hold both rounds' weights at once
    assert asked == [True, True, False, False, True]
    np.testing.assert_array_equal(layers[0]["w"], [0, 0, 0, 0, 0, 6, 7, 8, 9, 10])


def test_new_weights_from_the_passes_are_stored_with_their_masks(monkeypatch):
    _use(monkeypatch, _Recording(write_values=True))
    layer = ArrayLayer({"w": np.arange(1.0, 11.0)})
    MagnitudePruneGroup([layer], 0.3).prune()
    # the passes' weights (offset by 100 where kept, so they are told apart) are stored as written
    np.testing.assert_array_equal(layer["w"], [0, 0, 0, 104, 105, 106, 107, 108, 109, 110])
    np.testing.assert_array_equal(layer.params["w"].mask, np.arange(10) >= 3)
