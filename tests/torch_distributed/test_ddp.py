"""DDP on two gloo processes on 127.0.0.1 (torchrun), each case bounded by a timeout;
a run that cannot start fails."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")
ROOT = pathlib.Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(case: str, nproc: int = 2, timeout: float = 180, worker: pathlib.Path = WORKER) -> str:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--nnodes=1",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        str(worker),
        case,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{case}: the {nproc} ranks did not finish in {timeout} s\n{expired.stdout}\n{expired.stderr}")
    assert done.returncode == 0, f"{case} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_masks_and_rewind_points_stay_out_of_the_buffer_broadcast():
    out = run_ranks("no_broadcast")
    assert out.count(" ok") == 2


def test_ranks_that_prune_differently_all_raise():
    out = run_ranks("ranks_disagree")
    assert out.count(" ok") == 2
