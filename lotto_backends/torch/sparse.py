"""Truly sparse torch models: ``sparsify`` and ``to_scipy``.

A sparse layer stores each pruned weight in ``torch.sparse_csr`` form built from the
core's sparse semantics (``lotto_core.sparse``): exactly the kept entries, N-D kernels
as ``(out, prod(rest))``, int32 indices where they fit. Its outputs equal those of the
masked dense layer.

* ``SparseLinear`` multiplies with the CSR weight directly when at most
  ``SparseLinear.DENSE_ABOVE`` (25%) of the weights remain; above that a dense product
  is faster on the CPU (measured by ``bench/bench_torch_sparse_inference.py``), so it
  computes with a dense copy made once from the CSR weight and kept out of the state
  dict.
* ``SparseStored`` serves every other prunable layer: the layer keeps its code, its
  prunable weights are stored in CSR and made dense for each forward call.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import scipy.sparse
import torch
from torch import nn
from torch.func import functional_call

from lotto_core import csr_components, layers_to_scipy

from ._layout import is_dtensor
from ._masking import buffer_key
from .layers import PrunableLinear, PrunableModule, layer_spec

__all__ = ["SparseLinear", "SparseStored", "sparsify", "to_scipy"]


def _csr(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    parts = csr_components(weight.detach(), mask)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        # torch 2.11 warns that checks are off even though check_invariants=True runs them here
        warnings.filterwarnings("ignore", "Sparse invariant checks are implicitly disabled", UserWarning)
        return torch.sparse_csr_tensor(parts.indptr, parts.indices, parts.data, size=parts.shape, check_invariants=True)


def _dense(csr: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return csr.to_dense().reshape(shape)


class SparseLinear(nn.Module):
    """A pruned ``nn.Linear`` with its weight in CSR storage."""

    DENSE_ABOVE = 0.25

    def __init__(self, layer: PrunableLinear) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        mask = layer.get_buffer("weight_mask")
        self.weight = nn.Parameter(_csr(layer.weight, mask), requires_grad=False)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.density = int(mask.sum()) / mask.numel()
        self.dense_compute = self.density > self.DENSE_ABOVE
        self.register_buffer("_dense_weight", self.weight.to_dense() if self.dense_compute else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense_compute:
            return nn.functional.linear(x, self.get_buffer("_dense_weight"), self.bias)
        flat = x.reshape(-1, self.in_features)
        out = torch.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        path = "dense" if self.dense_compute else "sparse"
        sizes = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{sizes}, density={self.density:.4f}, compute={path}"


class SparseStored(nn.Module):
    """Any pruned layer with its prunable weights in CSR storage, made dense for each
    forward call; the wrapped layer (``module``) keeps its other parameters."""

    def __init__(self, layer: PrunableModule) -> None:
        super().__init__()
        self.shapes: dict[str, torch.Size] = {}
        sparse = {}
        for name, handle in layer.parameter_handles().items():
            mask = handle.get_mask()
            if mask is not None:
                sparse[buffer_key(name)] = _csr(handle.get_value(), mask)
                self.shapes[name] = handle.get_value().shape
        self.module: nn.Module = copy.deepcopy(layer)
        self.module.__class__ = type(layer)._lotto_base  # type: ignore[assignment]  # the plain torch layer again
        for attr in [a for a in vars(self.module) if a.startswith("_lotto_")]:
            delattr(self.module, attr)
        for name in self.shapes:
            owner, _, attr = name.rpartition(".")
            target = self.module.get_submodule(owner)
            delattr(target, attr)
            setattr(target, attr, torch.empty(0))  # placeholder; the forward passes the real weight
        for buffer in list(self.module._buffers):
            if buffer.endswith(("_mask", "_rewind")):
                del self.module._buffers[buffer]
        for key, csr in sparse.items():
            self.register_buffer(key, csr)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        weights = {name: _dense(self.get_buffer(buffer_key(name)), shape) for name, shape in self.shapes.items()}
        return functional_call(self.module, weights, args, kwargs)


def sparsify(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which each prunable layer became a sparse one
    (``SparseLinear`` for linear layers, ``SparseStored`` for the others); other layers
    are copied as they are. The model itself is not changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _refuse_sharded(model, "sparsify")
    if isinstance(model, PrunableModule):
        return _sparse(model)
    result = copy.deepcopy(model)
    for parent in list(result.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PrunableModule):
                setattr(parent, name, _sparse(child))
    return result


def _refuse_sharded(model: nn.Module, what: str) -> None:
    """A sparse copy holds whole weights: refuse a model whose weights are DTensors."""
    sharded = next((name for name, p in model.named_parameters() if is_dtensor(p)), None)
    if sharded is not None:
        raise ValueError(
            f"{what}() needs whole weights, and {sharded!r} is a DTensor shard: save the model with "
            "torch.distributed.checkpoint and load it into the unsharded model in one process first"
        )


def _sparse(layer: PrunableModule) -> nn.Module:
    return SparseLinear(layer) if isinstance(layer, PrunableLinear) else SparseStored(layer)


def to_scipy(model: nn.Module, *, allow_device_copy: bool = False) -> dict[str, scipy.sparse.csr_array]:
    """``{qualified parameter name: scipy.sparse.csr_array}`` for every prunable weight
    of ``model``, with the core's sparse semantics; a weight its layer type stores
    ``(in, out)`` (transformers' ``Conv1D``, ``register_prunable(..., transposed=)``) is
    given as ``(out, in)``. Weights on an accelerator raise
    unless ``allow_device_copy=True``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _refuse_sharded(model, "to_scipy")
    layers = [(prefix, layer) for prefix, layer in model.named_modules() if isinstance(layer, PrunableModule)]
    out = layers_to_scipy(layers, allow_device_copy=allow_device_copy)
    for prefix, layer in layers:  # weights stored (in, out), as transformers' Conv1D, are given as (out, in)
        spec = layer_spec(type(layer)._lotto_base)
        for name in () if spec is None else spec.transposed:
            key = f"{prefix}.{name}" if prefix else name
            if key in out:
                out[key] = out[key].T.tocsr()
    return out
