"""Prunable twins of the trainable ``torch.nn`` layers.

``PrunableX`` is a subclass of ``X`` that takes exactly ``X``'s constructor arguments,
or one built ``X`` to adopt (keeping its parameters and device). It adds, per prunable
weight, a boolean ``<name>_mask`` buffer, and per parameter a ``<name>_rewind`` buffer
(the rewind point, a copy of the value at creation), and implements the core's
prunable-layer protocol (``parameter_handles()``).

Which weights are prunable (biases never are):

========================================  ==================================================
layer                                     prunable parameters
========================================  ==================================================
Linear, Bilinear, Conv*, ConvTranspose*   ``weight``
Embedding, EmbeddingBag                   ``weight``
RNN, LSTM, GRU                            every ``weight_ih_l*``, ``weight_hh_l*`` and
                                          ``weight_hr_l*``, all layers and directions
RNNCell, LSTMCell, GRUCell                ``weight_ih``, ``weight_hh``
MultiheadAttention                        ``in_proj_weight`` (or ``q/k/v_proj_weight``) and
                                          ``out_proj.weight``
BatchNorm*, InstanceNorm*, LayerNorm,     ``weight`` (the learnable scale), when the layer
GroupNorm, RMSNorm                        has one
========================================  ==================================================
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ._masking import buffer_key, mark_clean, remask_if_changed, zero_pruned

__all__ = ["PRUNABLE_TYPES", "PrunableModule", "TorchParameterHandle"]


class TorchParameterHandle:
    """The core's ``ParameterHandle`` over one parameter of a prunable torch layer."""

    def __init__(self, layer: PrunableModule, name: str) -> None:
        self.layer = layer
        self.name = name
        self.key = buffer_key(name)

    @property
    def parameter(self) -> nn.Parameter:
        return self.layer.get_parameter(self.name)

    def get_value(self) -> torch.Tensor:
        return self.parameter.detach()

    def set_value(self, value: torch.Tensor) -> None:
        param = self.parameter
        with torch.no_grad():
            param.copy_(value)
        mask = self.get_mask()
        if mask is not None:
            self.set_mask(mask)

    def get_mask(self) -> torch.Tensor | None:
        return self.layer._buffers.get(self.key + "_mask")

    def set_mask(self, mask: torch.Tensor) -> None:
        param = self.parameter
        self.layer._buffers[self.key + "_mask"] = mask
        zero_pruned(param, mask)
        mark_clean(self.layer, self.name, param)

    def get_rewind_point(self) -> torch.Tensor:
        return self.layer.get_buffer(self.key + "_rewind")

    def set_rewind_point(self, value: torch.Tensor) -> None:
        point = self.get_rewind_point()
        with torch.no_grad():
            point.copy_(value)

    def __repr__(self) -> str:
        return f"TorchParameterHandle({type(self.layer).__name__}, {self.name!r})"


class PrunableModule(nn.Module):
    """What every ``PrunableX`` adds to its ``X``: mask and rewind buffers, the masking
    hooks, and the core's ``parameter_handles()``."""

    _lotto_prunable: Callable[[nn.Module], list[str]]
    _lotto_base: type[nn.Module]

    def _lotto_setup(self) -> None:
        self._lotto_versions: dict[str, int] = {}
        self._lotto_rewind_device: torch.device | None = None
        names = self._lotto_prunable(self)
        for name, param in self.named_parameters():
            if name in names:
                self.register_buffer(buffer_key(name) + "_mask", torch.ones_like(param, dtype=torch.bool))
            self.register_buffer(buffer_key(name) + "_rewind", param.detach().clone())
        for name, param in self._lotto_masked_parameters():
            mark_clean(self, name, param)
        self.register_forward_pre_hook(remask_if_changed)

    def _lotto_masked_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, param in self.named_parameters():
            if buffer_key(name) + "_mask" in self._buffers:
                yield name, param

    def set_rewind_device(self, device: str | torch.device | None) -> PrunableModule:
        """Keep this layer's rewind points on ``device`` whatever ``.to()`` does later
        (``"cpu"`` for a model on an accelerator: one rewind copy per weight in host
        memory instead of device memory); ``None`` lets them follow the layer again.
        Returns the layer."""
        self._lotto_rewind_device = None if device is None else torch.device(device)
        return self._apply(lambda t: t)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> PrunableModule:
        if self._lotto_rewind_device is None:
            return super()._apply(fn, recurse)
        order = list(self._buffers)
        pinned = {key: self._buffers.pop(key) for key in order if key.endswith("_rewind")}
        super()._apply(fn, recurse)
        names = {buffer_key(name) + "_rewind": name for name, _ in self.named_parameters()}
        for key, point in pinned.items():
            dtype = self.get_parameter(names[key]).dtype
            pinned[key] = point.to(device=self._lotto_rewind_device, dtype=dtype)
        self._buffers = {key: pinned[key] if key in pinned else self._buffers[key] for key in order}
        return self

    def parameter_handles(self) -> Mapping[str, TorchParameterHandle]:
        """Every parameter of the layer (submodules' too, by dotted name); the prunable
        ones have a mask."""
        return {name: TorchParameterHandle(self, name) for name, _ in self.named_parameters()}


def _adopt(self: nn.Module, built: nn.Module) -> None:
    """Make ``self`` a twin of ``built``: the same parameters, buffers, submodules and
    settings (the containers copied, their tensors shared)."""
    for key, value in vars(built).items():
        self.__dict__[key] = type(value)(value) if isinstance(value, dict | list | set) else value


def _prunable_class(base: type[nn.Module], prunable: Callable[[nn.Module], list[str]]) -> type[PrunableModule]:
    signature = inspect.signature(base)

    @functools.wraps(base.__init__)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], base):
            nn.Module.__init__(self)
            _adopt(self, args[0])
        else:
            base.__init__(self, *args, **kwargs)
        self._lotto_setup()

    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *signature.parameters.values()]
    )
    name = "Prunable" + base.__name__
    cls = type(
        name,
        (base, PrunableModule),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"A prunable :class:`torch.nn.{base.__name__}`: the same constructor arguments, "
            f"or one built ``{base.__name__}`` to adopt. See :mod:`lotto_backends.torch.layers`.",
            "_lotto_prunable": staticmethod(prunable),
            "_lotto_base": base,
        },
    )
    return cls


def _weight(layer: nn.Module) -> list[str]:
    return ["weight"] if getattr(layer, "weight", None) is not None else []


def _recurrent(layer: nn.Module) -> list[str]:
    return [n for n, _ in layer.named_parameters(recurse=False) if n.startswith("weight_")]


def _attention(layer: nn.Module) -> list[str]:
    return [n for n, _ in layer.named_parameters() if n.endswith("proj_weight") or n == "out_proj.weight"]


_SPECS: dict[type[nn.Module], Callable[[nn.Module], list[str]]] = {
    nn.Linear: _weight,
    nn.Bilinear: _weight,
    nn.Conv1d: _weight,
    nn.Conv2d: _weight,
    nn.Conv3d: _weight,
    nn.ConvTranspose1d: _weight,
    nn.ConvTranspose2d: _weight,
    nn.ConvTranspose3d: _weight,
    nn.Embedding: _weight,
    nn.EmbeddingBag: _weight,
    nn.RNN: _recurrent,
    nn.LSTM: _recurrent,
    nn.GRU: _recurrent,
    nn.RNNCell: _recurrent,
    nn.LSTMCell: _recurrent,
    nn.GRUCell: _recurrent,
    nn.MultiheadAttention: _attention,
    nn.BatchNorm1d: _weight,
    nn.BatchNorm2d: _weight,
    nn.BatchNorm3d: _weight,
    nn.LayerNorm: _weight,
    nn.GroupNorm: _weight,
    nn.InstanceNorm1d: _weight,
    nn.InstanceNorm2d: _weight,
    nn.InstanceNorm3d: _weight,
    nn.RMSNorm: _weight,
}

PRUNABLE_TYPES: dict[type[nn.Module], type[PrunableModule]] = {
    base: _prunable_class(base, spec) for base, spec in _SPECS.items()
}
"""Each supported ``torch.nn`` layer type and its prunable twin."""

globals().update({cls.__name__: cls for cls in PRUNABLE_TYPES.values()})
__all__ += sorted(cls.__name__ for cls in PRUNABLE_TYPES.values())
