"""The strategy pieces on every namespace: every score, scope and amount against a
brute-force NumPy reference (sort the kept entries of each part by (score, parameter,
flat index), drop the first k), the gradual schedule, the ERK and uniform shares, and
bad input that changes nothing."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotto_core import PruneGroup, Pruner
from lotto_core.strategy import (
    ERK,
    SNIP,
    Global,
    Gradual,
    GraSP,
    Magnitude,
    PerLayer,
    Random,
    Rate,
    ScoreFn,
    Sparsity,
    Uniform,
)

from .helpers import host, layers_of, masks, values, weight_lists

SCORES = ["magnitude", "random", "signed", "snip", "grasp"]
SCOPES = {"global": Global(), "per-layer": PerLayer(), "uniform": Uniform()}


def _score(kind: str, grads: dict[int, np.ndarray], xp, device):
    """The strategy piece, and its scores in NumPy for the reference."""
    grad = lambda layer, name: xp.asarray(grads[id(layer)], dtype=xp.float32, device=device)  # noqa: E731
    return {
        "magnitude": Magnitude(),
        "random": Random(seed=3),
        "signed": ScoreFn(lambda w, layer, name: w),
        "snip": SNIP(grad),
        "grasp": GraSP(grad),
    }[kind]


def _reference_scores(kind, weights, grads, layers, rounds):
    out = []
    for i, (w, layer) in enumerate(zip(weights, layers, strict=True)):
        g = grads[id(layer)].astype(np.float32)
        out.append(
            {
                "magnitude": np.abs(w),
                "random": np.random.default_rng([3, rounds, i]).random(w.size, dtype=np.float32).reshape(w.shape),
                "signed": w,
                "snip": np.abs(w * g),
                "grasp": w * g,
            }[kind]
        )
    return out


def _target(amount, kept: int, size: int) -> int:
    if isinstance(amount, Rate):
        return kept - min(kept, math.ceil(Fraction(str(amount.p)) * kept))
    return min(kept, size - math.ceil(Fraction(str(amount.sparsity)) * size))


def _largest_remainder(density: Fraction, sizes: list[int], total: int) -> list[int]:
    exact = [density * n for n in sizes]
    counts = [math.floor(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))[: total - sum(counts)]:
        counts[i] += 1
    return counts


def reference(scores, kept, scope: str, amount) -> list[np.ndarray]:
    """The new masks, the slow and obvious way."""
    sizes = [m.size for m in kept]
    n_kept = [int(m.sum()) for m in kept]
    if scope == "global":
        parts = [(list(range(len(kept))), sum(n_kept) - _target(amount, sum(n_kept), sum(sizes)))]
    elif scope == "per-layer":
        parts = [([i], n_kept[i] - _target(amount, n_kept[i], sizes[i])) for i in range(len(kept))]
    else:
        total = _target(amount, sum(n_kept), sum(sizes))
        shares = _largest_remainder(Fraction(total, sum(sizes)), sizes, total)
        parts = [([i], n_kept[i] - min(n_kept[i], shares[i])) for i in range(len(kept))]
    out = [m.copy().ravel() for m in kept]
    for indices, k in parts:
        order = sorted(
            (float(scores[i].ravel()[j]), i, int(j)) for i in indices for j in np.flatnonzero(kept[i].ravel())
        )
        for _, i, j in order[:k]:
            out[i][j] = False
    return [o.reshape(m.shape) for o, m in zip(out, kept, strict=True)]


weights_lists = weight_lists(max_side=7, bound=6, max_size=3)  # small: the reference sorts
amounts = st.sampled_from([0.0, 0.07, 0.3, 0.5]).map(Rate) | st.sampled_from([0.0, 0.25, 0.6, 0.9, 1.0]).map(Sparsity)


@given(
    weights=weights_lists,
    score=st.sampled_from(SCORES),
    scope=st.sampled_from(sorted(SCOPES)),
    amount=amounts,
    data=st.data(),
)
def test_every_score_scope_and_amount_matches_the_brute_force(xp, device, weights, score, scope, amount, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    layers = layers_of(xp, device, weights)
    kept = [rng.random(w.shape) < 0.8 for w in weights]
    for layer, k in zip(layers, kept, strict=True):
        layer.params["w"].set_mask(xp.asarray(k, device=device))
    grads = {
        id(layer): np.round(rng.standard_normal(w.shape) * 4).astype(np.float32)
        for layer, w in zip(layers, weights, strict=True)
    }
    group = PruneGroup(layers, amount, score=_score(score, grads, xp, device), scope=SCOPES[scope])
    for rounds in range(2):
        current = values(layers)
        expected = reference(_reference_scores(score, current, grads, layers, rounds), kept, scope, amount)
        group.prune()
        kept = masks(layers)
        for got, want in zip(kept, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        for v, m in zip(values(layers), kept, strict=True):
            assert (v[~m] == 0).all()


@pytest.mark.parametrize(
    "shapes",
    [[(100, 10), (10, 10)], [(16, 3, 3, 3), (32, 16, 3, 3), (10, 32)], [(500,), (4, 4), (7, 9, 2)]],
)
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_erk_keeps_the_target_exactly_and_smaller_layers_denser(xp, device, shapes, sparsity):
    layers = layers_of(xp, device, [np.ones(s) for s in shapes])
    PruneGroup(layers, Sparsity(sparsity), scope=ERK()).prune()
    kept = [int(m.sum()) for m in masks(layers)]
    sizes = [math.prod(s) for s in shapes]
    assert sum(kept) == sum(sizes) - math.ceil(Fraction(str(sparsity)) * sum(sizes))
    raw = [sum(s) / math.prod(s) for s in shapes]
    density = [k / n for k, n in zip(kept, sizes, strict=True)]
    for i in range(len(shapes)):  # ERK density grows with (sum of dims) / (product of dims), up to 1
        for j in range(len(shapes)):
            if raw[i] > raw[j]:
                assert density[i] >= density[j] - 1.0 / sizes[i] - 1.0 / sizes[j]
    # the densities of the layers that are not dense follow the ERK ratios, up to rounding
    loose = [i for i in range(len(shapes)) if kept[i] < sizes[i]]
    for i in loose:
        for j in loose:
            assert density[i] / raw[i] == pytest.approx(density[j] / raw[j], abs=2.0 / min(kept[i], kept[j]) + 1e-9)


def test_uniform_shares_by_largest_remainder(xp, device):
    layers = layers_of(xp, device, [np.ones(10), np.ones(7), np.ones(3)])
    PruneGroup(layers, Sparsity(0.5), scope=Uniform()).prune()
    # 5, 3.5 and 1.5 of 10, 7 and 3: the half left over goes to the earlier of the tied remainders
    assert [int(m.sum()) for m in masks(layers)] == [5, 4, 1]


def test_the_cubic_schedule_of_zhu_and_gupta(xp, device):
    schedule = Gradual(initial=0.0, final=0.8, begin_step=10, end_step=50, frequency=10)
    assert [schedule.due(t) for t in (0, 9, 10, 15, 20, 50, 60)] == [False, False, True, False, True, True, False]
    assert schedule.sparsity_at(10) == 0
    assert schedule.sparsity_at(30) == Fraction(8, 10) * (1 - Fraction(1, 8))
    assert schedule.sparsity_at(50) == Fraction(8, 10)
    layer = layers_of(xp, device, [np.random.default_rng(0).standard_normal(1000)])[0]
    group = PruneGroup([layer], schedule)
    pruner = Pruner([group])
    seen = []
    for t in range(61):
        if pruner.step(t):
            seen.append((t, int(masks([layer])[0].sum())))
    assert seen == [(10, 1000), (20, 1000 - 463), (30, 1000 - 700), (40, 1000 - 788), (50, 200)]
    w = np.abs(values([layer])[0])
    assert (
        w[masks([layer])[0]].min() >= np.abs(np.random.default_rng(0).standard_normal(1000))[~masks([layer])[0]].max()
    )


def test_bad_strategies_are_refused_and_change_nothing(xp, device):
    layer = layers_of(xp, device, [np.arange(1.0, 9.0)])[0]
    with pytest.raises(TypeError, match=r"score must be a lotto_core\.strategy\.Score"):
        PruneGroup([layer], 0.5, score=abs)
    with pytest.raises(TypeError, match="scope must be"):
        PruneGroup([layer], 0.5, scope="global")
    with pytest.raises(ValueError, match="amount must be in"):
        PruneGroup([layer], 1.5)
    with pytest.raises(ValueError, match="end_step"):
        Gradual(0.0, 0.5, begin_step=10, end_step=10, frequency=1)
    with pytest.raises(ValueError, match="final"):
        Gradual(0.5, 0.2, begin_step=0, end_step=10, frequency=1)
    with pytest.raises(TypeError, match="Gradual"):
        PruneGroup([layer], 0.5).step(3)
    with pytest.raises(ValueError, match="step"):
        PruneGroup([layer], Gradual(0.0, 0.5, begin_step=0, end_step=10, frequency=1)).prune()
    bad_shape = PruneGroup([layer], 0.5, score=ScoreFn(lambda w, layer, name: w[:3]))
    with pytest.raises(ValueError, match="shape"):
        bad_shape.prune()
    ints = PruneGroup([layer], 0.5, score=ScoreFn(lambda w, layer, name: xp.astype(w, xp.int32)))
    with pytest.raises(TypeError, match="real floats"):
        ints.prune()
    assert masks([layer])[0].all()
    np.testing.assert_array_equal(host(layer["w"]), np.arange(1.0, 9.0))


def test_a_composed_group_names_its_pieces_in_a_saved_state(xp, device):
    layers = layers_of(xp, device, [np.arange(1.0, 9.0)])
    group = PruneGroup(layers, Sparsity(0.5), score=Random(seed=2), scope=PerLayer())
    assert group.config() == {
        "type": "PruneGroup",
        "amount": "Sparsity",
        "amount.sparsity": 0.5,
        "score": "Random",
        "score.seed": 2,
        "scope": "PerLayer",
    }
    pruner = Pruner([group])
    pruner.prune()
    other = Pruner([PruneGroup(layers, Sparsity(0.5), score=Random(seed=3), scope=PerLayer())])
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(pruner.state_dict())


def _nm_reference(w: np.ndarray, kept: np.ndarray, n: int, m: int) -> np.ndarray:
    """Along axis 1, in every block of m: keep the n highest |w| of the kept entries."""
    out = kept.copy()
    moved_w, moved_k = np.moveaxis(np.abs(w), 1, -1), np.moveaxis(out, 1, -1)
    for index in np.ndindex(moved_w.shape[:-1]):
        for start in range(0, moved_w.shape[-1], m):
            block = [j for j in range(start, start + m) if moved_k[index][j]]
            ranked = sorted(block, key=lambda j: (moved_w[index][j], j))
            for j in ranked[: max(0, len(block) - n)]:
                moved_k[(*index, j)] = False
    return out


@given(
    shape=st.tuples(st.integers(1, 3), st.sampled_from([4, 8, 12]), st.integers(1, 3)),
    nm=st.sampled_from([(2, 4), (1, 4), (4, 8), (3, 4)]),
    data=st.data(),
)
def test_n_of_every_m_matches_the_brute_force(xp, device, shape, nm, data):
    from lotto_core.strategy import NM

    n, m = nm
    if shape[1] % m:
        shape = (shape[0], m, shape[2])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    w = rng.integers(-3, 4, shape).astype(np.float32)  # many ties
    kept = rng.random(shape) < 0.9
    layer = layers_of(xp, device, [w])[0]
    layer.params["w"].set_mask(xp.asarray(kept, device=device))
    PruneGroup([layer], None, structure=NM(n, m)).prune()
    want = _nm_reference(w * kept, kept, n, m)
    np.testing.assert_array_equal(masks([layer])[0], want)
    assert (values([layer])[0][~want] == 0).all()


def _unit_reference(norms: list[np.ndarray], kept: list[np.ndarray], k: int) -> list[np.ndarray]:
    order = sorted(
        (float(v), i, j) for i, (n, u) in enumerate(zip(norms, kept, strict=True)) for j, v in enumerate(n) if u[j]
    )
    out = [u.copy() for u in kept]
    for _, i, j in order[:k]:
        out[i][j] = False
    return out


def test_channels_and_blocks_are_scored_by_their_norm(xp, device):
    from lotto_core.strategy import Blocks, Channels

    rng = np.random.default_rng(5)
    weights = [rng.standard_normal((6, 4, 3)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)]
    weights[1][2] = weights[1][0]  # a tied channel: the earlier goes first
    layers = layers_of(xp, device, [w.copy() for w in weights])  # NumPy layers write into their arrays
    PruneGroup(layers, Rate(0.5), structure=Channels()).prune()  # 5 of the 10 channels
    norms = [np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1)) for w in weights]
    want = _unit_reference(norms, [np.ones(6, bool), np.ones(4, bool)], 5)
    for got, w, u in zip(masks(layers), weights, want, strict=True):
        np.testing.assert_array_equal(got, np.broadcast_to(u.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape))

    layers = layers_of(xp, device, [weights[1].copy()])
    PruneGroup(layers, Sparsity(0.5), structure=Blocks(2, 4)).prune()  # 2 of the 4 blocks of 2 x 4
    blocks = weights[1].reshape(2, 2, 2, 4)
    norms = np.sqrt((blocks**2).sum(axis=(1, 3))).ravel()
    (keep,) = _unit_reference([norms], [np.ones(4, bool)], 2)
    want = np.broadcast_to(keep.reshape(2, 1, 2, 1), (2, 2, 2, 4)).reshape(4, 8)
    np.testing.assert_array_equal(masks(layers)[0], want)


def test_structures_refuse_what_they_cannot_tile(xp, device):
    from lotto_core.strategy import NM, Blocks, Channels

    layer = layers_of(xp, device, [np.ones((3, 6))])[0]
    with pytest.raises(ValueError, match="multiple of 4"):
        PruneGroup([layer], None, structure=NM(2, 4)).prune()
    with pytest.raises(ValueError, match="do not tile"):
        PruneGroup([layer], 0.5, structure=Blocks(2, 2)).prune()
    with pytest.raises(ValueError, match="axis=2"):
        PruneGroup([layer], 0.5, structure=Channels(axis=2)).prune()
    with pytest.raises(ValueError, match="amount must be None"):
        PruneGroup([layer], 0.5, structure=NM(2, 4))
    with pytest.raises(ValueError, match="n <= m"):
        NM(5, 4)
    assert masks([layer])[0].all()
