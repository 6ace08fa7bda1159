"""What a person reads: the line after each round, the final tables, ``results.json``,
``results.csv``, the plot ``accuracy_vs_sparsity.png`` and, of the masks and their
stability, ``overlap_and_instability.png``.

Spreads over seeds are one sample standard deviation everywhere: the tables' ``±`` and
the plots' bands, as their titles say. Accuracy is plotted as test error on a log scale,
so that a ticket at 98% and a control at 97% stand apart as clearly as one at 50%.
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

__all__ = ["MASKS_PLOT", "PLOT", "RESULTS_CSV", "RESULTS_JSON", "masks_table", "round_line", "table", "write_reports"]

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PLOT = "accuracy_vs_sparsity.png"
MASKS_PLOT = "overlap_and_instability.png"
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


def _spread(stats: Mapping[str, float] | None, seeds: int, scale: float = 1.0, digits: int = 3) -> str:
    if stats is None:
        return "-"
    mean = f"{scale * stats['mean']:.{digits}f}"
    return mean if seeds == 1 else f"{mean}±{scale * stats['std']:.{digits}f}"


def masks_table(results: Mapping[str, Any]) -> str:
    """Per round: the Jaccard overlap of the ticket's masks with the previous round's and
    between seeds (with what random masks of the same densities would give), and the
    instability barriers (test error, percentage points) at each rewind step."""
    seeds = len(results["seeds"])
    summary = results["summary"]
    points = list(summary[0]["instability"] or {})
    head = ["round", "remaining", "jaccard vs previous round", "jaccard between seeds", "(random masks)"]
    head += [f"barrier from step {p} (pts)" for p in points]
    rows = [head]
    for row in summary:
        between = row["overlap_between_seeds"]
        cells = [
            str(row["round"]),
            f"{100 * row['remaining']:.2f}%",
            _spread(row["overlap_previous_round"], seeds),
            "-" if between is None else _spread(between["jaccard"], seeds * (seeds - 1) // 2),
            "-" if between is None else f"{between['random_expectation']:.3f}",
        ]
        cells += [_spread(row["instability"][p]["barrier"], seeds, 100, 1) for p in points]
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    over = f"mean±std over {seeds} seeds (between seeds: over every pair)" if seeds > 1 else "one seed"
    return "\n".join([f"the ticket's masks and their stability, {over}", *lines])


def write_reports(out: pathlib.Path, results: Mapping[str, Any]) -> list[pathlib.Path]:
    """Write ``results.json``, ``results.csv`` and the plot into ``out``; their paths."""
    paths = [out / RESULTS_JSON, out / RESULTS_CSV, out / PLOT, out / MASKS_PLOT]
    write_text_atomic(paths[0], json.dumps(results, indent=2) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    write_text_atomic(paths[1], text.getvalue())
    _plot(results, paths[2])
    _plot_masks(results, paths[3])
    return paths


def _sparsity_axis(ax: Any, remaining: list[float]) -> None:
    """Weights remaining on a log scale, falling to the right, ticked at each round."""
    ax.set_xscale("log")
    ax.set_xlim(max(remaining) * 1.25, min(remaining) / 1.25)
    ax.set_xticks(remaining, [f"{r:.3g}" for r in remaining], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("weights remaining (%)")
    ax.grid(alpha=0.3)


def _save(figure: Any, path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_bytes_atomic(path, buffer.getvalue())


def _band(ax: Any, x: list[float], stats: list[Mapping[str, float]], color: str, scale: float = 100) -> None:
    """Mean ± one standard deviation over seeds."""
    low = [scale * (s["mean"] - s["std"]) for s in stats]
    high = [scale * (s["mean"] + s["std"]) for s in stats]
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def _plot(results: Mapping[str, Any], path: pathlib.Path) -> None:
    """Test error (log scale, so that small gaps near the dense network's error show as
    well as large ones) against the remaining weights for every network, at early
    stopping and at the end of training, with the dense error as a reference line and
    mean ± one standard deviation over seeds as a band."""
    from matplotlib.figure import Figure  # pyplot is not needed: no global figure state
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    summary = results["summary"]
    pruned = summary[1:]
    remaining = [100 * row["remaining"] for row in pruned]
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    seeds = len(results["seeds"])
    for ax, key, title in zip(
        axes,
        ("es_test_accuracy", "final_test_accuracy"),
        ("at early stopping (lowest validation loss)", "at the end of training"),
        strict=True,
    ):
        dense = summary[0]["ticket"][key]["mean"]
        ax.axhline(100 * (1 - dense), color="gray", linestyle="--", linewidth=1, label="dense")
        for run in _runs(summary[0]):
            stats = [_error(row[run][key]) for row in pruned]
            color = _COLORS[run]
            ax.plot(remaining, [100 * s["mean"] for s in stats], marker="o", color=color, label=LABELS[run])
            if seeds > 1:
                _band(ax, remaining, stats, color)
        _sparsity_axis(ax, remaining)
        ax.set_yscale("log", nonpositive="clip")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
    axes[0].set_ylabel("test error (%, log scale; lower is better)")
    axes[0].legend(loc="upper left")
    settings, data = results["settings"], results["dataset"]
    band = f"; bands: mean ± 1 std over {seeds} seeds" if seeds > 1 else ", 1 seed"
    figure.suptitle(
        f"Lottery tickets: {settings['model']} on {data['name']}, rate {settings['rate']:g} per round, "
        f"retrain: {settings.get('retrain', 'rewind')} from step {settings['rewind_step']}{band}"
    )
    _save(figure, path)


def _error(accuracy: Mapping[str, float]) -> dict[str, float]:
    """The error's mean and std from the accuracy's."""
    return {"mean": 1 - accuracy["mean"], "std": accuracy["std"]}


def _plot_masks(results: Mapping[str, Any], path: pathlib.Path) -> None:
    """The Jaccard overlap of the ticket's masks with the previous round's and between
    seeds, against random masks of the same densities; and, with ``--instability``,
    the error barrier at each rewind step. Bands: mean ± 1 std over seeds (or pairs)."""
    from matplotlib.figure import Figure

    summary, seeds = results["summary"], len(results["seeds"])
    pruned = summary[1:]
    remaining = [100 * row["remaining"] for row in pruned]
    points = list(summary[0]["instability"] or {})
    figure = Figure(figsize=(11 if points else 5.8, 4.4), layout="constrained")
    axes = figure.subplots(1, 2 if points else 1, squeeze=False)[0]
    ax = axes[0]
    previous = [row["overlap_previous_round"] for row in pruned]
    ax.plot(remaining, [s["mean"] for s in previous], marker="o", color="tab:blue", label="with the previous round")
    if seeds > 1:
        _band(ax, remaining, previous, "tab:blue", scale=1)
        between = [row["overlap_between_seeds"] for row in pruned]
        stats = [b["jaccard"] for b in between]
        ax.plot(remaining, [s["mean"] for s in stats], marker="o", color="tab:orange", label="between seeds")
        _band(ax, remaining, stats, "tab:orange", scale=1)
        random = [b["random_expectation"] for b in between]
        ax.plot(remaining, random, color="gray", linestyle="--", label="random masks, same densities")
    _sparsity_axis(ax, remaining)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Jaccard similarity of the masks")
    ax.set_title("mask overlap")
    ax.legend(loc="lower left")
    if points:
        ax = axes[1]
        levels = [100 * row["remaining"] for row in summary]
        for point, color in zip(points, ("tab:blue", "tab:red"), strict=False):
            stats = [row["instability"][point]["barrier"] for row in summary]
            ax.plot(levels, [100 * s["mean"] for s in stats], marker="o", color=color, label=f"rewind to step {point}")
            if seeds > 1:
                _band(ax, levels, stats, color)
        _sparsity_axis(ax, levels)
        ax.axhline(0, color="gray", linewidth=1)
        ax.set_ylabel("error barrier (percentage points of test error)")
        ax.set_title("instability: two copies, other data orders")
        ax.legend(loc="upper left")
    settings, data = results["settings"], results["dataset"]
    band = f"bands: mean ± 1 std over {seeds} seeds" if seeds > 1 else "1 seed"
    figure.suptitle(f"The ticket's masks: {settings['model']} on {data['name']}, {band}")
    _save(figure, path)
