"""The ``lotto`` experiment with ``--backend jax``: short real runs on scikit-learn's digits
(the files written, the controls' sparsity, the sparse model), the same pruned counts as
the torch backend, a killed run that resumes to the uninterrupted results, the ``.npz``
state files, and a training step compiled once for every model of the same shape."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import matplotlib.image
import numpy as np
import pytest
from jax.experimental import sparse as jsparse

from lotto_backends.experiment import runner
from lotto_backends.experiment.backend import load_backend
from lotto_backends.experiment.cli import main
from lotto_backends.experiment.data import digits
from lotto_backends.experiment.jax_backend import BACKEND, _train_step
from lotto_backends.experiment.models import cnn_lengths
from lotto_backends.experiment.results import FIGURES
from lotto_backends.experiment.runner import read_state, unseal
from lotto_core import prune_count
from lotto_core.pruner import type_code

from ..experiment.helpers import kill_after_round_1, lotto_command, run_lotto, subprocess_env

RUNS = ("ticket", "reinit", "random")
RATE = 0.5
ROUNDS = {"lenet": 2, "cnn": 1}  # few rounds: JAX compiles for new shapes in each


def _totals(model: str) -> tuple[int, int, int]:
    """Prunable weights of the hidden group and of the output layer, and the biases, on digits."""
    if model == "lenet":
        return 64 * 300 + 300 * 100, 100 * 10, 300 + 100 + 10
    return 5 * 25 + 3 * 25 * 25 + 3 * 25 * 25, 25 * cnn_lengths(64)[-1] * 10, 3 * 25 + 10


def _expected_kept(model: str, rounds: int) -> int:
    kept = 0
    for total, p in zip(_totals(model)[:2], (RATE, RATE / 2), strict=True):
        for _ in range(rounds):
            total -= prune_count(p, total)
        kept += total
    return kept


def _load(path: pathlib.Path) -> Any:
    if path.suffix == ".state":
        return read_state(path, BACKEND)
    with path.open("rb") as file:
        return BACKEND.load(file)


def _options(model: str) -> list[str]:
    return [
        "--dataset",
        "digits",
        "--model",
        model,
        "--epochs",
        "2",
        "--rounds",
        str(ROUNDS[model]),
        "--rate",
        str(RATE),
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """One short run per model, made when a test first asks for it and shared after."""
    done: dict[str, dict[str, Any]] = {}

    def run(model: str) -> dict[str, Any]:
        if model not in done:
            out = tmp_path_factory.mktemp(f"jax-{model}")
            stdout = io.StringIO()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sys, "stdout", stdout)
                results = run_lotto(out, "--backend", "jax", *_options(model))
            done[model] = {"model": model, "out": out, "results": results, "printed": stdout.getvalue()}
        return done[model]

    return run


@pytest.fixture(params=["lenet", "cnn"])
def finished(request: pytest.FixtureRequest, runs: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return runs(request.param)


def test_outputs_and_their_fields(finished: dict[str, Any]) -> None:
    model, out, results = finished["model"], finished["out"], finished["results"]
    rounds = ROUNDS[model]
    for round_ in range(rounds + 1):
        assert f"seed 0 round {round_}/{rounds}: " in finished["printed"]
    assert "sparse model sparse_model_seed0.npz" in finished["printed"]
    assert results["settings"] | {"model": None} == {
        "backend": "jax",
        "dataset": "digits",
        "model": None,
        "rounds": rounds,
        "rate": RATE,
        "rewind_step": 0,
        "seed": 0,
        "seeds": 1,
        "epochs": 2,
        "batch_size": 60,
        "lr": 3e-3,
        "method": "magnitude",
        "schedule": "imp",
        "retrain": "rewind",
        "lr_schedule": "constant",
        "instability": False,
    }
    assert results["settings"]["model"] == model
    summary = results["summary"]
    assert summary[0]["reinit"] is None
    assert summary[0]["random"] is None
    assert results["dense"]["es_test_accuracy"]["mean"] > 0.5  # chance is 0.1
    total = sum(_totals(model)[:2])
    for row in summary:
        assert row["total"] == total
        assert row["kept"] == _expected_kept(model, row["round"])
        assert row["remaining"] == row["kept"] / total
        for run in RUNS if row["round"] else ("ticket",):
            assert set(row[run]) == set(FIGURES)
            assert 0.1 < row[run]["es_test_accuracy"]["mean"] <= 1.0
            assert 0 < row[run]["es_step"]["mean"] <= 2 * 22
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 + 3 * rounds
    image = matplotlib.image.imread(out / "accuracy_vs_sparsity.png")
    assert image.shape[0] > 300
    assert image.shape[1] > 800
    # the sparse model: BCOO weights (a float32 value and two int32 indices per kept weight), dense biases
    size = results["sparse_models"]["0"]
    assert size["file"] == "sparse_model_seed0.npz"
    assert (out / size["file"]).stat().st_size == size["file_bytes"]
    weights, biases = total, _totals(model)[2]
    assert size["dense_bytes"] == 4 * (weights + biases)
    assert size["sparse_bytes"] == 12 * summary[-1]["kept"] + 4 * biases


def test_state_file_is_a_plain_npz_behind_its_checksum(finished: dict[str, Any]) -> None:
    first = "layers.0" if finished["model"] == "lenet" else "layers.1"  # the CNN starts with a reshape
    payload = unseal((finished["out"] / "state_seed0.jax.state").read_bytes())
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        structure = json.loads(str(archive["__structure__"]))
        assert structure["round"] == ROUNDS[finished["model"]]
        assert structure["identity"]["backend"] == "jax"
        kernel = archive[f"ticket/model/{first}.kernel"]
        mask = archive[f"ticket/model/{first}.kernel_mask"]
    assert mask.dtype == np.bool_
    assert kernel.shape == mask.shape
    assert (kernel[~mask] == 0).all()
    assert 0 < mask.mean() < 1


def test_controls_have_the_tickets_sparsity_but_other_masks(finished: dict[str, Any]) -> None:
    for record in finished["results"]["runs"]["0"][1:]:
        assert record["ticket"]["kept"] == record["reinit"]["kept"] == record["random"]["kept"]
    state = _load(finished["out"] / "state_seed0.jax.state")
    ticket, random = state["ticket"]["pruner"], state["random"]["pruner"]
    assert [g["config"]["type"] for g in ticket["groups"]] == [type_code("MagnitudePruneGroup")] * 2
    assert [g["config"]["type"] for g in random["groups"]] == [type_code("RandomPruneGroup")] * 2
    assert [g["config"]["p"] for g in random["groups"]] == [g["config"]["p"] for g in ticket["groups"]] == [0.5, 0.25]
    for g_ticket, g_random in zip(ticket["groups"], random["groups"], strict=True):
        masks_t = [np.asarray(m) for layer in g_ticket["layers"] for m in layer["masks"].values()]
        masks_r = [np.asarray(m) for layer in g_random["layers"] for m in layer["masks"].values()]
        assert sum(int(m.sum()) for m in masks_t) == sum(int(m.sum()) for m in masks_r)
        assert any(not np.array_equal(a, b) for a, b in zip(masks_t, masks_r, strict=True))


def test_sparse_model_predicts_like_the_final_ticket(finished: dict[str, Any]) -> None:
    model, out = finished["model"], finished["out"]
    state = _load(out / "state_seed0.jax.state")
    with BACKEND.session():
        ticket = BACKEND.build(model, 64, 10, 0)
        BACKEND.load_model_state(ticket, state["ticket"]["model"])
        sparse, _, _ = BACKEND.sparsify(BACKEND.build(model, 64, 10, 1))  # the architecture, before pruning
        saved = _load(out / "sparse_model_seed0.npz")
        BACKEND.load_model_state(sparse, saved)
        x = jax.numpy.asarray(digits().x_test)
        np.testing.assert_allclose(sparse(x), ticket(x), rtol=1e-5, atol=1e-5)
    stored = [v for v in saved.values() if isinstance(v, jsparse.BCOO)]
    masks = [layer.kernel_mask.get_value() for layer in BACKEND.prunable_layers(ticket)]
    assert [m.nse for m in stored] == [int(m.sum()) for m in masks]
    assert sum(m.nse for m in stored) == finished["results"]["summary"][-1]["kept"]


def test_same_kept_counts_as_torch(finished: dict[str, Any], tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    torch_results = run_lotto(tmp_path, "--backend", "torch", *_options(finished["model"]))
    jax_runs, torch_runs = finished["results"]["runs"]["0"], torch_results["runs"]["0"]
    for jax_record, torch_record in zip(jax_runs, torch_runs, strict=True):
        for run in RUNS if jax_record["round"] else ("ticket",):
            for key in ("kept", "total", "remaining"):
                assert jax_record[run][key] == torch_record[run][key], (jax_record["round"], run, key)
    torch_state = read_state(tmp_path / "state_seed0.torch.state", load_backend("torch"))
    jax_state = _load(finished["out"] / "state_seed0.jax.state")
    for network in ("ticket", "random"):
        for jax_group, torch_group in zip(
            jax_state[network]["pruner"]["groups"], torch_state[network]["pruner"]["groups"], strict=True
        ):
            kept = [sum(int(m.sum()) for m in layer["masks"].values()) for layer in jax_group["layers"]]
            assert sum(kept) == sum(int(m.sum()) for layer in torch_group["layers"] for m in layer["masks"].values())


def test_dump_and_load_round_trip() -> None:
    bcoo = jsparse.BCOO.fromdense(jax.numpy.asarray([[0.0, 1.5], [2.0, 0.0]]))
    obj = {
        "format": "x/1",
        "n": 3,
        "p": 0.1 + 0.2,
        "none": None,
        "flag": True,
        "rows": [{"a": np.arange(3, dtype=np.int32)}, [1, "two"]],
        "mask": jax.numpy.asarray([True, False]),
        "sparse": bcoo,
    }
    buffer = io.BytesIO()
    BACKEND.dump(obj, buffer)
    buffer.seek(0)
    back = BACKEND.load(buffer)
    assert {k: back[k] for k in ("format", "n", "p", "none", "flag")} == {
        k: obj[k] for k in ("format", "n", "p", "none", "flag")
    }
    assert isinstance(back["rows"][0]["a"], jax.Array)
    np.testing.assert_array_equal(back["rows"][0]["a"], np.arange(3))
    assert back["rows"][0]["a"].dtype == np.int32
    assert back["rows"][1] == [1, "two"]
    assert back["mask"].dtype == np.bool_
    assert isinstance(back["sparse"], jsparse.BCOO)
    np.testing.assert_array_equal(back["sparse"].todense(), bcoo.todense())
    for bad, message in [({1: 2}, "keys must be strings"), ({"a/b": 1}, "without '/'"), ({"x": {1, 2}}, "a set")]:
        with pytest.raises(TypeError, match=message):
            BACKEND.dump(bad, io.BytesIO())


def test_load_model_state_checks_everything_first() -> None:
    with BACKEND.session():
        model = BACKEND.build("lenet", 64, 10, 0)
        before = BACKEND.model_state(model)
        other = BACKEND.model_state(BACKEND.build("lenet", 32, 10, 1))
        with pytest.raises(ValueError, match=r"'layers.0.kernel' is ArrayImpl float32\[32, 300\]"):
            BACKEND.load_model_state(model, other)
        with pytest.raises(ValueError, match="another architecture"):
            BACKEND.load_model_state(model, BACKEND.model_state(BACKEND.build("cnn", 64, 10, 0)))
    after = BACKEND.model_state(model)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value)


def test_training_step_is_compiled_once_for_every_model_of_a_shape() -> None:
    data = digits()
    index = np.arange(7)  # a batch shape no other test uses
    with BACKEND.session():
        arrays = BACKEND.arrays(data)
        before = _train_step._cache_size()
        models = [BACKEND.build("lenet", 64, 10, seed) for seed in (1, 2)]
        restored = BACKEND.build("lenet", 64, 10, 3)  # values read back from a file
        buffer = io.BytesIO()
        BACKEND.dump(BACKEND.model_state(models[0]), buffer)
        buffer.seek(0)
        BACKEND.load_model_state(restored, BACKEND.load(buffer))
        for model in [*models, restored]:
            for lr in (1e-3, 1e-4):  # a fresh optimizer each round, as the runner makes; a new rate
                optimizer = BACKEND.optimizer(model)
                start = model.layers[0].kernel.get_value()
                BACKEND.train_step(model, optimizer, arrays, index, lr)
                BACKEND.train_step(model, optimizer, arrays, index, lr / 10)
                assert not np.array_equal(model.layers[0].kernel.get_value(), start)
        assert _train_step._cache_size() == before + 1


def test_training_steps_keep_masks_rewind_points_and_pruned_zeros() -> None:
    data = digits()
    with BACKEND.session():
        arrays = BACKEND.arrays(data)
        model = BACKEND.build("cnn", 64, 10, 0)
        pruner = runner._pruner(BACKEND, model, 0.5)
        pruner.prune_and_rewind()
        layers = BACKEND.prunable_layers(model)
        masks = [np.asarray(layer.kernel_mask.get_value()) for layer in layers]
        optimizer = BACKEND.optimizer(model)
        BACKEND.train_step(model, optimizer, arrays, np.arange(60), 1e-2)
        pruner.set_rewind_point()  # late rewinding, between two steps
        rewind = [np.asarray(layer.kernel.get_value()) for layer in layers]
        for first in (60, 120):
            BACKEND.train_step(model, optimizer, arrays, np.arange(first, first + 60), 1e-2)
        for layer, mask, point in zip(layers, masks, rewind, strict=True):
            kernel = np.asarray(layer.kernel.get_value())
            np.testing.assert_array_equal(layer.kernel_mask.get_value(), mask)
            np.testing.assert_array_equal(layer.kernel_rewind.get_value(), point)
            assert (kernel[~mask] == 0).all()
            assert not np.array_equal(kernel, point)  # the kept weights did train
        assert int(optimizer.optimizer.step.get_value()) == 3


def test_session_runs_on_the_cpu_and_restores_the_default_device() -> None:
    outside = jax.config.jax_default_device
    with BACKEND.session():
        assert BACKEND.build("lenet", 8, 3, 0).layers[0].kernel.get_value().devices() == {jax.devices("cpu")[0]}
        assert jax.config.jax_default_device == jax.devices("cpu")[0]
    assert jax.config.jax_default_device == outside


def _command(out: pathlib.Path) -> list[str]:
    return lotto_command(out, "--backend", "jax", *_options("lenet"))


def test_killed_run_resumes_to_the_uninterrupted_results(
    tmp_path: pathlib.Path, runs: Callable[[str], dict[str, Any]]
) -> None:
    killed = tmp_path / "killed"
    kill_after_round_1(_command(killed))
    state = _load(killed / "state_seed0.jax.state")
    # killed mid-way, after a finished round (the next one takes seconds)
    assert state["round"] == 1 < ROUNDS["lenet"]
    assert not (killed / "results.json").exists()

    done = subprocess.run(
        _command(killed), capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"seed 0: resuming after round {state['round']}" in done.stdout
    assert "seed 0 round 0/" not in done.stdout  # finished rounds are not trained again
    assert not list(killed.glob(".lotto-tmp-*"))

    uninterrupted = runs("lenet")["out"]  # the same options, in one go
    assert (killed / "results.json").read_text() == (uninterrupted / "results.json").read_text()
    assert (killed / "results.csv").read_text() == (uninterrupted / "results.csv").read_text()
    final = [_load(d / "state_seed0.jax.state") for d in (killed, uninterrupted)]
    for name, value in final[0]["ticket"]["model"].items():
        np.testing.assert_array_equal(value, final[1]["ticket"]["model"][name], err_msg=name)


def test_without_jax_the_backend_says_what_to_install(tmp_path: pathlib.Path) -> None:
    script = (
        "import sys; sys.modules['jax'] = None;"  # as if jax were not installed
        "from lotto_backends.experiment.cli import main;"
        f"main(['--backend', 'jax', '--dataset', 'digits', '--out', {str(tmp_path / 'out')!r}])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(), check=False
    )
    assert done.returncode == 2
    assert "--backend jax needs jax, which is not installed: pip install 'lotto[jax,experiment]'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_folder_of_a_torch_run_is_not_reused_by_jax(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    run_lotto(tmp_path, "--backend", "torch", *_options("lenet"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["--backend", "jax", *_options("lenet"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings (backend 'torch' there, 'jax' now)" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_pruning_at_initialization_on_jax_keeps_the_tickets_counts(tmp_path: pathlib.Path) -> None:
    from tests.experiment.helpers import run_lotto

    for method in ("snip", "grasp", "synflow"):
        results = run_lotto(tmp_path / method, "--backend", "jax", "--rounds", "1", "--rate", "0.5", "--method", method)
        record = results["runs"]["0"][1]
        assert record[method]["kept"] == record["ticket"]["kept"]
        assert 0.05 < record[method]["es_test_accuracy"] <= 1.0


def test_gradual_pruning_on_jax_keeps_pruned_weights_at_zero(tmp_path: pathlib.Path) -> None:
    """Pruned between two steps of one Adam, the weights stay 0, and the run reaches the
    ticket's counts."""
    from tests.experiment.helpers import assert_adam_keeps_what_a_prune_removed, run_lotto

    assert_adam_keeps_what_a_prune_removed(BACKEND)
    results = run_lotto(tmp_path, "--backend", "jax", "--rounds", "1", "--rate", "0.5", "--schedule", "gradual")
    record = results["runs"]["0"][1]
    assert record["gradual"]["kept"] == record["ticket"]["kept"]


def test_the_learning_rate_of_each_step_is_used() -> None:
    data = digits()
    with BACKEND.session():
        arrays = BACKEND.arrays(data)
        model = BACKEND.build("lenet", 64, 10, 0)
        before = np.asarray(model.layers[0].kernel.get_value())
        optimizer = BACKEND.optimizer(model)
        BACKEND.train_step(model, optimizer, arrays, np.arange(60), 0.0)
        np.testing.assert_array_equal(np.asarray(model.layers[0].kernel.get_value()), before)
        BACKEND.train_step(model, optimizer, arrays, np.arange(60), 1e-2)
        assert not np.array_equal(np.asarray(model.layers[0].kernel.get_value()), before)


def test_research_options_run_on_jax(tmp_path: pathlib.Path) -> None:
    """``--retrain lr-rewind --instability`` over two seeds: learning-rate rewinding keeps
    the trained weights, the barriers and overlaps are recorded, and the versions are JAX's."""
    out = tmp_path / "out"
    options = ["--backend", "jax", "--rounds", "1", "--seeds", "2", "--retrain", "lr-rewind"]
    results = run_lotto(out, *options, "--instability", "--rewind-step", "3")
    assert {"jax", "flax", "optax"} <= set(results["versions"])
    assert results["settings"]["lr_schedule"] == "step"
    for seed in ("0", "1"):
        for record in results["runs"][seed]:
            assert set(record["instability"]) == {"0", "3"}
            for path in record["instability"].values():
                values = path["values"]
                assert len(values) == runner.INSTABILITY_POINTS
                assert path["barrier"] == max(values) - (values[0] + values[-1]) / 2
        ticket = results["runs"][seed][1]
        assert (
            ticket["overlap_previous_round"]["jaccard"]
            == ticket["ticket"]["kept"] / results["runs"][seed][0]["ticket"]["kept"]
        )
    assert 0 < results["summary"][1]["overlap_between_seeds"]["jaccard"]["mean"] < 1
    assert (out / "overlap_and_instability.png").exists()
