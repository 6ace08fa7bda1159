"""What a person reads: the line after each round, the final table, ``results.json``,
``results.csv`` and the plot ``accuracy_vs_sparsity.png``.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from .atomic import write_bytes_atomic, write_text_atomic
from .results import CSV_COLUMNS, csv_rows

__all__ = ["PLOT", "RESULTS_CSV", "RESULTS_JSON", "round_line", "table", "write_reports"]

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PLOT = "accuracy_vs_sparsity.png"
LABELS = {
    "ticket": "winning ticket",
    "reinit": "random reinit",
    "random": "random pruning",
    "snip": "SNIP at init",
    "grasp": "GraSP at init",
    "synflow": "SynFlow at init",
    "gradual": "gradual pruning",
}
_COLORS = {
    "ticket": "tab:blue",
    "reinit": "tab:orange",
    "random": "tab:green",
    "snip": "tab:red",
    "grasp": "tab:purple",
    "synflow": "tab:brown",
    "gradual": "tab:pink",
}


def _runs(row: Mapping[str, Any]) -> list[str]:
    """The networks that a record or summary row holds, in the order of ``LABELS``."""
    return [run for run in LABELS if run in row]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def round_line(seed: int, rounds: int, record: Mapping[str, Any]) -> str:
    """The one line printed after a round: remaining weights, the ticket's accuracy (early
    stopping, then end of training) and both controls'.

    Examples
    --------
    >>> figures = {"remaining": 0.5, "es_test_accuracy": 0.93, "final_test_accuracy": 0.925}
    >>> print(round_line(0, 7, {"round": 0, "ticket": figures, "reinit": None, "random": None}))
    seed 0 round 0/7: 100.0% of weights remain | dense 93.0% (end 92.5%)
    """
    ticket = record["ticket"]
    head = f"seed {seed} round {record['round']}/{rounds}"
    if record["reinit"] is None:
        return f"{head}: 100.0% of weights remain | dense {_pct(ticket['es_test_accuracy'])} " + (
            f"(end {_pct(ticket['final_test_accuracy'])})"
        )
    parts = [
        f"{LABELS[run]} {_pct(record[run]['es_test_accuracy'])} (end {_pct(record[run]['final_test_accuracy'])})"
        for run in _runs(record)
    ]
    return f"{head}: {_pct(ticket['remaining'])} of weights remain | " + " | ".join(parts)


def _cell(stats: Mapping[str, float] | None, seeds: int) -> str:
    if stats is None:
        return "-"
    if seeds == 1:
        return f"{100 * stats['mean']:.1f}"
    return f"{100 * stats['mean']:.1f}±{100 * stats['std']:.1f}"


def table(results: Mapping[str, Any]) -> str:
    """The final table: per round the remaining weights and the test accuracy (%) of the
    ticket, both controls and any pruning at initialization, at early stopping and at the end of training (mean ± sample
    standard deviation over seeds when there are several), and the sparse model's size."""
    seeds = len(results["seeds"])
    head = ["round", "remaining"]
    shown = _runs(results["summary"][0])
    for run in shown:
        head += [f"{LABELS[run]} (es)", "(end)"]
    rows = [head]
    for row in results["summary"]:
        cells = [str(row["round"]), f"{100 * row['remaining']:.2f}%"]
        for run in shown:
            figures = row[run]
            for key in ("es_test_accuracy", "final_test_accuracy"):
                cells.append(_cell(None if figures is None else figures[key], seeds))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    over = f"mean±std over {seeds} seeds" if seeds > 1 else f"seed {results['seeds'][0]}"
    title = (
        f"test accuracy (%) of {results['settings']['model']} on {results['dataset']['name']}, {over}: "
        "es = at the lowest validation loss (early stopping), end = after the last epoch"
    )
    sizes = []
    for seed, size in results["sparse_models"].items():
        share = size["sparse_bytes"] / size["dense_bytes"]
        sizes.append(
            f"sparse model {size['file']}: {size['sparse_bytes']:,} bytes of weights against "
            f"{size['dense_bytes']:,} dense ({100 * share:.1f}%), file {size['file_bytes']:,} bytes"
            + (f" (seed {seed})" if seeds > 1 else "")
        )
    return "\n".join([title, *lines, *sizes])


def write_reports(out: pathlib.Path, results: Mapping[str, Any]) -> list[pathlib.Path]:
    """Write ``results.json``, ``results.csv`` and the plot into ``out``; their paths."""
    paths = [out / RESULTS_JSON, out / RESULTS_CSV, out / PLOT]
    write_text_atomic(paths[0], json.dumps(results, indent=2) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    write_text_atomic(paths[1], text.getvalue())
    _plot(results, paths[2])
    return paths


def _plot(results: Mapping[str, Any], path: pathlib.Path) -> None:
    """Test accuracy against the remaining weights (log scale, falling to the right) for
    every network, at early stopping and at the end of training, with the dense
    accuracy as a reference line and the range over seeds as a band."""
    from matplotlib.figure import Figure  # pyplot is not needed: no global figure state

    summary = results["summary"]
    pruned = summary[1:]
    remaining = [100 * row["remaining"] for row in pruned]
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for ax, key, title in zip(
        axes,
        ("es_test_accuracy", "final_test_accuracy"),
        ("at early stopping (lowest validation loss)", "at the end of training"),
        strict=True,
    ):
        dense = summary[0]["ticket"][key]["mean"]
        ax.axhline(100 * dense, color="gray", linestyle="--", linewidth=1, label="dense")
        for run in _runs(summary[0]):
            stats = [row[run][key] for row in pruned]
            color = _COLORS[run]
            ax.plot(remaining, [100 * s["mean"] for s in stats], marker="o", color=color, label=LABELS[run])
            if len(results["seeds"]) > 1:
                low, high = [100 * s["min"] for s in stats], [100 * s["max"] for s in stats]
                ax.fill_between(remaining, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlim(max(remaining) * 1.25, min(remaining) / 1.25)
        ax.set_xticks(remaining, [f"{r:.3g}" for r in remaining], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel("weights remaining (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(loc="lower left")
    settings, data = results["settings"], results["dataset"]
    seeds = len(results["seeds"])
    figure.suptitle(
        f"Lottery tickets: {settings['model']} on {data['name']}, rate {settings['rate']:g} per round, "
        f"rewind to step {settings['rewind_step']}, {seeds} seed{'s' if seeds > 1 else ''}"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_bytes_atomic(path, buffer.getvalue())
