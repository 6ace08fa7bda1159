"""The reproduction page's tables and figures, computed from the shipped
``results/research/*.json`` (``lotto`` runs: see docs/reproduction.md for the commands)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

HERE = Path(__file__).parent / "results" / "research"
DATASETS = {"mnist": "MNIST (5,000 images)", "mnist1d": "MNIST-1D"}
VARIANTS = {"rewind": "weight rewinding", "lr-rewind": "learning-rate rewinding", "finetune": "fine-tuning"}
RUNS = {
    (dataset, run): json.loads((HERE / f"{dataset}-{run}.json").read_text())
    for dataset in DATASETS
    for run in (*VARIANTS, "instability")
}


def _pm(stats: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:right'>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table class='table'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def command(dataset: str, run: str) -> str:
    """The ``lotto`` command that made a shipped result, from its settings."""
    s = RUNS[dataset, run]["settings"]
    extra = "--instability " if s.get("instability") else ""
    return (
        f"lotto --dataset {s['dataset']} --seeds {s['seeds']} --epochs {s['epochs']} --lr-schedule {s['lr_schedule']} "
        f"--retrain {s['retrain']} --rewind-step {s['rewind_step']} {extra}--out {dataset}-{run}"
    )


def retraining_table(dataset: str) -> str:
    """Per round: test accuracy at early stopping (%) of the ticket under each retraining
    variant, and of its random-pruning control, mean ± std over the seeds."""
    head = ["weights remaining"]
    for label in VARIANTS.values():
        head += [f"{label}: ticket", "random pruning"]
    rows = []
    summaries = {v: RUNS[dataset, v]["summary"] for v in VARIANTS}
    for i, row in enumerate(summaries["rewind"]):
        cells = [f"{100 * row['remaining']:.2f}%"]
        for variant in VARIANTS:
            r = summaries[variant][i]
            cells.append(_pm(r["ticket"]["es_test_accuracy"]))
            cells.append("-" if r["random"] is None else _pm(r["random"]["es_test_accuracy"]))
        rows.append(cells)
    return _table(head, rows)


def instability_table(dataset: str) -> str:
    """Per round: the ticket's test accuracy and the error barrier (percentage points of
    test error) from rewind step 0 and from step k, mean ± std over the seeds."""
    results = RUNS[dataset, "instability"]
    points = list(results["summary"][0]["instability"])
    head = ["weights remaining", "ticket accuracy (%)", *(f"barrier from step {p} (pts)" for p in points)]
    rows = [
        [
            f"{100 * row['remaining']:.2f}%",
            _pm(row["ticket"]["es_test_accuracy"]),
            *(_pm(row["instability"][p]["barrier"]) for p in points),
        ]
        for row in results["summary"]
    ]
    return _table(head, rows)


def overlap_table(dataset: str) -> str:
    """Per round: the Jaccard similarity of every two seeds' tickets (mean ± std over the
    pairs) beside two random masks of the same densities, for rewinding to 0 and to k."""
    head = ["weights remaining", "between seeds, rewind to 0", "between seeds, rewind to k", "random masks"]
    rows = []
    zero, late = RUNS[dataset, "rewind"]["summary"], RUNS[dataset, "instability"]["summary"]
    for a, b in zip(zero[1:], late[1:], strict=True):
        between = a["overlap_between_seeds"]
        rows.append(
            [
                f"{100 * a['remaining']:.2f}%",
                _pm(between["jaccard"], 1, 3),
                _pm(b["overlap_between_seeds"]["jaccard"], 1, 3),
                f"{between['random_expectation']:.3f}",
            ]
        )
    return _table(head, rows)


def _axes_by_dataset(ylabel: str) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(11, 4), squeeze=False)
    for ax, title in zip(axes[0], DATASETS.values(), strict=True):
        ax.set_xscale("log")
        ax.set_xlim(130, 0.6)
        ax.set_xticks([100, 50, 20, 10, 5, 2, 1], labels=["100", "50", "20", "10", "5", "2", "1"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("weights remaining (%)")
        ax.set_title(f"LeNet-300-100 on {title}", fontsize=11)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    return fig, axes[0]


def _line(ax: Any, x: list[float], stats: list[dict[str, float]], label: str, color: str, scale: float = 100) -> None:
    mean = [scale * s["mean"] for s in stats]
    ax.plot(x, mean, marker="o", markersize=3, color=color, label=label)
    low = [scale * (s["mean"] - s["std"]) for s in stats]
    high = [scale * (s["mean"] + s["std"]) for s in stats]
    ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)


def retraining_figure() -> Any:
    """Test error at early stopping (log scale) of the ticket under each retraining
    variant and of weight rewinding's random-pruning control; bands ± 1 std."""
    fig, axes = _axes_by_dataset("test error at early stopping (%, log scale)")
    for ax, dataset in zip(axes, DATASETS, strict=True):
        for (variant, label), color in zip(VARIANTS.items(), ("C0", "C3", "C2"), strict=True):
            rows = RUNS[dataset, variant]["summary"]
            x = [100 * r["remaining"] for r in rows]
            errors = [
                {"mean": 1 - r["ticket"]["es_test_accuracy"]["mean"], "std": r["ticket"]["es_test_accuracy"]["std"]}
                for r in rows
            ]
            _line(ax, x, errors, label, color)
        rows = RUNS[dataset, "rewind"]["summary"][1:]
        random = [
            {"mean": 1 - r["random"]["es_test_accuracy"]["mean"], "std": r["random"]["es_test_accuracy"]["std"]}
            for r in rows
        ]
        _line(ax, [100 * r["remaining"] for r in rows], random, "random pruning (weight rewinding)", "gray")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def instability_figure() -> Any:
    """The error barrier (percentage points) from rewind step 0 and from step k; bands ± 1 std."""
    fig, axes = _axes_by_dataset("error barrier (percentage points of test error)")
    for ax, dataset in zip(axes, DATASETS, strict=True):
        rows = RUNS[dataset, "instability"]["summary"]
        x = [100 * r["remaining"] for r in rows]
        for point, color in zip(rows[0]["instability"], ("C0", "C3"), strict=True):
            _line(ax, x, [r["instability"][point]["barrier"] for r in rows], f"rewind to step {point}", color)
        ax.axhline(0, color="gray", linewidth=0.8)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def at_last_epoch(dataset: str, run: str) -> dict[str, int]:
    """Of one run's trainings after round 0, per network, how many had their lowest
    validation loss at the last epoch (still improving when they stopped)."""
    results = RUNS[dataset, run]
    steps = results["protocol"]["steps_per_training"]
    records = [record for seed in results["runs"].values() for record in seed[1:]]
    return {net: sum(record[net]["es_step"] == steps for record in records) for net in ("ticket", "reinit", "random")}


def under_trained_table(dataset: str) -> str:
    """``at_last_epoch`` for every run of a dataset, as an HTML table."""
    runs = {**VARIANTS, "instability": "weight rewinding to step 60 (instability run)"}
    rows = []
    for run, label in runs.items():
        counts = at_last_epoch(dataset, run)
        total = sum(len(seed) - 1 for seed in RUNS[dataset, run]["runs"].values())
        rows.append([label, *(f"{n} of {total}" for n in counts.values())])
    return _table(["run", "ticket", "random reinit", "random pruning"], rows)


def ticket_accuracy(dataset: str, variant: str) -> list[float]:
    """The ticket's mean early-stopping test accuracy (%) per round of one run."""
    return [100 * row["ticket"]["es_test_accuracy"]["mean"] for row in RUNS[dataset, variant]["summary"]]


def remaining(dataset: str) -> list[float]:
    """The weights remaining (%) per round."""
    return [100 * row["remaining"] for row in RUNS[dataset, "rewind"]["summary"]]
