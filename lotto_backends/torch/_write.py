"""Writing a group's new masks on torch: each pruned weight zeroed in one fused pass.

Handles that take a ready value (``set_masked``, as the core's ``ArrayLayer`` has) get
their weight zeroed in place by the CPU kernels and then stored with the mask; every
other handle stores its mask itself (the prunable layers' handles zero through the same
kernels). Registered with the core on import.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lotto_core.commit import Write, register_native_writer

from . import _cpu

__all__ = ["write_masks"]


def write_masks(writes: Sequence[Write]) -> None:
    """Store each ``(handle, new mask, _)``, zeroing what the mask prunes (torch's
    planner writes no new weights)."""
    for handle, mask, _ in writes:
        value = handle.get_value()
        if hasattr(handle, "set_masked") and _cpu.zero_pruned(value, mask):
            handle.set_masked(mask, value)
        else:
            handle.set_mask(mask)


register_native_writer(lambda mask: isinstance(mask, torch.Tensor), write_masks)
