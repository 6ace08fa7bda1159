"""The host kernels' framework-free parts on plain NumPy arrays: they load no
framework, their key formats read back the floats they stand for, their buffers are
aligned for XLA to adopt and recycled only once released, and their thread pool
survives a fork."""

from __future__ import annotations

import gc
import mmap
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lotto_backends._host import buffers
from lotto_backends._host.passes import HostParam, HostPasses
from lotto_core import MagnitudePruneGroup
from lotto_core.array_layer import ArrayLayer
from lotto_core.keys import FORMATS
from lotto_core.search import select

NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _floats_and_keys(name: str) -> tuple[list[float], np.ndarray]:
    """Values of every kind in the format (bfloat16: float32 values cut to their top
    half, which NumPy has no dtype for) and their keys."""
    dtype = NUMPY_DTYPES.get(name, np.float32)
    big = float(np.finfo(dtype).max)
    values = np.asarray([0.0, -0.0, 1e-45, 6e-8, 0.25, 1.5, big, np.inf, -2.0], dtype=dtype)
    if name == "bfloat16":
        bits = (values.view(np.int32) >> 16).astype(np.int16)
        values = (bits.astype(np.int32) << 16).view(np.float32)
    else:
        bits = values.view(FORMATS[name].int_dtype)
    return [float(v) for v in values], bits & np.iinfo(bits.dtype).max


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_keys_read_back_the_floats_they_stand_for(name: str) -> None:
    fmt = FORMATS[name]
    values, keys = _floats_and_keys(name)
    for value, key in zip(values, keys, strict=True):
        assert fmt.value(int(key)) == abs(value)
    assert fmt.value(fmt.inf) == np.inf
    smallest_normal = np.finfo(NUMPY_DTYPES.get(name, np.float32)).smallest_normal
    assert fmt.value(fmt.smallest_normal) == float(smallest_normal)


def test_selection_on_numpy_views_equals_the_core() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal(77).astype(np.float32)]
    masks = [rng.random((30, 40)) < 0.9, np.ones(77, dtype=bool)]
    layers = [ArrayLayer({"w": w.copy()}) for w in weights]
    for layer, mask in zip(layers, masks, strict=True):
        layer.params["w"].set_mask(mask)
    MagnitudePruneGroup(layers, 0.3).prune()
    params = [HostParam(w.reshape(-1).view(np.int32), m.reshape(-1)) for w, m in zip(weights, masks, strict=True)]
    for cut, layer in zip(select(HostPasses(params, FORMATS["float32"], threads=2), 0.3), layers, strict=True):
        np.testing.assert_array_equal(cut.mask, layer.params["w"].mask.reshape(-1))


@pytest.mark.parametrize("size", [1, 7, 1 << 20, (1 << 20) + 3])
@pytest.mark.parametrize("dtype", [bool, np.int16, np.int32, np.int64])
def test_buffers_are_aligned_and_writeable(size: int, dtype: type) -> None:
    buffer = buffers.new(size, dtype)
    assert buffer.shape == (size,)
    assert buffer.dtype == dtype
    assert buffer.ctypes.data % 64 == 0  # XLA adopts 64-byte aligned buffers without a copy
    if buffer.nbytes >= buffers._RECYCLED:
        assert buffer.ctypes.data % mmap.PAGESIZE == 0
    assert buffer.flags.writeable
    buffer[:] = 1


def test_a_buffer_is_reused_only_once_nothing_views_it() -> None:
    buffers.release()
    first = buffers.new(1 << 20, np.int32)
    address = first.ctypes.data
    view = first.view(np.float32).reshape(1024, 1024)[::2]  # a view of a view: still keeps it
    del first
    gc.collect()
    assert buffers.held() == 0
    other = buffers.new(1 << 20, np.int32)
    assert other.ctypes.data != address
    del view
    gc.collect()
    assert buffers.held() > 0
    again = buffers.new(1 << 20, np.int32)
    assert again.ctypes.data == address
    del other, again
    gc.collect()
    buffers.release()
    assert buffers.held() == 0


def test_the_free_list_holds_at_most_what_was_out_at_once() -> None:
    buffers.release()
    for _ in range(50):  # one at a time: the free list never needs more than one
        buffers.new(1 << 17, np.int64)
        gc.collect()
    assert 0 < buffers.held() <= buffers.peak()
    many = [buffers.new(1 << 17, np.int64) for _ in range(3)]
    peak = buffers.peak()
    del many
    gc.collect()
    assert buffers.held() <= peak
    buffers.release()


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_no_framework_is_loaded() -> None:
    out = _run(
        """
        import sys
        import numpy as np
        from lotto_backends._host.passes import HostParam, HostPasses
        from lotto_core.keys import FORMATS
        from lotto_core.search import select
        keys = np.random.default_rng(0).standard_normal(1000).astype(np.float32).view(np.int32)
        passes = HostPasses([HostParam(keys, np.ones(1000, dtype=bool))], FORMATS["float32"], threads=2)
        cuts = select(passes, 0.5)
        print(int(cuts[0].mask.sum()), sorted(m for m in ("torch", "jax", "flax") if m in sys.modules))
        """
    )
    assert out.split() == ["500", "[]"]


def test_the_pool_works_in_a_forked_child() -> None:
    # the child inherits the parent's pool object but not its threads
    out = _run(
        """
        import os
        import numpy as np
        from lotto_backends._host import buffers, pool
        from lotto_backends._host.passes import HostParam, HostPasses
        from lotto_core.keys import FORMATS
        from lotto_core.search import select
        keys = np.random.default_rng(0).standard_normal(5000).astype(np.float32).view(np.int32)
        pool.CHUNK = 100
        def kept():
            passes = HostPasses([HostParam(keys, np.ones(5000, dtype=bool))], FORMATS["float32"], threads=2)
            cuts = select(passes, 0.2)
            return int(cuts[0].mask.sum())
        print(kept())
        pid = os.fork()
        if pid == 0:
            os._exit(0 if kept() == 4000 else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert out.split() == ["4000", "0"]
