"""The pruning rate and the exact number of weights a round removes."""

from __future__ import annotations

import math
import numbers
from decimal import Decimal
from fractions import Fraction

import numpy as np

__all__ = ["exact_rate", "prune_count", "validate_rate"]


def validate_rate(p: object, name: str = "p") -> float:
    """Check that ``p`` is a real number in [0, 1) and return it as a float.

    Raises
    ------
    TypeError
        If ``p`` is not a real number (booleans are rejected too).
    ValueError
        If ``p`` is NaN or outside [0, 1).
    """
    if isinstance(p, bool | np.bool_) or not isinstance(p, numbers.Real | Decimal):
        raise TypeError(f"{name} must be a real number in [0, 1), got {p!r}")
    value = float(_decimal(p)) if isinstance(p, np.floating) else float(p)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p!r}")
    return value


def _decimal(p: float | np.floating) -> str:
    """The shortest decimal that reads back as ``p`` in its own float type: ``0.07`` for
    ``np.float32(0.07)`` as for the double ``0.07``, so a rate read from a float32 or
    float16 config array means the decimal that was written."""
    if isinstance(p, np.floating):
        return np.format_float_positional(p, unique=True, trim="0")
    return repr(float(p))


def exact_rate(p: float | Fraction | Decimal) -> Fraction:
    """The rate as the exact fraction the user wrote: ``0.07`` is 7/100, not the binary
    double just above it. Floats (Python's and NumPy's of any width) go through their
    shortest decimal in their own type."""
    if isinstance(p, Fraction):
        return p
    if isinstance(p, float | np.floating):
        return Fraction(_decimal(p))
    return Fraction(p)


def prune_count(p: float | Fraction | Decimal, remaining: int) -> int:
    """How many of ``remaining`` weights one round at rate ``p`` removes:
    ``min(remaining, ceil(p * remaining))``, in exact integer arithmetic.

    Examples
    --------
    >>> prune_count(0.07, 100)
    7
    >>> prune_count(0.2, 1)
    1
    """
    validate_rate(p)
    if isinstance(remaining, bool) or not isinstance(remaining, numbers.Integral) or remaining < 0:
        raise ValueError(f"remaining must be a non-negative integer, got {remaining!r}")
    rate = exact_rate(p)
    remaining = int(remaining)
    return min(remaining, -((-rate.numerator * remaining) // rate.denominator))
