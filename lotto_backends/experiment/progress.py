"""Progress on the terminal: tqdm bars over rounds and epochs on stderr, and one plain
line per finished round on stdout (flushed at once, so a pipe sees it too)."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from .report import round_line
from .runner import Reporter

__all__ = ["ProgressReporter"]


class ProgressReporter(Reporter):
    """Bars over all rounds of all seeds and over the current round's epochs; the bars
    show only on a terminal (tqdm's ``disable=None``)."""

    def __init__(self, seeds: int, rounds: int) -> None:
        self.rounds = rounds
        self.bar = tqdm(total=seeds * (rounds + 1), desc="rounds", unit="round", file=sys.stderr, disable=None)
        self.epochs: tqdm[Any] | None = None

    def begin(self, label: str, epochs: int) -> None:
        self._close_epochs()
        self.epochs = tqdm(total=epochs, desc=label, unit="epoch", leave=False, file=sys.stderr, disable=None)

    def epoch(self) -> None:
        if self.epochs is not None:
            self.epochs.update()

    def end(self, seed: int, record: Mapping[str, Any]) -> None:
        self._close_epochs()
        self.bar.update()
        self._line(round_line(seed, self.rounds, record))

    def resumed(self, seed: int, finished: int, path: pathlib.Path) -> None:
        self.bar.update(finished + 1)
        if finished < self.rounds:
            self._line(f"seed {seed}: resuming after round {finished} from {path}")
        else:
            self._line(f"seed {seed}: all {finished} rounds already finished in {path}")

    def close(self) -> None:
        self._close_epochs()
        self.bar.close()

    def _close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None

    @staticmethod
    def _line(text: str) -> None:
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()
