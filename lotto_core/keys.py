"""Scores as integer keys: one order-preserving encoding that every backend's passes use.

A float's key is its bits read as a signed integer of the same width when its sign bit
is clear, and minus the bits of its absolute value when set. Keys sort as the floats do,
+0.0 and -0.0 share key 0, and a bracket of scores can be bisected down to adjacent
representable values. NaN keys lie outside ``[key(-inf), key(+inf)]``: passes count
only keys inside it, so a NaN score is never pruned. For scores >= 0 (magnitudes,
uniform random numbers) the key is just the bits with the sign bit cleared, which is
what the host kernels compute from a weight's own bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FORMATS", "KeyFormat", "format_of"]


@dataclass(frozen=True)
class KeyFormat:
    """A float format as keys: the width, the integer type of that width, and the
    conversions between scores and keys (exact both ways)."""

    name: str
    exponent_bits: int
    mantissa_bits: int

    @property
    def width(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def int_dtype(self) -> np.dtype:
        return np.dtype(f"i{self.width // 8}")

    @property
    def inf(self) -> int:
        """The key of +inf (that of -inf is ``-inf``): every comparable score's key lies
        in ``[-inf, inf]``."""
        return ((1 << self.exponent_bits) - 1) << self.mantissa_bits

    @property
    def smallest_normal(self) -> int:
        """The key of the smallest normal float."""
        return 1 << self.mantissa_bits

    def _float_bits(self) -> tuple[np.dtype, int]:
        """The NumPy float dtype that holds this format's values, and how far its bits
        are shifted there (bfloat16 is the top half of a float32)."""
        if self.name == "bfloat16":
            return np.dtype(np.float32), 16
        return np.dtype(f"f{self.width // 8}"), 0

    def value(self, key: int) -> float:
        """The score that ``key`` stands for."""
        magnitude = abs(key) | (1 << (self.width - 1) if key < 0 else 0)
        dtype, shift = self._float_bits()
        bits = np.array(magnitude << shift, dtype=np.uint64).astype(f"u{dtype.itemsize}")
        return float(bits.view(dtype))

    def key(self, value: float) -> int:
        """The key of ``value``, a float that this format holds exactly."""
        return int(self.keys(np.asarray([value]))[0])

    def keys(self, values: np.ndarray) -> np.ndarray:
        """The keys (int64) of an array of scores that this format holds exactly."""
        dtype, shift = self._float_bits()
        unsigned = np.asarray(values, dtype=dtype).view(f"u{dtype.itemsize}").astype(np.uint64) >> np.uint64(shift)
        magnitude = (unsigned & np.uint64((1 << (self.width - 1)) - 1)).astype(np.int64)
        negative = (unsigned >> np.uint64(self.width - 1)).astype(bool)
        return np.where(negative, -magnitude, magnitude)


FORMATS = {
    f.name: f
    for f in (
        KeyFormat("float16", 5, 10),
        KeyFormat("bfloat16", 8, 7),
        KeyFormat("float32", 8, 23),
        KeyFormat("float64", 11, 52),
    )
}
"""The float formats whose scores are ranked, by dtype name."""


def format_of(dtype: object) -> KeyFormat:
    """The key format of a float dtype of any namespace (by its name)."""
    try:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError:  # torch's dtypes, array-api-strict's
        name = str(dtype).rsplit(".", 1)[-1]
    try:
        return FORMATS[name]
    except KeyError:
        raise TypeError(f"scores must be float16, bfloat16, float32 or float64, got {dtype}") from None
