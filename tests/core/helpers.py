"""Shared helpers of the core tests: layers on a given namespace and device, and a plain
NumPy reference of the selection rule."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lotto_core import ArrayLayer, prune_count
from lotto_core._array_api import to_numpy


def layers_of(xp: Any, device: Any, arrays: list[np.ndarray], dtype: Any = None) -> list[ArrayLayer]:
    """One single-weight ``ArrayLayer`` per NumPy array, moved to ``xp`` on ``device``."""
    dtype = xp.float32 if dtype is None else dtype
    return [ArrayLayer({"w": xp.asarray(a, dtype=dtype, device=device)}) for a in arrays]


def host(x: Any) -> np.ndarray:
    return to_numpy(x, allow_device_copy=True)


def masks(layers: list[ArrayLayer], name: str = "w") -> list[np.ndarray]:
    return [host(layer.params[name].mask) for layer in layers]


def values(layers: list[ArrayLayer], name: str = "w") -> list[np.ndarray]:
    return [host(layer.params[name].value) for layer in layers]


def reference_prune(weights: list[np.ndarray], kept: list[np.ndarray], p: float) -> list[np.ndarray]:
    """The selection rule written the slow, obvious way: sort the kept entries by
    (|w|, layer, flat index) and drop the first k."""
    order = sorted(
        (abs(float(w.ravel()[i])), layer, int(i))
        for layer, (w, m) in enumerate(zip(weights, kept, strict=True))
        for i in np.flatnonzero(m.ravel())
    )
    k = prune_count(p, len(order))
    out = [m.copy().ravel() for m in kept]
    for _, layer, i in order[:k]:
        out[layer][i] = False
    return [o.reshape(m.shape) for o, m in zip(out, kept, strict=True)]


def assert_on(x: Any, xp: Any, device: Any) -> None:
    """``x`` is an array of namespace ``xp`` on ``device``: nothing moved or converted."""
    assert array_namespace(x) is xp
    assert array_device(x) == device


def weight_lists(*, max_side: int, bound: int, max_size: int) -> st.SearchStrategy[list[np.ndarray]]:
    """Lists of float32 weights with many ties (integers in ``[-bound, bound]``) and
    other floats. Subnormal floats are left out: XLA on CPU flushes them to zero, so JAX
    ranks them as exact zeros (documented in docs/concepts.md)."""
    return st.lists(
        hnp.arrays(
            np.float32,
            hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=max_side),
            elements=st.integers(-bound, bound).map(float) | st.floats(-4, 4, width=32, allow_subnormal=False),
        ),
        min_size=1,
        max_size=max_size,
    )
