"""The retraining variants of Renda et al. (2020): weight rewinding rewinds, learning-rate
rewinding and fine-tuning keep the trained weights; their learning rates follow the
original schedule from the rewind point, or stay at its final rate; bad input is named."""

from __future__ import annotations

import numpy as np
import pytest

from lotto_core import ArrayLayer, MagnitudePruneGroup, Pruner, Retraining


def _trained() -> tuple[ArrayLayer, Pruner]:
    layer = ArrayLayer({"w": np.arange(1.0, 11.0)})
    pruner = Pruner([MagnitudePruneGroup([layer], 0.3)])
    layer.params["w"].set_value(np.arange(1.0, 11.0) * 10)  # "training"
    return layer, pruner


@pytest.mark.parametrize(("how", "rewound"), [("rewind", True), ("lr-rewind", False), ("finetune", False)])
def test_only_weight_rewinding_rewinds_and_all_prune_alike(how, rewound):
    layer, pruner = _trained()
    Retraining(how, steps=10).prune(pruner)
    expected = np.arange(1.0, 11.0) * (1 if rewound else 10)
    expected[:3] = 0
    np.testing.assert_array_equal(layer["w"], expected)
    assert pruner.report().kept == 7


def test_learning_rates_follow_the_schedule_from_the_rewind_point_or_stay_at_its_end():
    schedule = [1.0, 1.0, 0.5, 0.5, 0.1, 0.1].__getitem__
    rewound = Retraining("lr-rewind", steps=6, rewind_step=2)
    assert rewound.retrain_steps == 4
    assert [rewound.learning_rate(schedule)(t) for t in range(4)] == [0.5, 0.5, 0.1, 0.1]
    assert Retraining("rewind", 6, 2).learning_rate(schedule)(1) == 0.5
    tuned = Retraining("finetune", steps=6, rewind_step=2)
    assert [tuned.learning_rate(schedule)(t) for t in range(4)] == [0.1] * 4
    assert tuned.retrain_steps == 4


def test_an_optax_schedule_takes_the_shifted_step():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    schedule = optax.piecewise_constant_schedule(1.0, {5: 0.1})
    lr = Retraining("lr-rewind", steps=10, rewind_step=3).learning_rate(schedule)
    assert float(lr(jnp.asarray(1))) == 1.0
    assert float(lr(jnp.asarray(3))) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("rewinding", 10), ValueError, "how must be one of 'rewind', 'lr-rewind', 'finetune'"),
        (("rewind", 0), ValueError, "steps must be at least 1"),
        (("rewind", 10.0), TypeError, "steps must be an int"),
        (("rewind", 10, -1), ValueError, "rewind_step must be at least 0"),
        (("rewind", 10, 10), ValueError, r"rewind_step must be below steps \(10\)"),
    ],
)
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        Retraining(*args)


def test_prune_and_learning_rate_check_their_arguments():
    with pytest.raises(TypeError, match="pruner must be a Pruner"):
        Retraining("rewind", 5).prune([])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule must be a function"):
        Retraining("rewind", 5).learning_rate(0.1)  # type: ignore[arg-type]
