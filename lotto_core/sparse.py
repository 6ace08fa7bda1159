"""Sparse semantics: what a pruned parameter becomes when it is stored sparsely.

Defined once here, for every backend:

* exactly the kept entries are stored, including kept weights that are exactly 0.0;
  pruned entries never are;
* the layout is 2-D CSR: a 2-D weight keeps its shape, an N-D kernel ``(out, *rest)`` is
  reshaped to ``(out, prod(rest))`` in C order, and a 1-D weight becomes one row
  ``(1, n)``;
* column indices and row pointers are int32 when every index and the stored count fit
  in int32, else int64; within a row, columns are ascending.

``csr_components`` computes the CSR arrays on the weight's own device; ``to_scipy``
turns them into a ``scipy.sparse.csr_array``, and the backends build their native sparse
types from the same components.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ._array_api import Array, array_namespace, device, to_numpy
from .protocol import PrunableLayer

__all__ = ["CSRComponents", "csr_components", "layers_to_scipy", "sparse_index_dtype", "sparse_shape", "to_scipy"]

_INT32_MAX = 2**31 - 1


def sparse_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D shape a weight of ``shape`` is stored with.

    >>> sparse_shape((64, 3, 5, 5))
    (64, 75)
    >>> sparse_shape((10,))
    (1, 10)
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        raise ValueError("a 0-d array has no sparse layout; it needs at least one dimension")
    if len(shape) == 1:
        return (1, shape[0])
    return (shape[0], math.prod(shape[1:]))


def sparse_index_dtype(shape: tuple[int, int], nnz: int) -> type[np.signedinteger]:
    """int32 where every index and the stored count fit, else int64."""
    return np.int32 if max(shape[0], shape[1], nnz) <= _INT32_MAX else np.int64


@dataclass(frozen=True)
class CSRComponents:
    """The CSR arrays of a masked weight, in the weight's namespace and on its device."""

    data: Array
    indices: Array
    indptr: Array
    shape: tuple[int, int]
    original_shape: tuple[int, ...]

    @property
    def nnz(self) -> int:
        """Number of stored entries: the kept weights."""
        return int(self.data.shape[0])


def csr_components(weight: Array, mask: Array) -> CSRComponents:
    """The kept entries of ``weight`` (where ``mask`` is ``True``) in the 2-D CSR layout.

    Raises
    ------
    ValueError
        If the shapes differ or the mask is on another device.
    TypeError
        If ``mask`` is not boolean.
    """
    xp = array_namespace(weight, mask)
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, weight has {tuple(weight.shape)}")
    if mask.dtype != xp.bool:
        raise TypeError(f"mask must be boolean, got {mask.dtype}")
    if device(mask) != device(weight):
        raise ValueError(f"mask is on {device(mask)}, weight on {device(weight)}")
    rows, cols = sparse_shape(tuple(weight.shape))
    w2, m2 = xp.reshape(weight, (rows, cols)), xp.reshape(mask, (rows, cols))
    data = w2[m2]
    nnz = int(data.shape[0])
    itype = getattr(xp, np.dtype(sparse_index_dtype((rows, cols), nnz)).name)
    _, indices = xp.nonzero(m2)
    per_row = xp.sum(xp.astype(m2, itype), axis=1, dtype=itype)
    indptr = xp.cumulative_sum(per_row, include_initial=True, dtype=itype)
    return CSRComponents(data, xp.astype(indices, itype), indptr, (rows, cols), tuple(int(d) for d in weight.shape))


def to_scipy(weight: Array, mask: Array, *, allow_device_copy: bool = False) -> scipy.sparse.csr_array:
    """The masked ``weight`` as a ``scipy.sparse.csr_array`` with the core's semantics.

    A weight that is not in host memory raises unless ``allow_device_copy=True``.
    float16 data is widened to float32, which SciPy's sparse arrays need.

    Examples
    --------
    >>> w = np.array([[0.0, 2.0], [3.0, 4.0]]); m = np.array([[True, False], [False, True]])
    >>> to_scipy(w, m).toarray()
    array([[0., 0.],
           [0., 4.]])
    >>> to_scipy(w, m).nnz  # the kept 0.0 is stored
    2
    """
    parts = csr_components(weight, mask)
    data = to_numpy(parts.data, allow_device_copy=allow_device_copy)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    indices = to_numpy(parts.indices, allow_device_copy=allow_device_copy)
    indptr = to_numpy(parts.indptr, allow_device_copy=allow_device_copy)
    return scipy.sparse.csr_array((data, indices, indptr), shape=parts.shape)


def layers_to_scipy(
    named_layers: Iterable[tuple[str, PrunableLayer]], *, allow_device_copy: bool = False
) -> dict[str, scipy.sparse.csr_array]:
    """``{"<layer name>.<parameter name>": csr_array}`` for every prunable parameter of
    the named layers (a layer named ``""`` gives the parameter name alone): what each
    backend's ``to_scipy(model)`` returns for the layers it finds in a model."""
    out = {}
    for prefix, layer in named_layers:
        for name, handle in layer.parameter_handles().items():
            mask = handle.get_mask()
            if mask is not None:
                key = f"{prefix}.{name}" if prefix else name
                out[key] = to_scipy(handle.get_value(), mask, allow_device_copy=allow_device_copy)
    return out
