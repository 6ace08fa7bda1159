"""The core's ``Pruner`` for torch models: ``rewind()`` restores the whole model.

The lottery-ticket protocol rewinds every parameter of the model, not only the pruned
layers, and the buffers that training changes (BatchNorm running statistics), as OpenLTH
does. Given ``model=``, the pruner snapshots, when it is made, every parameter and
buffer that no prunable layer keeps a rewind point for, and ``rewind()``,
``set_rewind_point()`` and ``state_dict()`` cover them together with the grouped layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.autograd.graph import increment_version

import lotto_core
from lotto_backends._host import pool
from lotto_core import PruneGroup
from lotto_core.groups import prunable_handles
from lotto_core.protocol import ParameterHandle
from lotto_core.pruner import check_rewind_scope, rest_of_model
from lotto_core.undo import Undo

from . import _cpu
from ._distributed import check_ranks_agree, is_distributed, keep_out_of_ddp_broadcast
from ._layout import is_dtensor
from ._masking import mark_clean, zero_pruned
from .layers import PrunableModule, TorchParameterHandle, refuse_inference_mode

__all__ = ["ModelRest", "Pruner"]


class _TensorHandle:
    """A parameter or buffer outside any prunable layer: read, written in place, and
    rewound to a snapshot; never masked."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.point = tensor.detach().clone()

    def get_value(self) -> torch.Tensor:
        return self.tensor.detach()

    def set_value(self, value: torch.Tensor) -> None:
        with torch.no_grad():
            self.tensor.copy_(value)

    def get_mask(self) -> None:
        return None

    def set_mask(self, mask: torch.Tensor) -> None:
        raise ValueError("a parameter outside the prunable layers has no mask")

    def get_rewind_point(self) -> torch.Tensor:
        return self.point

    def set_rewind_point(self, value: torch.Tensor) -> None:
        with torch.no_grad():
            self.point.copy_(value)


class ModelRest:
    """Every parameter and buffer of ``model`` that no prunable layer holds a rewind
    point for (plain layers' parameters, every BatchNorm statistic), as one layer with
    no masks whose rewind point is their value when it is made."""

    def __init__(self, model: nn.Module) -> None:
        held: set[int] = set()
        for module in model.modules():
            if isinstance(module, PrunableModule):
                held.update(id(h.parameter) for h in module.parameter_handles().values())
                held.update(id(b) for k, b in module._buffers.items() if k.endswith(("_mask", "_rewind")))
        self.handles: dict[str, _TensorHandle] = {}
        seen: set[int] = set()
        for name, tensor in _tensors(model):
            if id(tensor) not in held and id(tensor) not in seen:
                seen.add(id(tensor))
                self.handles[name] = _TensorHandle(tensor)

    def parameter_handles(self) -> Mapping[str, _TensorHandle]:
        return self.handles

    def __repr__(self) -> str:
        return f"ModelRest({len(self.handles)} tensors)"


def _tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    for name, buffer in model.named_buffers():
        if buffer is not None:
            yield name, buffer


class Pruner(lotto_core.Pruner):
    """``lotto_core.Pruner`` whose ``rewind()`` restores the whole ``model``.

    With ``model``, the masks and rewind points are kept out of the buffers that
    ``DistributedDataParallel`` broadcasts (make the pruner, or call ``make_prunable``,
    before wrapping the model), and ``prune()`` checks that every rank pruned alike.

    Parameters
    ----------
    groups
        The prune groups.
    model
        The model the groups' layers belong to. ``rewind()`` then restores every
        parameter of it (masked where pruned) and every buffer (BatchNorm statistics) to
        the rewind point: the grouped and other prunable layers' own rewind points, and,
        for everything else, its value when the pruner is made. ``set_rewind_point()``
        moves all of them.
    rewind
        ``"model"`` (the default): as above. ``"groups"``: rewind only the grouped
        layers' parameters, leaving everything else as training left it.

    Warns
    -----
    UserWarning
        At the first ``rewind()`` of a pruner made without ``model`` and with
        ``rewind="model"``: only the grouped layers could be rewound.
    """

    def __init__(
        self,
        groups: Sequence[PruneGroup],
        *,
        model: nn.Module | None = None,
        rewind: Literal["model", "groups"] = "model",
    ) -> None:
        check_rewind_scope(rewind)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().__init__(groups, model_known=model is not None or rewind == "groups")
        if model is not None and rewind == "model":
            self.others = rest_of_model(self, model.modules(), ModelRest(model))
        if model is not None:
            keep_out_of_ddp_broadcast(model)
        self.scope = rewind

    def prune(self) -> None:
        """``lotto_core.Pruner.prune``; in a distributed run (``torch.distributed``
        initialized, more than one rank), then checks with a collective of a few
        integers per mask that every rank holds the same masks: call it on every rank.

        Raises
        ------
        RuntimeError
            If the ranks' masks differ (their weights did).
        """
        refuse_inference_mode("Pruner.prune()")
        super().prune()
        if is_distributed():  # one mask per parameter, as the core counts them (tied ones once)
            masks = {id(mask): mask for layer in self.layers() for _, _, mask in prunable_handles(layer)}
            check_ranks_agree(list(masks.values()))

    def rewind(self) -> None:
        refuse_inference_mode("Pruner.rewind()")
        super().rewind()

    def _restore(self, handles: list[ParameterHandle], undo: Undo) -> None:
        """Every tensor back to its rewind point in one batched copy per device and dtype
        (``torch._foreach_copy_``), then each pruned weight zeroed in its fused pass;
        other handles one at a time.

        The batched writes are in place and allocate nothing, after every look-up that
        can fail: they need no copy in ``undo``. A tensor copied on its own (its rewind
        point on another device or of another dtype, a DTensor) and the other handles
        are kept there first."""
        tensors: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, ParameterHandle]] = {}
        rest: list[ParameterHandle] = []
        for handle in handles:
            if isinstance(handle, TorchParameterHandle):
                param = handle.parameter
                tensors.setdefault(id(param), (param, handle.get_rewind_point(), handle.get_mask(), handle))
            elif isinstance(handle, _TensorHandle):
                tensors.setdefault(id(handle.tensor), (handle.tensor, handle.point, None, handle))
            else:
                rest.append(handle)
        fused = _fusable([entry for entry in tensors.values() if entry[2] is not None])
        batches: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        alone: list[tuple[torch.Tensor, torch.Tensor]] = []
        for ident, (target, point, _, handle) in tensors.items():
            if ident in fused:
                continue
            if point.device == target.device and point.dtype == target.dtype and not is_dtensor(target):
                batch = batches.setdefault((target.device, target.dtype), ([], []))
                batch[0].append(target)
                batch[1].append(point)
            else:
                undo.keep(handle, value=True)
                alone.append((target, point))
        for target, point in alone:
            with torch.no_grad():
                target.copy_(point)
        _rewind_fused(fused)
        with torch.no_grad():
            for targets, points in batches.values():
                torch._foreach_copy_(targets, points)
        for ident, (target, _, mask, owner) in tensors.items():
            if mask is not None and isinstance(owner, TorchParameterHandle):
                if ident not in fused:
                    zero_pruned(target, mask)
                mark_clean(owner.layer, owner.name, target)
        super()._restore(rest, undo)

    def set_rewind_point(self) -> None:
        refuse_inference_mode("Pruner.set_rewind_point()")
        super().set_rewind_point()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        refuse_inference_mode("Pruner.load_state_dict()")
        super().load_state_dict(state)


def _fusable(
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, ParameterHandle]],
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]]:
    """The masked CPU parameters that one fused pass of the host kernels rewinds (rather
    than a copy and then a zeroing pass), by id: the views of their rewind points, masks
    and memory, and the parameter."""
    if pool.kernels() is None:
        return {}
    fused = {}
    for target, point, mask, _ in entries:
        keys = _cpu.key_view(point)
        out = _cpu.key_view(target, in_place=True)
        bits = _cpu.bool_view(mask)
        if keys is None or out is None or bits is None or point.dtype != target.dtype or keys.size != out.size:
            continue
        fused[id(target)] = (keys, bits, out, target)
    return fused


def _rewind_fused(fused: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]]) -> None:
    """Write ``where(mask, point, +0.0)`` into each of the ``_fusable`` parameters."""
    if not fused:
        return
    sources, flags, targets, tensors = zip(*fused.values(), strict=True)
    pool.zero_pruned(list(sources), list(flags), _cpu.threads(), list(targets))
    for target in tensors:
        increment_version(target)
