"""``lotto --retrain``: weight rewinding, learning-rate rewinding and fine-tuning in the
command, each reproduced step for step from the library calls, and the learning-rate
schedules they share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lotto_backends.experiment import runner
from lotto_backends.experiment.cli import _settings, build_parser
from lotto_backends.experiment.data import digits
from lotto_backends.experiment.torch_backend import BACKEND
from lotto_backends.experiment.training import Schedule, train
from lotto_core import Retraining

from .helpers import dense_round_by_hand, run_lotto


def test_the_step_schedule_divides_by_ten_after_half_and_three_quarters():
    schedule = Schedule(epochs=4, batch_size=10, lr=1.0, n_train=50, lr_schedule="step")  # 20 steps
    rates = [schedule.lr_at(step) for step in range(20)]
    assert rates[:10] == [1.0] * 10
    assert rates[10:15] == pytest.approx([0.1] * 5)
    assert rates[15:] == pytest.approx([0.01] * 5)
    assert {Schedule(4, 10, 1.0, 50).lr_at(step) for step in range(20)} == {1.0}


@pytest.mark.parametrize("how", ["lr-rewind", "finetune"])
def test_the_command_retrains_as_the_library_calls_do(tmp_path, how):
    """Round 1 of ``lotto --retrain how`` is: train dense, prune (no rewind), retrain from
    step k with ``Retraining(how, ...).learning_rate`` of the step schedule."""
    k = 5
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "1", "--retrain", how, "--rewind-step", str(k))
    assert (results["settings"]["retrain"], results["settings"]["lr_schedule"]) == (how, "step")
    state = runner.read_state(out / "state_seed0.torch.state", BACKEND)
    with dense_round_by_hand(BACKEND, k, "step") as (model, pruner, arrays, schedule):
        trained = {n: p.detach().clone() for n, p in model.named_parameters()}
        retraining = Retraining(how, schedule.steps, k)
        retraining.prune(pruner)
        for n, p in model.named_parameters():  # the trained weights, pruned: nothing rewound
            mask = getattr(model.get_submodule(n.rsplit(".", 1)[0]), "weight_mask", None)
            expected = trained[n] * mask if n.endswith("weight") and mask is not None else trained[n]
            assert torch.equal(p.detach(), expected), n
        train(
            BACKEND,
            model,
            arrays,
            schedule,
            seed=runner.derive_seed(0, runner._TRAIN, 1),
            start_step=k,
            learning_rate=retraining.learning_rate(schedule.lr_at),
        )
    for name, value in state["ticket"]["model"].items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_the_variants_differ_from_weight_rewinding_and_from_each_other(tmp_path):
    finals = {}
    for how in ("rewind", "lr-rewind", "finetune"):
        out = tmp_path / how
        run_lotto(out, "--rounds", "1", "--retrain", how, "--lr-schedule", "step")
        state = runner.read_state(out / "state_seed0.torch.state", BACKEND)
        finals[how] = state["ticket"]["model"]["0.weight"]
    assert not torch.equal(finals["rewind"], finals["lr-rewind"])
    assert not torch.equal(finals["lr-rewind"], finals["finetune"])


def test_a_learning_rate_of_zero_leaves_the_weights():
    data = digits()
    with BACKEND.session():
        arrays = BACKEND.arrays(data)
        model = BACKEND.build("lenet", 64, 10, 0)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = BACKEND.optimizer(model)
        BACKEND.train_step(model, optimizer, arrays, np.arange(60), 0.0)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        BACKEND.train_step(model, optimizer, arrays, np.arange(60), 1e-2)
        assert not torch.equal(before[0], next(model.parameters()))


def test_the_learning_rate_schedule_defaults_to_step_where_the_variants_need_it():
    parser = build_parser()
    assert _settings(parser.parse_args([]))[0].lr_schedule == "constant"
    assert _settings(parser.parse_args(["--retrain", "finetune"]))[0].lr_schedule == "step"
    chosen = _settings(parser.parse_args(["--retrain", "lr-rewind", "--lr-schedule", "constant"]))[0]
    assert (chosen.retrain, chosen.lr_schedule) == ("lr-rewind", "constant")
