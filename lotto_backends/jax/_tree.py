"""Leaves of a parameter pytree and their masks: path names, selection by path, and the
checks that every function of ``lotto_backends.jax.pytree`` makes on what it is given.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

Selector: TypeAlias = str | re.Pattern[str] | Callable[[str, Any], bool]
"""Which leaves: a glob over leaf paths (``"*kernel"``), a compiled regular expression
searched in the path, or a predicate ``f(path, leaf) -> bool``."""


def path_name(path: tuple[Any, ...]) -> str:
    """A leaf's key path as ``"params/Dense_0/kernel"``: dict keys, attribute names and
    sequence indices joined by ``/``."""
    parts = []
    for key in path:
        if isinstance(key, DictKey):
            parts.append(str(key.key))
        elif isinstance(key, GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return "/".join(parts)


def check_selector(select: object, name: str) -> Selector:
    if isinstance(select, str | re.Pattern) or callable(select):
        return select
    raise TypeError(
        f"{name} must be a glob string, a compiled regular expression or a function (path, leaf) -> bool, "
        f"got {type(select).__name__}"
    )


def matches(select: Selector, path: str, leaf: Any) -> bool:
    if isinstance(select, str):
        return fnmatch.fnmatchcase(path, select)
    if isinstance(select, re.Pattern):
        return select.search(path) is not None
    return bool(select(path, leaf))


def is_concrete(x: Any) -> bool:
    """A JAX array with a value (not a tracer inside ``jax.jit``)."""
    return isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)


def is_weight(x: Any) -> bool:
    """What can carry a mask: a JAX array (or tracer) of a real floating dtype, not 0-d."""
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating) and x.ndim > 0


@dataclass(frozen=True)
class Leaf:
    """One leaf of the parameters, with its path and its mask (``None``: no mask)."""

    path: str
    value: Any
    mask: Any


def check_mask(mask: object, value: jax.Array, where: str, expected: str = "a JAX boolean array") -> None:
    """Raise, naming ``where``, unless ``mask`` is a boolean JAX array of ``value``'s
    shape on its devices."""
    if not isinstance(mask, jax.Array):
        raise TypeError(f"{where} must be {expected}, got {type(mask).__name__}")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{where} must be boolean, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(value.shape):
        raise ValueError(f"{where} has shape {tuple(mask.shape)}, the parameter has {tuple(value.shape)}")
    if is_concrete(mask) and is_concrete(value) and mask.sharding.device_set != value.sharding.device_set:
        raise ValueError(
            f"{where} is on devices {sorted(map(str, mask.sharding.device_set))}, "
            f"the parameter on {sorted(map(str, value.sharding.device_set))}"
        )


def leaves(params: Any, masks: Any, *, name: str = "masks") -> tuple[list[Leaf], Any]:
    """The leaves of ``params`` paired with their masks, and the tree structure.

    Raises
    ------
    ValueError, TypeError
        If ``masks`` does not have the structure of ``params`` with a boolean array of
        the leaf's shape (on the leaf's devices) or ``None`` at every leaf.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    try:
        mask_leaves = treedef.flatten_up_to(masks)  # type: ignore[attr-defined]
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{name} must have the structure of the parameters, with a boolean array or None per leaf "
            f"(as init_masks returns): {e}"
        ) from None
    out = []
    for (path, value), mask in zip(flat, mask_leaves, strict=True):
        if mask is not None:
            where = f"{name}[{path_name(path)!r}]"
            if not is_weight(value):
                raise TypeError(f"{where} is a mask for a leaf that cannot have one: {describe(value)}")
            check_mask(mask, value, where, "a JAX boolean array or None")
        out.append(Leaf(path_name(path), value, mask))
    return out, treedef


def describe(x: Any) -> str:
    """What a leaf is, for error messages."""
    if isinstance(x, jax.Array):
        return f"a {x.ndim}-d {x.dtype} array"
    return f"a {type(x).__name__}"
