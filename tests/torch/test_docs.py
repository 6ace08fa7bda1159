"""The Python examples of docs/torch.md run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).parents[2] / "docs" / "torch.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_example_runs(index, capsys):
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[index], f"{PAGE}[{index}]", "exec"), namespace)
    assert "total" in capsys.readouterr().out
    assert namespace["pruner"].report().rounds == 3
