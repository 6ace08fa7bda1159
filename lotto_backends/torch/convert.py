"""Converting the layers of an existing model in place, and saying which stay dense."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from torch import nn

from .._selectors import check_selectors, dense_reason, wanted, warn_left_dense
from ._distributed import keep_out_of_ddp_broadcast
from .layers import PrunableModule, twin_class

__all__ = ["Selector", "dense_layers", "make_prunable"]

Selector = type[nn.Module] | str | Callable[[str, nn.Module], bool]
"""Picks modules: a module type (its instances and subclasses'), a glob over qualified
names (``"transformer.h.*.attn.*"``), or a predicate ``(qualified name, module) -> bool``."""


def _refuse_fully_sharded(model: nn.Module) -> None:
    """FSDP2 keeps the modules it sharded, which a twin would replace: refuse them."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    sharded = [] if fsdp is None else [name for name, m in model.named_modules() if isinstance(m, fsdp.FSDPModule)]
    if sharded:
        raise ValueError(
            f"model has modules sharded by fully_shard ({sharded[0] or 'the model itself'!r}): "
            "call make_prunable(model) before fully_shard, which keeps the modules it shards "
            "(the masks and rewind points then follow the sharding by themselves)"
        )


def make_prunable(
    model: nn.Module,
    *,
    include: Selector | Sequence[Selector] | None = None,
    exclude: Selector | Sequence[Selector] | None = None,
) -> nn.Module:
    """Replace every prunable layer of ``model`` (at any depth) by its prunable twin,
    keeping its parameters, and return the model.

    A layer is prunable if its type, or a base of it, is a supported ``torch.nn`` layer,
    transformers' ``Conv1D``, or registered with ``register_prunable``. Layers that
    already are prunable, and the submodules of a converted layer, are left as they are.
    A supported model itself is returned as its twin. A parameter shared by several
    layers (tied embeddings) gets one mask and one rewind point, held by the first.
    The masks and rewind points are kept out of ``DistributedDataParallel``'s buffer
    broadcast (make the model prunable before wrapping it).

    Parameters
    ----------
    model
        The model, changed in place.
    include
        Convert only the modules these select (by type, qualified-name glob or
        predicate); ``None``: every prunable layer.
    exclude
        Never convert the modules these select.

    Warns
    -----
    UserWarning
        Naming each module with parameters of its own that stays dense because Lotto does
        not know its type (``dense_layers`` lists them with the reason); ``exclude`` it or
        ``register_prunable`` its type.

    Examples
    --------
    >>> from torch import nn
    >>> model = make_prunable(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), exclude="2")
    >>> [type(m).__name__ for m in model]
    ['PrunableLinear', 'ReLU', 'Linear']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_selectors("include", include)
    check_selectors("exclude", exclude)
    _refuse_fully_sharded(model)

    twin = _twin("", model) if wanted(include, exclude, "", model) else None
    if twin is not None:
        keep_out_of_ddp_broadcast(twin)
        return twin
    for prefix, parent in list(model.named_modules()):
        if isinstance(parent, PrunableModule):
            continue
        for name, child in list(parent.named_children()):
            qualified = f"{prefix}.{name}" if prefix else name
            if wanted(include, exclude, qualified, child):
                replacement = _twin(qualified, child)
                if replacement is not None:
                    setattr(parent, name, replacement)
    keep_out_of_ddp_broadcast(model)
    unknown = {
        name: reason
        for name, reason in dense_layers(model).items()
        if reason.startswith("unknown") and wanted(include, exclude, name, model.get_submodule(name))
    }
    warn_left_dense(unknown)
    return model


def _twin(name: str, module: nn.Module) -> nn.Module | None:
    if isinstance(module, PrunableModule):
        return None
    cls = twin_class(type(module))
    return None if cls is None else cls(module)


def dense_layers(model: nn.Module) -> dict[str, str]:
    """``{qualified name: why}`` for every module of ``model`` that has parameters of its
    own (not a prunable layer's insides) and is not prunable: ``"unknown type X"`` or
    ``"not converted (a known type: make_prunable was not asked to)"``.

    Examples
    --------
    >>> from torch import nn
    >>> dense_layers(nn.Sequential(nn.Linear(2, 2), nn.PReLU()))
    {'0': 'not converted (a known type: make_prunable was not asked to)', '1': 'unknown type PReLU'}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inside: set[int] = set()
    out = {}
    for name, module in model.named_modules(remove_duplicate=True):
        if id(module) in inside:
            continue
        if isinstance(module, PrunableModule):
            inside.update(id(m) for m in module.modules())
            continue
        if not any(p is not None for p in module._parameters.values()):
            continue
        out[name] = dense_reason(twin_class(type(module)) is not None, f"unknown type {type(module).__qualname__}")
    return out
