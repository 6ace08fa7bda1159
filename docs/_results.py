"""The reproduction's table and figure, computed from the shipped ``results/*.json``
(used by the landing page and docs/experiment.md, so both show the same numbers)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

HERE = Path(__file__).parent
RUNS = {
    (d, b): json.loads((HERE / "results" / f"{d}-{b}.json").read_text())
    for d in ("mnist", "mnist1d")
    for b in ("torch", "jax")
}
LABELS = {"ticket": "winning ticket", "reinit": "random reinit", "random": "random pruning"}
TITLES = {"mnist": "MNIST (5,000 images)", "mnist1d": "MNIST-1D"}


def es(row: dict[str, Any], run: str) -> tuple[float, float]:
    """Mean and spread (std over seeds) of the early-stopping test accuracy, in %."""
    s = row[run]["es_test_accuracy"]
    return 100 * s["mean"], 100 * s["std"]


def down_to(rows: list[dict[str, Any]], run: str, floor: float) -> dict[str, Any] | None:
    """The sparsest level down to which every level of ``run`` scores at least ``floor``
    (levels in order of decreasing density); None if the first does not."""
    last = None
    for r in rows[1:]:
        if es(r, run)[0] < floor:
            break
        last = r
    return last


def findings(results: dict[str, Any]) -> dict[str, str]:
    rows = results["summary"]
    dense, dense_sd = es(rows[0], "ticket")
    ticket = down_to(rows, "ticket", dense - 1.0)
    out = {"dense (early stopping)": f"{dense:.1f} ± {dense_sd:.1f}"}
    for run, label in LABELS.items():
        last = down_to(rows, run, dense - 1.0)
        out[f"{label} within 1 pt of dense down to"] = "-" if last is None else f"{100 * last['remaining']:.1f}%"
    for run, label in LABELS.items():
        out[f"{label} at the ticket's sparsest such level"] = "{:.1f} ± {:.1f}".format(*es(ticket, run))
    return out


def table_html() -> str:
    """The findings of every run, as an HTML table (accuracies: mean ± std over seeds, %)."""
    table = {f"{d} / {b}": findings(r) for (d, b), r in RUNS.items()}
    keys = list(next(iter(table.values())))
    head = "".join(f"<th>{html.escape(name)}</th>" for name in table)
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
        + "".join(f"<td style='text-align:right'>{html.escape(t[key])}</td>" for t in table.values())
        + "</tr>"
        for key in keys
    )
    return f"<table class='table'><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(datasets: tuple[str, ...] = ("mnist", "mnist1d"), backends: tuple[str, ...] = ("torch", "jax")) -> Any:
    """Test accuracy at early stopping against the weights remaining: lines are means over
    the seeds, bands ± one standard deviation (the table's spread)."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), sharex=True, squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for backend, line in zip(backends, ("-", "--"), strict=False):
            rows = RUNS[dataset, backend]["summary"]
            x = [100 * r["remaining"] for r in rows[1:]]
            for (run, label), color in zip(LABELS.items(), ("C0", "C1", "C2"), strict=True):
                mean = [es(r, run)[0] for r in rows[1:]]
                sd = [es(r, run)[1] for r in rows[1:]]
                ax.plot(x, mean, line, color=color, label=f"{label} ({backend})" if len(backends) > 1 else label)
                ax.fill_between(
                    x,
                    [m - s for m, s in zip(mean, sd, strict=True)],
                    [m + s for m, s in zip(mean, sd, strict=True)],
                    color=color,
                    alpha=0.12,
                    linewidth=0,
                )
            ax.axhline(es(rows[0], "ticket")[0], color="gray", linestyle=line, linewidth=0.8)
        seeds = RUNS[dataset, backends[0]]["seeds"]
        n = len(seeds) if isinstance(seeds, list) else seeds
        ax.set_xscale("log")
        ax.set_xlim(100, 1.5)  # density falls from left to right, round by round
        ax.set_xticks([50, 20, 10, 5, 2], labels=["50", "20", "10", "5", "2"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        dense = es(RUNS[dataset, backends[0]]["summary"][0], "ticket")[0]
        low = min(es(r, k)[0] for b in backends for r in RUNS[dataset, b]["summary"][1:] for k in LABELS)
        ax.set_ylim(max(low, dense - 20) - 1, dense + 3)  # where the ticket and the controls part
        ax.set_title(f"LeNet-300-100 on {TITLES[dataset]}", fontsize=11)
        ax.set_xlabel("weights remaining (%)")
        ax.text(0.02, 0.03, f"bands: ± 1 std over {n} seeds; gray: dense", transform=ax.transAxes, fontsize=8)
    axes[0][0].set_ylabel("test accuracy at early stopping (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.1 if len(backends) > 1 else 0.08, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    return fig
