"""Converting the layers of an existing NNX model in place."""

from __future__ import annotations

from typing import Any

from flax import nnx

from ._graph import replace_layers
from .layers import PRUNABLE_TYPES, PrunableModule

__all__ = ["make_prunable"]


def make_prunable(model: nnx.Module) -> nnx.Module:
    """Replace every supported layer of ``model`` (at any depth, in attributes, ``nnx.List``
    and ``nnx.Dict``) by its prunable twin, keeping its variables, and return the model.
    Layers that already are prunable, and the submodules of a converted layer, are left
    as they are; a layer reached along two paths becomes one twin. A supported model
    itself is returned as its twin. Every twin is built before any is put in place.

    Examples
    --------
    >>> from flax import nnx
    >>> model = make_prunable(nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.relu))
    >>> type(model.layers[0]).__name__, isinstance(model.layers[0], nnx.Linear)
    ('PrunableLinear', True)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    twin = _twin(model)
    if twin is not None:
        return twin  # a supported or already prunable layer
    replace_layers(model, _twin)
    return model


def _twin(module: nnx.Module) -> nnx.Module | None:
    """The prunable twin of a supported layer; a prunable layer stays as it is."""
    if isinstance(module, PrunableModule):
        return module
    cls: Any = PRUNABLE_TYPES.get(type(module))
    return None if cls is None else cls(module)
