"""Converting the layers of an existing NNX model in place."""

from __future__ import annotations

from flax import nnx

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
        return twin
    twins: dict[int, nnx.Module] = {}
    places: list[tuple[nnx.Module, str, nnx.Module]] = []
    _collect(model, twins, places, set())
    for parent, key, child in places:
        replacement = twins[id(child)]
        if isinstance(parent, nnx.List):
            parent[int(key)] = replacement
        else:
            setattr(parent, key, replacement)
    return model


def _collect(
    node: nnx.Module, twins: dict[int, nnx.Module], places: list[tuple[nnx.Module, str, nnx.Module]], seen: set[int]
) -> None:
    """Find, below ``node``, every supported layer and where it sits; build its twin."""
    if id(node) in seen:
        return
    seen.add(id(node))
    for key, child in list(vars(node).items()):
        if key.startswith("_pytree__") or not isinstance(child, nnx.Module):
            continue
        if id(child) not in twins:
            twin = _twin(child)
            if twin is None:
                _collect(child, twins, places, seen)
                continue
            twins[id(child)] = twin
        places.append((node, key, child))


def _twin(module: nnx.Module) -> nnx.Module | None:
    if isinstance(module, PrunableModule):
        return None
    cls = PRUNABLE_TYPES.get(type(module))
    return None if cls is None else cls(module)
