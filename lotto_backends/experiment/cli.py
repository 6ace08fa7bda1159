"""The ``lotto`` command: a full lottery-ticket experiment from the command line.

``lotto`` with no options runs the ``quick`` preset (LeNet-300-100 on 5,000 MNIST
images, 7 rounds at rate 0.5, 15 epochs each at a learning rate of 3e-3: under a minute
on two CPU cores);
``--preset
paper`` runs the longer protocol of Frankle & Carbin (2019) over three seeds. Options
given explicitly override the preset's values. Every option is checked, and the data
loaded, before any training starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from lotto_core.retraining import RETRAINING

from .backend import BACKENDS, BackendError, load_backend
from .data import DATASETS, DataError, load_dataset
from .models import MODELS, cnn_lengths
from .runner import METHODS, SCHEDULES, Reporter, ResumeError, Settings, check_settings, run
from .training import LR_SCHEDULES

__all__ = ["PRESETS", "build_parser", "main"]

_COMMON: dict[str, Any] = {
    "backend": "torch",
    "dataset": "mnist",
    "model": "lenet",
    "rewind_step": 0,
    "seed": 0,
    "batch_size": 60,
    "lr": 1.2e-3,
}
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {**_COMMON, "rounds": 7, "rate": 0.5, "epochs": 15, "lr": 3e-3, "seeds": 1, "out": "lotto-results"},
    "paper": {**_COMMON, "rounds": 18, "rate": 0.2, "epochs": 15, "seeds": 3, "out": "lotto-results-paper"},
}
"""Each preset's values; ``quick`` is the default. Adam at 1.2e-3 with batches of 60,
Gaussian Glorot init and the output layer at half the rate are the paper's protocol,
which ``paper`` follows. ``quick`` trains at 3e-3 for 15 epochs instead: within a minute,
its controls reach their lowest validation loss before the last epoch in 11 of their 14
trainings (at 1.2e-3 for 8 epochs, in 2 of 14: under-trained controls, which made the
ticket look better than it is)."""

_EXTRAS = ("tqdm", "matplotlib")


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _rate(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1): the fraction of weights pruned per round, got {text}")
    return value


def _learning_rate(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _options(values: dict[str, Any]) -> str:
    return ", ".join(f"--{key.replace('_', '-')} {value}" for key, value in values.items())


def _presets_text() -> str:
    """The presets for ``--help``: what each sets beyond the values they share."""
    shared = {k: v for k, v in _COMMON.items() if all(values[k] == v for values in PRESETS.values())}
    own = {name: {k: v for k, v in values.items() if k not in shared} for name, values in PRESETS.items()}
    return "; ".join(f"preset {name}: {_options(values)}" for name, values in own.items()) + (
        f"; both: {_options(shared)}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``lotto`` argument parser; options left out take the preset's value."""
    parser = argparse.ArgumentParser(
        prog="lotto",
        description=(
            "Run a lottery-ticket experiment: train, prune the smallest weights, rewind, train again, "
            "for several rounds, comparing every ticket with a random re-initialization of it and with "
            "random pruning at the same sparsity. Writes results.json, results.csv, "
            "accuracy_vs_sparsity.png, overlap_and_instability.png and the sparse model to --out; "
            "started again with the same options, it continues from the last finished round."
        ),
        epilog=_presets_text(),
    )
    add = parser.add_argument
    add("--preset", choices=sorted(PRESETS), default="quick", help="the defaults to start from (default: quick)")
    add("--backend", choices=BACKENDS, help="the framework (default: torch)")
    add(
        "--dataset",
        metavar="NAME|FILE.npz",
        help=f"one of {', '.join(DATASETS)}, or an .npz file with x_train, y_train, x_test, y_test",
    )
    add("--model", choices=MODELS, help="LeNet-300-100 or the small 1-D CNN of MNIST-1D")
    add("--rounds", type=_integer(1), help="rounds of pruning after the dense training")
    add("--rate", type=_rate, help="fraction of the remaining weights pruned per round (output layer: half)")
    add("--rewind-step", type=_integer(0), metavar="K", help="rewind to the weights after K steps (0: init)")
    add(
        "--method",
        choices=METHODS,
        default="magnitude",
        help="adds, each round, the initialization pruned once by SNIP, GraSP or SynFlow to the ticket's sparsity "
        "(Frankle et al. 2021); magnitude (the ticket) and random (its control) always run (default: magnitude)",
    )
    add(
        "--schedule",
        choices=SCHEDULES,
        default="imp",
        help="gradual adds, each round, the initialization trained once while pruned by magnitude on the cubic "
        "schedule of Zhu & Gupta 2017 to the ticket's sparsity (default: imp, the rounds alone)",
    )
    add(
        "--retrain",
        choices=RETRAINING,
        default="rewind",
        help="how the ticket and random pruning retrain after each prune (Renda et al. 2020): rewind the weights "
        "to --rewind-step, or keep the trained weights and rewind the learning-rate schedule to --rewind-step "
        "(lr-rewind) or train at its final rate (finetune), for the same steps (default: rewind)",
    )
    add(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="Adam's learning rate: constant, or step (divided by 10 after 50%% and 75%% of the steps); "
        "default: step with --retrain lr-rewind or finetune (a constant rate makes them one), else constant",
    )
    add(
        "--instability",
        action="store_true",
        help="adds, each round, the instability analysis of Frankle et al. 2020 at rewind step 0 and --rewind-step: "
        "two copies of the ticket trained on other data orders, and the error barrier on the line between them",
    )
    add("--seed", type=_integer(0), help="the first seed (default: 0)")
    add("--seeds", type=_integer(1), help="how many seeds, from --seed on; results give mean and spread")
    add("--epochs", type=_integer(1), help="training epochs per round")
    add("--batch-size", type=_integer(1), help="minibatch size (default: 60)")
    add("--lr", type=_learning_rate, help="Adam's learning rate (quick: 3e-3, paper: 1.2e-3)")
    add("--out", type=pathlib.Path, metavar="DIR", help="output folder (quick: lotto-results)")
    return parser


def _settings(args: argparse.Namespace) -> tuple[Settings, pathlib.Path]:
    values = {k: v if (v := getattr(args, k)) is not None else default for k, default in PRESETS[args.preset].items()}
    out = pathlib.Path(values.pop("out"))
    lr_schedule = args.lr_schedule or ("constant" if args.retrain == "rewind" else "step")
    settings = Settings(
        **values,
        method=args.method,
        schedule=args.schedule,
        retrain=args.retrain,
        lr_schedule=lr_schedule,
        instability=args.instability,
    )
    return settings, out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lotto`` with ``argv`` (default: the process's arguments); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings, out = _settings(args)
    missing = [name for name in _EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        parser.error(f"lotto needs {' and '.join(missing)}: pip install 'lotto[experiment]'")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and settings.backend != "torch":
        parser.error(f"a data-parallel run (torchrun) needs --backend torch, got --backend {settings.backend}")
    try:
        backend = load_backend(settings.backend)
        dataset = load_dataset(settings.dataset)
        if settings.model == "cnn":
            cnn_lengths(dataset.n_features)
        check_settings(settings, dataset)
    except (BackendError, DataError, ValueError) as error:
        parser.error(str(error))

    from .progress import ProgressReporter  # tqdm, which the check above reported if missing
    from .report import masks_table, table, write_reports
    from .results import summarize

    if settings.retrain != "rewind" and settings.lr_schedule == "constant":
        print("lotto: note: at a constant learning rate, --retrain lr-rewind and finetune train alike", file=sys.stderr)
    started = time.perf_counter()
    reporter: Reporter = ProgressReporter(settings.seeds, settings.rounds) if backend.rank == 0 else Reporter()
    try:
        outcome = run(settings, dataset, backend, out, reporter)
    except ResumeError as error:
        print(f"lotto: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        reporter.close()
        print(
            f"\nlotto: interrupted; the finished rounds are saved in {out}: run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    finally:
        reporter.close()
    if backend.rank != 0:
        return 0  # rank 0 reports a data-parallel run
    results = summarize(settings, dataset, outcome, backend.versions())
    paths = write_reports(out, results)
    print()
    print(table(results))
    print()
    print(masks_table(results))
    written = ", ".join(p.name for p in paths)
    print(f"wrote {written} and the sparse model to {out} in {time.perf_counter() - started:.0f} s")
    print(backend.load_hint)
    return 0
