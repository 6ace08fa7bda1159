"""Functional pruning of parameter pytrees, for any JAX library (Flax linen, Equinox,
plain dicts of arrays).

Masks are a pytree with the structure of the parameters: a boolean array (``True`` =
kept) for each leaf that can be pruned and ``None`` for the others. Groups pick their
leaves by path (``"params/Dense_0/kernel"``, see ``paths``). ``prune`` and ``rewind``
are pure functions that return new pytrees; ``keep_pruned`` wraps an optax optimizer so
that training leaves pruned entries at exactly 0.

A round selects exactly what the core's groups select on the same values
(``lotto_core.groups``: ``k = min(r, ceil(p r))`` of the ``r`` kept weights, one shared
threshold per group, ties by leaf order and then C order, pruned entries never
revived): each selected leaf becomes a one-parameter layer of a core group, in the
order of ``jax.tree_util`` flattening. The counting passes are jit-compiled
(``lotto_backends.jax._select``), and a sharded leaf stays sharded: only pivot values
and counts cross between host and devices.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from lotto_backends.jax import pytree
>>> params = {"dense": {"kernel": jnp.arange(1.0, 9.0).reshape(2, 4), "bias": jnp.ones(4)}}
>>> masks = pytree.init_masks(params)  # every floating leaf of 2+ dimensions
>>> initial = params
>>> params, masks = pytree.prune(params, masks, [pytree.MagnitudeGroup("*kernel", 0.25)])
>>> params["dense"]["kernel"]
Array([[0., 0., 3., 4.],
       [5., 6., 7., 8.]], dtype=float32)
>>> masks["dense"]["bias"] is None
True
>>> pytree.rewind(initial, masks)["dense"]["kernel"][0]
Array([0., 0., 3., 4.], dtype=float32)
>>> print(pytree.report(masks).remaining)
0.75
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import lotto_core
from lotto_core import (
    LayerwiseMagnitudePruneGroup,
    MagnitudePruneGroup,
    ParameterSparsity,
    PruneGroup,
    Pruner,
    RandomPruneGroup,
    SparsityReport,
)
from lotto_core.rate import validate_rate
from lotto_core.strategy import Amount, Random, Scope, Score, as_amount

from ._optax import keep_pruned
from ._tree import Leaf, Selector, check_selector, describe, is_concrete, is_weight, leaves, matches, path_name
from ._write import zero_pruned
from .instability import pytree_instability as instability

__all__ = [
    "Group",
    "LayerwiseMagnitudeGroup",
    "MagnitudeGroup",
    "PytreeGroup",
    "RandomGroup",
    "Selector",
    "apply_masks",
    "init_masks",
    "instability",
    "keep_pruned",
    "paths",
    "prune",
    "random_prune_like",
    "reinitialize",
    "report",
    "rewind",
    "shuffle_masks",
]


def paths(params: Any) -> list[str]:
    """The path of every leaf, in flattening order: what group selectors match.

    >>> paths({"params": {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}})
    ['params/Dense_0/bias', 'params/Dense_0/kernel']
    """
    return [path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


# the last path component of a bias or a normalization's scale/offset, in Flax (bias,
# scale), Equinox (bias, weight of a norm is "weight": kept), Haiku (b, scale, offset)
_NOT_WEIGHTS = re.compile(r"(^|/)(bias|b|scale|offset|gamma|beta)$", re.IGNORECASE)


def _default_prunable(path: str, leaf: Any) -> bool:
    """Kernels and embeddings: floating leaves of two or more dimensions that are not
    named as a bias or a scale (Equinox's ``Conv2d`` bias is ``(out, 1, 1)``, linen's
    attention biases ``(heads, head_dim)``)."""
    return is_weight(leaf) and leaf.ndim >= 2 and _NOT_WEIGHTS.search(path) is None


def init_masks(params: Any, prunable: Selector | None = None) -> Any:
    """Masks that keep everything: an all-``True`` boolean array (with the leaf's
    sharding) for each prunable leaf, ``None`` for the others.

    Parameters
    ----------
    params
        The parameter pytree.
    prunable
        Which leaves get a mask (a glob on paths, a compiled regular expression, or a
        function ``(path, leaf) -> bool``). ``None`` (the default) picks every floating
        leaf with two or more dimensions whose last path component does not name a bias
        or a scale (``bias``, ``b``, ``scale``, ``offset``, ``gamma``, ``beta``): kernels
        and embeddings, not biases or scales, whatever their shape.

    Raises
    ------
    TypeError
        If ``prunable`` picks a leaf that is not a floating JAX array of one or more
        dimensions, or is not a selector.
    ValueError
        If no leaf is picked.
    """
    select = _default_prunable if prunable is None else check_selector(prunable, "prunable")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    out: list[jax.Array | None] = []
    for path, leaf in flat:
        name = path_name(path)
        if not matches(select, name, leaf):
            out.append(None)
            continue
        if not is_weight(leaf):
            raise TypeError(
                f"prunable picks {name!r}, {describe(leaf)}; only floating JAX arrays with one or more "
                "dimensions can have a mask"
            )
        out.append(jnp.ones_like(leaf, dtype=jnp.bool_))
    if all(m is None for m in out):
        what = "floating leaf with two or more dimensions" if prunable is None else f"leaf for prunable={prunable!r}"
        raise ValueError(f"params has no {what}; its leaves are {[path_name(p) for p, _ in flat]}")
    return treedef.unflatten(out)  # type: ignore[attr-defined]


def apply_masks(params: Any, masks: Any) -> Any:
    """``params`` with every pruned entry set to exactly 0 (also inside ``jax.jit``).

    Raises
    ------
    ValueError, TypeError
        If ``masks`` does not match ``params``.
    """
    flat, treedef = leaves(params, masks)
    masked = [leaf for leaf in flat if leaf.mask is not None]
    zeroed = iter(zero_pruned([leaf.value for leaf in masked], [leaf.mask for leaf in masked]))
    return treedef.unflatten([leaf.value if leaf.mask is None else next(zeroed) for leaf in flat])


def rewind(rewind_params: Any, masks: Any) -> Any:
    """The parameters rewound: every leaf of the rewind point (weights, biases,
    everything) with the pruned entries set to 0. Keep the rewind point yourself, e.g.
    the initial parameters, or those after ``k`` steps for late rewinding.

    Raises
    ------
    ValueError, TypeError
        If ``masks`` does not match ``rewind_params``.
    """
    return apply_masks(rewind_params, masks)


class PytreeGroup(ABC):
    """Leaves pruned together, picked by path among the leaves that have a mask.

    Parameters
    ----------
    select
        A glob on leaf paths (``"*kernel"``, ``"params/Dense_*/kernel"``), a compiled
        regular expression searched in the path, or a function ``(path, leaf) -> bool``.
    p
        Fraction of the group's remaining weights that each round removes.
    """

    def __init__(self, select: Selector, p: float) -> None:
        self.select = check_selector(select, "select")
        self.p = validate_rate(p)

    @abstractmethod
    def core_group(self, layers: list[_LeafLayer], round_index: int) -> PruneGroup:
        """The core group that prunes these leaves (one layer per leaf) this round."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.select!r}, p={self.p})"


class Group(PytreeGroup):
    """Leaves pruned with any strategy of ``lotto_core.strategy``: the core's
    ``PruneGroup(leaves, amount, score=score, scope=scope)`` over the selected leaves
    (a leaf is one layer, its parameter named ``"value"``; ``layer.path`` is its path).

    >>> import jax.numpy as jnp
    >>> from lotto_core.strategy import ERK, Sparsity
    >>> params = {"a": {"kernel": jnp.ones((100, 10))}, "b": {"kernel": jnp.ones((10, 10))}}
    >>> _, masks = prune(params, init_masks(params), [Group("*kernel", Sparsity(0.8), scope=ERK())])
    >>> int(masks["a"]["kernel"].sum()), int(masks["b"]["kernel"].sum())
    (186, 34)
    """

    def __init__(
        self, select: Selector, amount: Amount | float, *, score: Score | None = None, scope: Scope | None = None
    ) -> None:
        self.select = check_selector(select, "select")
        self.amount, self.score, self.scope = as_amount(amount), score, scope

    def core_group(self, layers: list[_LeafLayer], round_index: int) -> PruneGroup:
        group = PruneGroup(layers, self.amount, score=self.score, scope=self.scope)
        group.rounds = round_index
        return group

    def __repr__(self) -> str:
        return f"Group({self.select!r}, {self.amount!r}, score={self.score!r}, scope={self.scope!r})"


class MagnitudeGroup(PytreeGroup):
    """Global magnitude pruning: the group's remaining weights with the smallest
    ``|w|`` go first, one threshold for all its leaves (Frankle & Carbin 2019)."""

    def core_group(self, layers: list[_LeafLayer], round_index: int) -> PruneGroup:
        return MagnitudePruneGroup(layers, self.p)


class LayerwiseMagnitudeGroup(PytreeGroup):
    """Layer-wise magnitude pruning: every leaf prunes ``p`` of its own remaining
    weights by ``|w|``, with a threshold of its own (Han et al. 2015)."""

    def core_group(self, layers: list[_LeafLayer], round_index: int) -> PruneGroup:
        return LayerwiseMagnitudePruneGroup(layers, self.p)


class RandomGroup(PytreeGroup):
    """Random pruning, the control of Frankle & Carbin (2019): the same count as
    magnitude pruning, chosen uniformly among the remaining weights.

    Parameters
    ----------
    seed
        With the round (``prune(..., round_index=)``) and the leaf's place in the group,
        seeds the draw: the same masks as ``lotto_core.RandomPruneGroup`` with that seed
        after as many rounds.
    """

    def __init__(self, select: Selector, p: float, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TypeError(f"seed must be a non-negative int, got {seed!r}")
        super().__init__(select, p)
        self.seed = seed

    def core_group(self, layers: list[_LeafLayer], round_index: int) -> PruneGroup:
        group = RandomPruneGroup(layers, self.p, seed=self.seed)
        group.rounds = round_index
        return group

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, seed={self.seed})"


class _LeafHandle:
    """The core's parameter handle over one leaf, for one round: a core group plans and
    writes the round through it, and ``prune`` reads the new mask back and then zeroes
    the pruned entries of every grouped leaf not yet zeroed, in one call. (The rewind
    point is the protocol's; the functional API leaves rewind points to the caller.)"""

    def __init__(self, value: jax.Array, mask: jax.Array) -> None:
        self.value = value
        self.mask = mask
        self.rewind_point = value
        self.zeroed = False

    def get_value(self) -> jax.Array:
        return self.value

    def set_value(self, value: jax.Array) -> None:
        self.value = value

    def get_mask(self) -> jax.Array:
        return self.mask

    def set_mask(self, mask: jax.Array) -> None:
        self.mask = mask  # the value is zeroed by prune() once the round is written

    def set_masked(self, mask: jax.Array, value: jax.Array) -> None:
        """Store ``mask`` and a ``value`` already exactly +0.0 where it is ``False``."""
        self.mask, self.value, self.zeroed = mask, value, True

    def get_rewind_point(self) -> jax.Array:
        return self.rewind_point

    def set_rewind_point(self, value: jax.Array) -> None:
        self.rewind_point = value


class _LeafLayer:
    """One leaf as a prunable layer with a single parameter, ``"value"``; ``path`` is
    the leaf's path (for score functions: ``SNIP(lambda layer, name: grads[layer.path])``)."""

    def __init__(self, handle: _LeafHandle, path: str) -> None:
        self.handle = handle
        self.path = path

    def parameter_handles(self) -> dict[str, _LeafHandle]:
        return {"value": self.handle}


def _assign(flat: list[Leaf], groups: object) -> list[list[int]]:
    """For each group, the indices of the leaves it selects; checked."""
    if isinstance(groups, PytreeGroup):
        raise TypeError("groups must be a sequence of groups; wrap a single group in a list")
    if not isinstance(groups, Sequence) or isinstance(groups, str):
        raise TypeError(f"groups must be a sequence of pytree groups, got {type(groups).__name__}")
    if len(groups) == 0:
        raise ValueError("groups must not be empty")
    masked = [leaf.path for leaf in flat if leaf.mask is not None]
    owner: dict[int, int] = {}
    out = []
    for g, group in enumerate(groups):
        if not isinstance(group, PytreeGroup):
            raise TypeError(
                f"groups[{g}] is a {type(group).__name__}, not a pytree group "
                "(MagnitudeGroup, LayerwiseMagnitudeGroup, RandomGroup)"
            )
        picked = [
            i for i, leaf in enumerate(flat) if leaf.mask is not None and matches(group.select, leaf.path, leaf.value)
        ]
        if not picked:
            unmasked = [
                leaf.path for leaf in flat if leaf.mask is None and matches(group.select, leaf.path, leaf.value)
            ]
            hint = (
                f"it matches only leaves without a mask, {unmasked} (give them one with init_masks(prunable=...))"
                if unmasked
                else f"the leaves with a mask are {masked}"
            )
            raise ValueError(f"groups[{g}] = {group!r} selects no leaf with a mask: {hint}")
        for i in picked:
            if i in owner:
                raise ValueError(
                    f"leaf {flat[i].path!r} is selected by groups[{owner[i]}] and groups[{g}]: "
                    "a leaf belongs to one group"
                )
            owner[i] = g
        out.append(picked)
    return out


def prune(
    params: Any, masks: Any, groups: Sequence[PytreeGroup], *, round_index: int = 0, step: int | None = None
) -> tuple[Any, Any]:
    """One round of pruning: new parameters and masks, the inputs untouched.

    Every group decides before anything is written. In the result, every pruned entry
    of a grouped leaf is exactly 0; leaves in no group come back as they were.

    Parameters
    ----------
    params
        The parameter pytree (trained weights). Not inside ``jax.jit``: a round reads
        counts back to choose its next pivots.
    masks
        Its masks (``init_masks``, or the masks the previous round returned).
    groups
        The groups; a leaf may belong to one group only.
    round_index
        The round number, which seeds ``RandomGroup`` draws as the core's
        ``RandomPruneGroup`` does (its ``rounds``); pass the IMP round.
    step
        The training step, for groups with a ``Gradual`` amount (call ``prune`` every
        step: leaves not due at ``step`` come back as they were).

    Returns
    -------
    (params, masks)
        New pytrees with the structure of the inputs.

    Raises
    ------
    ValueError, TypeError
        If ``masks`` does not match ``params``; a group selects no leaf with a mask; a
        leaf is in two groups; a selected leaf is traced; ``round_index`` is not a
        non-negative int; a group's kept scores are too few that are not NaN.
    """
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
        raise TypeError(f"round_index must be a non-negative int, got {round_index!r}")
    flat, treedef = leaves(params, masks)
    picked = _assign(flat, groups)
    handles: dict[int, _LeafHandle] = {}
    for indices in picked:
        for i in indices:
            if not is_concrete(flat[i].value) or not is_concrete(flat[i].mask):
                raise TypeError(
                    f"params[{flat[i].path!r}] is traced: prune runs outside jax.jit, as it reads counts back "
                    "to place its next pivots"
                )
            handles[i] = _LeafHandle(flat[i].value, flat[i].mask)
    core = [
        group.core_group([_LeafLayer(handles[i], flat[i].path) for i in idx], round_index)
        for group, idx in zip(groups, picked, strict=True)
    ]
    if step is None:
        Pruner(core).prune()
    else:
        Pruner(core).step(step)
    values = [leaf.value for leaf in flat]
    new_masks = [leaf.mask for leaf in flat]
    left = {i: h for i, h in handles.items() if not h.zeroed}  # leaves the round did not write whole
    written = zero_pruned([h.value for h in left.values()], [h.mask for h in left.values()])
    zeroed = dict(zip(left, written, strict=True))
    for i, handle in handles.items():
        values[i], new_masks[i] = zeroed.get(i, handle.value), handle.mask
    return treedef.unflatten(values), treedef.unflatten(new_masks)


def report(masks: Any, *, rounds: int = 0) -> SparsityReport:
    """Kept and total entries of every leaf with a mask, and in total (``str()`` is a
    table). Each row is a leaf (``layer`` is its index among the masked leaves,
    ``name`` its path); ``rounds`` is only printed.

    Raises
    ------
    TypeError
        If a leaf of ``masks`` is neither ``None`` nor a boolean JAX array.
    """
    flat = jax.tree_util.tree_flatten_with_path(masks, is_leaf=lambda x: x is None)[0]
    rows: list[tuple[str, jax.Array]] = []
    for path, mask in flat:
        if mask is None:
            continue
        if not isinstance(mask, jax.Array) or mask.dtype != jnp.bool_:
            raise TypeError(f"masks[{path_name(path)!r}] must be a boolean JAX array or None, got {describe(mask)}")
        rows.append((path_name(path), mask))
    kept = jax.device_get([jnp.count_nonzero(mask) for _, mask in rows])
    return SparsityReport(
        rounds,
        tuple(
            ParameterSparsity(0, i, "leaf", name, int(n), mask.size)
            for i, ((name, mask), n) in enumerate(zip(rows, kept, strict=True))
        ),
    )


def _controlled(params: Any, masks: Any, control: Callable[[Pruner], None]) -> tuple[Any, Any]:
    """Run a core control over every masked leaf (one core layer each, in flattening
    order); the new parameters, pruned entries zeroed, and masks."""
    flat, treedef = leaves(params, masks)
    handles: dict[int, _LeafHandle] = {}
    for i, leaf in enumerate(flat):
        if leaf.mask is not None:
            if not is_concrete(leaf.value) or not is_concrete(leaf.mask):
                raise TypeError(f"params[{leaf.path!r}] is traced: the controls run outside jax.jit")
            handles[i] = _LeafHandle(leaf.value, leaf.mask)
    control(Pruner([MagnitudePruneGroup([_LeafLayer(h, flat[i].path) for i, h in handles.items()], 0.5)]))
    zeroed = zero_pruned([h.value for h in handles.values()], [h.mask for h in handles.values()])
    values = [leaf.value for leaf in flat]
    new_masks = [leaf.mask for leaf in flat]
    for (i, handle), value in zip(handles.items(), zeroed, strict=True):
        values[i], new_masks[i] = value, handle.mask
    return treedef.unflatten(values), treedef.unflatten(new_masks)


def shuffle_masks(params: Any, masks: Any, *, seed: int) -> tuple[Any, Any]:
    """Every mask replaced by a uniformly random one that keeps as many entries of the
    same leaf (the layer-wise random control; ``lotto_core.shuffle_masks``): new
    parameters, with the newly pruned entries 0, and masks. Train the control from the
    rewind point: ``rewind(initial, new_masks)``.

    Raises
    ------
    ValueError, TypeError
        If ``masks`` does not match ``params``, a leaf is traced, or ``seed`` is not a
        non-negative int.

    Examples
    --------
    >>> params = {"w": jnp.arange(1.0, 11.0).reshape(2, 5)}
    >>> params, masks = prune(params, init_masks(params), [MagnitudeGroup("w", 0.6)])
    >>> shuffled_params, shuffled = shuffle_masks(params, masks, seed=0)
    >>> int(shuffled["w"].sum())
    4
    """
    return _controlled(params, masks, lambda pruner: lotto_core.shuffle_masks(pruner, seed=seed))


def random_prune_like(params: Any, masks: Any, like: Any, *, seed: int) -> tuple[Any, Any]:
    """Prune every masked leaf at random, among its kept entries, down to the number of
    entries that ``like`` (a masks pytree of the same structure, or a sequence of masks
    in leaf order) keeps of it (the random-pruning control; ``lotto_core.random_prune_like``):
    new parameters and masks.

    Raises
    ------
    ValueError, TypeError
        If ``like`` does not match ``masks`` leaf by leaf, keeps more entries of a leaf
        than ``masks`` does, or ``seed`` is not a non-negative int.
    """
    wanted = like if isinstance(like, Sequence) else jax.tree_util.tree_leaves(like)
    return _controlled(params, masks, lambda pruner: lotto_core.random_prune_like(pruner, wanted, seed=seed))


def reinitialize(init: Callable[[jax.Array], Any], masks: Any, *, seed: int) -> Any:
    """A fresh draw of the model's parameters, ``init(jax.random.key(seed))`` (the
    library's own initializer: ``lambda key: model.init(key, x)`` for linen), with the
    masks applied: the re-initialization control. Use it as the control's rewind point.

    Raises
    ------
    ValueError, TypeError
        If ``seed`` is not a non-negative int, or what ``init`` returns does not match
        ``masks`` in structure, shape or dtype.

    Examples
    --------
    >>> init = lambda key: {"w": jax.random.normal(key, (2, 3))}
    >>> masks = {"w": jnp.array([[True, False, True], [False, False, True]])}
    >>> int((reinitialize(init, masks, seed=1)["w"] != 0).sum())
    3
    """
    Random(seed)  # raises naming seed unless a non-negative int
    if not callable(init):
        raise TypeError(f"init must be a function of a PRNG key that returns the parameters, got {type(init).__name__}")
    return apply_masks(init(jax.random.key(seed)), masks)
