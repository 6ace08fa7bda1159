"""The torch backend's host passes: exactly the Array API passes' cuts and masks in
every path of the core's search (one pass, bracket misses, a band too wide, a threshold
tied across parameters), every float dtype, the groups it leaves to the Array API
passes, and the fused zeroing."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lotto_backends._host.pool as pool
import lotto_backends.torch._cpu as torch_cpu
import lotto_core.search as search_module
from lotto_backends._host.passes import HostPasses, host_group
from lotto_backends.torch import PrunableLinear
from lotto_backends.torch._backend import TorchBackend
from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, RandomPruneGroup
from lotto_core.backend import ArrayAPIBackend
from lotto_core.backend import plan_cuts as core_plan_cuts
from lotto_core.scores import MagnitudeScores, RandomScores
from lotto_core.search import Cut

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SHAPES = [(4, 6), (9,), (2, 3, 5)]
CHOICES = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -2.5, 3.0, 1e-40, math.inf, -math.inf, math.nan]


@st.composite
def groups(draw: st.DrawFn) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """Weights with many ties, zeros of both signs, subnormals, infinities and NaN, or
    Gaussian ones; masks with some entries pruned; one float dtype for the group."""
    dtype = draw(st.sampled_from(DTYPES))
    weights, masks = [], []
    for shape in SHAPES[: draw(st.integers(1, 3))]:
        size = math.prod(shape)
        if draw(st.booleans()):
            values = draw(st.lists(st.sampled_from(CHOICES), min_size=size, max_size=size))
        else:
            values = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(size).tolist()
        weights.append(torch.tensor(values, dtype=torch.float64).reshape(shape).to(dtype))
        kept = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        masks.append(torch.tensor(kept).reshape(shape) | draw(st.booleans()))
    return weights, masks, draw(st.sampled_from([0.0, 0.07, 0.2, 0.5, 0.9]))


def plan_cuts(sources: list, masks: list[torch.Tensor], p: float) -> list[Cut]:
    return core_plan_cuts(sources, masks, p, backend=TorchBackend())


def plan_cuts_portable(sources: list, masks: list[torch.Tensor], p: float) -> list[Cut]:
    return core_plan_cuts(sources, masks, p, backend=ArrayAPIBackend())


def apply_cut(mask: torch.Tensor, cut: Cut) -> torch.Tensor:
    """The new mask after ``cut``."""
    if cut.everything:
        return torch.zeros_like(mask)
    return mask if cut.mask is None else cut.mask.reshape(mask.shape)


def _sources(weights: list[torch.Tensor]) -> list[MagnitudeScores]:
    return [MagnitudeScores(w) for w in weights]


def assert_same_as_portable(weights: list[torch.Tensor], masks: list[torch.Tensor], p: float) -> None:
    """The fused selection gives the portable one's cuts and masks, or its error."""
    before = [w.clone() for w in weights], [m.clone() for m in masks]
    try:
        want = plan_cuts_portable(_sources(weights), masks, p)
    except ValueError as e:
        with pytest.raises(ValueError, match=re.escape(str(e))):
            plan_cuts(_sources(weights), masks, p)
        return
    got = plan_cuts(_sources(weights), masks, p)
    assert got == want  # threshold, ties, tied, pruned, everything
    for m, g, c in zip(masks, got, want, strict=True):
        assert torch.equal(apply_cut(m, g), apply_cut(m, c))
    for now, then in zip([*weights, *masks], [*before[0], *before[1]], strict=True):  # planning writes nothing
        assert torch.equal(now.view(torch.uint8), then.view(torch.uint8))


@given(case=groups())
def test_selection_matches_the_core(case: tuple[list[torch.Tensor], list[torch.Tensor], float]) -> None:
    covered = host_group(_sources(case[0]), case[1], torch_cpu.weight_keys, torch_cpu.bool_view)
    assert covered is not None  # the kernels take it
    assert_same_as_portable(*case)


@given(case=groups())
def test_selection_matches_the_core_in_small_chunks_and_bands(
    monkeypatch: pytest.MonkeyPatch, case: tuple[list[torch.Tensor], list[torch.Tensor], float]
) -> None:
    # chunks of 5 entries, a band budget of 2 and a sample of 4: every path runs, on threads
    monkeypatch.setattr(pool, "CHUNK", 5)
    monkeypatch.setattr(search_module, "MIN_BAND", 2)
    monkeypatch.setattr(search_module, "SAMPLE_SIZE", 4)
    assert_same_as_portable(*case)


def _spy(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[int]:
    calls: list[int] = []
    method = getattr(owner, name)

    def spied(self, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return method(self, *args)

    monkeypatch.setattr(owner, name, spied)
    return calls


def test_a_threshold_tied_across_parameters_is_cut_in_c_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.5 is tied 32 times over two parameters: no band fits, so the bracket is
    # narrowed down to the single key and the ties are split by one pass per parameter
    monkeypatch.setattr(search_module, "MIN_BAND", 4)
    at_one_key = _spy(monkeypatch, search_module._Search, "pin")
    a = torch.full((4, 6), 0.5)
    a[0, 0] = 0.25
    b = torch.full((9,), -0.5)
    for p in (0.2, 0.5, 0.9):
        assert_same_as_portable(
            [a, b], [torch.ones(24, dtype=torch.bool).reshape(4, 6), torch.ones(9, dtype=torch.bool)], p
        )
    assert_same_as_portable([a, b], [torch.ones(4, 6, dtype=torch.bool), torch.arange(9) % 2 == 0], 0.4)
    assert at_one_key


@pytest.mark.parametrize("miss", ["far above", "just above", "far below", "just below"])
def test_a_sample_that_misses_the_threshold_costs_a_pass_not_exactness(
    monkeypatch: pytest.MonkeyPatch, miss: str
) -> None:
    weights = [torch.randn(300, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    keys = sorted(int(k) for w in weights for k in (w.view(torch.int32) & 0x7FFFFFFF))
    k = 270  # prune_count(0.3, 900); keys are distinct, so t = keys[k - 1]
    wrong = {  # brackets that lie wholly above or below t, by far or by one key
        "far above": (keys[-20], keys[-10]),
        "just above": (keys[k], keys[k + 5]),
        "far below": (keys[5], keys[10]),
        "just below": (keys[k - 10], keys[k - 2]),
    }[miss]
    split = search_module._Search.split
    monkeypatch.setattr(search_module._Search, "split", lambda self, passes, lo, hi: split(self, passes, *wrong))
    passes = _spy(monkeypatch, HostPasses, "split")
    assert_same_as_portable(weights, [torch.ones(300, dtype=torch.bool)] * 3, 0.3)
    assert len(passes) == 2


def test_only_comparable_scores_are_pruned() -> None:
    w = torch.tensor([math.nan, 1.0, math.nan, 2.0, 3.0, math.nan, math.nan, 4.0, math.nan, 5.0])
    with pytest.raises(ValueError, match="only 5 kept scores are comparable"):
        plan_cuts(_sources([w]), [torch.ones(10, dtype=torch.bool)], 0.6)


def test_large_gaussian_group_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # the benchmark's case at a smaller size: several chunks per parameter, one pass
    monkeypatch.setattr(pool, "CHUNK", 1 << 14)
    passes = _spy(monkeypatch, HostPasses, "split")
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(256, 512, generator=gen) for _ in range(3)]
    masks = [torch.rand(256, 512, generator=gen) < 0.8 for _ in range(3)]
    assert_same_as_portable(weights, masks, 0.2)
    assert len(passes) == 1


def test_random_scores_select_like_the_portable_selection() -> None:
    weights = [torch.randn(40, 30), torch.randn(17)]
    masks = [torch.rand(40, 30) < 0.7, torch.ones(17, dtype=torch.bool)]
    sources = [RandomScores(w, (3, 1, i)) for i, w in enumerate(weights)]
    want = plan_cuts_portable(sources, masks, 0.35)
    got = plan_cuts([RandomScores(w, (3, 1, i)) for i, w in enumerate(weights)], masks, 0.35)
    assert got == want
    for g, w, m in zip(got, want, masks, strict=True):
        assert torch.equal(apply_cut(m, g), apply_cut(m, w))


def test_one_thread_gives_the_same_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "CHUNK", 64)
    weights = [torch.randn(30, 20), torch.randn(50)]
    masks = [torch.ones(30, 20, dtype=torch.bool), torch.rand(50) < 0.5]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = plan_cuts(_sources(weights), masks, 0.3)
    finally:
        torch.set_num_threads(threads)
    assert [c.mask for c in single] != [None, None]
    for a, b in zip(single, plan_cuts(_sources(weights), masks, 0.3), strict=True):
        assert a == b
        assert torch.equal(a.mask, b.mask)


# --- which groups take the kernels -------------------------------------------------------


def test_the_core_groups_select_cpu_tensors_with_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _spy(monkeypatch, HostPasses, "kept")
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(20, 30, generator=gen), torch.randn(7, 5, generator=gen)]
    portable = [ArrayLayer({"w": w.numpy().copy()}) for w in weights]
    fused = [ArrayLayer({"w": w.clone()}) for w in weights]
    layers = [PrunableLinear(30, 20, bias=False), PrunableLinear(5, 7, bias=False)]
    for layer, w in zip(layers, weights, strict=True):
        layer.parameter_handles()["weight"].set_value(w)
    for _ in range(3):
        MagnitudePruneGroup(portable, 0.3).prune()
        assert not runs
        MagnitudePruneGroup(fused, 0.3).prune()
        Pruner([MagnitudePruneGroup(layers, 0.3)]).prune()
        assert len(runs) == 2
        runs.clear()
    for numpy_layer, torch_layer, module in zip(portable, fused, layers, strict=True):
        assert np.array_equal(numpy_layer.params["w"].mask, torch_layer.params["w"].mask.numpy())
        assert np.array_equal(numpy_layer["w"], torch_layer["w"].numpy())
        assert torch.equal(module.weight_mask, torch_layer.params["w"].mask)
        assert torch.equal(module.weight.detach(), torch_layer["w"])


@pytest.mark.parametrize(
    "case",
    ["numba missing", "mixed dtypes", "another score source"],
)
def test_groups_outside_the_kernels_take_the_portable_selection(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    runs = _spy(monkeypatch, HostPasses, "kept")
    weights = [torch.randn(12, 10), torch.randn(15)]
    sources: list = _sources(weights)
    if case == "numba missing":
        monkeypatch.setattr(pool, "kernels", lambda: None)
    elif case == "mixed dtypes":
        weights[1] = weights[1].half()
        sources = _sources(weights)
    else:

        class Negated(MagnitudeScores):
            def flat(self, start: int, stop: int) -> torch.Tensor:
                return -super().flat(start, stop)

        sources = [Negated(w) for w in weights]
    masks = [torch.ones(w.shape, dtype=torch.bool) for w in weights]
    got = plan_cuts(sources, masks, 0.4)
    assert got == plan_cuts_portable(sources, masks, 0.4)
    assert not runs


def test_weights_of_another_layout_take_the_kernels_with_the_same_cuts(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _spy(monkeypatch, HostPasses, "kept")
    torch.manual_seed(0)
    weights = [torch.randn(10, 12).T, torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)]
    weights[1][0, 0] = 0.0  # ties at zero: broken in C order, whatever the memory layout
    masks = [torch.ones(w.shape, dtype=torch.bool) for w in weights]
    got = plan_cuts(_sources(weights), masks, 0.4)
    assert runs
    contiguous = [w.contiguous() for w in weights]
    assert got == plan_cuts_portable(_sources(contiguous), [m.clone() for m in masks], 0.4)
    want = plan_cuts_portable(_sources(contiguous), [m.clone() for m in masks], 0.4)
    for cut, expected, m in zip(got, want, masks, strict=True):
        assert cut.mask is not None
        assert torch.equal(apply_cut(m, cut), apply_cut(m, expected))


def test_a_channels_last_weight_is_zeroed_in_place_in_memory_order() -> None:
    torch.manual_seed(0)
    param = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)
    mask = (torch.rand(4, 3, 5, 5) > 0.5).to(memory_format=torch.channels_last)
    expected = torch.where(mask, param, 0.0)
    assert torch_cpu.zero_pruned(param, mask)
    assert torch.equal(param, expected)
    assert param.is_contiguous(memory_format=torch.channels_last)
    assert not torch.signbit(param[~mask]).any()


# --- zeroing -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_zeroing_writes_plus_zero_and_keeps_kept_bits(dtype: torch.dtype) -> None:
    w = torch.tensor([-1.5, math.inf, math.nan, -0.0, 2.0, -math.inf, 3.0, math.nan], dtype=dtype)
    mask = torch.tensor([False, False, False, True, True, True, False, True])
    before, version = w.clone(), w._version
    assert torch_cpu.zero_pruned(w, mask)
    bits, old = w.view(torch.int8), before.view(torch.int8)
    width = w.element_size()
    for i, kept in enumerate(mask.tolist()):
        entry = bits[i * width : (i + 1) * width]
        assert torch.equal(entry, old[i * width : (i + 1) * width] if kept else torch.zeros_like(entry))
    assert w._version > version  # autograd and the masking hooks see the write


def test_zeroing_outside_the_fast_path_is_left_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    w, mask = torch.randn(6, 4).T, torch.ones(4, 6, dtype=torch.bool)
    assert not torch_cpu.zero_pruned(w, mask)  # not contiguous
    monkeypatch.setattr(pool, "kernels", lambda: None)
    assert not torch_cpu.zero_pruned(torch.randn(5), torch.ones(5, dtype=torch.bool))
    layer = PrunableLinear(4, 3)
    layer.parameter_handles()["weight"].set_mask(torch.rand(3, 4) < 0.5)
    assert torch.equal(layer.weight.detach() == 0, ~layer.weight_mask | (layer.weight.detach() == 0))
    assert not (layer.weight.detach()[~layer.weight_mask]).any()


def test_random_group_on_cpu_tensors_matches_numpy() -> None:
    shapes = [(30, 20), (64,)]
    numpy_layers = [ArrayLayer({"w": np.ones(s, dtype=np.float32)}) for s in shapes]
    torch_layers = [ArrayLayer({"w": torch.ones(s)}) for s in shapes]
    for layers in (numpy_layers, torch_layers):
        group = RandomPruneGroup(layers, 0.3, seed=5)
        for _ in range(3):
            group.prune()
    for a, b in zip(numpy_layers, torch_layers, strict=True):
        assert np.array_equal(a.params["w"].mask, b.params["w"].mask.numpy())


def test_the_backend_does_not_depend_on_what_was_imported() -> None:
    # a fresh process that never imports lotto_backends: torch tensors still take the
    # torch backend (loaded on first sight of a tensor), with the masks of this process
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from lotto_core import ArrayLayer, MagnitudePruneGroup\n"
        "w = torch.randn(300, 200, generator=torch.Generator().manual_seed(4))\n"
        "layer = ArrayLayer({'w': w})\n"
        "MagnitudePruneGroup([layer], 0.3).prune()\n"
        "from lotto_core.backend import backend_for\n"
        "print(backend_for(w).name, int(layer.params['w'].mask.flatten().nonzero()[:5].sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    w = torch.randn(300, 200, generator=torch.Generator().manual_seed(4))
    layer = ArrayLayer({"w": w})
    MagnitudePruneGroup([layer], 0.3).prune()
    assert out.stdout.split() == ["torch", str(int(layer.params["w"].mask.flatten().nonzero()[:5].sum()))]
