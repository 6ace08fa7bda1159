"""The one key encoding of scores: keys sort as the floats do, read back the floats
they stand for, put -0.0 with +0.0 and NaN outside the comparable range."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lotto_core.keys import FORMATS, format_of

NUMPY = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


@pytest.mark.parametrize("name", sorted(NUMPY))
@given(data=st.data())
def test_keys_sort_as_the_floats_and_read_back(name: str, data: st.DataObject) -> None:
    fmt = FORMATS[name]
    values = data.draw(hnp.arrays(NUMPY[name], st.integers(1, 50), elements=st.floats(width=fmt.width)))
    keys = fmt.keys(values)
    comparable = ~np.isnan(values)
    assert ((keys[comparable] >= -fmt.inf) & (keys[comparable] <= fmt.inf)).all()
    assert ((keys[~comparable] < -fmt.inf) | (keys[~comparable] > fmt.inf)).all()
    v, k = values[comparable], keys[comparable]
    order = np.argsort(k, kind="stable")
    assert (v[order][:-1] <= v[order][1:]).all()  # key order is float order
    assert ((k[:, None] == k[None, :]) == (v[:, None] == v[None, :])).all()  # equal keys, equal floats
    for value, key in zip(v, k, strict=True):
        assert fmt.value(int(key)) == value
        assert fmt.key(float(value)) == key


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_ends_of_every_format(name: str) -> None:
    fmt = FORMATS[name]
    assert fmt.value(fmt.inf) == math.inf
    assert fmt.value(-fmt.inf) == -math.inf
    assert fmt.key(-0.0) == fmt.key(0.0) == 0
    assert 1.0 < fmt.value(fmt.inf - 1) < math.inf  # the largest finite float
    assert -1.0 < fmt.value(-1) < 0.0 < fmt.value(1) < 1.0  # the smallest subnormals


def test_bfloat16_is_the_top_half_of_float32() -> None:
    fmt, wide = FORMATS["bfloat16"], FORMATS["float32"]
    for value in (1.0, -2.5, 2.0**127, 2.0**-130):
        top = abs(wide.key(value)) >> 16
        assert fmt.key(value) == (top if value > 0 else -top)
        assert fmt.value(fmt.key(value)) == value


def test_the_format_of_every_namespaces_dtypes(xp) -> None:
    assert format_of(xp.float32) is FORMATS["float32"]
    assert format_of(xp.float64) is FORMATS["float64"]
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        format_of(xp.int32)
