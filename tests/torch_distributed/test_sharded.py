"""DTensor weights (FSDP2, tensor parallelism) on 2 and 4 gloo processes on 127.0.0.1
(torchrun), each case bounded by a timeout; a run that cannot start fails."""

from __future__ import annotations

import pathlib

import pytest

from .test_ddp import run_ranks

WORKER = pathlib.Path(__file__).with_name("sharded_worker.py")


@pytest.mark.parametrize("nproc", [2, 4])
def test_sharded_masks_equal_the_whole_weights_masks(nproc):
    assert run_ranks("dtensor_masks_match", nproc=nproc, worker=WORKER).count(" ok") == nproc


@pytest.mark.parametrize("case", ["fsdp_training", "tp_training"])
def test_training_keeps_pruned_weights_at_zero_in_either_order(case):
    assert run_ranks(case, worker=WORKER).count(" ok") == 2


def test_make_prunable_after_fully_shard_names_the_order():
    assert run_ranks("fsdp_then_make_prunable_is_refused", worker=WORKER).count(" ok") == 2
