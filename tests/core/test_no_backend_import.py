"""lotto_core never imports a framework: not at import, not while pruning NumPy arrays."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import lotto_core

SCRIPT = """
import sys
import numpy as np
import lotto_core
from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, to_scipy
layer = ArrayLayer({"w": np.arange(1.0, 13.0).reshape(3, 4)})
pruner = Pruner([MagnitudePruneGroup([layer], 0.5)])
pruner.prune_and_rewind()
to_scipy(layer["w"], layer.params["w"].mask)
print(sorted(m for m in ("torch", "jax", "jaxlib", "flax", "tensorflow") if m in sys.modules))
"""


def test_import_and_use_load_no_framework():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_source_file_names_a_framework():
    root = pathlib.Path(lotto_core.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(torch|jax|jaxlib|flax)\b", re.MULTILINE)
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
