"""Lotto for PyTorch: prunable twins of the ``torch.nn`` layers, ``make_prunable`` for a
whole model, ``sparsify`` and ``to_scipy`` for the result, and the core's prune groups
and ``Pruner``.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lotto_backends.torch import MagnitudePruneGroup, PrunableLinear, Pruner
>>> _ = torch.manual_seed(0)
>>> m = nn.Sequential(PrunableLinear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> pruner = Pruner([MagnitudePruneGroup([m[0]], 0.5)], model=m)
>>> pruner.prune_and_rewind()
>>> int(m[0].weight_mask.sum()), int((m[0].weight == 0).sum())
(16, 16)
"""

from lotto_core import (
    ERK,
    NM,
    SNIP,
    Blocks,
    Channels,
    Global,
    Gradual,
    GraSP,
    Instability,
    LayerwiseMagnitudePruneGroup,
    Magnitude,
    MagnitudePruneGroup,
    PerLayer,
    PruneGroup,
    Random,
    RandomPruneGroup,
    Rate,
    Retraining,
    ScoreFn,
    Sparsity,
    SparsityReport,
    SynFlow,
    Uniform,
    random_prune_like,
    shuffle_masks,
)

from . import layers
from ._masking import mask_gradients, remask
from .controls import reinitialize
from .convert import dense_layers, make_prunable
from .instability import instability
from .layers import (
    PRUNABLE_TYPES,
    PrunableBatchNorm1d,
    PrunableBatchNorm2d,
    PrunableBatchNorm3d,
    PrunableBilinear,
    PrunableConv1d,
    PrunableConv2d,
    PrunableConv3d,
    PrunableConvTranspose1d,
    PrunableConvTranspose2d,
    PrunableConvTranspose3d,
    PrunableEmbedding,
    PrunableEmbeddingBag,
    PrunableGroupNorm,
    PrunableGRU,
    PrunableGRUCell,
    PrunableInstanceNorm1d,
    PrunableInstanceNorm2d,
    PrunableInstanceNorm3d,
    PrunableLayerNorm,
    PrunableLinear,
    PrunableLSTM,
    PrunableLSTMCell,
    PrunableModule,
    PrunableMultiheadAttention,
    PrunableRMSNorm,
    PrunableRNN,
    PrunableRNNCell,
    TorchParameterHandle,
    register_prunable,
)
from .pruner import ModelRest, Pruner
from .sparse import SparseLinear, SparseStored, sparsify, to_scipy
from .synflow import synaptic_flow

__all__ = [
    "ERK",
    "NM",
    "PRUNABLE_TYPES",
    "SNIP",
    "Blocks",
    "Channels",
    "Global",
    "GraSP",
    "Gradual",
    "Instability",
    "LayerwiseMagnitudePruneGroup",
    "Magnitude",
    "MagnitudePruneGroup",
    "ModelRest",
    "PerLayer",
    "PrunableBatchNorm1d",
    "PrunableBatchNorm2d",
    "PrunableBatchNorm3d",
    "PrunableBilinear",
    "PrunableConv1d",
    "PrunableConv2d",
    "PrunableConv3d",
    "PrunableConvTranspose1d",
    "PrunableConvTranspose2d",
    "PrunableConvTranspose3d",
    "PrunableEmbedding",
    "PrunableEmbeddingBag",
    "PrunableGRU",
    "PrunableGRUCell",
    "PrunableGroupNorm",
    "PrunableInstanceNorm1d",
    "PrunableInstanceNorm2d",
    "PrunableInstanceNorm3d",
    "PrunableLSTM",
    "PrunableLSTMCell",
    "PrunableLayerNorm",
    "PrunableLinear",
    "PrunableModule",
    "PrunableMultiheadAttention",
    "PrunableRMSNorm",
    "PrunableRNN",
    "PrunableRNNCell",
    "PruneGroup",
    "Pruner",
    "Random",
    "RandomPruneGroup",
    "Rate",
    "Retraining",
    "ScoreFn",
    "SparseLinear",
    "SparseStored",
    "Sparsity",
    "SparsityReport",
    "SynFlow",
    "TorchParameterHandle",
    "Uniform",
    "dense_layers",
    "instability",
    "make_prunable",
    "mask_gradients",
    "random_prune_like",
    "register_prunable",
    "reinitialize",
    "remask",
    "shuffle_masks",
    "sparsify",
    "synaptic_flow",
    "to_scipy",
]

del layers
