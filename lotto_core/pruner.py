"""The pruner: iterative magnitude pruning over a set of groups.

``Pruner(groups)`` prunes every group at once, rewinds every grouped layer to its rewind
point, moves that point, reports sparsity, and saves or restores its whole state so that
an interrupted run resumes without losing a round.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from array_api_compat import to_device

from ._array_api import Array, array_namespace, device
from .backend import count_kept
from .groups import PruneGroup, commit_rounds, prunable_handles
from .protocol import ParameterHandle, PrunableLayer
from .report import ParameterSparsity, SparsityReport
from .undo import Undo, write_masks

__all__ = ["Pruner", "masked_parameters", "type_code"]

_FORMAT = 2
"""The version of ``Pruner.state_dict()``'s layout: only arrays, ints and floats, so that
any checkpointing library (``torch.save``, orbax's ``StandardCheckpointer``) saves it."""


def type_code(name: str) -> int:
    """A prune group's type as the number a saved state holds (CRC-32 of its name)."""
    return zlib.crc32(name.encode())


def _state_config(group: PruneGroup) -> dict[str, int | float]:
    """``group.config()`` with strings as their ``type_code``: a saved state holds numbers."""
    return {k: type_code(v) if isinstance(v, str) else v for k, v in group.config().items()}


def _mask_ids(layer: PrunableLayer) -> list[int]:
    """Identities of a layer's masks: a parameter shared by several layers (tied
    weights) has one mask object, so one identity."""
    return [id(mask) for _, _, mask in prunable_handles(layer)]


def _check_groups(groups: object) -> tuple[PruneGroup, ...]:
    if isinstance(groups, PruneGroup):
        raise TypeError("groups must be a sequence of prune groups; wrap a single group in a list")
    if not isinstance(groups, Sequence) or isinstance(groups, str):
        raise TypeError(f"groups must be a sequence of prune groups, got {type(groups).__name__}")
    if len(groups) == 0:
        raise ValueError("groups must not be empty")
    owner: dict[int, tuple[int, int]] = {}
    for g, group in enumerate(groups):
        if not isinstance(group, PruneGroup):
            raise TypeError(f"groups[{g}] is a {type(group).__name__}, not a PruneGroup")
        for i, layer in enumerate(group.layers):
            if id(layer) in owner:
                g0, i0 = owner[id(layer)]
                raise ValueError(
                    f"groups[{g}].layers[{i}] is already in groups[{g0}].layers[{i0}]: a layer belongs to one group"
                )
            owner[id(layer)] = (g, i)
    masks: dict[int, int] = {}
    for g, group in enumerate(groups):
        for i, layer in enumerate(group.layers):
            for m in _mask_ids(layer):
                if masks.setdefault(m, g) != g:
                    raise ValueError(
                        f"groups[{g}].layers[{i}] shares a parameter with a layer of groups[{masks[m]}]: "
                        "a parameter belongs to one group"
                    )
    return tuple(groups)


def _check_others(others: object, groups: tuple[PruneGroup, ...]) -> tuple[PrunableLayer, ...]:
    if not isinstance(others, Sequence) or isinstance(others, str):
        raise TypeError(f"others must be a sequence of prunable layers, got {type(others).__name__}")
    grouped = {id(layer) for group in groups for layer in group.layers}
    for i, layer in enumerate(others):
        if not isinstance(layer, PrunableLayer):
            raise TypeError(f"others[{i}] is a {type(layer).__name__}, not a prunable layer")
        if id(layer) in grouped:
            raise ValueError(f"others[{i}] is in a group already")
    return tuple(others)


class Pruner:
    """Prunes, rewinds and reports a set of prune groups together.

    Parameters
    ----------
    groups
        The prune groups; a layer (and a parameter) may belong to one group only.
    others
        Layers outside the groups that ``rewind()`` restores and ``set_rewind_point()``
        moves too, and whose rewind points ``state_dict()`` saves: the rest of the model,
        as the adapters' ``Pruner(groups, model=...)`` builds it.
    model_known
        ``False`` where the groups are part of a model the pruner was not given (an
        adapter's ``Pruner`` without ``model=``): the first ``rewind()`` then warns that
        only the grouped layers were rewound.

    Examples
    --------
    >>> import numpy as np
    >>> from lotto_core import ArrayLayer, MagnitudePruneGroup
    >>> layer = ArrayLayer({"weight": np.arange(1.0, 11.0), "bias": np.zeros(1)}, prunable=["weight"])
    >>> pruner = Pruner([MagnitudePruneGroup([layer], 0.2)])
    >>> layer.params["weight"].set_value(layer["weight"] * 10)  # "training"
    >>> pruner.prune_and_rewind()
    >>> layer["weight"]
    array([ 0.,  0.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10.])
    >>> print(pruner.report().remaining)
    0.8
    """

    def __init__(
        self, groups: Sequence[PruneGroup], *, others: Sequence[PrunableLayer] = (), model_known: bool = True
    ) -> None:
        self.groups = _check_groups(groups)
        self.others = _check_others(others, self.groups)
        self.rounds = 0
        self._warn_groups_only = not model_known

    def layers(self) -> Iterator[PrunableLayer]:
        """Every grouped layer, group by group."""
        for group in self.groups:
            yield from group.layers

    def _rewound_layers(self) -> Iterator[PrunableLayer]:
        yield from self.layers()
        yield from self.others

    def prune(self) -> None:
        """Prune one round of every group. All groups decide before any mask changes,
        so a failure leaves every mask as it was. (Only a lone group's selection writes
        new weights too: with several, all groups' would exist at once.)"""
        alone = len(self.groups) == 1
        plans = [group._plan(values=alone) for group in self.groups]
        self._commit(list(zip(self.groups, plans, strict=True)))

    def step(self, step: int) -> bool:
        """One training step of the groups' ``Gradual`` schedules (call it every step,
        after the optimizer's): the groups due at ``step`` prune, deciding together
        before any mask changes; whether any pruned.

        Raises
        ------
        TypeError
            If a group prunes by another amount than ``Gradual`` (use ``prune()``).
        """
        due = [group for group in self.groups if group.due(step)]
        plans = [group._plan(values=len(due) == 1, step=step) for group in due]
        if due:
            self._commit(list(zip(due, plans, strict=True)))
        return bool(due)

    def _commit(self, planned: list[tuple[PruneGroup, list[Any]]]) -> None:
        """Write the groups' planned rounds, all or nothing, and count them."""
        commit_rounds(planned)
        self.rounds += 1

    def rewind(self) -> None:
        """Restore every parameter of every grouped layer (weights masked, biases too),
        and of the ``others``, to its rewind point."""
        if self._warn_groups_only:
            self._warn_groups_only = False
            warnings.warn(
                "Pruner.rewind() restored only the grouped layers: pass model=... to rewind every parameter and "
                "buffer of the model (the lottery-ticket protocol), or rewind='groups' to rewind the groups only",
                UserWarning,
                stacklevel=3,
            )
        handles = [h for layer in self._rewound_layers() for h in layer.parameter_handles().values()]
        with Undo() as undo:
            self._restore(handles, undo)

    def _restore(self, handles: list[ParameterHandle], undo: Undo) -> None:
        """Set each handle to its rewind point, masked, keeping in ``undo`` what a failure
        part-way would have to put back: the pass an adapter may batch."""
        for handle in handles:
            undo.keep(handle, value=True)
        for handle in handles:
            handle.set_value(_rewound(handle))

    def prune_and_rewind(self) -> None:
        """One round of iterative magnitude pruning: ``prune()`` then ``rewind()``."""
        self.prune()
        self.rewind()

    def set_rewind_point(self) -> None:
        """Make the current values of every grouped layer, and of the ``others``, the point
        that ``rewind()`` returns to (late rewinding: call it after k training steps)."""
        handles = [h for layer in self._rewound_layers() for h in layer.parameter_handles().values()]
        with Undo() as undo:
            for handle in handles:
                undo.keep(handle, rewind=True)
            for handle in handles:
                handle.set_rewind_point(handle.get_value())

    def report(self) -> SparsityReport:
        """Kept and total weights of every prunable parameter, and in total; counted
        once for a parameter that several layers share.

        Warns
        -----
        UserWarning
            If a pruned entry's weight is not exactly 0 (counted in ``revived``): an
            update that bypassed the masks moved it.
        """
        rows = []
        seen: set[int] = set()
        for g, group in enumerate(self.groups):
            for i, layer in enumerate(group.layers):
                for name, handle, mask in prunable_handles(layer):
                    if id(mask) in seen:  # a shared parameter counts once
                        continue
                    seen.add(id(mask))
                    xp = array_namespace(mask)
                    kept = count_kept(mask)
                    total = math.prod(mask.shape)
                    revived = 0 if kept == total else count_kept(xp.logical_not(mask) & (handle.get_value() != 0))
                    rows.append(ParameterSparsity(g, i, type(layer).__name__, name, kept, total, revived))
        report = SparsityReport(self.rounds, tuple(rows))
        if report.revived:
            listed = ", ".join(f"{p.label}: {p.revived:,}" for p in report.parameters if p.revived)
            warnings.warn(
                f"{report.revived:,} pruned weights are not zero ({listed}): an update bypassed the masks "
                "(with JAX, train with lotto_backends.jax.Optimizer or pytree.keep_pruned); the sparsity "
                "reported is the masks', not the weights'",
                UserWarning,
                stacklevel=2,
            )
        return report

    def state_dict(self) -> dict[str, Any]:
        """The pruner's whole state: round counters, and per grouped layer (and per
        layer of ``others``) its masks and rewind points, as copies: a state, once
        taken, does not change when the pruner or the model does."""
        return {
            "format": _FORMAT,
            "rounds": self.rounds,
            "groups": [
                {
                    "config": _state_config(group),
                    "rounds": group.rounds,
                    "layers": [_layer_state(layer) for layer in group.layers],
                }
                for group in self.groups
            ],
            "others": [_layer_state(layer) for layer in self.others],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state saved by ``state_dict()``. Everything is checked against the
        pruner's groups and layers first; on a mismatch nothing changes.

        Raises
        ------
        ValueError, TypeError
            If ``state`` does not match this pruner's groups, layers or parameters.
        """
        writes = _check_state(self, state)
        with Undo() as undo:
            for handle, _, _ in writes:
                undo.keep(handle, rewind=True)
            for handle, _, rewind in writes:
                handle.set_rewind_point(rewind)
            write_masks(undo, [(handle, _copy(mask), None) for handle, mask, _ in writes if mask is not None])
        for group, saved in zip(self.groups, state["groups"], strict=True):
            group.rounds = saved["rounds"]
        self.rounds = state["rounds"]


def masked_parameters(pruner: Pruner) -> list[tuple[str, ParameterHandle, Array]]:
    """Every masked parameter of the pruner's groups once (a parameter that several
    layers share is listed where it first appears), named ``groups[g].layers[i].name``,
    with its handle and mask."""
    out = []
    seen: set[int] = set()
    for g, group in enumerate(pruner.groups):
        for i, layer in enumerate(group.layers):
            for name, handle, mask in prunable_handles(layer):
                if id(mask) not in seen:
                    seen.add(id(mask))
                    out.append((f"groups[{g}].layers[{i}].{name}", handle, mask))
    return out


def check_rewind_scope(rewind: object) -> None:
    """Raise unless ``rewind`` is ``"model"`` or ``"groups"`` (the adapters' ``Pruner``)."""
    if rewind not in ("model", "groups"):
        raise ValueError(f"rewind must be 'model' or 'groups', got {rewind!r}")


def rest_of_model(pruner: Pruner, nodes: Iterable[object], rest: PrunableLayer) -> tuple[PrunableLayer, ...]:
    """The ``others`` of a whole-model rewind: the model's prunable layers outside the
    pruner's groups, then ``rest`` (what no prunable layer holds), for an adapter's
    ``Pruner(groups, model=...)``; ``nodes`` are the model's modules.

    Raises
    ------
    ValueError
        If a grouped layer is not among ``nodes``.
    """
    nodes = list(nodes)
    present = {id(node) for node in nodes}
    missing = [layer for layer in pruner.layers() if id(layer) not in present]
    if missing:
        raise ValueError(f"model does not contain the grouped layer {type(missing[0]).__name__}")
    grouped = {id(layer) for layer in pruner.layers()}
    others = [node for node in nodes if isinstance(node, PrunableLayer) and id(node) not in grouped]
    return _check_others([*others, rest], pruner.groups)


def _copy(x: Array) -> Array:
    return array_namespace(x).asarray(x, copy=True)


def _layer_state(layer: PrunableLayer) -> dict[str, dict[str, Array]]:
    return {
        "masks": {n: _copy(mask) for n, _, mask in prunable_handles(layer)},
        "rewind": {n: _copy(h.get_rewind_point()) for n, h in layer.parameter_handles().items()},
    }


def _rewound(handle: ParameterHandle) -> Array:
    value, point, mask = handle.get_value(), handle.get_rewind_point(), handle.get_mask()
    if device(point) != device(value):
        point = to_device(point, device(value))
    xp = array_namespace(value)
    if mask is None:
        return xp.asarray(point, copy=True)
    return xp.where(mask, point, xp.zeros_like(point))


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_array(where: str, saved: Any, like: Array, *, boolean: bool) -> None:
    try:
        xp = array_namespace(saved, like)
    except TypeError:
        raise TypeError(
            f"{where} must be an array of the layer's own kind ({type(like).__name__}), got {type(saved).__name__}"
        ) from None
    if tuple(saved.shape) != tuple(like.shape):
        raise ValueError(f"{where} has shape {tuple(saved.shape)}, the layer's parameter has {tuple(like.shape)}")
    expected = xp.bool if boolean else like.dtype
    if saved.dtype != expected:
        raise TypeError(f"{where} has dtype {saved.dtype}, expected {'bool' if boolean else expected}")
    if boolean and device(saved) != device(like):
        raise ValueError(f"{where} is on device {device(saved)}, the parameter is on {device(like)}")


def _check_state(pruner: Pruner, state: Any) -> list[tuple[ParameterHandle, Array | None, Array]]:
    """Validate a saved state against the pruner and list the writes it implies."""
    if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
        raise ValueError(f"state must be a mapping saved by Pruner.state_dict() (format {_FORMAT})")
    if not _is_count(state.get("rounds")):
        raise ValueError(f"state['rounds'] must be a non-negative int, got {state.get('rounds')!r}")
    groups = state.get("groups")
    if not isinstance(groups, Sequence) or len(groups) != len(pruner.groups):
        n = len(groups) if isinstance(groups, Sequence) else groups
        raise ValueError(f"state has {n} groups, the pruner has {len(pruner.groups)}")
    writes: list[tuple[ParameterHandle, Array | None, Array]] = []
    for g, (group, saved) in enumerate(zip(pruner.groups, groups, strict=True)):
        if saved.get("config") != _state_config(group):
            raise ValueError(
                f"state['groups'][{g}] was saved for another group (config {saved.get('config')}, types as "
                f"type_code); the pruner's group is {group.config()}, saved as {_state_config(group)}"
            )
        if not _is_count(saved.get("rounds")):
            raise ValueError(f"state['groups'][{g}]['rounds'] must be a non-negative int")
        layers = saved.get("layers")
        if not isinstance(layers, Sequence) or len(layers) != len(group.layers):
            raise ValueError(f"state['groups'][{g}] does not have {len(group.layers)} layers")
        for i, (layer, entry) in enumerate(zip(group.layers, layers, strict=True)):
            writes += _check_layer_state(f"state['groups'][{g}]['layers'][{i}]", layer, entry)
    others = state.get("others", [])
    if not isinstance(others, Sequence) or len(others) != len(pruner.others):
        n = len(others) if isinstance(others, Sequence) else others
        raise ValueError(f"state has {n} other layers, the pruner has {len(pruner.others)}")
    for i, (layer, entry) in enumerate(zip(pruner.others, others, strict=True)):
        writes += _check_layer_state(f"state['others'][{i}]", layer, entry)
    return writes


def _check_layer_state(
    where: str, layer: PrunableLayer, entry: Any
) -> list[tuple[ParameterHandle, Array | None, Array]]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with 'masks' and 'rewind', got {type(entry).__name__}")
    handles = layer.parameter_handles()
    masked = {n for n, _, _ in prunable_handles(layer)}
    masks, rewind = entry.get("masks", {}), entry.get("rewind", {})
    if set(masks) != masked or set(rewind) != set(handles):
        raise ValueError(
            f"{where} holds masks {sorted(masks)} and rewind points {sorted(rewind)}; "
            f"the layer has masks {sorted(masked)} and parameters {sorted(handles)}"
        )
    writes = []
    for name, handle in handles.items():
        value = handle.get_value()
        _check_array(f"{where}['rewind'][{name!r}]", rewind[name], value, boolean=False)
        if name in masked:
            _check_array(f"{where}['masks'][{name!r}]", masks[name], value, boolean=True)
        writes.append((handle, masks.get(name), rewind[name]))
    return writes
