"""Private Array API helpers: namespace lookup, scalar counts and host conversion.

Everything backend-specific in the core goes through this module. It never imports a
framework: array-api-compat recognises arrays by looking in ``sys.modules``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_jax_array,
    is_numpy_array,
    is_torch_array,
)

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
    across devices."""
    if is_numpy_array(x):
        return True
    if is_torch_array(x):
        return bool(x.device.type == "cpu")
    if is_jax_array(x):
        return all(d.platform == "cpu" for d in x.devices())
    return str(device(x)).endswith("CPU_DEVICE")


def to_numpy(x: Array, *, allow_device_copy: bool = False) -> np.ndarray:
    """Read an array of any namespace into NumPy.

    A device array is copied to the host only when ``allow_device_copy`` is true: the
    core never moves a user's data between devices unasked.
    """
    if not is_host_array(x):
        if not allow_device_copy:
            raise ValueError(
                f"array on device {device(x)!r} would be copied to host memory; "
                "pass allow_device_copy=True to allow that copy"
            )
        if is_torch_array(x):
            x = x.detach().cpu()
        elif not is_jax_array(x):
            xp = array_namespace(x)
            x = x.to_device(xp.__array_namespace_info__().default_device())
    if is_torch_array(x):
        x = x.detach()
    if is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)
