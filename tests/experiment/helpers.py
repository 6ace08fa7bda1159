"""Shared by the experiment tests: a tiny run on scikit-learn's digits, and reading its files."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import lotto_backends
from lotto_backends.experiment.cli import main

TINY = ["--dataset", "digits", "--epochs", "1"]


def run_lotto(out: pathlib.Path, *options: str) -> dict[str, Any]:
    """Run ``lotto`` in this process on the tiny digits setup; its results.json."""
    assert main([*TINY, *options, "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def lotto_command(out: pathlib.Path, *options: str) -> list[str]:
    """``lotto`` with ``options`` as a command for a subprocess of its own."""
    return [sys.executable, "-m", "lotto_backends.experiment", *options, "--out", str(out)]


def subprocess_env() -> dict[str, str]:
    """This environment, with the checkout on ``PYTHONPATH`` (the tests may run from it
    without an install)."""
    root = pathlib.Path(lotto_backends.__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def kill_after_round_1(command: list[str]) -> None:
    """Start ``command``, and SIGKILL it as soon as it reports seed 0's round 1 (each
    round's line is printed after its state is written)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=subprocess_env()
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("seed 0 round 1/"):
                break
        else:
            raise AssertionError("the run ended before finishing round 1")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL
