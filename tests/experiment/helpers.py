"""Shared by the experiment tests: a tiny run on scikit-learn's digits, and reading its files."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import lotto_backends
from lotto_backends.experiment import runner
from lotto_backends.experiment.backend import Backend
from lotto_backends.experiment.cli import PRESETS, main
from lotto_backends.experiment.data import digits
from lotto_backends.experiment.training import train

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


def assert_adam_keeps_what_a_prune_removed(backend: Backend) -> None:
    """A LeNet trained two Adam steps, pruned by half, then trained two more steps with
    the same optimizer: every pruned weight is still exactly 0 (Adam's moments from
    before the prune, which ``--schedule gradual`` meets at every prune, must not move it)."""
    data = digits()
    with backend.session():
        arrays = backend.arrays(data)
        model = backend.build("lenet", 64, 10, 0)
        pruner = runner._pruner(backend, model, 0.5)
        optimizer = backend.optimizer(model)
        for first in (0, 60):
            backend.train_step(model, optimizer, arrays, np.arange(first, first + 60), 1e-2)
        pruner.prune()
        for first in (120, 180):
            backend.train_step(model, optimizer, arrays, np.arange(first, first + 60), 1e-2)
        for layer in backend.prunable_layers(model):
            for name, handle in layer.parameter_handles().items():
                mask = handle.get_mask()
                if mask is not None:
                    assert (np.asarray(handle.get_value())[~np.asarray(mask)] == 0).all(), name


@contextmanager
def dense_round_by_hand(backend: Backend, k: int, lr_schedule: str = "constant") -> Iterator[tuple[Any, ...]]:
    """Round 0 of ``lotto`` on the tiny digits setup (seed 0, ``--rewind-step k``) by the
    library's own calls: ``(model, pruner, arrays, schedule)`` with the model trained and
    the rewind point set at step ``k``, inside the backend's session (so that what the
    test trains next gives the command's bits too)."""
    data = digits()
    lr = PRESETS["quick"]["lr"]
    settings = runner.Settings("torch", "digits", "lenet", 1, 0.5, k, 0, 1, 1, 60, lr, lr_schedule=lr_schedule)
    schedule = settings.training(data)
    model = backend.build("lenet", 64, 10, runner.derive_seed(0, runner._INIT))
    pruner = runner._pruner(backend, model, 0.5)
    with backend.session():
        arrays = backend.arrays(data)

        def late_rewind(step: int) -> None:
            if step == k:
                pruner.set_rewind_point()

        train(backend, model, arrays, schedule, seed=runner.derive_seed(0, runner._TRAIN, 0), after_step=late_rewind)
        yield model, pruner, arrays, schedule
