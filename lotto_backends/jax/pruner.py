"""The core's ``Pruner`` for NNX models: ``rewind()`` restores the whole model.

As in OpenLTH, the lottery-ticket protocol rewinds every parameter of the model, not
only the pruned layers, and the statistics training changed: given ``model=``, every
``nnx.Param`` and ``nnx.BatchStat`` that no prunable layer keeps a rewind point for is
snapshotted when the pruner is made, and ``rewind()``, ``set_rewind_point()`` and
``state_dict()`` cover them with the grouped layers. Other variables (RNG counters,
caches) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

import lotto_core
from lotto_core import PruneGroup
from lotto_core.protocol import ParameterHandle
from lotto_core.pruner import check_rewind_scope, rest_of_model
from lotto_core.undo import Undo

from ._write import zero_pruned
from .layers import JaxParameterHandle, PrunableModule

__all__ = ["ModelRest", "Pruner"]

REWOUND = (nnx.Param, nnx.BatchStat)
"""The variable types a whole-model rewind restores."""


class _VariableHandle:
    """A parameter or statistic outside any prunable layer: rewound to a snapshot."""

    def __init__(self, variable: nnx.Variable[Any]) -> None:
        self.variable = variable
        self.point = jnp.copy(variable.get_value())

    def get_value(self) -> jax.Array:
        value: jax.Array = self.variable.get_value()
        return value

    def set_value(self, value: jax.Array) -> None:
        self.variable.set_value(value)

    def get_mask(self) -> None:
        return None

    def set_mask(self, mask: jax.Array) -> None:
        raise ValueError("a variable outside the prunable layers has no mask")

    def get_rewind_point(self) -> jax.Array:
        return self.point

    def set_rewind_point(self, value: jax.Array) -> None:
        self.point = jnp.copy(value)


class ModelRest:
    """Every ``nnx.Param`` and ``nnx.BatchStat`` of ``model`` that no prunable layer
    holds a rewind point for, as one layer with no masks whose rewind point is their
    value when it is made."""

    def __init__(self, model: nnx.Module) -> None:
        held: set[int] = set()
        for _, node in nnx.iter_graph(model):
            if isinstance(node, PrunableModule):
                held.update(id(h.variable) for h in node.parameter_handles().values())
        self.handles: dict[str, _VariableHandle] = {}
        for path, node in nnx.iter_graph(model):
            if isinstance(node, REWOUND) and id(node) not in held:
                held.add(id(node))
                self.handles[".".join(str(k) for k in path)] = _VariableHandle(node)

    def parameter_handles(self) -> Mapping[str, _VariableHandle]:
        return self.handles

    def __repr__(self) -> str:
        return f"ModelRest({len(self.handles)} variables)"


class Pruner(lotto_core.Pruner):
    """``lotto_core.Pruner`` whose ``rewind()`` restores the whole ``model``.

    Parameters
    ----------
    groups
        The prune groups.
    model
        The NNX model the groups' layers belong to. ``rewind()`` then restores every
        ``nnx.Param`` of it (masked where pruned) and every ``nnx.BatchStat`` to the
        rewind point: the prunable layers' own rewind points, and, for everything else,
        its value when the pruner is made. ``set_rewind_point()`` moves all of them.
    rewind
        ``"model"`` (the default): as above. ``"groups"``: rewind only the grouped
        layers' parameters.

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
        model: nnx.Module | None = None,
        rewind: Literal["model", "groups"] = "model",
    ) -> None:
        check_rewind_scope(rewind)
        if model is not None and not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        super().__init__(groups, model_known=model is not None or rewind == "groups")
        if model is not None and rewind == "model":
            self.others = rest_of_model(self, (node for _, node in nnx.iter_graph(model)), ModelRest(model))
        self.scope = rewind

    def _restore(self, handles: list[ParameterHandle], undo: Undo) -> None:
        """Every variable back to its rewind point at once: JAX arrays are immutable, so
        an unmasked variable takes its rewind point itself, and the masked ones are
        zeroed in one batched call (``_write.zero_pruned``); other handles one at a time.
        ``undo`` keeps the old arrays themselves."""
        masked: list[tuple[JaxParameterHandle, jax.Array, jax.Array]] = []
        rest: list[ParameterHandle] = []
        for handle in handles:
            if isinstance(handle, JaxParameterHandle | _VariableHandle):
                undo.keep(handle, value=True)
                point, value = handle.get_rewind_point(), handle.get_value()
                if point.sharding != value.sharding:  # a rewind point kept on another device
                    point = jax.device_put(point, value.sharding)
                mask = handle.get_mask()
                if mask is None:
                    handle.variable.set_value(point)
                elif isinstance(handle, JaxParameterHandle):
                    masked.append((handle, point, mask))
            else:
                rest.append(handle)
        if masked:
            zeroed = zero_pruned([point for _, point, _ in masked], [mask for _, _, mask in masked])
            for (handle, _, _), value in zip(masked, zeroed, strict=True):
                handle.variable.set_value(value)
        super()._restore(rest, undo)
