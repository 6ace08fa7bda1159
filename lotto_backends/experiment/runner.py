"""The lottery-ticket experiment, backend-neutral: iterative magnitude pruning with its two
controls, round by round, resumable after every round.

Per seed, round 0 trains the dense model (setting the rewind point after
``rewind_step`` steps: late rewinding). Each later round

1. prunes the ticket by magnitude (hidden layers at ``rate``, the output layer at
   ``rate / 2``) and rewinds it, and prunes the *random-pruning* control by the same
   per-group rates at random (``RandomPruneGroup``: the same counts) and rewinds it;
2. trains the ticket, a *random re-initialization* (the ticket's masks on a freshly
   drawn model), and the random-pruning control, each with a fresh Adam and the same
   batches, and evaluates them;
3. checks that the three have exactly the same number of weights left in each group,
   and writes the whole state (models, pruners, round, results so far) atomically.

With late rewinding, the ticket and the random-pruning control train the rest of the
schedule from step ``rewind_step``; the re-initialization, a new start, trains all of it.
``--retrain lr-rewind|finetune`` keeps the trained values of the surviving weights of the
ticket and of the random-pruning control instead of rewinding them, and retrains them
for the same steps with the schedule's learning rates from ``rewind_step`` on, or at its
final rate (``lotto_core.Retraining``).

``--instability`` adds, each round (the dense one too), the instability analysis of
Frankle et al. 2020 at rewind step 0 and at ``rewind_step``: two copies of the ticket,
rewound there, trained with other data orders, and their test error along the line
between them (``INSTABILITY_POINTS`` points; the adapters' ``instability``). Every round
also records the ticket's per-layer sparsity and the overlap of its masks with the
previous round's; ``results`` adds the overlap between seeds.

``--method snip|grasp|synflow`` adds, each round, the ticket's initialization pruned once
by that method to the ticket's sparsity; ``--schedule gradual`` adds the ticket's
initialization trained once while pruned by magnitude on the cubic schedule of Zhu &
Gupta 2017, to the ticket's sparsity at the end of the schedule.

Every random draw comes from a seed derived from (seed, purpose, round), never from a
global generator, and each round starts a fresh optimizer: the state after a round is
everything the next round depends on, so a killed run that is started again continues
from its last finished round and ends with exactly the results of an uninterrupted run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from lotto_core import MagnitudePruneGroup, PruneGroup, Pruner, RandomPruneGroup, mask_overlap
from lotto_core._array_api import to_numpy
from lotto_core.pruner import masked_parameters
from lotto_core.retraining import RETRAINING, Retraining
from lotto_core.strategy import Amount, Gradual

from .atomic import remove_stale_temporaries, write_bytes_atomic, write_text_atomic
from .backend import Backend
from .data import Dataset
from .training import LR_SCHEDULES, Schedule, TrainResult, train

__all__ = [
    "AT_INIT",
    "METHODS",
    "SCHEDULES",
    "ResumeError",
    "Settings",
    "check_settings",
    "derive_seed",
    "gradual_steps",
    "run",
    "state_path",
]

STATE_FORMAT = "lotto.experiment/2"
RUNS = ("ticket", "reinit", "random")
"""The three networks of every round: the winning ticket, its random re-initialization,
and random pruning at the same sparsity."""
AT_INIT = ("snip", "grasp", "synflow")
"""The pruning-at-initialization methods that ``--method`` adds as a fourth network."""
METHODS = ("magnitude", *AT_INIT, "random")
"""``--method``: magnitude (the ticket) and random (its control) run in every experiment."""
SCHEDULES = ("imp", "gradual")
"""``--schedule``: iterative magnitude pruning alone, or also gradual magnitude pruning."""
ALL_RUNS = (*RUNS, *AT_INIT, "gradual")
SYNFLOW_ITERATIONS = 100
"""SynFlow's pruning iterations per round (Tanaka et al. 2020)."""
GRADUAL_BEGIN, GRADUAL_END, GRADUAL_PRUNES = 0.1, 0.6, 20
"""Gradual pruning starts after 10% of the training steps, reaches the round's sparsity
at 60% (leaving the rest to recover, as Zhu & Gupta 2017 do) and prunes about 20 times."""

INSTABILITY_POINTS = 11
"""Points along the line between the two copies of an instability analysis, ends included."""

_INIT, _TRAIN, _REINIT, _RANDOM_PRUNE, _AT_INIT, _INSTABILITY = range(6)


class ResumeError(RuntimeError):
    """A state file in the output folder that this run cannot continue from."""


@dataclass(frozen=True)
class Settings:
    """Everything that decides an experiment's results (the output folder does not)."""

    backend: str
    dataset: str
    model: str
    rounds: int
    rate: float
    rewind_step: int
    seed: int
    seeds: int
    epochs: int
    batch_size: int
    lr: float
    method: str = "magnitude"
    schedule: str = "imp"
    retrain: str = "rewind"
    lr_schedule: str = "constant"
    instability: bool = False

    @property
    def seed_list(self) -> list[int]:
        """The seeds run, one full experiment each: ``seed, seed + 1, ...``."""
        return list(range(self.seed, self.seed + self.seeds))

    def training(self, dataset: Dataset) -> Schedule:
        return Schedule(self.epochs, self.batch_size, self.lr, len(dataset.y_train), self.lr_schedule)

    def identity(self, seed: int, dataset: Dataset) -> dict[str, Any]:
        """What a state file must have been written with to be continued: every setting
        but the number of rounds and seeds, this seed, and the data's fingerprint."""
        fields = asdict(self)
        del fields["rounds"], fields["seeds"]
        return {**fields, "seed": seed, "data": dataset.fingerprint}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runs(settings: Settings) -> tuple[str, ...]:
    """The networks of each pruning round: the ticket, its controls, the
    pruning-at-initialization method of ``--method`` and gradual pruning, if asked for."""
    at_init = (settings.method,) if settings.method in AT_INIT else ()
    return RUNS + at_init + (("gradual",) if settings.schedule == "gradual" else ())


def gradual_steps(steps: int) -> tuple[int, int, int]:
    """``(begin_step, end_step, frequency)`` of gradual pruning over a training of
    ``steps`` steps (at least 2): see ``GRADUAL_BEGIN``."""
    begin = max(1, round(steps * GRADUAL_BEGIN))
    end = min(steps, max(begin + 1, round(steps * GRADUAL_END)))
    return begin, end, max(1, (end - begin) // GRADUAL_PRUNES)


def check_settings(settings: Settings, dataset: Dataset) -> None:
    """Checks that need the data: the late-rewinding step must fall inside one training.

    Raises
    ------
    ValueError
        Naming the option and the allowed range.
    """
    if settings.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {settings.method!r}")
    if settings.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {settings.schedule!r}")
    if settings.retrain not in RETRAINING:
        raise ValueError(f"--retrain must be one of {', '.join(RETRAINING)}, got {settings.retrain!r}")
    if settings.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {settings.lr_schedule!r}")
    steps = settings.training(dataset).steps
    if settings.schedule == "gradual" and steps < 2:
        raise ValueError(f"--schedule gradual needs at least 2 steps in one training, got {steps}")
    if settings.rewind_step >= steps:
        raise ValueError(
            f"--rewind-step must be below the {steps} steps of one training "
            f"({settings.epochs} epochs of {settings.training(dataset).steps_per_epoch}), got {settings.rewind_step}"
        )


def derive_seed(seed: int, purpose: int, round_: int = 0) -> int:
    """An independent 32-bit seed for one purpose (init, batches, re-init, random
    pruning) of one round of one seed's experiment."""
    return int(np.random.SeedSequence(seed, spawn_key=(purpose, round_)).generate_state(1)[0])


_MAGIC = b"LOTTO-STATE/1\n"


def seal(payload: bytes) -> bytes:
    """A state file's bytes: a header, the SHA-256 of the payload, the payload; so that a
    damaged, truncated or foreign file is refused rather than continued from."""
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def unseal(data: bytes) -> bytes:
    """The payload of ``seal(payload)``.

    Raises
    ------
    ValueError
        If the header or the checksum does not match (a damaged or foreign file).
    """
    if not data.startswith(_MAGIC):
        raise ValueError("not a state file of the lotto command")
    start = len(_MAGIC) + 32
    digest, payload = data[len(_MAGIC) : start], data[start:]
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError("its checksum does not match: the file is damaged or truncated")
    return payload


def bind_folder(out: pathlib.Path, settings: Settings, dataset: Dataset) -> None:
    """Bind ``out`` to the settings that change results (the backend among them): a
    folder that holds another run's results stops with an error naming the difference,
    so that runs never overwrite each other.

    Raises
    ------
    ResumeError
        If ``out`` belongs to a run with other settings.
    """
    path = out / RUN_FILE
    wanted = {**settings.identity(0, dataset), "seeds_from": settings.seed}
    del wanted["seed"]
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ResumeError(f"cannot read {path} ({error}); use another --out") from None
        if saved != wanted:
            changed = ", ".join(
                f"{k} {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in wanted if saved.get(k) != wanted.get(k)
            )
            raise ResumeError(f"--out {out} holds a run with other settings ({changed}); use another --out")
        return
    write_text_atomic(path, json.dumps(wanted, indent=1, sort_keys=True))


RUN_FILE = "run.json"
"""The file that binds an output folder to its run's settings."""


def state_path(out: pathlib.Path, seed: int, backend: Backend) -> pathlib.Path:
    """Where the resumable state of ``seed`` lives in the output folder."""
    return out / f"state_seed{seed}.{backend.name}.state"


def read_state(path: pathlib.Path, backend: Backend) -> Any:
    """What a state file holds, checked against its checksum (``seal``).

    Raises
    ------
    ValueError
        If the file is damaged, truncated or not a state file.
    """
    return backend.load(io.BytesIO(unseal(path.read_bytes())))


class Reporter:
    """What the loop tells a person; the command line shows it with progress bars."""

    def begin(self, label: str, epochs: int) -> None:
        """A round of ``epochs`` training epochs in all starts."""

    def epoch(self) -> None:
        """One training epoch finished."""

    def end(self, seed: int, record: Mapping[str, Any]) -> None:
        """A round finished and its state is written."""

    def resumed(self, seed: int, finished: int, path: pathlib.Path) -> None:
        """A seed continues from ``path``, where rounds 0 .. ``finished`` are done."""

    def close(self) -> None:
        """The run ended (or stopped): release what shows the progress."""


def run(
    settings: Settings, dataset: Dataset, backend: Backend, out: pathlib.Path, reporter: Reporter | None = None
) -> dict[int, dict[str, Any]]:
    """Run (or continue) every seed's experiment into ``out``; for each seed, its round
    records and the sparse model's sizes, with the sparse model written to ``out``.

    Raises
    ------
    ResumeError
        Before any training, if a state file in ``out`` is unreadable or was written by
        other settings.
    """
    reporter = reporter or Reporter()
    if backend.rank == 0:  # in a data-parallel run, the other ranks read the folder only
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        bind_folder(out, settings, dataset)
    outcome: dict[int, dict[str, Any]] = {}
    with backend.session():
        states = {seed: _load_state(settings, seed, dataset, backend, out) for seed in settings.seed_list}
        arrays = backend.arrays(dataset)
        for seed in settings.seed_list:
            experiment = _SeedExperiment(settings, seed, dataset, backend, arrays, out, reporter)
            records = experiment.run(states.pop(seed))
            sparse, sparse_bytes, dense_bytes = backend.sparsify(experiment.ticket)
            path = out / f"sparse_model_seed{seed}{backend.suffix}"
            buffer = io.BytesIO()
            backend.dump(sparse, buffer)
            if backend.rank == 0:
                write_bytes_atomic(path, buffer.getvalue())
            outcome[seed] = {
                "records": records,
                "ticket_masks": [unpack_masks(packed) for packed in experiment.ticket_masks],
                "sparse_model": {
                    "file": path.name,
                    "file_bytes": len(buffer.getvalue()),
                    "sparse_bytes": sparse_bytes,
                    "dense_bytes": dense_bytes,
                },
            }
    return outcome


def _load_state(
    settings: Settings, seed: int, dataset: Dataset, backend: Backend, out: pathlib.Path
) -> dict[str, Any] | None:
    path = state_path(out, seed, backend)
    if not path.exists():
        return None
    advice = f"use another --out, or delete {path} to start this seed over"
    try:
        payload = unseal(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ResumeError(f"cannot read the saved state {path} ({error}); {advice}") from None
    try:
        state = backend.load(io.BytesIO(payload))
    except Exception as error:
        raise ResumeError(f"cannot read the saved state {path} ({error}); {advice}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ResumeError(f"{path} is not a state file of this program; {advice}")
    saved, wanted = state["identity"], settings.identity(seed, dataset)
    if saved != wanted:
        changed = ", ".join(
            f"{k} {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in wanted if saved.get(k) != wanted[k]
        )
        raise ResumeError(f"{path} was written with other settings ({changed}); {advice}")
    if state["round"] > settings.rounds:
        raise ResumeError(
            f"{path} has {state['round']} rounds finished, more than --rounds {settings.rounds}; {advice}"
        )
    return state


def _layer_groups(backend: Backend, model: Any) -> list[list[Any]]:
    """The layers of each group: the hidden layers together, then the output layer."""
    *hidden, output = backend.prunable_layers(model)
    return ([hidden] if hidden else []) + [[output]]


def _pruner(backend: Backend, model: Any, rate: float, random_seed: int | None = None) -> Pruner:
    """Hidden layers at ``rate`` and the output layer at ``rate / 2``, by magnitude, or at
    random with the same rates when ``random_seed`` is given."""

    def group(layers: list[Any], p: float) -> MagnitudePruneGroup | RandomPruneGroup:
        return MagnitudePruneGroup(layers, p) if random_seed is None else RandomPruneGroup(layers, p, seed=random_seed)

    *hidden, output = _layer_groups(backend, model)
    return Pruner([group(layers, rate) for layers in hidden] + [group(output, rate / 2)])


@dataclass(frozen=True)
class _Keep(Amount):
    """Prune down to ``kept`` weights of the group (the ticket's count)."""

    kept: int

    def target_kept(self, kept: int, size: int, step: int | None) -> int:
        return min(kept, self.kept)


def _kept(pruner: Pruner) -> list[int]:
    """Kept weights per group."""
    kept = [0] * len(pruner.groups)
    for row in pruner.report().parameters:
        kept[row.group] += row.kept
    return kept


def _size(layers: Any) -> int:
    """The number of prunable weights of ``layers`` (those with a mask)."""
    return sum(
        int(math.prod(mask.shape))
        for layer in layers
        for handle in layer.parameter_handles().values()
        if (mask := handle.get_mask()) is not None
    )


def _figures(pruner: Pruner, result: TrainResult) -> dict[str, Any]:
    """A run's sparsity, in total and per layer, and its training figures."""
    report = pruner.report()
    layers = {row.label: [row.kept, row.total] for row in report.parameters}
    return {"kept": report.kept, "total": report.total, "remaining": report.remaining, "layers": layers} | (
        result.to_dict()
    )


def pack_masks(pruner: Pruner) -> dict[str, tuple[list[int], str]]:
    """The pruner's masks by name, each as its shape and its bits (``numpy.packbits``) in
    base64: a state file keeps every round's ticket masks (44 kB a round for LeNet-300-100)."""
    out = {}
    for name, _, mask in masked_parameters(pruner):
        bits = to_numpy(mask, allow_device_copy=True)
        out[name] = (list(bits.shape), base64.b64encode(np.packbits(bits)).decode("ascii"))
    return out


def unpack_masks(packed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The boolean masks that ``pack_masks`` stored."""
    out = {}
    for name, (shape, text) in packed.items():
        bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=math.prod(shape))
        out[name] = bits.astype(bool).reshape(shape)
    return out


class _SeedExperiment:
    """One seed's rounds: the ticket and random-pruning networks with their pruners."""

    def __init__(
        self,
        settings: Settings,
        seed: int,
        dataset: Dataset,
        backend: Backend,
        arrays: Any,
        out: pathlib.Path,
        reporter: Reporter,
    ) -> None:
        self.settings, self.seed, self.dataset, self.backend = settings, seed, dataset, backend
        self.arrays, self.reporter = arrays, reporter
        self.path = state_path(out, seed, backend)
        self.schedule = settings.training(dataset)
        self.retraining = Retraining(settings.retrain, self.schedule.steps, settings.rewind_step)
        self.ticket, self.ticket_pruner = self._build(derive_seed(seed, _INIT))
        self.random: Any = None
        self.random_pruner: Pruner | None = None
        self.ticket_masks: list[dict[str, Any]] = []
        """The ticket's masks after every round so far (``pack_masks``)."""

    def _build(self, seed: int) -> tuple[Any, Pruner]:
        s, d = self.settings, self.dataset
        model = self.backend.build(s.model, d.n_features, d.n_classes, seed)
        pruner = _pruner(self.backend, model, s.rate)
        pruner.set_rewind_point()  # the rewind point is the initialization just drawn
        return model, pruner

    def _train(
        self,
        model: Any,
        round_: int,
        start_step: int,
        after_step: Callable[[int], None] | None = None,
        *,
        retrain: bool = False,
        seed: int | None = None,
    ) -> Any:
        """Train ``model`` on this round's batches from ``start_step`` (those of ``seed``
        if given); ``retrain``: as the ``--retrain`` variant retrains a pruned ticket (its
        learning rates)."""
        return train(
            self.backend,
            model,
            self.arrays,
            self.schedule,
            seed=derive_seed(self.seed, _TRAIN, round_) if seed is None else seed,
            start_step=start_step,
            learning_rate=self.retraining.learning_rate(self.schedule.lr_at) if retrain else None,
            after_step=after_step,
            after_epoch=self.reporter.epoch,
        )

    def run(self, state: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Every round not yet in ``state``; the records of all rounds."""
        if state is None:
            records = [self._dense_round()]
            self._save(records)
            self.reporter.end(self.seed, records[-1])
        else:
            records = self._restore(state)
        for round_ in range(len(records), self.settings.rounds + 1):
            records.append(self._round(round_))
            self._save(records)
            self.reporter.end(self.seed, records[-1])
        return records

    def _epochs(self) -> int:
        """Training epochs of one pruning round (the reporter's progress)."""
        s = self.settings
        return len(runs(s)) * s.epochs + self._instability_epochs()

    def _instability_epochs(self) -> int:
        return 2 * len(self._rewind_points()) * self.settings.epochs if self.settings.instability else 0

    def _rewind_points(self) -> list[int]:
        """The steps an instability analysis starts from: 0 and ``--rewind-step``."""
        return sorted({0, self.settings.rewind_step})

    def _dense_round(self) -> dict[str, Any]:
        s = self.settings
        self.reporter.begin(f"seed {self.seed} round 0/{s.rounds}", s.epochs + self._instability_epochs())
        k = self.settings.rewind_step

        def late_rewind(step: int) -> None:
            if step == k:
                self.ticket_pruner.set_rewind_point()

        result = self._train(self.ticket, 0, 0, late_rewind if k else None)
        self.random = self.backend.copy(self.ticket)  # the same rewind point as the ticket
        self.random_pruner = _pruner(
            self.backend, self.random, self.settings.rate, derive_seed(self.seed, _RANDOM_PRUNE)
        )
        record = {"round": 0, "ticket": _figures(self.ticket_pruner, result)} | {run: None for run in runs(s)[1:]}
        record["overlap_previous_round"] = None
        if s.instability:
            record["instability"] = self._instability(0)
        self.ticket_masks.append(pack_masks(self.ticket_pruner))
        return record

    def _round(self, round_: int) -> dict[str, Any]:
        assert self.random_pruner is not None
        s = self.settings
        self.reporter.begin(f"seed {self.seed} round {round_}/{s.rounds}", self._epochs())
        previous = unpack_masks(self.ticket_masks[-1])
        self.retraining.prune(self.ticket_pruner)
        self.retraining.prune(self.random_pruner)
        ticket = self._train(self.ticket, round_, s.rewind_step, retrain=True)
        reinit, reinit_pruner = self._reinit(round_)
        reinit_result = self._train(reinit, round_, 0)
        random = self._train(self.random, round_, s.rewind_step, retrain=True)
        kept = {
            "ticket": _kept(self.ticket_pruner),
            "reinit": _kept(reinit_pruner),
            "random": _kept(self.random_pruner),
        }
        record = {
            "round": round_,
            "ticket": _figures(self.ticket_pruner, ticket),
            "reinit": _figures(reinit_pruner, reinit_result),
            "random": _figures(self.random_pruner, random),
        }
        if s.method in AT_INIT:
            model, pruner = self._at_init(round_, kept["ticket"])
            record[s.method] = _figures(pruner, self._train(model, round_, 0))
            kept[s.method] = _kept(pruner)
        if s.schedule == "gradual":
            model, pruner = self._gradual_pruner(kept["ticket"])
            record["gradual"] = _figures(pruner, self._train(model, round_, 0, pruner.step))
            kept["gradual"] = _kept(pruner)
        if len({tuple(k) for k in kept.values()}) != 1:
            raise RuntimeError(f"round {round_}: the controls' sparsity differs from the ticket's: {kept}")
        packed = pack_masks(self.ticket_pruner)
        overlap = mask_overlap(previous, unpack_masks(packed))
        record["overlap_previous_round"] = {"jaccard": overlap.jaccard, "kept_both": overlap.kept_both}
        if s.instability:
            record["instability"] = self._instability(round_)
        self.ticket_masks.append(packed)
        return record

    def _instability(self, round_: int) -> dict[str, Any]:
        """The ticket's instability at rewind step 0 and ``--rewind-step``: two copies,
        rewound there with this round's masks, trained on other data orders for the rest
        of the schedule, and the test error along the line between them."""
        out = {}
        for point in self._rewind_points():
            orders = [derive_seed(self.seed, _INSTABILITY, 2 * round_ + j) for j in (0, 1)]

            def train_copy(model: Any, order: int, point: int = point) -> None:
                self._train(model, round_, point, seed=order)

            def test_error(model: Any) -> float:
                return 1.0 - self.backend.evaluate(model, self.arrays, "test")[1]

            result = self.backend.instability(
                self._rewound_to(point), train_copy, test_error, points=INSTABILITY_POINTS, data_orders=orders
            )
            out[str(point)] = result.to_dict()
        return out

    def _rewound_to(self, point: int) -> Any:
        """A copy of the ticket with its masks, rewound to step ``point``: its rewind point,
        or, for step 0 under late rewinding, its initialization."""
        model = self.backend.copy(self.ticket)
        pruner = _pruner(self.backend, model, self.settings.rate)
        state = self.ticket_pruner.state_dict()
        if point != self.settings.rewind_step:  # step 0: the initialization drawn again
            _, initial = self._build(derive_seed(self.seed, _INIT))
            _with_rewind_points(state, initial.state_dict())
        pruner.load_state_dict(state)
        pruner.rewind()
        return model

    def _at_init(self, round_: int, targets: list[int]) -> tuple[Any, Pruner]:
        """The ticket's initialization pruned once by ``--method``'s scores to the
        ticket's kept count in every group (Frankle et al. 2021); SynFlow in
        ``SYNFLOW_ITERATIONS`` steps of exponentially falling density, as its paper."""
        s, n_train = self.settings, len(self.dataset.y_train)
        model, pruner = self._build(derive_seed(self.seed, _INIT))
        rng = np.random.default_rng(derive_seed(self.seed, _AT_INIT, round_))
        index = rng.choice(n_train, size=min(n_train, 10 * s.batch_size), replace=False)
        sizes = [_size(group.layers) for group in pruner.groups]
        steps = SYNFLOW_ITERATIONS if s.method == "synflow" else 1
        for k in range(1, steps + 1):
            score = self.backend.score(model, s.method, self.arrays, index)
            for group, target, size in zip(pruner.groups, targets, sizes, strict=True):
                kept = target if k == steps else max(target, math.floor(size * (target / size) ** (k / steps)))
                PruneGroup(list(group.layers), _Keep(kept), score=score).prune()
        return model, pruner

    def _gradual_pruner(self, targets: list[int]) -> tuple[Any, Pruner]:
        """The ticket's initialization, dense, with a pruner that takes each group from
        sparsity 0 to the ticket's kept count on the cubic schedule (``Pruner.step`` after
        every training step)."""
        s, d = self.settings, self.dataset
        model = self.backend.build(s.model, d.n_features, d.n_classes, derive_seed(self.seed, _INIT))
        begin, end, frequency = gradual_steps(self.schedule.steps)
        groups = [
            PruneGroup(layers, Gradual(0.0, Fraction(_size(layers) - target, _size(layers)), begin, end, frequency))
            for layers, target in zip(_layer_groups(self.backend, model), targets, strict=True)
        ]
        return model, Pruner(groups)

    def _reinit(self, round_: int) -> tuple[Any, Pruner]:
        """The ticket's masks on a fresh initialization drawn for this round."""
        model, pruner = self._build(derive_seed(self.seed, _REINIT, round_))
        state = self.ticket_pruner.state_dict()
        _with_rewind_points(state, pruner.state_dict())
        pruner.load_state_dict(state)
        pruner.rewind()
        return model, pruner

    def _save(self, records: list[dict[str, Any]]) -> None:
        """Write the state after a round (rank 0 of a data-parallel run: the ranks hold the same)."""
        assert self.random_pruner is not None
        if self.backend.rank != 0:
            return
        state = {
            "format": STATE_FORMAT,
            "identity": self.settings.identity(self.seed, self.dataset),
            "round": records[-1]["round"],
            "records": records,
            "ticket": {"model": self.backend.model_state(self.ticket), "pruner": self.ticket_pruner.state_dict()},
            "random": {"model": self.backend.model_state(self.random), "pruner": self.random_pruner.state_dict()},
            "ticket_masks": self.ticket_masks,
        }
        buffer = io.BytesIO()
        self.backend.dump(state, buffer)
        write_bytes_atomic(self.path, seal(buffer.getvalue()))

    def _restore(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        self.backend.load_model_state(self.ticket, state["ticket"]["model"])
        self.ticket_pruner.load_state_dict(state["ticket"]["pruner"])
        self.random = self.backend.copy(self.ticket)
        self.random_pruner = _pruner(
            self.backend, self.random, self.settings.rate, derive_seed(self.seed, _RANDOM_PRUNE)
        )
        self.backend.load_model_state(self.random, state["random"]["model"])
        self.random_pruner.load_state_dict(state["random"]["pruner"])
        records: list[dict[str, Any]] = state["records"]
        self.ticket_masks = list(state["ticket_masks"])
        self.reporter.resumed(self.seed, records[-1]["round"], self.path)
        return records


def _with_rewind_points(state: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Put the rewind points of ``other`` (a pruner state of the same architecture) into
    ``state``, keeping its masks."""
    for group, other_group in zip(state["groups"], other["groups"], strict=True):
        for layer, other_layer in zip(group["layers"], other_group["layers"], strict=True):
            layer["rewind"] = other_layer["rewind"]
