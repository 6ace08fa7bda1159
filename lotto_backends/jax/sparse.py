"""Truly sparse NNX models: ``sparsify`` and ``to_scipy``.

A sparse layer stores each pruned weight as a ``jax.experimental.sparse.BCOO`` built from
the core's sparse semantics (``lotto_core.sparse``): exactly the kept entries, in the
core's 2-D layout of the weight as Flax stores it (a Linear kernel ``(in, out)`` keeps its
shape; an N-D kernel becomes ``(shape[0], prod(rest))``), int32 indices where they fit.
Its outputs equal those of the masked dense layer, under ``nnx.jit`` too.

* ``SparseLinear`` multiplies with the BCOO kernel directly.
* ``SparseStored`` serves every other prunable layer: the layer keeps its code, its
  pruned weights are stored as BCOO and made dense for each call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import scipy.sparse
from flax import nnx
from jax.experimental import sparse

from lotto_core import csr_components, layers_to_scipy

from ._graph import replace_layers
from .layers import Mask, PrunableLinear, PrunableModule

__all__ = ["SparseLinear", "SparseStored", "SparseWeight", "sparsify", "to_scipy"]


class SparseWeight(nnx.Variable[sparse.BCOO]):
    """A pruned weight in BCOO storage (the core's 2-D layout); ``dense_shape`` is the
    weight's own shape. Not an ``nnx.Param``: a sparse model is for inference."""


def _bcoo(weight: jax.Array, mask: jax.Array) -> sparse.BCOO:
    parts = csr_components(weight, mask)
    return sparse.BCSR((parts.data, parts.indices, parts.indptr), shape=parts.shape).to_bcoo()


def _dense(weight: SparseWeight) -> jax.Array:
    matrix: sparse.BCOO = weight.get_raw_value()
    return matrix.todense().reshape(weight.get_metadata()["dense_shape"])


class SparseLinear(nnx.Module):
    """A pruned ``nnx.Linear`` whose kernel is a BCOO matrix ``(in, out)``."""

    def __init__(self, layer: PrunableLinear) -> None:
        self.in_features, self.out_features = layer.in_features, layer.out_features
        mask: Mask = getattr(layer, "kernel_mask")  # noqa: B009 (set by make_prunable, not a declared field)
        self.kernel = SparseWeight(_bcoo(layer.kernel.get_value(), mask.get_value()))
        self.bias = nnx.data(None if layer.bias is None else nnx.Variable(layer.bias.get_value()))
        self.dtype = layer.dtype

    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel: sparse.BCOO = self.kernel.get_raw_value()
        dims = (((inputs.ndim - 1,), (0,)), ((), ()))
        out: jax.Array = sparse.bcoo_dot_general(inputs, kernel, dimension_numbers=dims)  # type: ignore[assignment]
        if self.bias is not None:
            out = out + self.bias.get_value()
        return out if self.dtype is None else out.astype(self.dtype)

    @property
    def density(self) -> float:
        """The fraction of the kernel's entries that are stored."""
        kernel: sparse.BCOO = self.kernel.get_raw_value()
        return kernel.nse / (self.in_features * self.out_features)


class SparseStored(nnx.Module):
    """Any pruned layer with its prunable weights in BCOO storage, made dense for each
    call; ``layer`` is the plain NNX layer, which keeps its other parameters."""

    def __init__(self, layer: PrunableModule) -> None:
        plain = nnx.clone(layer)
        pairs = {path: (h.get_value(), h.get_mask()) for path, h in layer.parameter_handles().items()}
        for path, handle in plain.parameter_handles().items():
            owner, name = handle.owner, handle.name
            weight, mask = pairs[path]
            if mask is not None:
                setattr(owner, name, SparseWeight(_bcoo(weight, mask), dense_shape=tuple(weight.shape)))
                delattr(owner, name + "_mask")
            delattr(owner, name + "_rewind")
        plain.__class__ = type(layer)._lotto_base  # type: ignore[assignment]  # the plain NNX layer again
        self.layer = plain

    def _sparse_weights(self) -> list[SparseWeight]:
        return [node for _, node in nnx.iter_graph(self.layer) if isinstance(node, SparseWeight)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with _densified(self._sparse_weights()):
            return self.layer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """The plain layer's other attributes (``initialize_carry`` of a cell, ``attend``
        of an embedding, ...); its methods run with the weights made dense."""
        if name.startswith("_") or name == "layer":
            raise AttributeError(name)
        attribute = getattr(self.layer, name)
        if not inspect.ismethod(attribute):
            return attribute

        @functools.wraps(attribute)
        def densified(*args: Any, **kwargs: Any) -> Any:
            with _densified(self._sparse_weights()):
                return attribute(*args, **kwargs)

        return densified


@contextmanager
def _densified(weights: list[SparseWeight]) -> Iterator[None]:
    saved = [weight.get_raw_value() for weight in weights]
    try:
        for weight in weights:
            weight.set_raw_value(_dense(weight), _unsafe_bypass_check=True)  # type: ignore[arg-type]
        yield
    finally:
        for weight, raw in zip(weights, saved, strict=True):
            weight.set_raw_value(raw, _unsafe_bypass_check=True)


def sparsify(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` in which each prunable layer became a sparse one
    (``SparseLinear`` for linear layers, ``SparseStored`` for the others); other layers
    are copied as they are. The model itself is not changed."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    if isinstance(model, PrunableModule):
        return _sparse(model)
    result = nnx.clone(model)
    replace_layers(result, lambda _, layer: _sparse(layer) if isinstance(layer, PrunableModule) else None)
    return result


def _sparse(layer: PrunableModule) -> nnx.Module:
    return SparseLinear(layer) if isinstance(layer, PrunableLinear) else SparseStored(layer)


def to_scipy(model: nnx.Module, *, allow_device_copy: bool = False) -> dict[str, scipy.sparse.csr_array]:
    """``{dotted parameter path: scipy.sparse.csr_array}`` for every prunable weight of
    ``model``, with the core's sparse semantics. Arrays that are not on a CPU device
    raise unless ``allow_device_copy=True``."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    layers = (
        (".".join(str(key) for key in path), layer)
        for path, layer in nnx.iter_modules(model)
        if isinstance(layer, PrunableModule)
    )
    return layers_to_scipy(layers, allow_device_copy=allow_device_copy)
