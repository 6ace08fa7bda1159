"""Differential test against torch.nn.utils.prune.global_unstructured.

torch prunes ``round(amount * remaining)`` weights of the remaining ones (Python's
round, half to even), Lotto ``ceil(p * remaining)``. The sizes here make ``p *
remaining`` an integer in every round, where both rules agree; the magnitudes are
distinct, so torch's unordered top-k has no ties to break differently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as torch_prune

from lotto_core import ArrayLayer, MagnitudePruneGroup, prune_count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_rounds_match_global_unstructured(seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(20, 30), (25, 16)]  # 1000 weights: 800, 640, 512 remain, p * remaining is whole
    total = sum(a * b for a, b in shapes)
    magnitudes = torch.randperm(total, generator=gen).double() + 1.0
    signs = torch.randint(0, 2, (total,), generator=gen).double() * 2 - 1
    flat = magnitudes * signs
    weights = [w.reshape(s).clone() for w, s in zip(flat.split([a * b for a, b in shapes]), shapes, strict=True)]

    modules = [torch.nn.Linear(s[1], s[0], bias=False).double() for s in shapes]
    with torch.no_grad():
        for m, w in zip(modules, weights, strict=True):
            m.weight.copy_(w)
    layers = [ArrayLayer({"weight": w.clone()}) for w in weights]
    group = MagnitudePruneGroup(layers, 0.2)

    remaining = total
    for _ in range(3):
        assert round(0.2 * remaining) == prune_count(0.2, remaining)
        torch_prune.global_unstructured(
            [(m, "weight") for m in modules], pruning_method=torch_prune.L1Unstructured, amount=0.2
        )
        group.prune()
        remaining -= prune_count(0.2, remaining)
        for m, layer in zip(modules, layers, strict=True):
            np.testing.assert_array_equal(m.weight_mask.bool().numpy(), layer.params["weight"].mask.numpy())
            assert torch.equal(m.weight.detach(), layer["weight"])
    assert sum(int(layer.params["weight"].mask.sum()) for layer in layers) == remaining == 512


def test_the_rounding_rules_differ_where_documented():
    # torch rounds 0.2 * 37 = 7.4 to 7; Lotto (and the seed library) take ceil: 8
    assert round(0.2 * 37) == 7
    assert prune_count(0.2, 37) == 8
