"""Lotto for JAX: prunable twins of the Flax NNX layers, ``make_prunable`` for a whole
model, ``sparsify`` and ``to_scipy`` for the result, a functional pytree API for any JAX
library (``lotto_backends.jax.pytree``), and the core's prune groups and ``Pruner``.

Examples
--------
>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from lotto_backends.jax import MagnitudePruneGroup, PrunableLinear, Pruner
>>> m = nnx.Sequential(PrunableLinear(8, 4, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(4, 2, rngs=nnx.Rngs(1)))
>>> pruner = Pruner([MagnitudePruneGroup([m.layers[0]], 0.5)], model=m)
>>> pruner.prune_and_rewind()
>>> int(m.layers[0].kernel_mask[...].sum()), int((m.layers[0].kernel[...] == 0).sum())
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
from .controls import reinitialize
from .convert import dense_layers, make_prunable
from .gradients import layer_gradients, synaptic_flow
from .instability import instability
from .layers import (
    PRUNABLE_TYPES,
    JaxParameterHandle,
    KeptElsewhere,
    Mask,
    PrunableBatchNorm,
    PrunableConv,
    PrunableConvTranspose,
    PrunableEinsum,
    PrunableEmbed,
    PrunableGroupNorm,
    PrunableGRUCell,
    PrunableInstanceNorm,
    PrunableLayerNorm,
    PrunableLinear,
    PrunableLinearGeneral,
    PrunableLSTMCell,
    PrunableModule,
    PrunableMultiHeadAttention,
    PrunableOptimizedLSTMCell,
    PrunableRMSNorm,
    PrunableSimpleCell,
    RewindPoint,
    register_prunable,
)
from .optimizer import Optimizer, model_masks
from .pruner import ModelRest, Pruner
from .sparse import SparseLinear, SparseStored, SparseWeight, sparsify, to_scipy

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
    "JaxParameterHandle",
    "KeptElsewhere",
    "LayerwiseMagnitudePruneGroup",
    "Magnitude",
    "MagnitudePruneGroup",
    "Mask",
    "ModelRest",
    "Optimizer",
    "PerLayer",
    "PrunableBatchNorm",
    "PrunableConv",
    "PrunableConvTranspose",
    "PrunableEinsum",
    "PrunableEmbed",
    "PrunableGRUCell",
    "PrunableGroupNorm",
    "PrunableInstanceNorm",
    "PrunableLSTMCell",
    "PrunableLayerNorm",
    "PrunableLinear",
    "PrunableLinearGeneral",
    "PrunableModule",
    "PrunableMultiHeadAttention",
    "PrunableOptimizedLSTMCell",
    "PrunableRMSNorm",
    "PrunableSimpleCell",
    "PruneGroup",
    "Pruner",
    "Random",
    "RandomPruneGroup",
    "Rate",
    "Retraining",
    "RewindPoint",
    "ScoreFn",
    "SparseLinear",
    "SparseStored",
    "SparseWeight",
    "Sparsity",
    "SparsityReport",
    "SynFlow",
    "Uniform",
    "dense_layers",
    "instability",
    "layer_gradients",
    "make_prunable",
    "model_masks",
    "random_prune_like",
    "register_prunable",
    "reinitialize",
    "shuffle_masks",
    "sparsify",
    "synaptic_flow",
    "to_scipy",
]

del layers
