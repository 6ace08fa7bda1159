"""The pruner: rounds, rewinding, late rewinding, reports and saved state."""

from __future__ import annotations

import numpy as np
import pytest

from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, RandomPruneGroup, prune_count

from .helpers import assert_on, host, masks, values


def _model(xp, device, seed=0):
    rng = np.random.default_rng(seed)

    def layer(shape):
        return ArrayLayer(
            {
                "weight": xp.asarray(rng.standard_normal(shape), dtype=xp.float32, device=device),
                "bias": xp.asarray(rng.standard_normal(shape[0]), dtype=xp.float32, device=device),
            },
            prunable=["weight"],
        )

    return [layer((16, 12)), layer((8, 16)), layer((4, 8))]


def _train(xp, layers, step):
    """Stand-in for training: every parameter moves, pruned weights stay zero."""
    for layer in layers:
        for handle in layer.parameter_handles().values():
            value, mask = handle.get_value(), handle.get_mask()
            moved = value * 1.5 + step
            handle.set_value(moved if mask is None else xp.where(mask, moved, xp.zeros_like(moved)))


def _pruner(layers):
    return Pruner([MagnitudePruneGroup(layers[:2], 0.2), RandomPruneGroup(layers[2:], 0.5, seed=3)])


def test_prune_and_rewind_restores_weights_and_biases(xp, device):
    layers = _model(xp, device)
    initial = {n: values(layers, n) for n in ("weight", "bias")}
    pruner = _pruner(layers)
    for r in range(3):
        _train(xp, layers, r)
        pruner.prune_and_rewind()
        for layer_masks, w0, w in zip(
            masks(layers, "weight"), initial["weight"], values(layers, "weight"), strict=True
        ):
            np.testing.assert_array_equal(w, np.where(layer_masks, w0, 0))
        for b0, b in zip(initial["bias"], values(layers, "bias"), strict=True):
            np.testing.assert_array_equal(b, b0)
    assert pruner.rounds == 3
    assert_on(layers[0].params["weight"].value, xp, device)
    assert_on(layers[0].params["bias"].value, xp, device)


def test_set_rewind_point_moves_the_point(xp, device):
    layers = _model(xp, device)
    pruner = _pruner(layers)
    _train(xp, layers, 1)
    late = {n: values(layers, n) for n in ("weight", "bias")}
    pruner.set_rewind_point()
    _train(xp, layers, 2)
    pruner.prune_and_rewind()
    for m, w0, w in zip(masks(layers, "weight"), late["weight"], values(layers, "weight"), strict=True):
        np.testing.assert_array_equal(w, np.where(m, w0, 0))
    for b0, b in zip(late["bias"], values(layers, "bias"), strict=True):
        np.testing.assert_array_equal(b, b0)


def test_report_counts_per_parameter_and_in_total(xp, device):
    layers = _model(xp, device)
    pruner = _pruner(layers)
    pruner.prune()
    report = pruner.report()
    sizes = [16 * 12, 8 * 16, 4 * 8]
    first = sizes[0] + sizes[1]
    expected_kept = first - prune_count(0.2, first) + sizes[2] - prune_count(0.5, sizes[2])
    assert [p.total for p in report.parameters] == sizes
    assert [p.kept for p in report.parameters] == [int(m.sum()) for m in masks(layers, "weight")]
    assert report.kept == expected_kept
    assert report.total == sum(sizes)
    assert report.remaining == pytest.approx(expected_kept / sum(sizes))
    assert report.rounds == 1
    text = str(report)
    assert "groups[1].layers[0] (ArrayLayer).weight" in text
    assert "total" in text
    assert f"{expected_kept:,}" in text


def test_state_dict_resumes_a_run_exactly(xp, device):
    straight = _model(xp, device)
    pruner = _pruner(straight)
    for r in range(3):
        _train(xp, straight, r)
        pruner.prune_and_rewind()

    resumed = _model(xp, device)
    first = _pruner(resumed)
    _train(xp, resumed, 0)
    first.prune_and_rewind()
    saved = first.state_dict()
    weights = {n: values(resumed, n) for n in ("weight", "bias")}

    fresh = _model(xp, device, seed=99)  # "a new process": other values, then the state
    for layer, w, b in zip(fresh, weights["weight"], weights["bias"], strict=True):
        layer.params["weight"].set_value(xp.asarray(w, device=device))
        layer.params["bias"].set_value(xp.asarray(b, device=device))
    second = _pruner(fresh)
    second.load_state_dict(saved)
    assert second.rounds == 1
    for r in (1, 2):
        _train(xp, fresh, r)
        second.prune_and_rewind()
    for a, b in zip(masks(straight, "weight"), masks(fresh, "weight"), strict=True):
        np.testing.assert_array_equal(a, b)
    for n in ("weight", "bias"):
        for a, b in zip(values(straight, n), values(fresh, n), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_failing_group_leaves_every_group_unchanged(xp, device):
    layers = _model(xp, device)
    pruner = _pruner(layers)
    bad = layers[2].params["weight"]
    bad.mask = xp.ones((3, 3), dtype=xp.bool, device=device)  # corrupt the last group
    before = [host(m) for m in masks(layers[:2], "weight")]
    with pytest.raises(ValueError, match=r"mask of layers\[0\].weight has shape \(3, 3\)"):
        pruner.prune()
    for b, m in zip(before, masks(layers[:2], "weight"), strict=True):
        np.testing.assert_array_equal(b, m)
    assert pruner.rounds == 0


def test_pruned_entries_read_exactly_zero_even_when_not_finite(xp, device):
    layer = ArrayLayer({"w": xp.asarray([float("inf"), 1.0, float("nan"), 2.0, -3.0], device=device)})
    mask = xp.asarray([False, True, False, True, False], device=device)
    layer.params["w"].set_mask(mask)
    assert host(layer["w"]).tolist() == [0.0, 1.0, 0.0, 2.0, 0.0]


def test_pruned_negative_weights_read_plus_zero(xp, device):
    layer = ArrayLayer({"w": xp.asarray([-1.0, -2.0, 3.0], device=device)})
    MagnitudePruneGroup([layer], 0.5).prune()
    assert host(layer["w"]).tolist() == [0.0, 0.0, 3.0]
    assert not np.signbit(host(layer["w"])).any()
