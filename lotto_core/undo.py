"""All-or-nothing writes: a call that fails part-way puts back what it had written.

``prune()``, ``rewind()``, ``set_rewind_point()`` and ``load_state_dict()`` write many
parameters; a failure at the third (an allocation, an array that cannot be written) must
not leave the first two changed. ``Undo`` keeps, before the first write, what each handle
will lose (a copy where arrays are written in place, NumPy and torch; the array itself
where they are replaced, JAX) and, on an exception, writes it back and re-raises.

New masks (``write_masks``) need no copy of the weights they zero: every mask is stored
first (``StoresMask``) with its old one kept, and the backend zeroes the weights last, in
place, after the last step that can fail on one parameter's account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ._array_api import Array, array_namespace
from .backend import Backend, Write, backend_for
from .protocol import ParameterHandle

__all__ = ["StoresMask", "Undo", "write_masks"]


@runtime_checkable
class StoresMask(Protocol):
    """A handle that can store a mask without zeroing what it prunes (the write of a
    round zeroes the weights itself, once every mask is stored)."""

    def store_mask(self, mask: Array) -> None:
        """Store ``mask`` as the parameter's mask; the value is left as it is."""
        ...


_ALL = object()
"""A kept mask that kept every entry: restored as ones, so that no copy is held."""


@dataclass
class _Kept:
    handle: ParameterHandle
    mask: Any = None
    value: Any = None
    rewind: Any = None


class Undo:
    """Keeps what handles are about to lose; on an exception in its ``with`` block,
    writes all of it back (newest first) and re-raises. A handle that cannot be
    restored is named in a note on the exception."""

    def __init__(self) -> None:
        self._kept: list[_Kept] = []

    def keep(
        self,
        handle: ParameterHandle,
        *,
        mask: bool = False,
        value: bool = False,
        rewind: bool = False,
        kept_all: bool | None = None,
    ) -> None:
        """Keep the parts of ``handle`` that the call may overwrite. ``kept_all``: whether
        its mask keeps every entry, where the caller counted (else it is checked)."""
        kept = _Kept(handle)
        if mask:
            old = handle.get_mask()
            if old is not None:
                backend = backend_for(old)
                if kept_all is None and backend.in_place:
                    kept_all = backend.keeps_all(old)
                kept.mask = _ALL if backend.in_place and kept_all else backend.keep(old)
        if value:
            now = handle.get_value()
            kept.value = backend_for(now).keep(now, near=handle.get_rewind_point())
        if rewind:
            point = handle.get_rewind_point()
            kept.rewind = backend_for(point).keep(point)
        self._kept.append(kept)

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is None:
            self._kept.clear()
            return
        failed = []
        for kept in reversed(self._kept):
            try:
                _restore(kept)
            except Exception as why:  # keep restoring the others; the original error is raised
                failed.append(f"{kept.handle!r} ({type(why).__name__}: {why})")
        self._kept.clear()
        if failed:
            error.add_note("Lotto could not put back what the failed call had written to: " + "; ".join(failed))


def _restore(kept: _Kept) -> None:
    handle = kept.handle
    if kept.mask is not None:
        mask = kept.mask
        if mask is _ALL:
            current = handle.get_mask()
            mask = array_namespace(current).ones_like(current)
        if isinstance(handle, StoresMask):
            handle.store_mask(mask)
        else:
            handle.set_mask(mask)
    if kept.value is not None:
        handle.set_value(kept.value)
    if kept.rewind is not None:
        handle.set_rewind_point(kept.rewind)


def write_masks(undo: Undo, writes: Sequence[Write], *, kept_all: Sequence[bool | None] = ()) -> None:
    """Store new masks and zero what they prune, all or nothing (with ``undo``).

    Masks go first: a handle that ``StoresMask`` keeps its old mask only; any other
    keeps its weight too. The backends then zero the weights in place, each over its own
    arrays (``Backend.write``). ``kept_all``: per write, whether the old mask keeps every
    entry, where the selection counted (else each is checked)."""
    by_backend: dict[str, tuple[Backend, list[Write]]] = {}
    unkept = False  # whether a weight is zeroed in place with no copy kept
    for i, (handle, mask, value) in enumerate(writes):
        backend = backend_for(mask)
        staged = isinstance(handle, StoresMask) and value is None and backend.in_place
        unkept |= staged
        undo.keep(handle, mask=True, value=not staged, kept_all=kept_all[i] if i < len(kept_all) else None)
        by_backend.setdefault(backend.name, (backend, []))[1].append((handle, mask, value))
    for _, group in by_backend.values():
        for i, (handle, mask, value) in enumerate(group):
            if isinstance(handle, StoresMask):
                handle.store_mask(mask)
                group[i] = (handle, handle.get_mask(), value)  # the stored mask: nothing is copied twice
    try:
        for backend, group in by_backend.values():
            backend.write(group)
    except BaseException as error:
        if unkept:
            error.add_note(
                "the masks were put back, but the weights zeroed in place before the failure could not be: "
                "rewind, or reload the model"
            )
        raise
