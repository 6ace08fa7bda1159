"""A real run killed (SIGKILL) after a finished round and started again with the same
command ends with exactly the results of an uninterrupted run."""

from __future__ import annotations

import pathlib
import subprocess

import torch

from lotto_backends.experiment.runner import read_state
from lotto_backends.experiment.torch_backend import BACKEND

from .helpers import kill_after_round_1, lotto_command, subprocess_env

ROUNDS = 5
OPTIONS = ["--dataset", "digits", "--rounds", str(ROUNDS), "--epochs", "3"]


def _run(out: pathlib.Path) -> str:
    done = subprocess.run(
        lotto_command(out, *OPTIONS), capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    killed = tmp_path / "killed"
    kill_after_round_1(lotto_command(killed, *OPTIONS))
    state = read_state(killed / "state_seed0.torch.state", BACKEND)
    assert 1 <= state["round"] < ROUNDS  # killed mid-way, after a finished round
    assert not (killed / "results.json").exists()

    resumed = _run(killed)
    assert f"seed 0: resuming after round {state['round']}" in resumed
    assert "seed 0 round 0/" not in resumed  # finished rounds are not trained again
    assert not list(killed.glob(".lotto-tmp-*"))

    uninterrupted = tmp_path / "uninterrupted"
    _run(uninterrupted)
    assert (killed / "results.json").read_text() == (uninterrupted / "results.json").read_text()
    assert (killed / "results.csv").read_text() == (uninterrupted / "results.csv").read_text()
    final = [read_state(d / "state_seed0.torch.state", BACKEND) for d in (killed, uninterrupted)]
    for name, tensor in final[0]["ticket"]["model"].items():
        assert torch.equal(tensor, final[1]["ticket"]["model"][name]), name
    sparse = [(d / "sparse_model_seed0.pt").read_bytes() for d in (killed, uninterrupted)]
    assert sparse[0] == sparse[1]  # the same file, byte for byte
