"""Prunable twins of the Flax NNX layers with trainable weights.

``PrunableX`` is a subclass of ``nnx.X`` that takes exactly ``X``'s constructor
arguments, or one built ``X`` to adopt (sharing its variables). Next to each prunable
weight ``<name>`` it keeps a boolean ``<name>_mask`` (a :class:`Mask` variable), and next
to every parameter a ``<name>_rewind`` copy (a :class:`RewindPoint` variable); both live
on the module that owns the parameter (``cell.ii.kernel_mask`` for an LSTM cell). Neither
is an ``nnx.Param``, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` never trains them,
while ``nnx.state``/``nnx.split``/``nnx.merge`` carry them like any other state.

Which weights are prunable (biases never are):

.. list-table::
   :header-rows: 1

   * - layer
     - prunable parameters
   * - Linear, LinearGeneral, Einsum, Conv, ConvTranspose
     - ``kernel``
   * - Embed
     - ``embedding``
   * - MultiHeadAttention
     - ``query``, ``key``, ``value`` and ``out`` kernels
   * - LSTMCell, OptimizedLSTMCell, GRUCell, SimpleCell
     - every ``kernel`` of the cell
   * - BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm
     - ``scale``, when the layer has one

Pruned weights hold exactly 0.0; during a call their gradient is zero, and
``lotto_backends.jax.Optimizer`` keeps them at zero whatever else moves them (see
``lotto_backends.jax._masking`` and ``lotto_backends.jax.optimizer``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from ._masking import KeptElsewhere, Mask, RewindPoint, masked_weights
from ._tree import check_mask, is_concrete

__all__ = [
    "PRUNABLE_TYPES",
    "JaxParameterHandle",
    "KeptElsewhere",
    "Mask",
    "PrunableBatchNorm",
    "PrunableConv",
    "PrunableConvTranspose",
    "PrunableEinsum",
    "PrunableEmbed",
    "PrunableGRUCell",
    "PrunableGroupNorm",
    "PrunableInstanceNorm",
    "PrunableLSTMCell",
    "PrunableLayerNorm",
    "PrunableLinear",
    "PrunableLinearGeneral",
    "PrunableModule",
    "PrunableMultiHeadAttention",
    "PrunableOptimizedLSTMCell",
    "PrunableRMSNorm",
    "PrunableSimpleCell",
    "RewindPoint",
    "register_prunable",
    "twin_class",
]


def _zero_pruned(value: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask, value, jnp.zeros((), value.dtype))


class JaxParameterHandle:
    """The core's ``ParameterHandle`` over one parameter of a prunable NNX layer."""

    def __init__(self, owner: nnx.Module, name: str) -> None:
        self.owner = owner
        self.name = name

    @property
    def variable(self) -> nnx.Param[jax.Array]:
        variable: nnx.Param[jax.Array] = getattr(self.owner, self.name)
        return variable

    def _mask_variable(self) -> Mask | None:
        mask: Mask | None = getattr(self.owner, self.name + "_mask", None)
        return mask

    def get_value(self) -> jax.Array:
        return self.variable.get_value()

    def set_value(self, value: jax.Array) -> None:
        current = self.get_value()
        if is_concrete(current) and is_concrete(value) and current.sharding != value.sharding:
            value = jax.device_put(value, current.sharding)  # a rewind point kept elsewhere
        mask = self.get_mask()
        self.variable.set_value(value if mask is None else _zero_pruned(value, mask))

    def get_mask(self) -> jax.Array | None:
        mask = self._mask_variable()
        return None if mask is None else mask.get_value()

    def set_mask(self, mask: jax.Array) -> None:
        """Store ``mask`` (a boolean JAX array of the parameter's shape, on its devices)
        and zero the entries it prunes.

        Raises
        ------
        TypeError, ValueError
            Naming ``mask`` and what was expected; nothing is changed.
        """
        value = self.get_value()
        check_mask(mask, value, "mask")
        self.set_masked(mask, _zero_pruned(value, mask))

    def set_masked(self, mask: jax.Array, value: jax.Array) -> None:
        """Store ``mask`` and a ``value`` already exactly 0 where it is ``False``."""
        variable = self._mask_variable()
        if variable is None:
            raise ValueError(f"parameter {self.name!r} of {type(self.owner).__name__} is not prunable")
        variable.set_value(mask)
        self.variable.set_value(value)

    def _rewind_variable(self) -> RewindPoint:
        """The variable that holds the parameter's rewind point."""
        point: RewindPoint = getattr(self.owner, self.name + "_rewind")
        return point

    def get_rewind_point(self) -> jax.Array:
        value = self._rewind_variable().get_value()
        return value.array if isinstance(value, KeptElsewhere) else value

    def set_rewind_point(self, value: jax.Array) -> None:
        """Store ``value`` as the rewind point, where the rewind point lives (host memory
        after ``set_rewind_device``)."""
        point = self._rewind_variable()
        old = point.get_value()
        if isinstance(old, KeptElsewhere):
            point.set_value(KeptElsewhere(jax.device_put(value, old.array.sharding)))
            return
        if is_concrete(old) and is_concrete(value) and old.sharding != value.sharding:
            value = jax.device_put(value, old.sharding)
        point.set_value(value)

    def __repr__(self) -> str:
        return f"JaxParameterHandle({type(self.owner).__name__}, {self.name!r})"


def _parameters(layer: nnx.Module) -> Iterator[tuple[str, nnx.Module, str]]:
    """``(dotted path, owning module, attribute name)`` of every ``nnx.Param`` of the
    layer, in NNX's (sorted) traversal order."""
    for path, node in nnx.iter_graph(layer):
        if isinstance(node, nnx.Param):
            owner: Any = layer
            for key in path[:-1]:
                owner = owner[key] if isinstance(key, int) else getattr(owner, str(key))
            yield ".".join(str(key) for key in path), owner, str(path[-1])


_SHARDING_METADATA = ("out_sharding", "sharding_names", "sharding", "mesh")
"""The variable metadata that says how a variable is sharded (``nnx.get_partition_spec``)."""

_V = TypeVar("_V", bound=nnx.Variable[Any])


def _with_metadata(variable: _V, metadata: dict[str, Any]) -> _V:
    if metadata:
        variable.set_metadata(**metadata)
    return variable


class PrunableModule(nnx.Module):
    """What every ``PrunableX`` adds to its ``X``: mask and rewind variables, the masked
    call, and the core's ``parameter_handles()``."""

    _lotto_prunable: frozenset[str]
    _lotto_required: bool = False
    _lotto_base: type[nnx.Module]

    def _lotto_setup(self) -> None:
        parameters = list(_parameters(self))
        missing = self._lotto_prunable - {name for _, _, name in parameters}
        if self._lotto_required and missing:
            names = sorted(path for path, _, _ in parameters)
            raise ValueError(
                f"{self._lotto_base.__name__} was registered with parameters {sorted(missing)}, which this "
                f"layer does not have; its nnx.Param are {names}"
            )
        for _, owner, name in parameters:
            param = getattr(owner, name)
            value = param.get_value()
            # the weight's partition-spec metadata, so that spec-driven sharded init and orbax
            # restore place masks and rewind points as the weight
            sharding = {k: v for k, v in param.get_metadata().items() if k in _SHARDING_METADATA}
            if name in self._lotto_prunable:
                # like the weight: its sharding, committed to a device only if the weight is (a
                # jitted step then compiles once for both), and traceable (nnx.eval_shape, nnx.jit)
                setattr(owner, name + "_mask", _with_metadata(Mask(jnp.ones_like(value, dtype=bool)), sharding))
            setattr(owner, name + "_rewind", _with_metadata(RewindPoint(jnp.copy(value)), sharding))

    def _lotto_masked_pairs(self) -> list[tuple[nnx.Variable[Any], Mask]]:
        return [
            (getattr(owner, name), getattr(owner, name + "_mask"))
            for _, owner, name in _parameters(self)
            if isinstance(getattr(owner, name + "_mask", None), Mask)
        ]

    def set_rewind_device(self, device: jax.Device | None) -> PrunableModule:
        """Keep this layer's rewind points on ``device`` (``jax.devices("cpu")[0]`` for a
        model on an accelerator: one rewind copy per weight in host memory instead of
        device memory); ``None`` puts them back beside their weights. Rewinding moves
        them to the weight's devices for the copy only. Returns the layer.

        A point kept on a device is held in a :class:`KeptElsewhere`, which jitted
        functions of the model do not see: a training step under ``nnx.jit`` runs where
        the weights are and leaves the points where they are. Nor does ``nnx.state``:
        put the points back (``None``) before saving them in a checkpoint."""
        for handle in self.parameter_handles().values():
            current = handle.get_rewind_point()
            if device is None:
                handle._rewind_variable().set_value(jax.device_put(current, handle.get_value().sharding))
            else:
                handle._rewind_variable().set_value(KeptElsewhere(jax.device_put(current, device)))
        return self

    def parameter_handles(self) -> Mapping[str, JaxParameterHandle]:
        """Every parameter of the layer (submodules' too, by dotted path); the prunable
        ones have a mask."""
        return {path: JaxParameterHandle(owner, name) for path, owner, name in _parameters(self)}


def _masked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: PrunableModule, *args: Any, **kwargs: Any) -> Any:
        with masked_weights(self._lotto_masked_pairs()):
            return method(self, *args, **kwargs)

    return call


def _adopt(self: nnx.Module, built: nnx.Module) -> None:
    """Make ``self`` a twin of ``built``: the same variables, submodules and settings."""
    for key, value in vars(built).items():
        if not key.startswith("_pytree__"):
            setattr(self, key, value)


_T = TypeVar("_T", bound=type[PrunableModule])


def _twin(
    base: type[nnx.Module], prunable: frozenset[str], methods: tuple[str, ...], *, required: bool = False
) -> Callable[[_T], _T]:
    """Make the decorated ``class PrunableX(X, PrunableModule)`` the twin of ``X``:
    ``X``'s constructor (or one built ``X`` to adopt), masks on ``prunable``, and
    ``methods`` called with the weights' gradients masked; with ``required``, a layer
    missing any of the ``prunable`` parameters is refused (a registered type)."""
    # NNX's metaclass hides a class's own signature behind ``(*args, **kwargs)``: take
    # ``__init__``'s, and give the class that same signature without ``self``
    signature = inspect.signature(base.__init__)

    def make(cls: _T) -> _T:
        @functools.wraps(base.__init__)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) == 1 and not kwargs and isinstance(args[0], base):
                _adopt(self, args[0])
            else:
                base.__init__(self, *args, **kwargs)
            self._lotto_setup()

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
        cls.__doc__ = (
            f"A prunable :class:`flax.nnx.{base.__name__}`: the same constructor arguments, "
            f"or one built ``{base.__name__}`` to adopt. See :mod:`lotto_backends.jax.layers`."
        )
        cls._lotto_prunable = prunable
        cls._lotto_required = required
        cls._lotto_base = base
        for method in methods:
            setattr(cls, method, _masked(getattr(base, method)))
        return cls

    return make


_KERNEL = frozenset({"kernel"})
_SCALE = frozenset({"scale"})
_SPECS: dict[type[nnx.Module], tuple[frozenset[str], tuple[str, ...]]] = {
    nnx.Linear: (_KERNEL, ("__call__",)),
    nnx.LinearGeneral: (_KERNEL, ("__call__",)),
    nnx.Einsum: (_KERNEL, ("__call__",)),
    nnx.Conv: (_KERNEL, ("__call__",)),
    nnx.ConvTranspose: (_KERNEL, ("__call__",)),
    nnx.Embed: (frozenset({"embedding"}), ("__call__", "attend")),
    nnx.MultiHeadAttention: (_KERNEL, ("__call__",)),
    nnx.LSTMCell: (_KERNEL, ("__call__",)),
    nnx.OptimizedLSTMCell: (_KERNEL, ("__call__",)),
    nnx.GRUCell: (_KERNEL, ("__call__",)),
    nnx.SimpleCell: (_KERNEL, ("__call__",)),
    nnx.BatchNorm: (_SCALE, ("__call__",)),
    nnx.LayerNorm: (_SCALE, ("__call__",)),
    nnx.RMSNorm: (_SCALE, ("__call__",)),
    nnx.GroupNorm: (_SCALE, ("__call__",)),
    nnx.InstanceNorm: (_SCALE, ("__call__",)),
}

# The twins of the NNX layers, written out so that type checkers and IDEs see them.


@_twin(nnx.Linear, *_SPECS[nnx.Linear])
class PrunableLinear(nnx.Linear, PrunableModule):
    pass


@_twin(nnx.LinearGeneral, *_SPECS[nnx.LinearGeneral])
class PrunableLinearGeneral(nnx.LinearGeneral, PrunableModule):
    pass


@_twin(nnx.Einsum, *_SPECS[nnx.Einsum])
class PrunableEinsum(nnx.Einsum, PrunableModule):
    pass


@_twin(nnx.Conv, *_SPECS[nnx.Conv])
class PrunableConv(nnx.Conv, PrunableModule):
    pass


@_twin(nnx.ConvTranspose, *_SPECS[nnx.ConvTranspose])
class PrunableConvTranspose(nnx.ConvTranspose, PrunableModule):
    pass


@_twin(nnx.Embed, *_SPECS[nnx.Embed])
class PrunableEmbed(nnx.Embed, PrunableModule):
    pass


@_twin(nnx.MultiHeadAttention, *_SPECS[nnx.MultiHeadAttention])
class PrunableMultiHeadAttention(nnx.MultiHeadAttention, PrunableModule):
    pass


@_twin(nnx.LSTMCell, *_SPECS[nnx.LSTMCell])
class PrunableLSTMCell(nnx.LSTMCell, PrunableModule):
    pass


@_twin(nnx.OptimizedLSTMCell, *_SPECS[nnx.OptimizedLSTMCell])
class PrunableOptimizedLSTMCell(nnx.OptimizedLSTMCell, PrunableModule):
    pass


@_twin(nnx.GRUCell, *_SPECS[nnx.GRUCell])
class PrunableGRUCell(nnx.GRUCell, PrunableModule):
    pass


@_twin(nnx.SimpleCell, *_SPECS[nnx.SimpleCell])
class PrunableSimpleCell(nnx.SimpleCell, PrunableModule):
    pass


@_twin(nnx.BatchNorm, *_SPECS[nnx.BatchNorm])
class PrunableBatchNorm(nnx.BatchNorm, PrunableModule):
    pass


@_twin(nnx.LayerNorm, *_SPECS[nnx.LayerNorm])
class PrunableLayerNorm(nnx.LayerNorm, PrunableModule):
    pass


@_twin(nnx.RMSNorm, *_SPECS[nnx.RMSNorm])
class PrunableRMSNorm(nnx.RMSNorm, PrunableModule):
    pass


@_twin(nnx.GroupNorm, *_SPECS[nnx.GroupNorm])
class PrunableGroupNorm(nnx.GroupNorm, PrunableModule):
    pass


@_twin(nnx.InstanceNorm, *_SPECS[nnx.InstanceNorm])
class PrunableInstanceNorm(nnx.InstanceNorm, PrunableModule):
    pass


PRUNABLE_TYPES: dict[type[nnx.Module], type[PrunableModule]] = {
    nnx.Linear: PrunableLinear,
    nnx.LinearGeneral: PrunableLinearGeneral,
    nnx.Einsum: PrunableEinsum,
    nnx.Conv: PrunableConv,
    nnx.ConvTranspose: PrunableConvTranspose,
    nnx.Embed: PrunableEmbed,
    nnx.MultiHeadAttention: PrunableMultiHeadAttention,
    nnx.LSTMCell: PrunableLSTMCell,
    nnx.OptimizedLSTMCell: PrunableOptimizedLSTMCell,
    nnx.GRUCell: PrunableGRUCell,
    nnx.SimpleCell: PrunableSimpleCell,
    nnx.BatchNorm: PrunableBatchNorm,
    nnx.LayerNorm: PrunableLayerNorm,
    nnx.RMSNorm: PrunableRMSNorm,
    nnx.GroupNorm: PrunableGroupNorm,
    nnx.InstanceNorm: PrunableInstanceNorm,
}
"""Each supported NNX layer type and its prunable twin."""
assert set(PRUNABLE_TYPES) == set(_SPECS)  # every spec has its written-out twin

_REGISTERED: dict[type[nnx.Module], tuple[frozenset[str], tuple[str, ...]]] = {}
"""The types ``register_prunable`` made prunable, with their parameters and methods."""

_GENERATED: dict[type[nnx.Module], type[PrunableModule]] = {}
"""The twins made so far for registered types and for subclasses of prunable ones."""


def twin_class(layer_type: type[nnx.Module]) -> type[PrunableModule] | None:
    """The prunable twin of ``layer_type``: the written-out one of a supported NNX layer,
    else one made for a registered type or for a subclass of a supported or registered
    type (which keeps the subclass's own methods); ``None`` for any other type."""
    if layer_type in PRUNABLE_TYPES:
        return PRUNABLE_TYPES[layer_type]
    if layer_type in _GENERATED:
        return _GENERATED[layer_type]
    for base in layer_type.__mro__:
        spec = _SPECS.get(base) or _REGISTERED.get(base)
        if spec is not None:
            made = type(f"Prunable{layer_type.__name__}", (layer_type, PrunableModule), {"__module__": __name__})
            twin: type[PrunableModule] = _twin(layer_type, *spec, required=base in _REGISTERED)(made)
            _GENERATED[layer_type] = twin
            return twin
    return None


def register_prunable(
    layer_type: type[nnx.Module], parameters: Sequence[str], *, methods: Sequence[str] = ("__call__",)
) -> None:
    """Make ``layer_type`` (and its subclasses) prunable: ``make_prunable`` then converts
    its instances to a twin whose ``parameters`` carry masks and rewind points, and whose
    ``methods`` run with those weights' gradients masked.

    Parameters
    ----------
    layer_type
        An ``nnx.Module`` subclass that is not prunable yet.
    parameters
        The attribute names of its prunable ``nnx.Param`` (matched at any depth inside the
        layer, as ``kernel`` is for every kernel of an LSTM cell); a layer missing any
        of them is refused when it is converted.
    methods
        The methods that read those weights.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from lotto_backends.jax import make_prunable, register_prunable
    >>> class Gain(nnx.Module):
    ...     def __init__(self, n):
    ...         self.gain = nnx.Param(jnp.ones((n, n)))
    ...     def __call__(self, x):
    ...         return x @ self.gain[...]
    >>> register_prunable(Gain, ["gain"])
    >>> layer = make_prunable(Gain(3))
    >>> type(layer).__name__, layer.gain_mask.get_value().shape
    ('PrunableGain', (3, 3))
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nnx.Module)):
        raise TypeError(f"layer_type must be a flax.nnx.Module subclass, got {layer_type!r}")
    if issubclass(layer_type, PrunableModule) or twin_class(layer_type) is not None:
        raise TypeError(f"layer_type {layer_type.__name__} is already prunable")
    if isinstance(parameters, str) or not parameters or not all(isinstance(n, str) for n in parameters):
        raise TypeError(f"parameters must be a non-empty sequence of attribute names, got {parameters!r}")
    if isinstance(methods, str) or not methods or not all(callable(getattr(layer_type, m, None)) for m in methods):
        raise ValueError(f"methods must name methods of {layer_type.__name__}, got {methods!r}")
    _REGISTERED[layer_type] = (frozenset(parameters), tuple(methods))
