"""Exact global selection on every namespace: the worked example of the seed library,
properties against a sorted reference, and every path of the search through every
backend's passes (the Array API passes on every namespace, the host kernels on torch
and JAX arrays, the XLA passes on JAX arrays), each against the same NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lotto_core.passes as passes
import lotto_core.search as search
from lotto_core import MagnitudePruneGroup, prune_count
from lotto_core.backend import ArrayAPIBackend, Backend, backend_for, plan_cuts
from lotto_core.keys import FORMATS
from lotto_core.passes import kth_smallest
from lotto_core.scores import MagnitudeScores

from .helpers import assert_on, host, layers_of, masks, reference_prune, values, weight_lists


def engines(xp, path: str = "default") -> list[Backend]:
    """Every backend whose passes take ``xp``'s arrays, each named explicitly. (On JAX
    the Array API passes compile every op anew for each band size: one path suffices
    there, as every path runs on the other namespaces.)"""
    out: list[Backend] = [ArrayAPIBackend()] if path == "default" or xp.__name__ != "jax.numpy" else []
    if xp.__name__.endswith("torch"):
        from lotto_backends.torch._backend import TorchBackend

        out.append(TorchBackend())
    elif xp.__name__ == "jax.numpy":
        from lotto_backends.jax._backend import JaxBackend

        out += [JaxBackend(), JaxBackend(host=False)]
    return out


def prune_through(engine: Backend, layers, p: float) -> None:
    """One round of ``MagnitudePruneGroup(layers, p)``, its cuts planned by ``engine``."""
    params = [layer.params["w"] for layer in layers]
    cuts = plan_cuts([MagnitudeScores(q.value) for q in params], [q.mask for q in params], p, backend=engine)
    for q, cut in zip(params, cuts, strict=True):
        if cut.everything:
            q.set_mask(q.mask & False)
        elif cut.pruned:
            q.set_mask(cut.mask)


def _seed_example() -> tuple[np.ndarray, np.ndarray]:
    """The integers -20..19 in two layers of 30 and 10, 2 in the first, -2 in the second."""
    rng = np.random.default_rng(7)
    rest = np.array([v for v in range(-20, 20) if v not in (2, -2)], dtype=float)
    rng.shuffle(rest)
    first, second = np.append(rest[:29], 2.0), np.append(rest[29:], -2.0)
    rng.shuffle(first)
    rng.shuffle(second)
    return first.reshape(5, 6), second


def test_seed_library_worked_example(xp, device):
    first, second = _seed_example()
    layers = layers_of(xp, device, [first, second])
    group = MagnitudePruneGroup(layers, 0.1)

    group.prune()
    m1 = masks(layers)
    pruned = sorted(np.concatenate([first.ravel()[~m1[0].ravel()], second[~m1[1]]]))
    assert pruned == [-1.0, 0.0, 1.0, 2.0]  # the 2/-2 tie goes to the earlier layer

    group.prune()
    m2 = masks(layers)
    newly = sorted(np.concatenate([first.ravel()[m1[0].ravel() & ~m2[0].ravel()], second[m1[1] & ~m2[1]]]))
    flat = np.concatenate([first.ravel(), second])
    four = 4.0 if np.flatnonzero(flat == 4.0)[0] < np.flatnonzero(flat == -4.0)[0] else -4.0
    assert newly == sorted([-2.0, 3.0, -3.0, four])
    for layer in layers:
        assert_on(layer.params["w"].mask, xp, device)
        assert_on(layer.params["w"].value, xp, device)


weights_lists = weight_lists(max_side=9, bound=12, max_size=4)
rates = st.sampled_from([0.0, 0.07, 0.1, 0.2, 0.35, 0.5, 0.8, 0.99])


@given(weights=weights_lists, p=rates, rounds=st.integers(1, 4))
def test_rounds_match_the_sorted_reference(xp, device, weights, p, rounds):
    layers = layers_of(xp, device, weights)
    group = MagnitudePruneGroup(layers, p)
    kept = [np.ones(w.shape, dtype=bool) for w in weights]
    remaining = sum(w.size for w in weights)
    for _ in range(rounds):
        current = values(layers)
        expected = reference_prune(current, kept, p)
        group.prune()
        got = masks(layers)
        for g, e, k in zip(got, expected, kept, strict=True):
            np.testing.assert_array_equal(g, e)
            assert not (g & ~k).any(), "a pruned weight was revived"
        remaining -= prune_count(p, remaining)
        assert sum(int(g.sum()) for g in got) == remaining
        pruned = np.concatenate([np.abs(v[k & ~g]) for v, k, g in zip(current, kept, got, strict=True)])
        survivors = np.concatenate([np.abs(v[g]) for v, g in zip(current, got, strict=True)])
        if pruned.size and survivors.size:
            assert pruned.max() <= survivors.min()
        for v, g in zip(values(layers), got, strict=True):
            assert (v[~g] == 0).all()
        kept = got


@given(weights=weights_lists, p=rates)
def test_same_values_give_the_same_masks_on_every_namespace(xp, device, weights, p):
    import array_api_compat.numpy as np_xp

    ours, ref = layers_of(xp, device, weights), layers_of(np_xp, "cpu", weights)
    for _ in range(2):
        MagnitudePruneGroup(ours, p).prune()
        MagnitudePruneGroup(ref, p).prune()
        for a, b in zip(masks(ours), masks(ref), strict=True):
            np.testing.assert_array_equal(a, b)


def test_kept_zeros_go_first(xp, device):
    layers = layers_of(xp, device, [np.array([0.5, 0.0, -0.25, 0.0]), np.array([0.0, 3.0])])
    MagnitudePruneGroup(layers, 0.5).prune()
    m = masks(layers)
    assert m[0].tolist() == [True, False, True, False]
    assert m[1].tolist() == [False, True]


@pytest.fixture(params=["default", "tiny-sample", "zero-margin", "tiny-band", "small-chunks"])
def selection_path(request, monkeypatch):
    """Shrink the search's constants so that moderate arrays take every path:
    sampling, widening a missed bracket, narrowing by counting, the recursive order
    statistic, and parameters walked in several chunks."""
    from lotto_backends._host import pool

    if request.param == "tiny-sample":
        monkeypatch.setattr(search, "SAMPLE_SIZE", 64)
        monkeypatch.setattr(passes, "SORT_SIZE", 16)
    elif request.param == "zero-margin":
        monkeypatch.setattr(search, "SAMPLE_SIZE", 256)
        monkeypatch.setattr(search, "STD_MARGIN", 0.0)
        monkeypatch.setattr(search, "SPAN", 0.0)
    elif request.param == "tiny-band":
        monkeypatch.setattr(search, "MIN_BAND", 4)
        monkeypatch.setattr(search, "SAMPLE_SIZE", 128)
        monkeypatch.setattr(passes, "CHUNK", 97)
        monkeypatch.setattr(pool, "CHUNK", 97)
    elif request.param == "small-chunks":
        monkeypatch.setattr(passes, "CHUNK", 64)
        monkeypatch.setattr(pool, "CHUNK", 64)
    return request.param


@pytest.mark.parametrize("kind", ["normal", "ties", "structured", "masked"])
def test_every_path_of_every_backend_is_exact(xp, device, selection_path, kind):
    rng = np.random.default_rng(3)
    shapes = [(40, 50), (3, 7, 11), (300,)]
    if kind in ("normal", "masked"):
        weights = [rng.standard_normal(s) for s in shapes]
    elif kind == "ties":
        weights = [rng.integers(-3, 4, s).astype(float) for s in shapes]
    else:  # sorted magnitudes: a strided sample sees a skewed picture
        weights = [np.sort(np.abs(rng.standard_normal(s)).ravel()).reshape(s) for s in shapes]
    for engine in engines(xp, selection_path):
        layers = layers_of(xp, device, weights)
        kept = [np.ones(s, dtype=bool) if kind != "masked" else rng.random(s) < 0.7 for s in shapes]
        if kind == "masked":
            for layer, k in zip(layers, kept, strict=True):
                layer.params["w"].set_mask(xp.asarray(k, device=device))
        for _ in range(3):
            expected = reference_prune(values(layers), kept, 0.3)
            prune_through(engine, layers, 0.3)
            kept = masks(layers)
            for g, e in zip(kept, expected, strict=True):
                np.testing.assert_array_equal(g, e, err_msg=repr(engine))
            for layer in layers:
                assert_on(layer.params["w"].mask, xp, device)


def test_the_backend_is_chosen_by_the_arrays_alone(xp, device):
    layer = layers_of(xp, device, [np.arange(4.0)])[0]
    expected = "torch" if "torch" in xp.__name__ else "jax" if xp.__name__ == "jax.numpy" else "array-api"
    assert backend_for(layer.params["w"].mask).name == expected


def test_nan_weights_are_never_pruned(xp, device):
    w = np.array([np.nan, 0.1, 0.2, np.nan, 0.3])
    layers = layers_of(xp, device, [w])
    MagnitudePruneGroup(layers, 0.4).prune()
    assert masks(layers)[0].tolist() == [True, False, False, True, True]


def test_too_few_comparable_scores_is_an_error(xp, device):
    layers = layers_of(xp, device, [np.array([np.nan, np.nan, np.nan, 1.0])])
    group = MagnitudePruneGroup(layers, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        group.prune()
    assert masks(layers)[0].all()


@given(
    x=hnp.arrays(
        np.float32,  # drawn as float32: casting a tiny float64 underflows differently in JAX
        st.integers(1, 3000),
        elements=st.integers(-20, 20).map(float) | st.floats(-1e6, 1e6, width=32, allow_subnormal=False),
    ),
    data=st.data(),
)
def test_kth_smallest_matches_sorting(xp, device, monkeypatch, x, data):
    monkeypatch.setattr(passes, "SORT_SIZE", 32)
    k = data.draw(st.integers(0, x.size - 1))
    arr = xp.asarray(x, dtype=xp.float32, device=device)
    assert kth_smallest(xp, arr, k) == float(np.sort(x)[k])


def test_float64_weights_are_selected_in_float64(xp, device):
    if xp.__name__ == "jax.numpy":
        pytest.skip("JAX runs without x64")
    w = np.array([1.0, 1.0 + 2**-40, 1.0 + 2**-41, 2.0])
    layers = layers_of(xp, device, [w], dtype=xp.float64)
    MagnitudePruneGroup(layers, 0.5).prune()
    assert masks(layers)[0].tolist() == [False, True, False, True]
    assert host(layers[0].params["w"].value).dtype == np.float64


@pytest.mark.parametrize("kind", ["normal", "ties", "masked"])
def test_band_counts_are_the_held_bands_keys_up_to_each_key(xp, device, kind):
    """``band_count`` after a split that fits: per parameter, the kept keys in the bracket
    up to each key (what passes over several processes add up), on every band backend."""
    rng = np.random.default_rng(5)
    shapes = [(40, 50), (3, 7, 11), (300,)]
    if kind == "ties":
        weights = [rng.integers(-3, 4, s).astype(np.float32) for s in shapes]
    else:
        weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    kept = [rng.random(s) < 0.7 if kind == "masked" else np.ones(s, dtype=bool) for s in shapes]
    fmt = FORMATS["float32"]
    keys = [fmt.keys(np.abs(w[k])) for w, k in zip(weights, kept, strict=True)]
    lo, hi = fmt.key(0.5), fmt.key(1.5)
    pivots = sorted({lo - 1, lo, fmt.key(0.8), fmt.key(1.0), fmt.key(1.2), hi})
    for engine in engines(xp):
        layers = layers_of(xp, device, weights)
        for layer, k in zip(layers, kept, strict=True):
            layer.params["w"].set_mask(xp.asarray(k, device=device))
        params = [layer.params["w"] for layer in layers]
        band = engine.passes([MagnitudeScores(q.value) for q in params], [q.mask for q in params])
        if not isinstance(band, search.BandPasses):
            continue
        band.kept()
        below, upto, banded = band.split(lo, hi, 10_000)
        assert banded
        expected = [[int(((k >= lo) & (k <= hi) & (k <= p)).sum()) for p in pivots] for k in keys]
        np.testing.assert_array_equal(band.band_count(pivots), expected, err_msg=repr(engine))
        np.testing.assert_array_equal(upto - below, [e[-1] for e in expected])
