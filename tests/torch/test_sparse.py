"""sparsify and to_scipy: truly sparse storage with the masked dense layer's outputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from lotto_backends.torch import (
    PRUNABLE_TYPES,
    MagnitudePruneGroup,
    PrunableLinear,
    PrunableModule,
    Pruner,
    SparseLinear,
    SparseStored,
    make_prunable,
    sparsify,
    to_scipy,
)
from lotto_core import sparse_shape

from .cases import CASES, assert_same_outputs


def _pruned(base, p=0.6):
    torch.manual_seed(0)
    layer = PRUNABLE_TYPES[base](CASES[base][0]()).eval()
    Pruner([MagnitudePruneGroup([layer], p)]).prune()
    return layer


@pytest.mark.parametrize("base", list(PRUNABLE_TYPES), ids=lambda t: t.__name__)
def test_sparse_layer_equals_the_masked_dense_layer(base):
    layer = _pruned(base)
    sparse = sparsify(layer).eval()
    assert isinstance(sparse, SparseLinear if base is nn.Linear else SparseStored)
    assert_same_outputs(sparse, layer, CASES[base][1], exact=False)
    stored = [t for t in sparse.state_dict().values() if t.layout == torch.sparse_csr]
    masks = [h.get_mask() for h in layer.parameter_handles().values() if h.get_mask() is not None]
    assert sorted(t._nnz() for t in stored) == sorted(int(m.sum()) for m in masks)
    assert not any(isinstance(m, PrunableModule) for m in sparse.modules())


def test_sparsify_copies_a_nested_model_and_leaves_it_unchanged():
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 3)))
    plain_tail = nn.Linear(3, 2)
    model.append(plain_tail)
    layers = [m for m in model.modules() if isinstance(m, PrunableModule)]
    Pruner([MagnitudePruneGroup(layers, 0.7)]).prune()
    x = torch.randn(5, 2, 8)
    expected = model(x)
    small = sparsify(model)
    assert isinstance(small[0], SparseStored)
    assert isinstance(small[2], SparseLinear)
    assert isinstance(small[5], nn.Linear)
    assert small[5] is not plain_tail
    torch.testing.assert_close(small(x), expected)
    assert isinstance(model[2], PrunableLinear)  # the original keeps its layers
    buffer = io.BytesIO()
    torch.save(small, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), expected)


@pytest.mark.parametrize(("p", "path"), [(0.95, "sparse"), (0.5, "dense")])
def test_sparse_linear_chooses_its_compute_path(p, path):
    torch.manual_seed(0)
    layer = PrunableLinear(64, 32)
    Pruner([MagnitudePruneGroup([layer], p)]).prune()
    sparse = SparseLinear(layer)
    assert sparse.dense_compute == (path == "dense")
    assert f"compute={path}" in repr(sparse)
    for shape in [(64,), (3, 64), (2, 5, 64)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(sparse(x), layer(x))
    assert "_dense_weight" not in sparse.state_dict()


def test_to_scipy_follows_the_core_semantics():
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4)))
    Pruner([MagnitudePruneGroup([model[0], model[2]], 0.5)]).prune()
    mats = to_scipy(model)
    assert set(mats) == {"0.weight", "2.weight"}
    conv = mats["0.weight"]
    assert conv.shape == sparse_shape((3, 2, 3, 3)) == (3, 18)
    assert conv.nnz == int(model[0].weight_mask.sum())
    np.testing.assert_array_equal(conv.toarray(), model[0].weight.detach().reshape(3, 18).numpy())
    with pytest.raises(TypeError, match="model must be"):
        to_scipy("model")
