"""Converting the layers of an existing model in place."""

from __future__ import annotations

from torch import nn

from .layers import PRUNABLE_TYPES, PrunableModule

__all__ = ["make_prunable"]


def make_prunable(model: nn.Module) -> nn.Module:
    """Replace every supported layer of ``model`` (at any depth) by its prunable twin,
    keeping its parameters, and return the model. Layers that already are prunable, and
    the submodules of a converted layer, are left as they are. A supported model itself
    is returned as its twin.

    Examples
    --------
    >>> from torch import nn
    >>> model = make_prunable(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    >>> type(model[0]).__name__, isinstance(model[0], nn.Linear)
    ('PrunableLinear', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    twin = _twin(model)
    if twin is not None:
        return twin
    for parent in list(model.modules()):
        if isinstance(parent, PrunableModule):
            continue
        for name, child in list(parent.named_children()):
            replacement = _twin(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    return model


def _twin(module: nn.Module) -> nn.Module | None:
    if isinstance(module, PrunableModule):
        return None
    cls = PRUNABLE_TYPES.get(type(module))
    return None if cls is None else cls(module)
