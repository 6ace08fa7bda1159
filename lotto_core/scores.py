"""Scores that rank weights for pruning: the lowest-scored kept weights go first.

A score source computes one parameter's scores on demand, so selection never holds the
scores of a whole group at once. Scores are float32 or float64 on the weight's device.
"""

from __future__ import annotations

import numpy as np

from ._array_api import Array, Namespace, array_namespace, device

__all__ = ["MagnitudeScores", "RandomScores", "ScoreSource"]


def _as_float_scores(xp: Namespace, x: Array) -> Array:
    """Keep float32/float64 scores as they are; widen other float types (float16,
    bfloat16) to float32, where every value stays exact."""
    if x.dtype == xp.float32 or x.dtype == xp.float64:
        return x
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"scores need a real floating dtype, got {x.dtype}")
    return xp.astype(x, xp.float32)


class ScoreSource:
    """Scores of one parameter, computed on demand.

    ``sample(step)`` returns the scores of every ``step``-th entry of the flattened
    parameter (C order), which subclasses can compute without the full array.
    """

    def full(self) -> Array:
        raise NotImplementedError

    def sample(self, step: int) -> Array:
        x = self.full()
        xp = array_namespace(x)
        return xp.reshape(x, (-1,))[::step]


class MagnitudeScores(ScoreSource):
    """``|w|``: magnitude pruning (Han et al. 2015; Frankle & Carbin 2019). A kept weight
    that is exactly 0 has the lowest possible score, so it goes first."""

    def __init__(self, weight: Array) -> None:
        self.weight = weight
        self.xp = array_namespace(weight)

    def full(self) -> Array:
        return _as_float_scores(self.xp, self.xp.abs(self.weight))

    def sample(self, step: int) -> Array:
        flat = self.xp.reshape(self.weight, (-1,))[::step]
        return _as_float_scores(self.xp, self.xp.abs(flat))


class RandomScores(ScoreSource):
    """Uniform random scores from a counter-seeded NumPy generator: random pruning, the
    control of the lottery-ticket experiments (Frankle & Carbin 2019, Sec. 2).

    The stream depends only on ``key`` (seed, round, parameter index), so every
    namespace gets the same scores. They are generated in host memory and moved to the
    weight's device: random numbers, never the weights, cross.
    """

    def __init__(self, weight: Array, key: tuple[int, ...]) -> None:
        self.weight = weight
        self.key = key

    def full(self) -> Array:
        xp = array_namespace(self.weight)
        values = np.random.default_rng(list(self.key)).random(tuple(self.weight.shape), dtype=np.float32)
        return xp.asarray(values, device=device(self.weight))
