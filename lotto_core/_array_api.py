"""Private Array API helpers: namespace lookup, scalar counts and host conversion.

It never imports a framework: array-api-compat recognises arrays by looking in
``sys.modules``. Host conversion asks the array's backend (``lotto_core.backend``), the
one place where the core tells frameworks apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

Array = Any
Namespace = Any

__all__ = [
    "Array",
    "Namespace",
    "array_namespace",
    "count_true",
    "device",
    "index_dtype",
    "is_host_array",
    "to_numpy",
]


def count_true(xp: Namespace, x: Array) -> int:
    """Number of ``True`` entries of a boolean array, as a Python int (one scalar crosses)."""
    return int(xp.count_nonzero(x))


def index_dtype(xp: Namespace, x: Array) -> Any:
    """The namespace's default integer dtype on ``x``'s device (int32 for JAX without x64)."""
    return xp.__array_namespace_info__().default_dtypes(device=device(x))["integral"]


def is_host_array(x: Array) -> bool:
    """Whether ``x`` already lives in host memory, so reading it into NumPy copies nothing
    across devices (its backend's ``is_host``)."""
    from .backend import backend_for  # the backends' module imports this one

    return backend_for(x).is_host(x)


def to_numpy(x: Array, *, allow_device_copy: bool = False) -> np.ndarray:
    """Read an array of any namespace into NumPy, through its backend's ``to_host``.

    A device array is copied to the host only when ``allow_device_copy`` is true: the
    core never moves a user's data between devices unasked.
    """
    from .backend import backend_for  # the backends' module imports this one

    backend = backend_for(x)
    if not backend.is_host(x) and not allow_device_copy:
        raise ValueError(
            f"array on device {device(x)!r} would be copied to host memory; "
            "pass allow_device_copy=True to allow that copy"
        )
    return backend.to_host(x)
