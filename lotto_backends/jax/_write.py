"""Writing a group's new masks on JAX in one call.

JAX arrays are immutable, so a prune writes a new zeroed copy of every weight it
touches. Where every array lives whole on one CPU device, the host kernels write them
into fresh buffers that JAX adopts without a copy (``_host``); elsewhere one jitted call
over the whole group lets XLA run the parameters in parallel (one ``jnp.where`` per
parameter would run them one after another: 8 weights of 2048x2048 on two cores, about
50 ms against 17 ms). Registered with the core on import.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lotto_core.commit import Write, register_native_writer

from . import _host

__all__ = ["write_masks", "zero_pruned"]


@jax.jit
def _zero_pruned_compiled(values: list[jax.Array], masks: list[jax.Array]) -> list[jax.Array]:
    return [jnp.where(m, v, jnp.zeros((), v.dtype)) for v, m in zip(values, masks, strict=True)]


def zero_pruned(values: list[jax.Array], masks: list[jax.Array]) -> list[jax.Array]:
    """Each value with its pruned entries set to exactly +0.0, as new arrays: by the
    host kernels where every array lives whole on one CPU device, else in one compiled
    call."""
    written = _host.zero_pruned(values, masks)
    return _zero_pruned_compiled(values, masks) if written is None else written


def write_masks(writes: Sequence[Write]) -> None:
    """Each ``(handle, new mask, new weight or None)``: handles that take a ready value
    (``set_masked``, as the NNX layers' and ``ArrayLayer``'s do) get the one the
    selection wrote, or else theirs from one call; others store their mask themselves."""
    ready, batched, others = [], [], []
    for handle, mask, value in writes:
        if not hasattr(handle, "set_masked"):
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


register_native_writer(lambda mask: isinstance(mask, jax.Array), write_masks)
