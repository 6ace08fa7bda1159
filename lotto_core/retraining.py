"""How a pruned network is retrained: the three variants that Renda, Frankle & Carbin
(2020, *Comparing Rewinding and Fine-tuning in Neural Network Pruning*) compare, with the
same retraining budget of ``steps - rewind_step`` steps each.

- ``"rewind"`` (weight rewinding, the lottery-ticket protocol): the surviving weights go
  back to their values at step ``rewind_step`` (the rewind point) and retrain with the
  learning-rate schedule from that step on.
- ``"lr-rewind"`` (learning-rate rewinding): the surviving weights keep their trained
  values and retrain with the same learning-rate schedule as weight rewinding.
- ``"finetune"`` (fine-tuning): the surviving weights keep their trained values and
  retrain at the schedule's final learning rate.

Only the weights and the learning rate differ; the masks, the data and the budget are
the same, so the three can be told apart by accuracy alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .pruner import Pruner

__all__ = ["RETRAINING", "Retraining"]

RETRAINING = ("rewind", "lr-rewind", "finetune")
"""The retraining variants, by name."""


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Retraining:
    """One retraining variant over a training of ``steps`` optimizer steps whose rewind
    point is step ``rewind_step`` (0: the initialization).

    Examples
    --------
    >>> schedule = lambda step: 0.1 if step < 50 else 0.01  # the original training's rate, per step
    >>> lr = Retraining("finetune", steps=100, rewind_step=10).learning_rate(schedule)
    >>> Retraining("finetune", 100, 10).retrain_steps, lr(0)
    (90, 0.01)
    >>> Retraining("lr-rewind", 100, 10).learning_rate(schedule)(0)
    0.1

    In a training loop (``train`` your own function, ``pruner`` a ``Pruner``):

    >>> retraining = Retraining("lr-rewind", steps=100)
    >>> def one_round(pruner, train):
    ...     retraining.prune(pruner)  # prune; rewind the weights only for "rewind"
    ...     train(steps=retraining.retrain_steps, learning_rate=retraining.learning_rate(schedule))
    """

    how: str
    steps: int
    rewind_step: int = 0

    def __post_init__(self) -> None:
        if self.how not in RETRAINING:
            raise ValueError(f"how must be one of {', '.join(map(repr, RETRAINING))}, got {self.how!r}")
        _count(self.steps, "steps", 1)
        _count(self.rewind_step, "rewind_step", 0)
        if self.rewind_step >= self.steps:
            raise ValueError(f"rewind_step must be below steps ({self.steps}), got {self.rewind_step}")

    @property
    def retrain_steps(self) -> int:
        """Optimizer steps of one retraining: the rest of the schedule from the rewind point."""
        return self.steps - self.rewind_step

    @property
    def rewinds_weights(self) -> bool:
        """Whether the surviving weights go back to the rewind point (weight rewinding)."""
        return self.how == "rewind"

    def prune(self, pruner: Pruner) -> None:
        """One round: ``pruner.prune()``, then ``pruner.rewind()`` for weight rewinding;
        the other variants keep the trained values of the surviving weights."""
        if not isinstance(pruner, Pruner):
            raise TypeError(f"pruner must be a Pruner, got {type(pruner).__name__}")
        if self.rewinds_weights:
            pruner.prune_and_rewind()
        else:
            pruner.prune()

    def learning_rate(self, schedule: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The retraining's learning rate at its step ``t`` (0-based), from the original
        training's ``schedule(step)``: ``schedule(rewind_step + t)`` when rewinding
        weights or the learning rate, ``schedule(steps - 1)`` (its final rate) when
        fine-tuning. Works on the ints and traced arrays of an optax schedule too.
        """
        if not callable(schedule):
            raise TypeError(f"schedule must be a function of the step, got {type(schedule).__name__}")
        if self.how == "finetune":
            final = self.steps - 1
            return lambda t: schedule(final)
        offset = self.rewind_step
        return lambda t: schedule(offset + t)
