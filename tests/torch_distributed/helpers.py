"""Running a worker script on several gloo processes on 127.0.0.1 with torchrun, bounded
by a timeout; a run that cannot start, or any rank that fails, fails the test."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(worker: pathlib.Path, case: str, *args: str, nproc: int = 2, timeout: float = 180) -> str:
    """Run ``worker case *args`` on ``nproc`` ranks, each of which must print the line
    ``rank R ok`` (in one write: lines of several ranks interleave otherwise); its
    standard output."""
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
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{case}: the {nproc} ranks did not finish in {timeout} s\n{expired.stdout}\n{expired.stderr}")
    assert done.returncode == 0, f"{case} failed:\n{done.stdout}\n{done.stderr}"
    missing = {f"rank {r} ok" for r in range(nproc)} - set(done.stdout.splitlines())
    assert not missing, f"{case}: no {sorted(missing)} in\n{done.stdout}"
    return done.stdout
