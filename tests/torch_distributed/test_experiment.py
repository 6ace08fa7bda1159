"""``lotto`` data-parallel under torchrun on two gloo processes: the results of one
process for the same global batches and seed, up to the order of the gradient sums (the
instability analysis's copies included)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.experiment.helpers import run_lotto

from .helpers import ROOT

OPTIONS = ["--dataset", "digits", "--epochs", "2", "--rounds", "2", "--schedule", "gradual", "--instability"]
LOSS_TOLERANCE = 1e-5
ACCURACY_TOLERANCE = 0.01
"""The ranks add their gradients in another order than one process: the losses agree
to about 1e-7 on these runs, and the accuracies exactly unless a prediction sits on a tie."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_give_the_results_of_one_process(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1"]
    command += ["--master-addr=127.0.0.1", f"--master-port={_port()}", "-m", "lotto_backends.experiment"]
    command += [*OPTIONS, "--out", str(tmp_path / "ranks")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the 2 ranks did not finish in 300 s\n{expired.stdout}\n{expired.stderr}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("winning ticket (es)") == 1  # rank 0 alone reports
    ranks = json.loads((tmp_path / "ranks" / "results.json").read_text())
    alone = run_lotto(tmp_path / "alone", *OPTIONS[2:])
    assert ranks["settings"] == alone["settings"]
    for two, one in zip(ranks["runs"]["0"], alone["runs"]["0"], strict=True):
        for run in ("ticket", "reinit", "random", "gradual"):
            if one[run] is None:
                assert two[run] is None
                continue
            assert two[run]["kept"] == one[run]["kept"]
            for figure in ("es_val_loss", "final_val_loss"):
                assert two[run][figure] == pytest.approx(one[run][figure], abs=LOSS_TOLERANCE)
            for figure in ("es_test_accuracy", "final_test_accuracy"):
                assert two[run][figure] == pytest.approx(one[run][figure], abs=ACCURACY_TOLERANCE)
        # the instability analysis trains its two copies data-parallel too: the same test errors
        assert two["instability"].keys() == one["instability"].keys() == {"0"}
        for point, analysis in one["instability"].items():
            got = two["instability"][point]
            assert got["alphas"] == analysis["alphas"]
            assert got["values"] == pytest.approx(analysis["values"], abs=ACCURACY_TOLERANCE)
            assert got["barrier"] == pytest.approx(analysis["barrier"], abs=2 * ACCURACY_TOLERANCE)


def test_a_data_parallel_run_needs_the_torch_backend(tmp_path, monkeypatch, capsys):
    from lotto_backends.experiment.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        main(["--backend", "jax", "--dataset", "digits", "--out", str(tmp_path)])
    assert "a data-parallel run (torchrun) needs --backend torch, got --backend jax" in capsys.readouterr().err
