"""The experiment's results as one JSON-ready dict: settings, the training protocol and
the versions that produced them, data, every seed's round records, and per round the
mean, spread and range of each figure over the seeds, the instability barriers, and the
overlap of the tickets' masks with the previous round's and between seeds.
"""

from __future__ import annotations

import itertools
import platform
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy

import lotto_core
from lotto_core import mask_overlap

from .data import Dataset
from .runner import ALL_RUNS, INSTABILITY_POINTS, Settings, gradual_steps, runs
from .training import STEP_FACTOR, STEP_MILESTONES

__all__ = ["FIGURES", "RESULTS_FORMAT", "csv_rows", "summarize"]

RESULTS_FORMAT = "lotto.results/2"
FIGURES = ("es_test_accuracy", "final_test_accuracy", "es_step", "es_val_loss", "final_val_loss")
"""The figures of a run that are summarized over seeds."""

CSV_COLUMNS = ("seed", "round", "run", "kept", "total", "remaining", *FIGURES)


def _stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one seed), minimum and maximum."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def protocol(settings: Settings, dataset: Dataset) -> dict[str, Any]:
    """How every network was trained and pruned, in words and numbers, beside the settings."""
    schedule = settings.training(dataset)
    rate = {"constant": f"{settings.lr:g} throughout"}.get(
        settings.lr_schedule,
        f"{settings.lr:g}, times {STEP_FACTOR:g} after "
        + " and again after ".join(f"step {round(m * schedule.steps)}" for m in STEP_MILESTONES),
    )
    out = {
        "optimizer": "Adam (beta1 0.9, beta2 0.999, eps 1e-8, no weight decay), a fresh one for every training",
        "learning_rate": rate,
        "loss": "cross-entropy, mean over the batch",
        "initializer": "Gaussian Glorot (normal, variance 2 / (fan_in + fan_out)) weights, zero biases",
        "batches": f"{schedule.steps_per_epoch} per epoch of {settings.batch_size}, drawn anew per round and seed",
        "steps_per_training": schedule.steps,
        "per_layer_rates": {
            "hidden layers (one group: one threshold across them)": settings.rate,
            "output layer": settings.rate / 2,
        },
        "retraining": {
            "rewind": f"weights rewound to step {settings.rewind_step}, trained on from there",
            "lr-rewind": f"trained weights kept, the learning rates from step {settings.rewind_step} on",
            "finetune": f"trained weights kept, {schedule.steps - settings.rewind_step} steps at the final rate",
        }[settings.retrain],
        "evaluation": "after every epoch: validation loss, test accuracy; es = the test accuracy at the epoch of "
        "lowest validation loss (early stopping), end = after the last epoch",
        "controls": "random reinit: the ticket's masks on a fresh initialization, trained from step 0; random "
        "pruning: the same per-group rates at random, rewound and retrained as the ticket",
    }
    if settings.instability:
        out["instability"] = (
            f"two copies rewound to step 0 and step {settings.rewind_step}, trained on other data orders; "
            f"test error at {INSTABILITY_POINTS} points of the line between them; barrier = max - mean of the ends"
        )
    if settings.schedule == "gradual":
        out["gradual"] = "begin, end, frequency: {}, {}, {}".format(*gradual_steps(schedule.steps))
    return out


def versions(framework: Mapping[str, str]) -> dict[str, str]:
    """The versions of Lotto, Python, NumPy, SciPy and the framework's packages."""
    return {
        "lotto": lotto_core.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        **framework,
    }


def _overlap_between_seeds(masks: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any] | None:
    """The Jaccard similarity of every two seeds' masks, and what two random masks of
    the same per-parameter densities would give on average."""
    if len(masks) < 2:
        return None
    pairs = [mask_overlap(a, b).jaccard for a, b in itertools.combinations(masks, 2)]
    both = union = 0.0
    for name, first in masks[0].items():
        densities = [float(m[name].mean()) for m in masks]
        for d1, d2 in itertools.combinations(densities, 2):
            both += d1 * d2 * first.size
            union += (d1 + d2 - d1 * d2) * first.size
    return {"jaccard": _stats(pairs), "random_expectation": both / union if union else 1.0}


def _instability(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if "instability" not in records[0]:
        return None
    return {
        point: {"barrier": _stats([r["instability"][point]["barrier"] for r in records])}
        for point in records[0]["instability"]
    }


def summarize(
    settings: Settings,
    dataset: Dataset,
    outcome: Mapping[int, Mapping[str, Any]],
    framework_versions: Mapping[str, str],
) -> dict[str, Any]:
    """Everything ``results.json`` holds, from the outcome of ``runner.run`` and the
    framework's package versions."""
    seeds = sorted(outcome)
    summary = []
    for round_ in range(settings.rounds + 1):
        records = [outcome[seed]["records"][round_] for seed in seeds]
        ticket = records[0]["ticket"]
        row: dict[str, Any] = {
            "round": round_,
            "kept": ticket["kept"],
            "total": ticket["total"],
            "remaining": ticket["remaining"],
        }
        for run in runs(settings):
            figures = [record[run] for record in records]
            row[run] = None if figures[0] is None else {f: _stats([r[f] for r in figures]) for f in FIGURES}
        previous = [r["overlap_previous_round"] for r in records]
        row["overlap_previous_round"] = None if previous[0] is None else _stats([p["jaccard"] for p in previous])
        row["overlap_between_seeds"] = _overlap_between_seeds([outcome[seed]["ticket_masks"][round_] for seed in seeds])
        row["instability"] = _instability(records)
        summary.append(row)
    return {
        "format": RESULTS_FORMAT,
        "settings": settings.to_dict(),
        "protocol": protocol(settings, dataset),
        "versions": versions(framework_versions),
        "dataset": dataset.describe(),
        "seeds": seeds,
        "dense": summary[0]["ticket"],
        "summary": summary,
        "runs": {str(seed): outcome[seed]["records"] for seed in seeds},
        "sparse_models": {str(seed): outcome[seed]["sparse_model"] for seed in seeds},
    }


def csv_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per seed, round and run with every figure (``results.csv``)."""
    rows = []
    for seed, records in results["runs"].items():
        for record in records:
            for run in ALL_RUNS:
                figures = record.get(run)
                if figures is not None:
                    rows.append(
                        {"seed": int(seed), "round": record["round"], "run": run}
                        | {c: figures[c] for c in CSV_COLUMNS[3:]}
                    )
    return rows
