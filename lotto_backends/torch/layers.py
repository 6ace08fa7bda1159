"""Prunable twins of the trainable ``torch.nn`` layers.

``PrunableX`` is a subclass of ``X`` that takes exactly ``X``'s constructor arguments,
or one built ``X`` to adopt (keeping its parameters and device). It adds, per prunable
weight, a boolean ``<name>_mask`` buffer, and per parameter a ``<name>_rewind`` buffer
(the rewind point, a copy of the value at creation), and implements the core's
prunable-layer protocol (``parameter_handles()``).

Which weights are prunable (biases never are):

.. list-table::
   :header-rows: 1

   * - layer
     - prunable parameters
   * - Linear, Bilinear, Conv*, ConvTranspose*, Embedding, EmbeddingBag
     - ``weight``
   * - RNN, LSTM, GRU
     - every ``weight_ih_l*``, ``weight_hh_l*`` and ``weight_hr_l*``, all layers and
       directions
   * - RNNCell, LSTMCell, GRUCell
     - ``weight_ih``, ``weight_hh``
   * - MultiheadAttention
     - ``in_proj_weight`` (or ``q/k/v_proj_weight``) and ``out_proj.weight``
   * - BatchNorm*, InstanceNorm*, LayerNorm, GroupNorm, RMSNorm
     - ``weight`` (the learnable scale), when the layer has one
   * - subclasses of these (timm's ``LayerNorm2d``), transformers' ``Conv1D``
     - as their base; ``Conv1D``'s ``weight`` is stored ``(in, out)``
   * - any type given to ``register_prunable``
     - the parameters named there
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ._layout import LAYERS, follow_layout, is_dtensor, shard_like
from ._masking import buffer_key, check_mask, hold, holder, mark_clean, mask_key, remask_if_changed, zero_pruned

__all__ = [
    "PRUNABLE_TYPES",
    "LayerSpec",
    "PrunableBatchNorm1d",
    "PrunableBatchNorm2d",
    "PrunableBatchNorm3d",
    "PrunableBilinear",
    "PrunableConv1d",
    "PrunableConv2d",
    "PrunableConv3d",
    "PrunableConvTranspose1d",
    "PrunableConvTranspose2d",
    "PrunableConvTranspose3d",
    "PrunableEmbedding",
    "PrunableEmbeddingBag",
    "PrunableGRU",
    "PrunableGRUCell",
    "PrunableGroupNorm",
    "PrunableInstanceNorm1d",
    "PrunableInstanceNorm2d",
    "PrunableInstanceNorm3d",
    "PrunableLSTM",
    "PrunableLSTMCell",
    "PrunableLayerNorm",
    "PrunableLinear",
    "PrunableModule",
    "PrunableMultiheadAttention",
    "PrunableRMSNorm",
    "PrunableRNN",
    "PrunableRNNCell",
    "TorchParameterHandle",
    "layer_spec",
    "refuse_inference_mode",
    "register_prunable",
    "twin_class",
]


def refuse_inference_mode(what: str) -> None:
    """Raise if ``torch.inference_mode`` is on: tensors made or written there cannot be
    written by autograd-tracked code later (a model's own ``load_state_dict`` included)."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{what} cannot run inside torch.inference_mode(): the masks and weights it writes would become "
            "inference tensors that the model can no longer load or train; run it under torch.no_grad() instead"
        )


class TorchParameterHandle:
    """The core's ``ParameterHandle`` over one parameter of a prunable torch layer (the
    layer that holds its mask and rewind point: for a parameter shared by several
    layers, the first one made prunable)."""

    def __init__(self, layer: PrunableModule, name: str) -> None:
        self.layer = layer
        self.name = name
        self.key = buffer_key(name)

    @property
    def parameter(self) -> nn.Parameter:
        follow_layout(self.layer)
        return self.layer.get_parameter(self.name)

    def get_value(self) -> torch.Tensor:
        return self.parameter.detach()

    def set_value(self, value: torch.Tensor) -> None:
        refuse_inference_mode("writing a prunable parameter")
        param = self.parameter
        with torch.no_grad():
            param.copy_(value)
        mask = self.get_mask()
        if mask is not None:
            zero_pruned(param, mask)
            mark_clean(self.layer, self.name, param)

    def get_mask(self) -> torch.Tensor | None:
        follow_layout(self.layer)
        return self.layer._buffers.get(self.key + "_mask")

    def set_mask(self, mask: torch.Tensor) -> None:
        """Copy ``mask`` into the layer's mask (the same tensor stays the mask, so every
        layer sharing the parameter sees it) and zero what it prunes."""
        current = self._stored(mask)
        param = self.parameter
        zero_pruned(param, current)
        mark_clean(self.layer, self.name, param)

    def store_mask(self, mask: torch.Tensor) -> None:
        """Copy ``mask`` into the layer's mask without zeroing the weight (a round's
        write zeroes it once every mask is stored; the next forward would too)."""
        self._stored(mask)

    def _stored(self, mask: torch.Tensor) -> torch.Tensor:
        """Check ``mask`` and copy it into the layer's mask tensor, which is returned."""
        refuse_inference_mode("setting a mask")
        current = self.get_mask()
        if current is None:
            raise ValueError(f"{self!r} is not prunable: it has no mask to set")
        check_mask(mask, self.parameter, "mask")
        if mask is not current:
            with torch.no_grad():
                current.copy_(mask)
        return current

    def get_rewind_point(self) -> torch.Tensor:
        follow_layout(self.layer)
        return self.layer.get_buffer(self.key + "_rewind")

    def set_rewind_point(self, value: torch.Tensor) -> None:
        refuse_inference_mode("setting a rewind point")
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
    # parameter name -> (parameter, its version, mask, its version, id of the layer) when last masked
    _lotto_versions: dict[str, tuple[torch.Tensor, int, torch.Tensor, int, int]]
    _lotto_plan: list[tuple[PrunableModule, str, nn.Module, str, str]]
    _lotto_tied: dict[str, tuple[PrunableModule, str]]
    _lotto_rewind_device: torch.device | None

    def __init_subclass__(
        cls,
        base: type[nn.Module] | None = None,
        prunable: Callable[[nn.Module], list[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        """``class PrunableX(X, PrunableModule, base=X, prunable=spec)`` makes the twin
        of ``X``: ``X``'s constructor (or one built ``X`` to adopt), then the masks."""
        super().__init_subclass__(**kwargs)
        if base is None or prunable is None:
            return
        cls._lotto_base = base
        cls._lotto_prunable = staticmethod(prunable)
        cls.__init__ = _twin_init(base)  # type: ignore[method-assign]
        cls.forward = _checked(base.forward)
        if not cls.__doc__:
            where = f"torch.nn.{base.__name__}" if base.__module__.startswith("torch.nn.") else base.__qualname__
            where = where if where.startswith("torch.nn.") else f"{base.__module__}.{where}"
            cls.__doc__ = (
                f"A prunable :class:`{where}`: the same constructor arguments, "
                f"or one built ``{base.__name__}`` to adopt. See :mod:`lotto_backends.torch.layers`."
            )

    def _lotto_setup(self) -> None:
        refuse_inference_mode(f"making a {self._lotto_base.__name__} prunable")
        LAYERS.add(self)
        self._lotto_versions: dict[str, tuple[torch.Tensor, int, torch.Tensor, int, int]] = {}
        self._lotto_rewind_device: torch.device | None = None
        # parameters that another prunable layer already holds (tied weights): name ->
        # (that layer, the parameter's name there); their mask and rewind point are its
        self._lotto_tied: dict[str, tuple[PrunableModule, str]] = {}
        names = self._lotto_prunable(self)
        for name, param in self.named_parameters():
            held = holder(param)
            if held is not None and held[0] is not self:
                self._lotto_tied[name] = held
                continue
            if name in names:
                self.register_buffer(buffer_key(name) + "_mask", torch.ones_like(param, dtype=torch.bool))
            self.register_buffer(buffer_key(name) + "_rewind", param.detach().clone())
            hold(self, name, param)
        # what each forward checks first: (holding layer, name there, module owning the
        # parameter, its attribute, the mask's buffer name), for each masked parameter
        self._lotto_plan: list[tuple[PrunableModule, str, nn.Module, str, str]] = []
        for name, _ in self.named_parameters():
            owner, owned = self._lotto_tied.get(name, (self, name))
            if mask_key(owned) in owner._buffers:
                prefix, _, attr = name.rpartition(".")
                self._lotto_plan.append((owner, owned, self.get_submodule(prefix), attr, mask_key(owned)))
        for owner, name, param in self._lotto_masked_parameters():
            mark_clean(owner, name, param)

    def _lotto_masked_parameters(self) -> Iterator[tuple[PrunableModule, str, nn.Parameter]]:
        """``(layer holding the mask, name there, parameter)`` for each masked parameter."""
        for owner, owned, module, attr, _ in self._lotto_plan:
            yield owner, owned, cast(nn.Parameter, module._parameters[attr])

    def set_rewind_device(self, device: str | torch.device | None) -> PrunableModule:
        """Keep this layer's rewind points on ``device`` whatever ``.to()`` does later
        (``"cpu"`` for a model on an accelerator: one rewind copy per weight in host
        memory instead of device memory); ``None`` lets them follow the layer again.
        Returns the layer."""
        self._lotto_rewind_device = None if device is None else torch.device(device)
        return self._apply(lambda t: t)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> PrunableModule:
        if self._lotto_rewind_device is None:
            super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
            return self
        order = list(self._buffers)
        pinned = {key: self._buffers.pop(key) for key in order if key.endswith("_rewind")}
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        names = {buffer_key(name) + "_rewind": name for name, _ in self.named_parameters()}
        for key, point in pinned.items():
            dtype = self.get_parameter(names[key]).dtype
            pinned[key] = cast(torch.Tensor, point).to(device=self._lotto_rewind_device, dtype=dtype)
        self._buffers = {key: pinned[key] if key in pinned else self._buffers[key] for key in order}
        return self

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        follow_layout(self)  # a sharded layer saves masks and rewind points sharded like their parameters
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load as ``nn.Module`` does; a whole mask or rewind point (a checkpoint of the
        unsharded model) loads into a sharded layer as this rank's shard of it."""
        follow_layout(self)
        for key, buffer in self._buffers.items():
            saved = state_dict.get(prefix + key)
            if not (isinstance(saved, torch.Tensor) and is_dtensor(buffer)) or is_dtensor(saved):
                continue
            if tuple(saved.shape) == tuple(cast(torch.Tensor, buffer).shape):  # else nn.Module says why
                state_dict[prefix + key] = shard_like(saved, buffer)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def parameter_handles(self) -> Mapping[str, TorchParameterHandle]:
        """Every parameter of the layer (submodules' too, by dotted name); the prunable
        ones have a mask."""
        return {
            name: TorchParameterHandle(*self._lotto_tied.get(name, (self, name))) for name, _ in self.named_parameters()
        }


def _adopt(self: nn.Module, built: nn.Module) -> None:
    """Make ``self`` a twin of ``built``: the same parameters, buffers, submodules and
    settings (the containers copied, their tensors shared)."""
    for key, value in vars(built).items():
        self.__dict__[key] = type(value)(value) if isinstance(value, dict | list | set) else value


def _checked(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` that first applies masks and weights changed by hand
    (``remask_if_changed``): a check in the forward itself rather than a forward
    pre-hook, which would send every call down ``nn.Module``'s slower path for hooks."""

    @functools.wraps(forward)
    def checked(self: PrunableModule, *args: Any, **kwargs: Any) -> Any:
        remask_if_changed(self, args)
        return forward(self, *args, **kwargs)

    return checked


def _twin_init(base: type[nn.Module]) -> Callable[..., None]:
    """The ``__init__`` of ``base``'s twin: ``base``'s, or adopting one built ``base``;
    then the masks and rewind points. It shows ``base``'s signature."""
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
    return __init__


def _generated_class(base: type[nn.Module], prunable: Callable[[nn.Module], list[str]]) -> type[PrunableModule]:
    """The twin of a type that is not one of this module's: pickle and deepcopy rebuild
    it from its base."""
    name = "Prunable" + base.__name__
    namespace = {"__module__": __name__, "__qualname__": name, "__reduce_ex__": _reduce_generated}
    cls: type[PrunableModule] = types.new_class(
        name,
        (base, PrunableModule),
        {"base": base, "prunable": prunable},
        lambda ns: ns.update(namespace),
    )
    return cls


def _reduce_generated(self: PrunableModule, protocol: Any) -> tuple[Any, ...]:
    return (_new_twin, (self._lotto_base,), self.__getstate__())  # type: ignore[no-untyped-call]


def _new_twin(base: type[nn.Module]) -> PrunableModule:
    """An empty instance of ``base``'s generated twin (unpickling fills it)."""
    cls = twin_class(base)
    if cls is None:
        raise TypeError(f"{base.__qualname__} is no longer registered as prunable (register_prunable)")
    return cls.__new__(cls)


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

# The twins of the torch.nn layers, written out so that type checkers and IDEs see them.


class PrunableLinear(nn.Linear, PrunableModule, base=nn.Linear, prunable=_weight):
    pass


class PrunableBilinear(nn.Bilinear, PrunableModule, base=nn.Bilinear, prunable=_weight):
    pass


class PrunableConv1d(nn.Conv1d, PrunableModule, base=nn.Conv1d, prunable=_weight):
    pass


class PrunableConv2d(nn.Conv2d, PrunableModule, base=nn.Conv2d, prunable=_weight):
    pass


class PrunableConv3d(nn.Conv3d, PrunableModule, base=nn.Conv3d, prunable=_weight):
    pass


class PrunableConvTranspose1d(nn.ConvTranspose1d, PrunableModule, base=nn.ConvTranspose1d, prunable=_weight):
    pass


class PrunableConvTranspose2d(nn.ConvTranspose2d, PrunableModule, base=nn.ConvTranspose2d, prunable=_weight):
    pass


class PrunableConvTranspose3d(nn.ConvTranspose3d, PrunableModule, base=nn.ConvTranspose3d, prunable=_weight):
    pass


class PrunableEmbedding(nn.Embedding, PrunableModule, base=nn.Embedding, prunable=_weight):
    pass


class PrunableEmbeddingBag(nn.EmbeddingBag, PrunableModule, base=nn.EmbeddingBag, prunable=_weight):
    pass


class PrunableRNN(nn.RNN, PrunableModule, base=nn.RNN, prunable=_recurrent):
    pass


class PrunableLSTM(nn.LSTM, PrunableModule, base=nn.LSTM, prunable=_recurrent):
    pass


class PrunableGRU(nn.GRU, PrunableModule, base=nn.GRU, prunable=_recurrent):
    pass


class PrunableRNNCell(nn.RNNCell, PrunableModule, base=nn.RNNCell, prunable=_recurrent):
    pass


class PrunableLSTMCell(nn.LSTMCell, PrunableModule, base=nn.LSTMCell, prunable=_recurrent):
    pass


class PrunableGRUCell(nn.GRUCell, PrunableModule, base=nn.GRUCell, prunable=_recurrent):
    pass


class PrunableMultiheadAttention(
    nn.MultiheadAttention, PrunableModule, base=nn.MultiheadAttention, prunable=_attention
):
    pass


class PrunableBatchNorm1d(nn.BatchNorm1d, PrunableModule, base=nn.BatchNorm1d, prunable=_weight):
    pass


class PrunableBatchNorm2d(nn.BatchNorm2d, PrunableModule, base=nn.BatchNorm2d, prunable=_weight):
    pass


class PrunableBatchNorm3d(nn.BatchNorm3d, PrunableModule, base=nn.BatchNorm3d, prunable=_weight):
    pass


class PrunableLayerNorm(nn.LayerNorm, PrunableModule, base=nn.LayerNorm, prunable=_weight):
    pass


class PrunableGroupNorm(nn.GroupNorm, PrunableModule, base=nn.GroupNorm, prunable=_weight):
    pass


class PrunableInstanceNorm1d(nn.InstanceNorm1d, PrunableModule, base=nn.InstanceNorm1d, prunable=_weight):
    pass


class PrunableInstanceNorm2d(nn.InstanceNorm2d, PrunableModule, base=nn.InstanceNorm2d, prunable=_weight):
    pass


class PrunableInstanceNorm3d(nn.InstanceNorm3d, PrunableModule, base=nn.InstanceNorm3d, prunable=_weight):
    pass


class PrunableRMSNorm(nn.RMSNorm, PrunableModule, base=nn.RMSNorm, prunable=_weight):
    pass


PRUNABLE_TYPES: dict[type[nn.Module], type[PrunableModule]] = {
    nn.Linear: PrunableLinear,
    nn.Bilinear: PrunableBilinear,
    nn.Conv1d: PrunableConv1d,
    nn.Conv2d: PrunableConv2d,
    nn.Conv3d: PrunableConv3d,
    nn.ConvTranspose1d: PrunableConvTranspose1d,
    nn.ConvTranspose2d: PrunableConvTranspose2d,
    nn.ConvTranspose3d: PrunableConvTranspose3d,
    nn.Embedding: PrunableEmbedding,
    nn.EmbeddingBag: PrunableEmbeddingBag,
    nn.RNN: PrunableRNN,
    nn.LSTM: PrunableLSTM,
    nn.GRU: PrunableGRU,
    nn.RNNCell: PrunableRNNCell,
    nn.LSTMCell: PrunableLSTMCell,
    nn.GRUCell: PrunableGRUCell,
    nn.MultiheadAttention: PrunableMultiheadAttention,
    nn.BatchNorm1d: PrunableBatchNorm1d,
    nn.BatchNorm2d: PrunableBatchNorm2d,
    nn.BatchNorm3d: PrunableBatchNorm3d,
    nn.LayerNorm: PrunableLayerNorm,
    nn.GroupNorm: PrunableGroupNorm,
    nn.InstanceNorm1d: PrunableInstanceNorm1d,
    nn.InstanceNorm2d: PrunableInstanceNorm2d,
    nn.InstanceNorm3d: PrunableInstanceNorm3d,
    nn.RMSNorm: PrunableRMSNorm,
}
"""Each supported ``torch.nn`` layer type and its prunable twin."""

assert set(PRUNABLE_TYPES) == set(_SPECS)  # every spec has its written-out twin


@dataclass(frozen=True)
class LayerSpec:
    """Which parameters of a layer type are prunable, and how its weights are laid out."""

    prunable: Callable[[nn.Module], list[str]]
    transposed: frozenset[str] = frozenset()
    """Parameters stored ``(in, out)`` (as transformers' ``Conv1D``): ``to_scipy`` gives
    them as ``(out, in)``."""


# third-party layers Lotto knows without importing their package, by qualified name
_KNOWN: dict[str, LayerSpec] = {
    # GPT-2's attention and MLP projections: ``weight`` is (in, out)
    "transformers.pytorch_utils.Conv1D": LayerSpec(_weight, frozenset({"weight"})),
}
_REGISTERED: dict[type[nn.Module], LayerSpec] = {}
_GENERATED: dict[type[nn.Module], type[PrunableModule]] = {}


def register_prunable(
    layer_type: type[nn.Module],
    parameters: Sequence[str] | Callable[[nn.Module], list[str]],
    *,
    transposed: Sequence[str] = (),
) -> None:
    """Make ``layer_type`` (and its subclasses) prunable: ``make_prunable`` then converts
    its instances to a generated twin whose ``parameters`` carry masks.

    Parameters
    ----------
    layer_type
        A ``torch.nn.Module`` subclass.
    parameters
        The names of its prunable parameters (dotted for a submodule's), or a function of
        the layer that returns them (for names that depend on the instance).
    transposed
        Those of ``parameters`` stored ``(in, out)`` rather than ``(out, in)``, so that
        ``to_scipy`` gives them as ``(out, in)``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> class Scale(nn.Module):
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         self.gain = nn.Parameter(torch.ones(n))
    ...     def forward(self, x):
    ...         return x * self.gain
    >>> register_prunable(Scale, ["gain"])
    >>> from lotto_backends.torch import make_prunable
    >>> layer = make_prunable(Scale(4))
    >>> type(layer).__name__, layer.gain_mask.shape
    ('PrunableScale', torch.Size([4]))
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be a torch.nn.Module subclass, got {layer_type!r}")
    if issubclass(layer_type, PrunableModule):
        raise TypeError(f"layer_type {layer_type.__name__} is already prunable")
    if callable(parameters):
        spec = parameters
    else:
        if isinstance(parameters, str) or not all(isinstance(n, str) for n in parameters) or not parameters:
            raise TypeError(f"parameters must be a non-empty sequence of names or a function, got {parameters!r}")
        names = list(parameters)

        def spec(layer: nn.Module) -> list[str]:
            return [n for n in names if _has_parameter(layer, n)]

    if isinstance(transposed, str) or not all(isinstance(n, str) for n in transposed):
        raise TypeError(f"transposed must be a sequence of parameter names, got {transposed!r}")
    if not callable(parameters) and set(transposed) - set(parameters):
        raise ValueError(f"transposed must name some of parameters {list(parameters)}, got {list(transposed)}")
    _REGISTERED[layer_type] = LayerSpec(spec, frozenset(transposed))
    for cls in [c for c in _GENERATED if issubclass(c, layer_type)]:
        del _GENERATED[cls]


def _has_parameter(layer: nn.Module, name: str) -> bool:
    try:
        return layer.get_parameter(name) is not None
    except AttributeError:
        return False


def layer_spec(layer_type: type[nn.Module]) -> LayerSpec | None:
    """How ``layer_type`` is pruned: registered types first, then the ``torch.nn`` types
    and the known third-party ones, each along the type's MRO (nearest first)."""
    for cls in layer_type.__mro__:
        if cls in _REGISTERED:
            return _REGISTERED[cls]
        if cls in _SPECS:
            return LayerSpec(_SPECS[cls])
        known = _KNOWN.get(f"{cls.__module__}.{cls.__qualname__}")
        if known is not None:
            return known
    return None


def twin_class(layer_type: type[nn.Module]) -> type[PrunableModule] | None:
    """The prunable twin of ``layer_type``: ``PrunableX`` for a ``torch.nn`` type, a
    twin generated once for a subclass of one (timm's ``LayerNorm2d``), a known
    third-party type (transformers' ``Conv1D``) or a registered type; ``None`` for a type
    Lotto cannot prune."""
    if issubclass(layer_type, PrunableModule):
        return None
    if layer_type in PRUNABLE_TYPES and layer_type not in _REGISTERED:
        return PRUNABLE_TYPES[layer_type]
    if layer_type not in _GENERATED:
        spec = layer_spec(layer_type)
        if spec is None:
            return None
        _GENERATED[layer_type] = _generated_class(layer_type, spec.prunable)
    return _GENERATED[layer_type]
