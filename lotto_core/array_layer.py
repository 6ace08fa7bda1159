"""A prunable layer over plain arrays of any Array API namespace.

``ArrayLayer`` is the reference implementation of the adapter protocol. It lets the core
prune NumPy, array-api-strict, PyTorch or JAX arrays without any framework module, and
is what the tests and the benchmark use to drive the core directly.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from array_api_compat import is_numpy_array, is_torch_array, is_writeable_array

from ._array_api import Array, array_namespace, device

__all__ = ["ArrayLayer", "ArrayParameter"]


def _copy(x: Array) -> Array:
    xp = array_namespace(x)
    return xp.asarray(x, copy=True)


def _check_mask(mask: Array, value: Array) -> None:
    """Raise unless ``mask`` is a boolean array of ``value``'s kind, shape and device."""
    try:
        xp = array_namespace(mask, value)
    except TypeError:
        raise TypeError(
            f"mask must be an array of the weight's kind ({type(value).__name__}), got {type(mask).__name__}"
        ) from None
    if mask.dtype != xp.bool:
        raise TypeError(f"mask must be boolean, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(value.shape):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, the weight has {tuple(value.shape)}")
    if device(mask) != device(value):
        raise ValueError(f"mask is on device {device(mask)}, the weight is on {device(value)}")


class ArrayParameter:
    """One array with an optional boolean mask and a rewind point (a copy of the value
    it was created with). Works for immutable arrays (JAX) by replacing, never mutating."""

    def __init__(self, value: Array, *, prunable: bool) -> None:
        xp = array_namespace(value)
        self.value: Array = value
        self.mask: Array | None = xp.ones_like(value, dtype=xp.bool) if prunable else None
        self.rewind_point: Array = _copy(value)

    def get_value(self) -> Array:
        return self.value

    def set_value(self, value: Array) -> None:
        """Write ``value`` into the array in place where it can be written (the user's
        NumPy or torch array stays the layer's), else replace it (JAX)."""
        if is_writeable_array(self.value) and tuple(value.shape) == tuple(self.value.shape):
            self.value[...] = value
        else:
            self.value = value

    def get_mask(self) -> Array | None:
        return self.mask

    def set_mask(self, mask: Array) -> None:
        _check_mask(mask, self.value)
        xp = array_namespace(self.value)
        if (is_numpy_array(self.value) or is_torch_array(self.value)) and is_writeable_array(self.value):
            # in place; a uint8 operand is far cheaper to multiply by than a bool one
            with np.errstate(invalid="ignore", over="ignore"):
                self.value *= xp.astype(mask, xp.uint8)
                self.value += 0.0  # -x * 0 is -0.0; adding +0.0 makes it +0.0
                finite = bool(xp.isfinite(xp.sum(self.value)))
            if not finite:  # inf * 0 is NaN: redo it the exact way
                self.value[xp.logical_not(mask)] = 0
        elif is_writeable_array(self.value):
            self.value[xp.logical_not(mask)] = 0
        else:
            # a scalar zero: no zero array the size of the weight (nor a device to place it on)
            self.value = xp.where(mask, self.value, 0.0)
        self.mask = mask

    def store_mask(self, mask: Array) -> None:
        """Store ``mask`` without zeroing (``lotto_core.undo.write_masks`` zeroes after
        every mask of a round is stored)."""
        _check_mask(mask, self.value)
        self.mask = mask

    def set_masked(self, mask: Array, value: Array) -> None:
        """Store ``mask`` and a ``value`` that is already exactly +0.0 wherever the mask
        is ``False`` (what a native writer computed for a whole group at once)."""
        self.value = value
        self.mask = mask

    def get_rewind_point(self) -> Array:
        return self.rewind_point

    def set_rewind_point(self, value: Array) -> None:
        self.rewind_point = _copy(value)

    def __repr__(self) -> str:
        kind = "prunable" if self.mask is not None else "fixed"
        return f"ArrayParameter({kind}, shape={tuple(self.value.shape)})"


_WRAPPED: weakref.WeakValueDictionary[int, ArrayParameter] = weakref.WeakValueDictionary()


def _shared(value: Array, *, prunable: bool) -> ArrayParameter:
    """The ``ArrayParameter`` of ``value``: one already made for this very array by
    another ``ArrayLayer`` (a shared, tied array: one mask, one rewind point), else a new
    one."""
    known = _WRAPPED.get(id(value))
    if known is not None and known.value is value and (known.mask is not None) == prunable:
        return known
    param = ArrayParameter(value, prunable=prunable)
    _WRAPPED[id(value)] = param
    return param


class ArrayLayer:
    """A prunable layer made of named arrays.

    Parameters
    ----------
    params
        The layer's arrays by name, e.g. ``{"weight": w, "bias": b}``.
    prunable
        Names of the arrays that get a mask. ``None`` (the default) makes every array
        prunable.

    Examples
    --------
    >>> import numpy as np
    >>> layer = ArrayLayer({"weight": np.ones((2, 3)), "bias": np.zeros(2)}, prunable=["weight"])
    >>> sorted(layer.parameter_handles())
    ['bias', 'weight']
    """

    def __init__(self, params: Mapping[str, Array], *, prunable: Iterable[str] | None = None) -> None:
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"params must be a non-empty mapping of name to array, got {params!r}")
        names = set(params) if prunable is None else set(prunable)
        unknown = names - set(params)
        if unknown:
            raise ValueError(f"prunable names {sorted(unknown)} are not among params {sorted(params)}")
        for name, value in params.items():
            array_namespace(value)  # raises TypeError for anything that is not an array
            if name in names and value.ndim == 0:
                raise ValueError(f"params[{name!r}] is 0-d; a prunable array needs at least one dimension")
        self.params: dict[str, ArrayParameter] = {
            name: _shared(value, prunable=name in names) for name, value in params.items()
        }

    def parameter_handles(self) -> Mapping[str, ArrayParameter]:
        return self.params

    def __getitem__(self, name: str) -> Any:
        """The current value of parameter ``name``."""
        return self.params[name].value

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"ArrayLayer({inner})"
