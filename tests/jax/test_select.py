"""The JAX backend against the Array API passes, on both of its kinds of passes: the
host kernels for arrays that live whole on one CPU device, and the jit-compiled XLA
passes (forced here by hiding numba; they also serve sharded arrays and accelerators).
Exactness in every path of the search, with its constants shrunk; the writer on both."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lotto_backends._host.pool as pool
import lotto_backends.jax._passes as _passes
import lotto_core.search as search
from lotto_backends._host.passes import HostPasses
from lotto_backends.jax._backend import JaxBackend
from lotto_backends.jax._passes import XLAPasses
from lotto_backends.jax._write import zero_pruned
from lotto_core import ArrayLayer, MagnitudePruneGroup, RandomPruneGroup
from lotto_core.backend import ArrayAPIBackend, _plan_cuts
from lotto_core.scores import MagnitudeScores
from lotto_core.search import Cut

SHAPES = [(4, 6), (9,), (2, 3, 5)]
PATHS = ["host", "xla"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which search runs: ``host`` makes the test's arrays on a CPU device (the host
    kernels' domain, also where an accelerator is the default); ``xla`` hides numba, so
    the jit-compiled passes do."""
    if request.param == "xla":
        monkeypatch.setattr(pool, "kernels", lambda: None)
        yield "xla"
        return
    with jax.default_device(jax.devices("cpu")[0]):
        yield "host"


def plan_cuts(sources: list, masks: list, p: float, values: bool = False) -> list[Cut]:
    return _plan_cuts(sources, masks, p, JaxBackend(), values=values)


def core_plan_cuts(sources: list, masks: list, p: float) -> list[Cut]:
    return _plan_cuts(sources, masks, p, ArrayAPIBackend(), values=False)


def _new_mask(mask: np.ndarray, cut: Cut) -> np.ndarray:
    if cut.everything:
        return np.zeros_like(mask)
    return mask if cut.mask is None else np.asarray(cut.mask)


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    runs: list[int] = []
    kept = cls.kept
    monkeypatch.setattr(cls, "kept", lambda self: runs.append(1) or kept(self))
    return runs


@st.composite
def groups(draw: st.DrawFn) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Values with many ties, zeros, infinities and NaN; masks with some entries pruned;
    shapes that repeat (alike parameters share a call of the XLA passes)."""
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=5))
    choices = [0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -2.5, 3.0, np.inf, np.nan]
    values, masks = [], []
    for shape in shapes:
        size = math.prod(shape)
        values.append(
            np.asarray(draw(st.lists(st.sampled_from(choices), min_size=size, max_size=size)), np.float32).reshape(
                shape
            )
        )
        masks.append(
            np.asarray(draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool).reshape(shape)
            | (draw(st.booleans()))
        )
    return values, masks, draw(st.sampled_from([0.07, 0.2, 0.5, 0.9]))


def _same_as_core(values: list[np.ndarray], masks: list[np.ndarray], p: float) -> None:
    try:
        want = core_plan_cuts([MagnitudeScores(v) for v in values], masks, p)
    except ValueError as e:
        with pytest.raises(ValueError, match=re.escape(str(e))):
            plan_cuts([MagnitudeScores(jnp.asarray(v)) for v in values], [jnp.asarray(m) for m in masks], p)
        return
    arrays = [jnp.asarray(v) for v in values]
    got = plan_cuts([MagnitudeScores(a) for a in arrays], [jnp.asarray(m) for m in masks], p, values=True)
    assert got == want  # threshold, ties, tied, pruned, everything
    for v, a, m, g, w in zip(values, arrays, masks, got, want, strict=True):
        expected = _new_mask(m, w)
        np.testing.assert_array_equal(_new_mask(m, g), expected)
        if g.values is not None:  # the new weight the host kernels wrote: bit for bit, pruned entries +0.0
            assert (g.values.shape, g.values.dtype, g.values.sharding) == (a.shape, a.dtype, a.sharding)
            np.testing.assert_array_equal(
                np.asarray(g.values).view(np.int32), np.where(expected, v, np.float32(0)).view(np.int32)
            )


@given(case=groups())
def test_selection_matches_the_core(path: str, case: tuple[list[np.ndarray], list[np.ndarray], float]) -> None:
    _same_as_core(*case)


@given(case=groups())
def test_selection_matches_the_core_with_many_passes(
    path: str, monkeypatch: pytest.MonkeyPatch, case: tuple[list[np.ndarray], list[np.ndarray], float]
) -> None:
    # a sample of every entry in a size-1 "sample": xla places few useful pivots, so most
    # passes after the first split keys evenly; host: chunks of 5 on threads, a band budget of 2
    monkeypatch.setattr(search, "SAMPLE_SIZE", 1)
    monkeypatch.setattr(pool, "CHUNK", 5)
    monkeypatch.setattr(search, "MIN_BAND", 2)
    _same_as_core(*case)


def test_the_host_kernels_write_new_weights_only_when_asked(path: str) -> None:
    rng = np.random.default_rng(3)
    weights = [jnp.asarray(rng.standard_normal(s).astype(np.float32)) for s in [(40, 30), (500,)]]
    masks = [jnp.asarray(rng.random(w.shape) < 0.8) for w in weights]
    sources = [MagnitudeScores(w) for w in weights]
    asked = plan_cuts(sources, masks, 0.3, values=True)
    assert all(c.values is None for c in plan_cuts(sources, masks, 0.3))
    assert all((c.values is not None) == (path == "host") for c in asked)  # the XLA passes write none
    for w, c in zip(weights, asked, strict=True):
        if c.values is not None:
            np.testing.assert_array_equal(np.asarray(c.values), np.where(np.asarray(c.mask), np.asarray(w), 0))


def test_ties_split_inside_a_parameter_and_across_parameters(path: str) -> None:
    # 0.5 is tied 24 times over two parameters; the cut takes some of them in each path
    a = np.full((4, 6), 0.5, np.float32)
    a[0, 0] = 0.25
    b = np.full((9,), 0.5, np.float32)
    ones = [np.ones(a.shape, bool), np.ones(b.shape, bool)]
    for p in (0.2, 0.5, 0.9):
        _same_as_core([a, b], ones, p)
    masks = [np.ones(a.shape, bool), np.arange(9) % 2 == 0]
    _same_as_core([a, b], masks, 0.4)


def test_alike_small_parameters_share_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """70 parameters of one shape take three calls of each XLA pass (64, 4 and 2 of
    them), with the same cuts as the core's: ties split inside the batch, across
    batches and against a parameter of another shape."""
    monkeypatch.setattr(pool, "kernels", lambda: None)
    calls: list[int] = []
    count = _passes._count_upto
    monkeypatch.setattr(_passes, "_count_upto", lambda xs, *a, **k: calls.append(len(xs)) or count(xs, *a, **k))
    rng = np.random.default_rng(5)
    values = [rng.choice(np.float32([0.5, -1.0, 2.0, 0.25]), (4, 6)) for _ in range(70)] + [np.full(9, 0.5, np.float32)]
    masks = [(rng.random(v.shape) < 0.9) & (np.arange(v.size) > 0).reshape(v.shape) for v in values]
    for p in (0.1, 0.3, 0.6):
        calls.clear()
        _same_as_core(values, masks, p)
        assert calls
        assert calls == [64, 4, 2, 1] * (len(calls) // 4)  # each count pass: three batches, and the (9,)


def test_pivots_never_subnormal(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the threshold is 0 and the bracket closes in on it from below: a subnormal pivot
    # would count like 0 under XLA and end the search on a negative subnormal threshold
    monkeypatch.setattr(search, "SAMPLE_SIZE", 1)
    v = np.asarray([0.0, 0.0, 0.0, 1.0, 2.0, 3.0], np.float32)
    for p in (0.3, 0.5):
        _same_as_core([v], [np.ones(6, bool)], p)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_subnormal_scores_count_as_zero_like_xla(path: str, dtype: jnp.dtype) -> None:
    # XLA compares subnormals as 0: they tie with 0 (in C order), never split by a
    # subnormal pivot; the host kernels rank them the same way for JAX arrays
    v = np.asarray([3.0, 1e-40, 0.0, 2e-39, 1.0, 2.0], np.float32)
    group = MagnitudePruneGroup([ArrayLayer({"w": jnp.asarray(v, dtype)})], 0.5)
    group.prune()
    np.testing.assert_array_equal(np.asarray(group.layers[0].params["w"].mask), [True, False, False, False, True, True])


def test_half_precision_subnormals_are_normal_scores(path: str) -> None:
    # float16 scores are compared as float32, where its subnormals are normal floats
    v = np.asarray([3.0, 1e-7, 0.0, 2e-7, 1.0, 2.0], np.float16)
    group = MagnitudePruneGroup([ArrayLayer({"w": jnp.asarray(v)})], 0.3)
    group.prune()
    np.testing.assert_array_equal(np.asarray(group.layers[0].params["w"].mask), [True, False, False, True, True, True])


@pytest.mark.parametrize("group_type", [MagnitudePruneGroup, RandomPruneGroup])
def test_the_core_groups_select_jax_arrays_natively(
    path: str, monkeypatch: pytest.MonkeyPatch, group_type: type
) -> None:
    host_runs, xla_runs = _spy(monkeypatch, HostPasses), _spy(monkeypatch, XLAPasses)
    rng = np.random.default_rng(3)
    kernels = [np.round(rng.standard_normal((6, 7)) * 4) / 4, rng.standard_normal((3, 4, 5))]
    portable = [ArrayLayer({"w": k.astype(np.float32)}) for k in kernels]
    native = [ArrayLayer({"w": jnp.asarray(k, jnp.float32)}) for k in kernels]
    for _ in range(2):
        group_type(portable, 0.3).prune()
        assert (host_runs, xla_runs) == ([], [])
        group_type(native, 0.3).prune()
        assert (host_runs, xla_runs) == (([1], []) if path == "host" else ([], [1]))
        host_runs.clear()
        xla_runs.clear()
    for c, f in zip(portable, native, strict=True):
        np.testing.assert_array_equal(c.params["w"].mask, np.asarray(f.params["w"].mask))
        np.testing.assert_array_equal(c["w"], np.asarray(f["w"]))


def test_host_results_are_jax_arrays_on_the_weights_device() -> None:
    device = jax.devices()[-1]
    w = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((40, 30)), jnp.bfloat16), device)
    layer = ArrayLayer({"w": w})
    MagnitudePruneGroup([layer], 0.4).prune()
    for out in (layer["w"], layer.params["w"].mask):
        assert isinstance(out, jax.Array)
        assert out.devices() == {device}
    assert layer["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(layer["w"] == 0), ~np.asarray(layer.params["w"].mask))
    assert int(jnp.count_nonzero(layer.params["w"].mask)) == 720


def test_writing_zeroes_exactly_on_both_paths(path: str) -> None:
    values = [
        jnp.asarray([-1.5, np.inf, np.nan, -0.0, 2.0, np.nan], jnp.float32),
        jnp.asarray([1.0, -2.0], jnp.bfloat16),
    ]
    masks = [jnp.asarray([False, False, False, True, True, True]), jnp.asarray([False, True])]
    for out, value, mask in zip(zero_pruned(values, masks), values, masks, strict=True):
        assert out.dtype == value.dtype
        bits, old = np.asarray(out).view(np.uint8), np.asarray(value).view(np.uint8)
        width = out.dtype.itemsize
        for i, kept in enumerate(np.asarray(mask)):
            part = slice(i * width, (i + 1) * width)
            np.testing.assert_array_equal(bits[part], old[part] if kept else 0)
