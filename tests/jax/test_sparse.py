"""sparsify: BCOO-backed layers whose outputs equal the masked dense ones; to_scipy."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.sparse
from flax import nnx
from jax.experimental import sparse

from lotto_backends.jax import (
    PRUNABLE_TYPES,
    MagnitudePruneGroup,
    PrunableLinear,
    Pruner,
    SparseLinear,
    SparseStored,
    SparseWeight,
    make_prunable,
    sparsify,
    to_scipy,
)
from lotto_core import to_scipy as weight_to_scipy

from .cases import CASES, Case, scramble


def _output(model: nnx.Module, args: tuple[object, ...]) -> np.ndarray:
    return np.asarray(jax.tree.leaves(nnx.jit(lambda m, *a: m(*a))(model, *args))[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_sparse_layer_computes_like_the_masked_dense_one_under_jit(case: Case) -> None:
    layer = case.build(PRUNABLE_TYPES[case.base])
    scramble(layer)
    Pruner([MagnitudePruneGroup([layer], 0.7)]).prune()
    before = {k: h.get_value() for k, h in layer.parameter_handles().items()}
    small = sparsify(layer)
    assert isinstance(small, SparseLinear if case.base is nnx.Linear else SparseStored)
    root = small if isinstance(small, SparseLinear) else small.layer
    stored = {".".join(map(str, p)): n for p, n in nnx.iter_graph(root) if isinstance(n, SparseWeight)}
    masks = {k: h.get_mask() for k, h in layer.parameter_handles().items() if h.get_mask() is not None}
    assert set(stored) == set(masks)  # each pruned weight is stored sparsely, and only as BCOO
    for key, mask in masks.items():
        assert isinstance(stored[key].get_raw_value(), sparse.BCOO)
        assert stored[key].get_raw_value().nse == int(mask.sum())
    args = case.inputs(layer)
    np.testing.assert_allclose(_output(small, args), _output(layer, args), rtol=2e-6, atol=1e-6)
    for key, handle in layer.parameter_handles().items():  # the pruned model is untouched
        np.testing.assert_array_equal(handle.get_value(), before[key])


def test_sparsify_a_whole_model_keeps_other_layers_and_shared_ones() -> None:
    model = make_prunable(
        nnx.Sequential(nnx.Linear(6, 8, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    )
    model.layers.append(nnx.Linear(2, 2, rngs=nnx.Rngs(2)))  # appended after conversion: stays plain
    Pruner([MagnitudePruneGroup([model.layers[0], model.layers[2]], 0.8)]).prune()
    small = sparsify(model)
    assert isinstance(small.layers[0], SparseLinear)
    assert isinstance(small.layers[2], SparseLinear)
    assert type(small.layers[3]) is nnx.Linear
    x = jax.random.normal(jax.random.key(0), (4, 6))
    np.testing.assert_allclose(small(x), model(x), rtol=2e-6, atol=1e-6)
    assert type(model.layers[0]) is PrunableLinear


def test_kept_zeros_are_stored_and_to_scipy_follows_the_core() -> None:
    layer = PrunableLinear(5, 4, rngs=nnx.Rngs(0))
    Pruner([MagnitudePruneGroup([layer], 0.5)]).prune()
    mask = layer.kernel_mask.get_value()
    kept = np.argwhere(np.asarray(mask))[0]
    layer.kernel.set_value(layer.kernel.get_value().at[tuple(kept)].set(0.0))
    assert sparsify(layer).kernel.get_raw_value().nse == int(mask.sum())
    matrices = to_scipy(nnx.Sequential(layer), allow_device_copy=True)  # the layer may be on a GPU
    assert list(matrices) == ["layers.0.kernel"]
    expected = weight_to_scipy(layer.kernel.get_value(), mask, allow_device_copy=True)
    got = matrices["layers.0.kernel"]
    assert isinstance(got, scipy.sparse.csr_array)
    assert got.nnz == int(mask.sum())
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.toarray(), np.asarray(layer.kernel.get_value()))


def test_bad_input() -> None:
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        sparsify([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        to_scipy("model")  # type: ignore[arg-type]
