"""The research records of ``lotto``: versions, protocol and per-layer sparsity in
results.json, the overlap of the ticket's masks with the previous round's and between
seeds, ``--instability`` reproduced from the library call, and their table and plot."""

from __future__ import annotations

import itertools

import matplotlib.image
import pytest
import torch

from lotto_backends.experiment import runner
from lotto_backends.experiment.cli import PRESETS
from lotto_backends.experiment.torch_backend import BACKEND
from lotto_backends.experiment.training import train
from lotto_backends.torch import instability
from lotto_core import mask_overlap

from .helpers import dense_round_by_hand, run_lotto

QUICK_LR = PRESETS["quick"]["lr"]
"""The learning rate of the runs here (the quick preset's)."""


def test_results_record_versions_protocol_and_per_layer_sparsity(tmp_path):
    results = run_lotto(tmp_path / "out", "--rounds", "2")
    assert set(results["versions"]) == {"lotto", "python", "numpy", "scipy", "torch"}
    assert results["versions"]["torch"] == torch.__version__
    protocol = results["protocol"]
    assert protocol["steps_per_training"] == 22
    assert list(protocol["per_layer_rates"].values()) == [0.5, 0.25]
    assert "Adam" in protocol["optimizer"]
    assert "Glorot" in protocol["initializer"]
    assert protocol["learning_rate"] == f"{QUICK_LR:g} throughout"
    for record in results["runs"]["0"]:
        for run in ("ticket", "reinit", "random"):
            if record[run] is not None:
                layers = record[run]["layers"]
                assert len(layers) == 3
                assert sum(kept for kept, _ in layers.values()) == record[run]["kept"]
                assert [total for _, total in layers.values()] == [64 * 300, 300 * 100, 100 * 10]


def test_the_overlap_with_the_previous_round_and_between_seeds(tmp_path, capsys):
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "2", "--seeds", "3")
    summary = results["summary"]
    for round_ in (1, 2):
        for seed in ("0", "1", "2"):
            record, before = results["runs"][seed][round_], results["runs"][seed][round_ - 1]
            # IMP never revives a weight: this round's mask lies inside the last one's
            assert record["overlap_previous_round"]["jaccard"] == record["ticket"]["kept"] / before["ticket"]["kept"]
    masks = {
        seed: runner.unpack_masks(runner.read_state(runner.state_path(out, seed, BACKEND), BACKEND)["ticket_masks"][2])
        for seed in (0, 1, 2)
    }
    pairs = [mask_overlap(masks[a], masks[b]).jaccard for a, b in itertools.combinations(range(3), 2)]
    between = summary[2]["overlap_between_seeds"]
    assert between["jaccard"]["mean"] == pytest.approx(sum(pairs) / 3)
    assert (between["jaccard"]["min"], between["jaccard"]["max"]) == (min(pairs), max(pairs))
    density = summary[2]["remaining"]
    assert between["random_expectation"] == pytest.approx(density / (2 - density), rel=0.05)
    assert summary[0]["overlap_between_seeds"]["jaccard"]["mean"] == 1.0  # dense: everything kept
    printed = capsys.readouterr().out
    assert "jaccard between seeds" in printed
    image = matplotlib.image.imread(out / "overlap_and_instability.png")
    assert image.ndim == 3


def test_instability_in_the_command_is_the_library_call(tmp_path, capsys):
    k = 5
    out = tmp_path / "out"
    results = run_lotto(out, "--rounds", "1", "--instability", "--rewind-step", str(k))
    for record in results["runs"]["0"]:
        assert set(record["instability"]) == {"0", str(k)}
        for path in record["instability"].values():
            values = path["values"]
            assert len(values) == runner.INSTABILITY_POINTS
            assert path["barrier"] == max(values) - (values[0] + values[-1]) / 2
    # the dense round's analysis from step k, again by hand
    with dense_round_by_hand(BACKEND, k) as (model, pruner, arrays, schedule):
        pruner.rewind()
        result = instability(
            model,
            lambda m, order: train(BACKEND, m, arrays, schedule, seed=order, start_step=k),
            lambda m: 1.0 - BACKEND.evaluate(m, arrays, "test")[1],
            points=runner.INSTABILITY_POINTS,
            data_orders=[runner.derive_seed(0, runner._INSTABILITY, j) for j in (0, 1)],
        )
    assert list(result.values) == results["runs"]["0"][0]["instability"][str(k)]["values"]
    assert (
        results["summary"][1]["instability"][str(k)]["barrier"]["mean"]
        == (results["runs"]["0"][1]["instability"][str(k)]["barrier"])
    )
    assert "barrier from step 5" in capsys.readouterr().out


def test_instability_and_overlaps_survive_a_resume(tmp_path):
    short, full = tmp_path / "short", tmp_path / "full"
    run_lotto(short, "--rounds", "1", "--instability", "--seeds", "2")
    assert run_lotto(short, "--rounds", "2", "--instability", "--seeds", "2") == run_lotto(
        full, "--rounds", "2", "--instability", "--seeds", "2"
    )
