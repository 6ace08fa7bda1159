"""Shared by the experiment tests: a tiny run on scikit-learn's digits, and reading its files."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from lotto_backends.experiment.cli import main

TINY = ["--dataset", "digits", "--epochs", "1"]


def run_lotto(out: pathlib.Path, *options: str) -> dict[str, Any]:
    """Run ``lotto`` in this process on the tiny digits setup; its results.json."""
    assert main([*TINY, *options, "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())
