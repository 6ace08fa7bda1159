"""Converting the layers of an existing NNX model in place, and saying which stay dense."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from .._selectors import check_selectors, dense_reason, wanted, warn_left_dense
from ._graph import replace_layers
from .layers import PrunableModule, twin_class

__all__ = ["Selector", "dense_layers", "make_prunable"]

Selector = type[nnx.Module] | str | Callable[[str, nnx.Module], bool]
"""Picks modules: a module type (its instances and subclasses'), a glob over dotted paths
(``"blocks.*.attn"``), or a predicate ``(dotted path, module) -> bool``."""


def _modules(model: nnx.Module) -> dict[str, nnx.Module]:
    """Every module of ``model`` by dotted path (``""``: the model)."""
    graph = nnx.iter_graph(model)
    return {".".join(str(k) for k in path): node for path, node in graph if isinstance(node, nnx.Module)}


def make_prunable(
    model: nnx.Module,
    *,
    include: Selector | Sequence[Selector] | None = None,
    exclude: Selector | Sequence[Selector] | None = None,
) -> nnx.Module:
    """Replace every prunable layer of ``model`` (at any depth, in attributes, ``nnx.List``
    and ``nnx.Dict``) by its prunable twin, keeping its variables, and return the model.

    A layer is prunable if its type, or a base of it, is a supported NNX layer or
    registered with ``register_prunable`` (a subclass's twin keeps the subclass's own
    methods). Layers that already are prunable, and the submodules of a converted layer,
    are left as they are; a layer reached along two paths becomes one twin. A supported
    model itself is returned as its twin. Every twin is built before any is put in place.

    Parameters
    ----------
    model
        The model, changed in place.
    include
        Convert only the modules these select (by type, dotted-path glob or predicate);
        ``None``: every prunable layer.
    exclude
        Never convert the modules these select.

    Warns
    -----
    UserWarning
        Naming each module that holds weights of its own (``dense_layers``) and stays
        dense because Lotto does not know its type; ``exclude`` it or
        ``register_prunable`` its type.

    Examples
    --------
    >>> from flax import nnx
    >>> model = make_prunable(nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.relu))
    >>> type(model.layers[0]).__name__, isinstance(model.layers[0], nnx.Linear)
    ('PrunableLinear', True)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    check_selectors("include", include)
    check_selectors("exclude", exclude)

    def twin(path: str, module: nnx.Module) -> nnx.Module | None:
        if isinstance(module, PrunableModule):
            return module
        cls: Any = twin_class(type(module)) if wanted(include, exclude, path, module) else None
        return None if cls is None else cls(module)  # a twin adopts a built layer

    made = twin("", model)
    if made is not None:
        return made
    replace_layers(model, twin)
    modules = _modules(model)
    unknown = {
        path: why
        for path, why in dense_layers(model).items()
        if why.startswith("unknown") and wanted(include, exclude, path, modules[path])
    }
    warn_left_dense(unknown)
    return model


def _weights(module: nnx.Module) -> list[str]:
    """The module's own ``nnx.Param`` attributes that are weights: floating, two or more
    dimensions (what ``pytree.init_masks`` masks by default)."""
    arrays = {key: value.get_value() for key, value in vars(module).items() if isinstance(value, nnx.Param)}
    return [
        key
        for key, array in arrays.items()
        if len(getattr(array, "shape", ())) >= 2 and jnp.issubdtype(getattr(array, "dtype", object), jnp.floating)
    ]


def dense_layers(model: nnx.Module) -> dict[str, str]:
    """``{dotted path: why}`` for every module of ``model`` that holds weights of its own
    (an ``nnx.Param`` of a floating dtype with two or more dimensions; not inside a
    prunable layer) and is not prunable: ``"unknown type X (weights w, v)"``, or ``"not
    converted (a known type: make_prunable was not asked to)"``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> class Head(nnx.Module):
    ...     def __init__(self):
    ...         self.w = nnx.Param(jnp.ones((4, 2)))
    >>> dense = dense_layers(nnx.Sequential(nnx.Linear(4, 4, rngs=nnx.Rngs(0)), Head()))
    >>> dense["layers.1"]
    'unknown type Head (weights w)'
    >>> dense["layers.0"]
    'not converted (a known type: make_prunable was not asked to)'
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    modules = _modules(model)
    prunable = [path for path, node in modules.items() if isinstance(node, PrunableModule)]
    dense: dict[str, str] = {}
    for path, node in sorted(modules.items()):
        inside = any(path == p or p == "" or path.startswith(p + ".") for p in prunable)
        weights = [] if inside else _weights(node)
        if not weights:
            continue
        unknown = f"unknown type {type(node).__name__} (weights {', '.join(weights)})"
        dense[path] = dense_reason(twin_class(type(node)) is not None, unknown)
    return dense
