"""Short real runs on scikit-learn's digits: the files written, the figures in them, the
controls' sparsity, late rewinding, several seeds, and the sparse model."""

from __future__ import annotations

import csv
import json
import statistics

import matplotlib.image
import numpy as np
import pytest
import torch

from lotto_backends.experiment import runner
from lotto_backends.experiment.cli import PRESETS, main
from lotto_backends.experiment.data import digits
from lotto_backends.experiment.results import FIGURES
from lotto_backends.experiment.torch_backend import BACKEND
from lotto_backends.experiment.training import train
from lotto_core import prune_count
from lotto_core.pruner import type_code

from .helpers import TINY, assert_adam_keeps_what_a_prune_removed, run_lotto

RUNS = ("ticket", "reinit", "random")

QUICK_LR = PRESETS["quick"]["lr"]
"""The learning rate of the runs here (the quick preset's)."""


def _expected_kept(totals, rate, rounds):
    """Kept weights after ``rounds`` rounds: hidden group at ``rate``, output at ``rate / 2``."""
    kept = 0
    for total, p in zip(totals, (rate, rate / 2), strict=True):
        remaining = total
        for _ in range(rounds):
            remaining -= prune_count(p, remaining)
        kept += remaining
    return kept


def test_outputs_and_their_fields(tmp_path, capsys):
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "2", "--rate", "0.5")
    printed = capsys.readouterr().out
    for round_ in range(3):
        assert f"seed 0 round {round_}/2: " in printed
    assert "random reinit" in printed
    assert "random pruning" in printed
    assert "sparse model" in printed
    assert results["format"] == "lotto.results/2"
    assert results["settings"]["rounds"] == 2
    assert results["settings"]["rate"] == 0.5
    assert results["dataset"]["name"] == "digits"
    assert results["seeds"] == [0]
    summary = results["summary"]
    assert [row["round"] for row in summary] == [0, 1, 2]
    assert summary[0]["reinit"] is None
    assert summary[0]["random"] is None
    assert summary[0]["ticket"] == results["dense"]
    totals = (64 * 300 + 300 * 100, 100 * 10)
    for row in summary:
        assert row["total"] == sum(totals)
        assert row["kept"] == _expected_kept(totals, 0.5, row["round"])
        assert row["remaining"] == row["kept"] / row["total"]
        for run in RUNS if row["round"] else ("ticket",):
            assert set(row[run]) == set(FIGURES)
            for stats in row[run].values():
                assert stats["std"] == 0.0
                assert stats["min"] == stats["mean"] == stats["max"]
            assert 0.1 < row[run]["es_test_accuracy"]["mean"] <= 1.0
    # the CSV holds every figure of every run
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 + 3 * 2
    record = results["runs"]["0"][2]["random"]
    match = next(r for r in rows if r["round"] == "2" and r["run"] == "random")
    assert {k: float(match[k]) for k in FIGURES} == {k: float(record[k]) for k in FIGURES}
    assert int(match["kept"]) == record["kept"] == summary[2]["kept"]
    # the plot is a real image
    image = matplotlib.image.imread(out / "accuracy_vs_sparsity.png")
    assert image.ndim == 3
    assert image.shape[0] > 300
    assert image.shape[1] > 800
    # the sparse model and its size against the dense model
    size = results["sparse_models"]["0"]
    assert size["file"] == "sparse_model_seed0.pt"
    assert (out / size["file"]).stat().st_size == size["file_bytes"]
    assert size["dense_bytes"] == 4 * (sum(totals) + 300 + 100 + 10)
    # CSR: a float32 value and an int32 column index per kept weight, int32 row pointers, dense biases
    kept, rows_plus_one, biases = summary[2]["kept"], (300 + 1) + (100 + 1) + (10 + 1), 300 + 100 + 10
    assert size["sparse_bytes"] == 8 * kept + 4 * rows_plus_one + 4 * biases


def test_sparse_model_predicts_like_the_final_ticket(tmp_path):
    out = tmp_path / "out"
    run_lotto(out, "--rounds", "2")
    sparse = torch.load(out / "sparse_model_seed0.pt", weights_only=False)
    state = runner.read_state(out / "state_seed0.torch.state", BACKEND)
    ticket = BACKEND.build("lenet", 64, 10, 0)
    ticket.load_state_dict(state["ticket"]["model"])
    x = torch.from_numpy(digits().x_test)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), ticket(x), rtol=1e-5, atol=1e-5)


def test_controls_have_the_tickets_sparsity_but_other_masks(tmp_path):
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "3", "--rate", "0.3")
    for record in results["runs"]["0"][1:]:
        assert record["ticket"]["kept"] == record["reinit"]["kept"] == record["random"]["kept"]
    state = runner.read_state(out / "state_seed0.torch.state", BACKEND)
    ticket, random = state["ticket"]["pruner"], state["random"]["pruner"]
    assert [g["config"]["type"] for g in random["groups"]] == [type_code("RandomPruneGroup")] * 2
    assert [g["config"]["p"] for g in random["groups"]] == [g["config"]["p"] for g in ticket["groups"]] == [0.3, 0.15]
    for g_ticket, g_random in zip(ticket["groups"], random["groups"], strict=True):
        masks_t = [m for layer in g_ticket["layers"] for m in layer["masks"].values()]
        masks_r = [m for layer in g_random["layers"] for m in layer["masks"].values()]
        assert sum(int(m.sum()) for m in masks_t) == sum(int(m.sum()) for m in masks_r)
        assert any(not torch.equal(a, b) for a, b in zip(masks_t, masks_r, strict=True))


def test_random_reinit_has_the_tickets_masks_on_a_fresh_init(tmp_path):
    settings = runner.Settings("torch", "digits", "lenet", 1, 0.5, 0, 0, 1, 1, 60, QUICK_LR)
    data = digits()
    with BACKEND.session():
        seed = runner._SeedExperiment(settings, 0, data, BACKEND, BACKEND.arrays(data), tmp_path, runner.Reporter())
        seed.ticket_pruner.prune_and_rewind()
        model, pruner = seed._reinit(1)
    init = BACKEND.build("lenet", 64, 10, runner.derive_seed(0, runner._REINIT, 1))
    for fresh, ticket, built in zip(
        BACKEND.prunable_layers(model), BACKEND.prunable_layers(seed.ticket), BACKEND.prunable_layers(init), strict=True
    ):
        assert torch.equal(fresh.weight_mask, ticket.weight_mask)
        assert torch.equal(fresh.weight, built.weight * ticket.weight_mask)
        assert not torch.equal(fresh.weight, ticket.weight)
    assert pruner.report().kept == seed.ticket_pruner.report().kept


def test_late_rewinding_rewinds_to_the_weights_after_k_steps(tmp_path):
    out, k = tmp_path / "out", 7
    run_lotto(out, "--rounds", "1", "--rewind-step", str(k))
    state = runner.read_state(out / "state_seed0.torch.state", BACKEND)
    data = digits()
    settings = runner.Settings("torch", "digits", "lenet", 1, 0.5, k, 0, 1, 1, 60, QUICK_LR)
    reference, captured = BACKEND.build("lenet", 64, 10, runner.derive_seed(0, runner._INIT)), {}

    def capture(step):
        if step == k:
            captured.update({n: t.detach().clone() for n, t in reference.named_parameters()})

    with BACKEND.session():
        train(
            BACKEND,
            reference,
            BACKEND.arrays(data),
            settings.training(data),
            seed=runner.derive_seed(0, 1, 0),
            after_step=capture,
        )
    initial = BACKEND.build("lenet", 64, 10, runner.derive_seed(0, runner._INIT))
    where = {0: (0, 0), 2: (0, 1), 4: (1, 0)}  # Sequential index -> (group, layer): hidden group, output group
    for index, (group, layer) in where.items():
        rewind = state["ticket"]["pruner"]["groups"][group]["layers"][layer]["rewind"]
        torch.testing.assert_close(rewind["weight"], captured[f"{index}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(rewind["bias"], captured[f"{index}.bias"], rtol=0, atol=0)
        assert not torch.equal(rewind["weight"], initial[index].weight)
    # the random-pruning control shares the ticket's rewind point
    random_rewind = state["random"]["pruner"]["groups"][0]["layers"][0]["rewind"]["weight"]
    assert torch.equal(random_rewind, captured["0.weight"])


@pytest.mark.parametrize("model", ["lenet", "cnn"])
def test_a_short_run_of_each_model_learns(tmp_path, model):
    results = run_lotto(tmp_path / model, "--model", model, "--rounds", "1", "--epochs", "3")
    assert results["settings"]["model"] == model
    assert results["dense"]["es_test_accuracy"]["mean"] > 0.5  # chance is 0.1
    assert results["summary"][1]["ticket"]["es_test_accuracy"]["mean"] > 0.5


def test_several_seeds_give_mean_and_spread(tmp_path, capsys):
    results = run_lotto(tmp_path / "out", "--rounds", "1", "--seeds", "2", "--seed", "5")
    assert results["seeds"] == [5, 6]
    assert sorted(results["sparse_models"]) == ["5", "6"]
    assert (tmp_path / "out" / "sparse_model_seed6.pt").exists()
    values = [results["runs"][s][1]["reinit"]["es_test_accuracy"] for s in ("5", "6")]
    stats = results["summary"][1]["reinit"]["es_test_accuracy"]
    assert stats["mean"] == statistics.fmean(values)
    assert stats["std"] == statistics.stdev(values)
    assert (stats["min"], stats["max"]) == (min(values), max(values))
    assert results["runs"]["5"] != results["runs"]["6"]
    table = capsys.readouterr().out
    assert "mean±std over 2 seeds" in table
    assert "±" in table.split("mean±std")[1]


def test_seeds_repeat_exactly_and_differ_from_each_other(tmp_path):
    first = run_lotto(tmp_path / "a", "--rounds", "1", "--seed", "3")
    again = run_lotto(tmp_path / "b", "--rounds", "1", "--seed", "3")
    other = run_lotto(tmp_path / "c", "--rounds", "1", "--seed", "4")
    assert first == again
    assert first["runs"]["3"] != other["runs"]["4"]


def test_more_rounds_continue_a_finished_run(tmp_path, capsys):
    short, full = tmp_path / "short", tmp_path / "full"
    run_lotto(short, "--rounds", "1")
    extended = run_lotto(short, "--rounds", "2")
    assert "seed 0: resuming after round 1" in capsys.readouterr().out
    assert extended == run_lotto(full, "--rounds", "2")
    again = run_lotto(full, "--rounds", "2")  # nothing left to do: the same results
    assert "all 2 rounds already finished" in capsys.readouterr().out
    assert again == extended
    assert main([*TINY, "--rounds", "1", "--out", str(full)]) == 2
    assert "has 2 rounds finished, more than --rounds 1" in capsys.readouterr().err


def test_torch_session_restores_global_settings():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with BACKEND.session():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    generator_state = torch.get_rng_state()
    BACKEND.build("cnn", 40, 10, 1)
    assert torch.equal(torch.get_rng_state(), generator_state)  # building draws from its own generator only


def test_a_users_npz_runs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 2, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=1) > 0).astype(np.int64)  # a rule a network can learn
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    results = main(
        [f"--dataset={path}", "--model", "cnn", "--rounds", "1", "--epochs", "5", "--out", str(tmp_path / "o")]
    )
    assert results == 0
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["dataset"] | {"fingerprint": None} == {
        "name": "mine.npz",
        "n_train": 270,
        "n_val": 30,
        "n_test": 100,
        "n_features": 16,
        "n_classes": 2,
        "fingerprint": None,
    }
    assert saved["dense"]["final_test_accuracy"]["mean"] > 0.7


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_a_pruning_at_initialization_method_runs_next_to_the_ticket(tmp_path, capsys, method):
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "2", "--rate", "0.5", "--method", method)
    label = {"snip": "SNIP at init", "grasp": "GraSP at init", "synflow": "SynFlow at init"}[method]
    assert label in capsys.readouterr().out
    assert results["settings"]["method"] == method
    for round_, row in enumerate(results["summary"]):
        if round_ == 0:
            assert row[method] is None
            continue
        assert 0.05 < row[method]["es_test_accuracy"]["mean"] <= 1.0
        record = results["runs"]["0"][round_]
        assert record[method]["kept"] == record["ticket"]["kept"]  # pruned at init to the ticket's sparsity
    with (out / "results.csv").open() as file:
        assert sum(r["run"] == method for r in csv.DictReader(file)) == 2


def test_the_scores_at_initialization_are_the_methods_formulas():
    from lotto_core.strategy import Where

    model = BACKEND.build("lenet", 64, 10, seed=1)
    dataset = digits()
    arrays = BACKEND.arrays(dataset)
    index = np.arange(120)
    layers = BACKEND.prunable_layers(model)
    x, y = arrays.splits["train"]
    weights = [layer.weight for layer in layers]
    snip = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x[:120]), y[:120]), weights)
    cooled = torch.nn.functional.cross_entropy(model(x[:120]) / 200.0, y[:120])  # GraSP's temperature
    grads = torch.autograd.grad(cooled, weights, create_graph=True)
    hg = torch.autograd.grad(sum((g * g.detach()).sum() for g in grads), weights)
    for method, want in (("snip", (layers[0].weight * snip[0]).abs()), ("grasp", layers[0].weight * hg[0])):
        score = BACKEND.score(model, method, arrays, index)
        got = score.source(layers[0].weight.detach(), Where(layers[0], "weight", 0, 0)).full()
        assert torch.allclose(got, want.detach(), rtol=1e-5, atol=1e-7), method


def test_gradual_pruning_runs_next_to_the_ticket(tmp_path, capsys):
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "2", "--rate", "0.5", "--schedule", "gradual")
    assert "gradual pruning" in capsys.readouterr().out
    assert results["settings"]["schedule"] == "gradual"
    assert results["summary"][0]["gradual"] is None
    for record in results["runs"]["0"][1:]:
        assert record["gradual"]["kept"] == record["ticket"]["kept"]  # pruned to the ticket's sparsity
        assert 0.05 < record["gradual"]["es_test_accuracy"] <= 1.0
    with (out / "results.csv").open() as file:
        assert sum(r["run"] == "gradual" for r in csv.DictReader(file)) == 2


def test_gradual_steps_span_the_training():
    assert runner.gradual_steps(672) == (67, 403, 16)
    assert runner.gradual_steps(2) == (1, 2, 1)
    for steps in range(2, 300):
        begin, end, frequency = runner.gradual_steps(steps)
        assert 1 <= begin < end <= steps
        assert frequency >= 1


def test_gradual_pruning_keeps_pruned_weights_at_zero_while_adam_trains():
    assert_adam_keeps_what_a_prune_removed(BACKEND)
