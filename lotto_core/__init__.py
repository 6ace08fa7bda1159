"""Lotto's backend-neutral core: masks, exact selection, prune groups, the pruner and
sparse semantics, written once against the Python Array API standard.

It imports NumPy, SciPy and array-api-compat only; a framework's arrays are handled
through ``array_api_compat.array_namespace`` once the user hands them over.
"""

from .array_layer import ArrayLayer, ArrayParameter
from .controls import random_prune_like, shuffle_masks
from .groups import LayerwiseMagnitudePruneGroup, MagnitudePruneGroup, PruneGroup, RandomPruneGroup
from .instability import Instability, linear_path
from .overlap import MaskOverlap, ParameterOverlap, mask_overlap
from .protocol import ParameterHandle, PrunableLayer
from .pruner import Pruner
from .rate import prune_count
from .report import ParameterSparsity, SparsityReport
from .retraining import RETRAINING, Retraining
from .sparse import CSRComponents, csr_components, layers_to_scipy, sparse_shape, to_scipy
from .strategy import (
    ERK,
    NM,
    SNIP,
    Blocks,
    Channels,
    Global,
    Gradual,
    GraSP,
    Magnitude,
    PerLayer,
    Random,
    Rate,
    ScoreFn,
    Sparsity,
    SynFlow,
    Uniform,
)

__all__ = [
    "ERK",
    "NM",
    "RETRAINING",
    "SNIP",
    "ArrayLayer",
    "ArrayParameter",
    "Blocks",
    "CSRComponents",
    "Channels",
    "Global",
    "GraSP",
    "Gradual",
    "Instability",
    "LayerwiseMagnitudePruneGroup",
    "Magnitude",
    "MagnitudePruneGroup",
    "MaskOverlap",
    "ParameterHandle",
    "ParameterOverlap",
    "ParameterSparsity",
    "PerLayer",
    "PrunableLayer",
    "PruneGroup",
    "Pruner",
    "Random",
    "RandomPruneGroup",
    "Rate",
    "Retraining",
    "ScoreFn",
    "Sparsity",
    "SparsityReport",
    "SynFlow",
    "Uniform",
    "csr_components",
    "layers_to_scipy",
    "linear_path",
    "mask_overlap",
    "prune_count",
    "random_prune_like",
    "shuffle_masks",
    "sparse_shape",
    "to_scipy",
]

__version__ = "0.1.0"
