"""The experiment's results as one JSON-ready dict: settings, data, every seed's round
records, and per round the mean, spread and range of each figure over the seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .data import Dataset
from .runner import ALL_RUNS, Settings, runs

__all__ = ["FIGURES", "RESULTS_FORMAT", "csv_rows", "summarize"]

RESULTS_FORMAT = "lotto.results/1"
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


def summarize(settings: Settings, dataset: Dataset, outcome: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Everything ``results.json`` holds, from the outcome of ``runner.run``."""
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
        summary.append(row)
    return {
        "format": RESULTS_FORMAT,
        "settings": settings.to_dict(),
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
