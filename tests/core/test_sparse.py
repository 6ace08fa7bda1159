"""Sparse semantics: which entries are stored, the 2-D layout, index dtypes, devices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from lotto_core import ArrayLayer, csr_components, layers_to_scipy, sparse_shape, to_scipy
from lotto_core._array_api import is_host_array

from .helpers import assert_on


@pytest.mark.parametrize(
    ("shape", "expected"), [((5,), (1, 5)), ((3, 4), (3, 4)), ((8, 3, 5, 5), (8, 75)), ((2, 3, 4), (2, 12))]
)
def test_sparse_shape(shape, expected):
    assert sparse_shape(shape) == expected


def test_sparse_shape_of_a_scalar_is_an_error():
    with pytest.raises(ValueError, match="0-d"):
        sparse_shape(())


@pytest.mark.parametrize("shape", [(7,), (6, 5), (4, 3, 2, 2)])
def test_csr_stores_exactly_the_kept_entries(xp, device, shape):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(shape).astype(np.float32)
    m = rng.random(shape) < 0.4
    w.ravel()[np.flatnonzero(m)[:2]] = 0.0  # kept weights that are exactly 0 are stored
    parts = csr_components(xp.asarray(w, device=device), xp.asarray(m, device=device))
    for arr in (parts.data, parts.indices, parts.indptr):
        assert_on(arr, xp, device)
    assert parts.indices.dtype == xp.int32
    assert parts.indptr.dtype == xp.int32
    assert parts.nnz == int(m.sum())
    assert parts.original_shape == shape

    if not is_host_array(parts.data):
        with pytest.raises(ValueError, match="allow_device_copy=True"):
            to_scipy(xp.asarray(w, device=device), xp.asarray(m, device=device))
    sp = to_scipy(xp.asarray(w, device=device), xp.asarray(m, device=device), allow_device_copy=True)
    assert isinstance(sp, scipy.sparse.csr_array)
    assert sp.shape == sparse_shape(shape)
    assert sp.nnz == int(m.sum())
    assert sp.has_sorted_indices
    dense = np.where(m, w, 0).reshape(sparse_shape(shape))
    np.testing.assert_array_equal(sp.toarray(), dense)
    rows, _cols = sp.nonzero()  # scipy's nonzero drops explicit zeros; the stored set does not
    assert len(rows) == int(m.sum()) - 2


def test_csr_checks_its_inputs(xp, device):
    w = xp.ones((2, 3), device=device)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 2\)"):
        csr_components(w, xp.ones((3, 2), dtype=xp.bool, device=device))
    with pytest.raises(TypeError, match="mask must be boolean"):
        csr_components(w, xp.ones((2, 3), device=device))


def test_float16_is_widened_for_scipy():
    sp = to_scipy(np.ones((2, 2), dtype=np.float16), np.eye(2, dtype=bool))
    assert sp.dtype == np.float32
    assert sp.nnz == 2


def test_layers_to_scipy_names_every_prunable_parameter():
    a = ArrayLayer({"w": np.array([[1.0, 0.0], [2.0, 3.0]]), "b": np.ones(2)}, prunable=["w"])
    b = ArrayLayer({"w": np.arange(3.0)})
    b.params["w"].set_mask(np.array([True, False, True]))
    matrices = layers_to_scipy([("first", a), ("", b)])
    assert list(matrices) == ["first.w", "w"]
    assert matrices["first.w"].nnz == 4  # the kept 0.0 is stored
    np.testing.assert_array_equal(matrices["w"].toarray(), [[0.0, 0.0, 2.0]])
