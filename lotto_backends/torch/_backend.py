"""The torch backend: the core's selection and writes on torch tensors.

torch's eager CPU ops run one kernel per operation, each writing a temporary: in the
Array API passes a comparison to bool costs two to three elementwise float passes and
``nonzero`` thirty. A group of CPU tensors therefore runs the search over zero-copy
NumPy views of their memory in the host kernels (``lotto_backends._host``), on torch's
threads. Groups they do not cover (CUDA tensors, score sources other than the core's
magnitudes and random scores, mixed dtypes, no numba) take the Array API passes. A group
of DTensor weights (FSDP2, tensor parallelism) runs either on each rank's shards, the
ranks agreeing through collectives of counts (``_dtensor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lotto_backends._host.passes import HostPasses, Written, host_group
from lotto_core.backend import Backend, TakesMaskedValue, Write
from lotto_core.passes import ArrayAPIPasses, set_in_place
from lotto_core.scores import ScoreSource
from lotto_core.search import Passes

from . import _cpu
from ._layout import is_dtensor
from ._masking import zero_pruned

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Host kernels for CPU tensors, the Array API passes for the rest; weights zeroed
    in place."""

    name = "torch"

    def __init__(self, *, host: bool = True) -> None:
        self.host = host

    def passes(self, sources: Sequence[ScoreSource], masks: Sequence[Any], *, values: bool = False) -> Passes:
        if any(is_dtensor(m) for m in masks):
            from ._dtensor import DTensorPasses  # imports torch.distributed.tensor, loaded already

            return DTensorPasses(sources, masks, lambda local, shards: self.passes(local, shards))
        group = host_group(sources, masks, _cpu.weight_keys, _cpu.bool_view) if self.host else None
        if group is None:
            return ArrayAPIPasses(sources, masks, set_in_place)
        shapes = [tuple(m.shape) for m in masks]

        def wrap(written: Written) -> list[tuple[Any, Any]]:
            return [
                (None if m is None else torch.from_numpy(m).reshape(shape), None)
                for (m, _), shape in zip(written, shapes, strict=True)
            ]

        return HostPasses(*group, _cpu.threads(), wrap=wrap)

    def count(self, flags: Any) -> int:
        """Over all shards of a DTensor (its per-shard counts added up: a few integers)."""
        n: Any = torch.count_nonzero(flags)
        return int(n.full_tensor() if is_dtensor(n) else n)

    def is_host(self, x: Any) -> bool:
        return bool(x.device.type == "cpu")

    def to_host(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x.detach().cpu())

    def keeps_all(self, mask: Any) -> bool:
        """On this rank's shard of a DTensor (no collective: an undo is local); through
        NumPy's view of a CPU tensor (four times faster than ``count_nonzero``)."""
        if is_dtensor(mask):
            mask = mask.to_local()
        view = _cpu.bool_view(mask)
        return bool(view.all()) if view is not None else bool(mask.all())

    def keep(self, x: Any, *, near: Any = None) -> Any:
        """A detached copy, on ``near``'s device where given (a DTensor stays one)."""
        x = x.detach()
        if near is not None and near.device != x.device and not is_dtensor(x):
            return x.to(near.device)
        return x.clone()

    def write(self, writes: Sequence[Write]) -> None:
        """Each weight zeroed in place by the kernels where they apply (a DTensor shard
        by shard) and stored with its mask; every other handle stores its mask itself
        (the prunable layers' handles zero through the same kernels: their masks are
        stored already, ``lotto_core.undo.write_masks``, so nothing is copied twice)."""
        for handle, mask, _ in writes:
            value = handle.get_value()
            if isinstance(handle, TakesMaskedValue) and _zeroed_in_place(value, mask):
                handle.set_masked(mask, value)
            else:
                handle.set_mask(mask)


def _zeroed_in_place(value: Any, mask: Any) -> bool:
    """Zero what ``mask`` prunes in ``value`` itself where that needs no communication
    and no temporary the size of the weight; whether it did."""
    if is_dtensor(value) and is_dtensor(mask):
        zero_pruned(value, mask)
        return True
    return _cpu.zero_pruned(value, mask)
