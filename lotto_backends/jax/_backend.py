"""The JAX backend: the core's selection and writes on JAX arrays.

A group whose arrays all live whole on one CPU device runs the search in the host
kernels (``lotto_backends._host``) over zero-copy views, ranking subnormal scores as
XLA's comparisons do, and may write each new weight in the pass that splits it; the
results are buffers that JAX adopts without a copy. Every other group (sharded arrays,
accelerators) runs the jit-compiled passes of ``_passes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lotto_backends._host.passes import HostPasses, Written, host_group
from lotto_core.backend import Backend, TakesMaskedValue, Write
from lotto_core.scores import ScoreSource
from lotto_core.search import Passes

from . import _host
from ._passes import XLAPasses
from ._write import zero_pruned

__all__ = ["JaxBackend"]


class JaxBackend(Backend):
    """Host kernels for arrays whole on one CPU device (``host=False``: never), the
    XLA passes for the rest; a group's weights zeroed in one call."""

    name = "jax"
    in_place = False  # JAX arrays are immutable: an undo keeps the old arrays themselves

    def __init__(self, *, host: bool = True) -> None:
        self.host = host

    def passes(self, sources: Sequence[ScoreSource], masks: Sequence[Any], *, values: bool = False) -> Passes:
        group = host_group(sources, masks, _host.weight_keys, _host.bool_view) if self.host else None
        if group is None:
            return XLAPasses(sources, masks)
        params, fmt = group
        floor = fmt.smallest_normal if fmt.exponent_bits >= 8 else 0  # XLA flushes subnormals there
        weights = [src.weight for src in sources]

        def wrap(written: Written) -> list[tuple[Any, Any]]:
            buffers, like, slots = [], [], []
            for i, pair in enumerate(written):
                for j, (buffer, array) in enumerate(zip(pair, (masks[i], weights[i]), strict=True)):
                    if buffer is not None:
                        buffers.append(buffer)
                        like.append(array)
                        slots.append((i, j))
            out: list[list[Any]] = [[None, None] for _ in written]
            for (i, j), adopted in zip(slots, _host.adopt(buffers, like=like), strict=True):
                out[i][j] = adopted
            return [(mask, value) for mask, value in out]

        return HostPasses(params, fmt, _host.threads(), floor=floor, values=values, wrap=wrap)

    def is_host(self, x: Any) -> bool:
        return all(d.platform == "cpu" for d in x.devices())

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def write(self, writes: Sequence[Write]) -> None:
        """Handles that take a ready value get the one the selection wrote, or else
        theirs from one call over the group; others store their mask themselves."""
        ready, batched, others = [], [], []
        for handle, mask, value in writes:
            if not isinstance(handle, TakesMaskedValue):
                others.append((handle, mask))
            elif value is None:
                batched.append((handle, mask))
            else:
                ready.append((handle, mask, value))
        zeroed = zero_pruned([handle.get_value() for handle, _ in batched], [mask for _, mask in batched])
        ready += [(handle, mask, value) for (handle, mask), value in zip(batched, zeroed, strict=True)]
        for handle, mask, value in ready:
            handle.set_masked(mask, value)
        for handle, mask in others:
            handle.set_mask(mask)
