"""Backends: what a framework supplies to the core, found by the type of its arrays.

A backend runs the selection's passes over a group's arrays (``lotto_core.search``) and
writes a planned round. The core's own, ``ArrayAPIBackend``, works on every Array API
namespace and device. An adapter's backend is loaded the first time one of its
framework's arrays reaches the core (as einops finds its backends): which code runs
depends on the arrays alone, never on what has been imported. Loading it imports no
framework that is not already loaded, since the array handed over is one of its own.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from array_api_compat import is_jax_array, is_torch_array, to_device

from ._array_api import Array, array_namespace, count_true, device
from .passes import ArrayAPIPasses, set_in_place
from .protocol import ParameterHandle
from .scores import ScoreSource
from .search import NOTHING, Count, Cut, Passes, select

__all__ = ["ArrayAPIBackend", "Backend", "TakesMaskedValue", "Write", "backend_for", "count_kept", "plan_cuts"]

Write = tuple[ParameterHandle, Array, Array | None]
"""``(handle, new mask, new weight or None)``: the weight, pruned entries exactly +0.0,
where the selection's passes wrote it (``Cut.values``)."""


@runtime_checkable
class TakesMaskedValue(Protocol):
    """A handle that can store a new mask together with its ready zeroed weight."""

    def set_masked(self, mask: Array, value: Array) -> None:
        """Store ``mask`` and ``value``, whose pruned entries already read +0.0."""
        ...


class Backend:
    """The passes and the writer for one kind of array. Subclasses override either."""

    name = "array-api"
    in_place = True
    """Whether writes change arrays in place (NumPy, torch), so that keeping an array's
    old content for an undo takes a copy; ``False`` where arrays are immutable (JAX)."""

    def passes(self, sources: Sequence[ScoreSource], masks: Sequence[Array], *, values: bool = False) -> Passes:
        """The passes of one selection over a group. ``values``: the round is written
        right after, so passes that read each weight anyway may write its new value.
        NumPy masks are assigned by index; other namespaces rebuild masks from scores."""
        numpy = all(isinstance(m, np.ndarray) for m in masks)
        return ArrayAPIPasses(sources, masks, set_in_place if numpy else None)

    def count(self, flags: Array) -> int:
        """The ``True`` entries of a boolean array, as a Python int."""
        return count_true(array_namespace(flags), flags)

    def is_host(self, x: Array) -> bool:
        """Whether ``x`` lives in host memory (reading it into NumPy copies nothing across
        devices): a NumPy array, or an array on the namespace's CPU device."""
        return isinstance(x, np.ndarray) or str(device(x)).endswith("CPU_DEVICE")

    def to_host(self, x: Array) -> np.ndarray:
        """``x`` read into NumPy through DLPack; from another device, the array's library
        copies it to the host first (DLPack 1.0, asked by NumPy 2.1's ``device="cpu"``;
        ``np.asarray`` with older NumPy). The namespace's default device is no help: on
        a GPU machine it is the GPU."""
        if self.is_host(x):
            return np.from_dlpack(x)
        try:
            return np.from_dlpack(x, device="cpu")
        except TypeError:  # NumPy before 2.1 takes no device
            return np.asarray(x)

    def keeps_all(self, mask: Array) -> bool:
        """Whether ``mask`` keeps every entry (an undo then holds no copy of it)."""
        return bool(self.count(mask) == math.prod(mask.shape))

    def keep(self, x: Array, *, near: Array | None = None) -> Array:
        """What restores ``x`` after a failed call (``lotto_core.undo``): a copy, on the
        device of ``near`` where given (a rewind point's: host memory for a model whose
        rewind points live there), or ``x`` itself where arrays are immutable."""
        if not self.in_place:
            return x
        if near is not None and device(near) != device(x):
            return to_device(x, device(near))
        return array_namespace(x).asarray(x, copy=True)

    def write(self, writes: Sequence[Write]) -> None:
        """Store each new mask, with its new weight where one was written and the
        handle takes it, else by ``set_mask`` (which zeroes what the mask prunes)."""
        for handle, mask, value in writes:
            if value is not None and isinstance(handle, TakesMaskedValue):
                handle.set_masked(mask, value)
            else:
                handle.set_mask(mask)

    def __repr__(self) -> str:
        return f"<lotto backend {self.name}>"


class ArrayAPIBackend(Backend):
    """The core's backend: the Array API passes, for any namespace and device."""


_ADAPTERS = {
    "torch": ("lotto_backends.torch._backend", "TorchBackend"),
    "jax": ("lotto_backends.jax._backend", "JaxBackend"),
}


@functools.cache
def _adapter(framework: str) -> Backend:
    module, name = _ADAPTERS[framework]
    backend: Backend = getattr(importlib.import_module(module), name)()
    return backend


def backend_for(array: Array) -> Backend:
    """The backend of ``array``'s framework: the torch or JAX adapter's for their
    arrays, the core's ``ArrayAPIBackend`` for every other namespace."""
    if is_torch_array(array):
        return _adapter("torch")
    if is_jax_array(array):
        return _adapter("jax")
    return ArrayAPIBackend()


def count_kept(flags: Array) -> int:
    """The ``True`` entries of a boolean array (a mask's kept entries), counted by its
    backend: over all of a sharded array's shards."""
    return backend_for(flags).count(flags)


def plan_cuts(
    sources: Sequence[ScoreSource], masks: Sequence[Array], amount: float | Count, *, backend: Backend | None = None
) -> list[Cut]:
    """Decide, without writing anything, which kept entries of a group one round prunes,
    with one shared threshold (``lotto_core.search``): exactly ``prune_count(p, kept)``
    at a rate ``p``, or ``count(kept, size)``. Empty parameters are pruned as if they
    were not there.

    Parameters
    ----------
    sources, masks
        One score source and boolean mask (``True`` = kept) per parameter, in group order.
    amount
        The rate ``p`` in [0, 1), or ``count(kept, size) -> k``.
    backend
        Whose passes run: by default the backend of the masks' arrays (``backend_for``).
    """
    return _plan_cuts(sources, masks, amount, backend, values=False)


def _plan_cuts(
    sources: Sequence[ScoreSource],
    masks: Sequence[Array],
    amount: float | Count,
    backend: Backend | None,
    *,
    values: bool,
) -> list[Cut]:
    """``plan_cuts``; ``values``: the round is written right after, so the passes may
    attach new weights (``Cut.values``)."""
    live = [i for i, m in enumerate(masks) if math.prod(m.shape) > 0]
    cuts = [NOTHING] * len(masks)
    if live:
        chosen = backend_for(masks[live[0]]) if backend is None else backend
        passes = chosen.passes([sources[i] for i in live], [masks[i] for i in live], values=values)
        for i, cut in zip(live, select(passes, amount), strict=True):
            cuts[i] = cut
    return cuts
