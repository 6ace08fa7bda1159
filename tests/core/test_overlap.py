"""Mask overlap: kept-in-both counts and Jaccard similarity of two sets of masks, from
pruners, saved states, mappings or sequences, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest

from lotto_core import MagnitudePruneGroup, Pruner, RandomPruneGroup, mask_overlap

from .helpers import host, layers_of


def test_counts_and_jaccard_against_numpy(xp, device):
    rng = np.random.default_rng(0)
    a = [rng.random((5, 6)) > 0.4, rng.random(7) > 0.7]
    b = [rng.random((5, 6)) > 0.5, rng.random(7) > 0.2]
    overlap = mask_overlap([xp.asarray(m, device=device) for m in a], [xp.asarray(m, device=device) for m in b])
    for row, ma, mb in zip(overlap.parameters, a, b, strict=True):
        both = int((ma & mb).sum())
        assert (row.kept_a, row.kept_b, row.kept_both, row.total) == (int(ma.sum()), int(mb.sum()), both, ma.size)
        assert row.jaccard == pytest.approx(both / int((ma | mb).sum()))
    union = sum(int((ma | mb).sum()) for ma, mb in zip(a, b, strict=True))
    assert overlap.jaccard == pytest.approx(overlap.kept_both / union)


def test_the_same_ticket_overlaps_fully_and_two_random_ones_less(xp, device):
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((8, 8)), rng.standard_normal(20)]
    ticket = Pruner([MagnitudePruneGroup(layers_of(xp, device, weights), 0.5)])
    same = Pruner([MagnitudePruneGroup(layers_of(xp, device, weights), 0.5)])
    first = Pruner([RandomPruneGroup(layers_of(xp, device, weights), 0.5, seed=1)])
    second = Pruner([RandomPruneGroup(layers_of(xp, device, weights), 0.5, seed=2)])
    for pruner in (ticket, same, first, second):
        pruner.prune()
    assert mask_overlap(ticket, same).jaccard == 1.0
    assert mask_overlap(ticket.state_dict(), same.state_dict()).jaccard == 1.0
    random = mask_overlap(first, second)
    assert 0.0 < random.jaccard < 1.0
    assert random.kept_both == sum(
        int((host(a) & host(b)).sum())
        for a, b in zip(
            [layer.params["w"].mask for layer in first.layers()],
            [layer.params["w"].mask for layer in second.layers()],
            strict=True,
        )
    )


def test_masks_that_do_not_match_are_refused(xp, device):
    a = xp.ones((2, 3), dtype=xp.bool, device=device)
    with pytest.raises(ValueError, match="different masks"):
        mask_overlap({"w": a}, {"v": a})
    with pytest.raises(ValueError, match="has shape"):
        mask_overlap([a], [xp.ones((3, 2), dtype=xp.bool, device=device)])
    with pytest.raises(TypeError, match="must be boolean"):
        mask_overlap([a], [xp.ones((2, 3), device=device)])
    with pytest.raises(TypeError, match="a must be a Pruner"):
        mask_overlap(3, [a])
