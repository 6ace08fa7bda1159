"""DDP on two gloo processes on 127.0.0.1 (torchrun), each case bounded by a timeout;
a run that cannot start fails."""

from __future__ import annotations

import pathlib

from .helpers import run_ranks

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


def test_masks_and_rewind_points_stay_out_of_the_buffer_broadcast():
    run_ranks(WORKER, "no_broadcast")


def test_ranks_that_prune_differently_all_raise():
    run_ranks(WORKER, "ranks_disagree")
