"""Scores that rank weights for pruning: the lowest-scored kept weights go first.

A score source computes one parameter's scores on demand, over the whole parameter or a
range of its flattened (C-order) entries, so selection never holds the scores of a whole
group at once. Scores are float32 or float64 on the weight's device.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._array_api import Array, Namespace, array_namespace, device

__all__ = ["ArrayScores", "MagnitudeScores", "RandomScores", "ScoreSource"]


def _as_float_scores(xp: Namespace, x: Array) -> Array:
    """Keep float32/float64 scores as they are; widen other float types (float16,
    bfloat16) to float32, where every value stays exact."""
    if x.dtype == xp.float32 or x.dtype == xp.float64:
        return x
    return xp.astype(x, xp.float32)


class ScoreSource:
    """Scores of one parameter, computed on demand from its weight."""

    def __init__(self, weight: Array) -> None:
        self.weight = weight
        self.xp = array_namespace(weight)
        self.size = math.prod(weight.shape)

    def flat(self, start: int, stop: int) -> Array:
        """Scores of the flattened entries ``start:stop``."""
        raise NotImplementedError

    def full(self) -> Array:
        """Scores of every entry, in the weight's shape."""
        return self.xp.reshape(self.flat(0, self.size), self.weight.shape)

    def sample(self, step: int) -> Array:
        """Scores of every ``step``-th flattened entry."""
        return self.flat(0, self.size)[::step]


class MagnitudeScores(ScoreSource):
    """``|w|``: magnitude pruning (Han et al. 2015; Frankle & Carbin 2019). A kept weight
    that is exactly 0 has the lowest possible score, so it goes first."""

    @functools.cached_property
    def _flat(self) -> Array:
        return self.xp.reshape(self.weight, (-1,))

    def flat(self, start: int, stop: int) -> Array:
        return _as_float_scores(self.xp, self.xp.abs(self._flat[start:stop]))

    def sample(self, step: int) -> Array:
        return _as_float_scores(self.xp, self.xp.abs(self._flat[::step]))


class RandomScores(ScoreSource):
    """Uniform random scores from a counter-seeded NumPy generator: random pruning, the
    control of the lottery-ticket experiments (Frankle & Carbin 2019, Sec. 2).

    The stream depends only on ``key`` (seed, round, parameter index), so every
    namespace gets the same scores. They are generated once, in host memory, and moved
    to the weight's device: random numbers, never the weights, cross.
    """

    def __init__(self, weight: Array, key: tuple[int, ...]) -> None:
        super().__init__(weight)
        self.key = key
        self._scores: Array | None = None

    def host_values(self) -> np.ndarray:
        """The scores in host memory, in the weight's shape (a native planner places them
        on the device itself)."""
        values: np.ndarray = np.random.default_rng(list(self.key)).random(self.size, dtype=np.float32)
        return values.reshape(tuple(self.weight.shape))

    def flat(self, start: int, stop: int) -> Array:
        if self._scores is None:
            values = np.reshape(self.host_values(), (-1,))
            self._scores = self.xp.asarray(values, device=device(self.weight))
        return self._scores[start:stop]


class ArrayScores(ScoreSource):
    """Scores computed up front, an array of the weight's shape on its namespace and
    device (the user's own score function, SNIP, GraSP); float16 and bfloat16 scores are
    widened to float32."""

    def __init__(self, weight: Array, scores: Array, name: str) -> None:
        super().__init__(weight)
        try:
            xp = array_namespace(weight, scores)
        except TypeError:
            raise TypeError(
                f"{name} returned a {type(scores).__name__}; scores must be an array of the weight's own namespace"
            ) from None
        if tuple(scores.shape) != tuple(weight.shape):
            raise ValueError(
                f"{name} returned scores of shape {tuple(scores.shape)}, the weight has {tuple(weight.shape)}"
            )
        if not xp.isdtype(scores.dtype, "real floating"):
            raise TypeError(f"{name} returned scores of dtype {scores.dtype}; scores must be real floats")
        if device(scores) != device(weight):
            raise ValueError(f"{name} returned scores on {device(scores)}, the weight is on {device(weight)}")
        self.scores = _as_float_scores(xp, scores)
        self._flat = xp.reshape(self.scores, (-1,))

    def flat(self, start: int, stop: int) -> Array:
        return self._flat[start:stop]

    def full(self) -> Array:
        return self.scores
