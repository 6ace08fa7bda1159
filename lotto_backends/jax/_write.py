"""Writing a group's new masks on JAX in one compiled call.

JAX arrays are immutable, so a prune writes a new zeroed copy of every weight it
touches. One ``jnp.where`` per parameter runs them one after another; one jitted call
over the whole group lets XLA run them in parallel (8 weights of 2048x2048 on two
cores: about 50 ms against 17 ms). Registered with the core on import.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lotto_core.commit import register_native_writer
from lotto_core.protocol import ParameterHandle

__all__ = ["write_masks"]


@jax.jit
def _zero_pruned(values: list[jax.Array], masks: list[jax.Array]) -> list[jax.Array]:
    """Each value with its pruned entries set to exactly +0.0, all in one compiled call."""
    return [jnp.where(m, v, jnp.zeros((), v.dtype)) for v, m in zip(values, masks, strict=True)]


def write_masks(writes: Sequence[tuple[ParameterHandle, jax.Array]]) -> None:
    """Each ``(handle, new mask)``: handles that take a ready value (``set_masked``, as
    the NNX layers' and ``ArrayLayer``'s do) get theirs from one call; others store
    their mask themselves."""
    batched, others = [], []
    for write in writes:
        (batched if hasattr(write[0], "set_masked") else others).append(write)
    values = _zero_pruned([handle.get_value() for handle, _ in batched], [mask for _, mask in batched])
    for (handle, mask), value in zip(batched, values, strict=True):
        handle.set_masked(mask, value)  # type: ignore[attr-defined]
    for handle, mask in others:
        handle.set_mask(mask)


register_native_writer(lambda mask: isinstance(mask, jax.Array), write_masks)
