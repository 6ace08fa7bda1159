"""One training run of the experiment, the same for every backend: Adam for a fixed
number of epochs over minibatches in a seeded order, at a constant learning rate or one
that steps down, evaluated after every epoch, with both the early-stopping figure (test
accuracy where the validation loss is lowest, as Frankle & Carbin 2019 report) and the
end-of-training figure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .backend import Backend

__all__ = ["LR_SCHEDULES", "Schedule", "TrainResult", "train"]

LR_SCHEDULES = ("constant", "step")
"""``--lr-schedule``: a constant rate, or the rate divided by 10 after 50% and again after
75% of the steps (the step decay of Renda et al. 2020's ResNets)."""
STEP_MILESTONES, STEP_FACTOR = (0.5, 0.75), 0.1


@dataclass(frozen=True)
class Schedule:
    """How one run trains: ``epochs`` passes of minibatches of ``batch_size`` over
    ``n_train`` samples (the last batch of an epoch may be smaller) at learning rate ``lr``,
    constant or stepped down (``lr_schedule``, one of ``LR_SCHEDULES``)."""

    epochs: int
    batch_size: int
    lr: float
    n_train: int
    lr_schedule: str = "constant"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based) of a whole training."""
        if self.lr_schedule == "constant":
            return self.lr
        passed = sum(step >= round(m * self.steps) for m in STEP_MILESTONES)
        return self.lr * STEP_FACTOR**passed


@dataclass(frozen=True)
class TrainResult:
    """The figures of one run: at the epoch of lowest validation loss (``es_*``, early
    stopping) and after the last epoch (``final_*``); steps count optimizer steps."""

    es_step: int
    es_val_loss: float
    es_test_accuracy: float
    final_val_loss: float
    final_test_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    backend: Backend,
    model: Any,
    arrays: Any,
    schedule: Schedule,
    *,
    seed: int,
    start_step: int = 0,
    learning_rate: Callable[[int], float] | None = None,
    after_step: Callable[[int], None] | None = None,
    after_epoch: Callable[[], None] | None = None,
) -> TrainResult:
    """Train ``model`` with a fresh optimizer on the batches of ``schedule`` drawn from
    ``seed``, skipping the first ``start_step`` of them (a run rewound to step k trains
    the rest of the schedule). ``learning_rate(t)`` is the rate of this run's step ``t``
    (0-based; ``Retraining.learning_rate``), by default the schedule's from
    ``start_step`` on. ``after_step(step)`` runs after each optimizer step (late
    rewinding sets the rewind point there); ``after_epoch()`` after each epoch.
    """
    if learning_rate is None:
        learning_rate = functools.partial(_shifted, schedule, start_step)
    optimizer = backend.optimizer(model)
    rng = np.random.default_rng(seed)
    size = schedule.batch_size
    evaluations: list[tuple[int, float, float]] = []
    step = 0
    for _ in range(schedule.epochs):
        order = rng.permutation(schedule.n_train)  # drawn for skipped epochs too: the same batches either way
        for first in range(0, schedule.n_train, size):
            step += 1
            if step > start_step:
                lr = learning_rate(step - 1 - start_step)
                backend.train_step(model, optimizer, arrays, order[first : first + size], lr)
                if after_step is not None:
                    after_step(step)
        if step > start_step:
            val_loss, _ = backend.evaluate(model, arrays, "val")
            _, test_accuracy = backend.evaluate(model, arrays, "test")
            evaluations.append((step, val_loss, test_accuracy))
        if after_epoch is not None:
            after_epoch()
    best = min(evaluations, key=lambda e: e[1])  # the earliest of equal losses
    last = evaluations[-1]
    return TrainResult(best[0], best[1], best[2], last[1], last[2])


def _shifted(schedule: Schedule, start_step: int, t: int) -> float:
    return schedule.lr_at(start_step + t)
