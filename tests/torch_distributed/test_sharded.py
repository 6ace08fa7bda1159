"""DTensor weights (FSDP2, tensor parallelism) on 2 and 4 gloo processes on 127.0.0.1
(torchrun), each case bounded by a timeout; a run that cannot start fails."""

from __future__ import annotations

import pathlib

import pytest
import torch
import torch.distributed.checkpoint as dcp

from . import sharded_worker
from .helpers import run_ranks

WORKER = pathlib.Path(__file__).with_name("sharded_worker.py")


@pytest.mark.parametrize("nproc", [2, 4])
@pytest.mark.parametrize("path", ["band", "counting", "ties"])
def test_sharded_masks_equal_the_whole_weights_masks(nproc, path):
    run_ranks(WORKER, "dtensor_masks_match", path, nproc=nproc)


def test_structures_and_scopes_on_sharded_weights():
    run_ranks(WORKER, "strategies_match")


@pytest.mark.parametrize("case", ["fsdp_training", "fsdp_per_layer_training", "tp_training"])
def test_training_keeps_pruned_weights_at_zero_in_either_order(case):
    run_ranks(WORKER, case)


def test_what_needs_another_order_or_whole_weights_says_so():
    run_ranks(WORKER, "what_cannot_work_is_refused")


def test_the_random_controls_on_shards_give_the_whole_models_masks():
    run_ranks(WORKER, "controls_on_shards")


def test_a_failed_prune_or_rewind_changes_no_rank_s_shards():
    run_ranks(WORKER, "failed_calls_change_nothing")


def _expected(tmp_path: pathlib.Path) -> pathlib.Path:
    """The masks of the whole model after two rounds and after three, in one process."""
    model, pruner = sharded_worker.sharded_model(2)
    loaded = sharded_worker.full_masks(model)
    pruner.prune()
    path = tmp_path / "expected.pt"
    torch.save({"loaded": loaded, "next": sharded_worker.full_masks(model)}, path)
    return path


ONE_PROCESS = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
"""DCP in this process, without a process group, says so."""


@ONE_PROCESS
def test_a_checkpoint_of_two_ranks_loads_into_one(tmp_path):
    folder = tmp_path / "ckpt"
    run_ranks(WORKER, "dcp_save", str(folder))
    expected = torch.load(_expected(tmp_path))
    model, pruner = sharded_worker.sharded_model(0)
    state = {"model": model.state_dict(), "pruner": pruner.state_dict()}
    dcp.load(state, checkpoint_id=str(folder))
    model.load_state_dict(state["model"])
    pruner.load_state_dict(state["pruner"])
    for got, mask in zip(sharded_worker.full_masks(model), expected["loaded"], strict=True):
        assert torch.equal(got, mask)
    assert pruner.rounds == 2
    pruner.prune()
    for got, mask in zip(sharded_worker.full_masks(model), expected["next"], strict=True):
        assert torch.equal(got, mask)


@ONE_PROCESS
def test_a_checkpoint_of_one_process_loads_into_two_ranks(tmp_path):
    folder = tmp_path / "ckpt"
    model, pruner = sharded_worker.sharded_model(2)
    dcp.save({"model": model.state_dict(), "pruner": pruner.state_dict()}, checkpoint_id=str(folder))
    expected = _expected(tmp_path)
    run_ranks(WORKER, "dcp_load", str(folder), str(expected))
