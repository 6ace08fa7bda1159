"""The PyTorch pages of the documentation run as written, cell after cell in one
namespace as the docs build runs them, and show what their text says."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

DOCS = pathlib.Path(__file__).parents[2] / "docs"


def run_page(name: str) -> dict[str, object]:
    """Execute the ``{code-cell}`` blocks of ``docs/<name>`` in order; return their namespace."""
    page = DOCS / name
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    assert cells, f"{page} has no code cells"
    namespace: dict[str, object] = {"__name__": "__main__"}
    for index, cell in enumerate(cells):
        exec(compile(cell, f"{page}[cell {index}]", "exec"), namespace)
    return namespace


def test_getting_started_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_page("getting-started-torch.md")
    assert "total" in capsys.readouterr().out
    report = ns["pruner"].report()  # type: ignore[attr-defined]
    assert report.rounds == 3
    # "0.8³ ≈ 51.2% of the first group remains and 0.9³ ≈ 72.9% of the second"
    first = [p for p in report.parameters if p.group == 0]
    second = [p for p in report.parameters if p.group == 1]
    assert sum(p.kept for p in first) / sum(p.total for p in first) == pytest.approx(0.512, abs=1e-3)
    assert sum(p.kept for p in second) / sum(p.total for p in second) == pytest.approx(0.729, abs=1e-3)
    # "both layers keep exactly half their weights"
    assert [p.kept / p.total for p in ns["late"].report().parameters] == [0.5, 0.5]  # type: ignore[attr-defined]
    assert ns["resumed_pruner"].rounds == 1  # type: ignore[attr-defined]
    x = torch.randn(3, 3, 1024)
    torch.testing.assert_close(ns["small"](x), ns["m"](x))  # type: ignore[operator]


def test_comparison_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_page("comparison.md")
    out = capsys.readouterr().out
    # "torch rounds 0.1 * 25 = 2.5 to 2; Lotto prunes 3"
    assert int((ns["reference"].weight == 0).sum()) == 2  # type: ignore[attr-defined]
    assert int((ns["lotto"].weight == 0).sum()) == 3  # type: ignore[attr-defined]
    assert "weight_orig" in out
    assert "torch.bool" in out


def test_readme_torch_example_runs() -> None:
    readme = DOCS.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    torch_blocks = [b for b in blocks if "lotto_backends.torch" in b]
    assert torch_blocks, "README.md has no PyTorch example"
    namespace: dict[str, object] = {}
    exec(compile(torch_blocks[0], str(readme), "exec"), namespace)
    pruner = namespace["pruner"]
    pruner.prune_and_rewind()  # type: ignore[attr-defined]
    assert pruner.report().remaining == pytest.approx(0.8, abs=1e-3)  # type: ignore[attr-defined]
