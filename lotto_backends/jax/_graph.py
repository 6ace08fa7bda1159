"""Replacing layers inside an NNX model: the walk that ``make_prunable`` and
``sparsify`` share."""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

__all__ = ["replace_layers"]


def replace_layers(root: nnx.Module, replacement: Callable[[str, nnx.Module], nnx.Module | None]) -> None:
    """Put ``replacement(path, layer)`` in place of every layer below ``root``
    (attributes, ``nnx.List``, ``nnx.Dict``, at any depth; ``path`` dotted, as
    ``"blocks.0.attn"``). ``None`` means: keep the layer and look inside it; the layer
    itself: keep it as it is, and its insides too. A layer reached along two paths is
    replaced once, by one object (asked along the first); every replacement is built
    before any is put in place."""
    done: dict[int, nnx.Module] = {}
    places: list[tuple[nnx.Module, str, nnx.Module]] = []
    _collect(root, "", replacement, done, places, set())
    for parent, key, child in places:
        if isinstance(parent, nnx.List):
            parent[int(key)] = done[id(child)]
        else:
            setattr(parent, key, done[id(child)])


def _collect(
    node: nnx.Module,
    prefix: str,
    replacement: Callable[[str, nnx.Module], nnx.Module | None],
    done: dict[int, nnx.Module],
    places: list[tuple[nnx.Module, str, nnx.Module]],
    seen: set[int],
) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    for key, child in list(vars(node).items()):
        if key.startswith("_pytree__") or not isinstance(child, nnx.Module):
            continue
        if id(child) not in done:
            path = f"{prefix}.{key}" if prefix else key
            new = replacement(path, child)
            if new is None:
                _collect(child, path, replacement, done, places, seen)
                continue
            done[id(child)] = new
        if done[id(child)] is not child:
            places.append((node, key, child))
