"""A real run killed (SIGKILL) after a finished round and started again with the same
command ends with exactly the results of an uninterrupted run."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import torch

import lotto_backends

ROOT = pathlib.Path(lotto_backends.__file__).resolve().parents[1]
ROUNDS = 5


def _command(out: pathlib.Path) -> list[str]:
    options = ["--dataset", "digits", "--rounds", str(ROUNDS), "--epochs", "3"]
    return [sys.executable, "-m", "lotto_backends.experiment", *options, "--out", str(out)]


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _run(out: pathlib.Path) -> str:
    done = subprocess.run(_command(out), capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _command(killed), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env()
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # each round's line is printed after its state is written
            if line.startswith("seed 0 round 1/"):
                break
        else:
            raise AssertionError("the run ended before finishing round 1")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    state = torch.load(killed / "state_seed0.pt", weights_only=True)
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
    final = [torch.load(d / "state_seed0.pt", weights_only=True) for d in (killed, uninterrupted)]
    for name, tensor in final[0]["ticket"]["model"].items():
        assert torch.equal(tensor, final[1]["ticket"]["model"][name]), name
