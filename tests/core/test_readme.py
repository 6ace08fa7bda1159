"""The Python example in README.md runs as written and prints what it says."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[2] / "README.md"


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README.md has no Python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    report = namespace["pruner"].report()  # type: ignore[attr-defined]
    assert report.remaining == pytest.approx(0.512, abs=1e-4)
    assert "total" in capsys.readouterr().out
