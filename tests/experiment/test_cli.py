"""The command line: options and presets, and every bad input stopped with a clear
message before any training (the output folder is not even created)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from lotto_backends.experiment import backend as backend_module
from lotto_backends.experiment import cli
from lotto_backends.experiment.backend import Backend, BackendError, load_backend
from lotto_backends.experiment.cli import PRESETS, _settings, build_parser, main

from .helpers import TINY, run_lotto


def _fails(capsys, tmp_path, *options):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([*options, "--out", str(out)])
    assert exit_info.value.code == 2
    assert not out.exists()
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate", "1.5"], r"argument --rate: must be in \(0, 1\).*got 1.5"),
        (["--rate", "0"], r"argument --rate: must be in \(0, 1\)"),
        (["--rate", "half"], r"argument --rate: expected a number, got 'half'"),
        (["--rounds", "0"], r"argument --rounds: must be at least 1, got 0"),
        (["--epochs", "2.5"], r"argument --epochs: expected a whole number, got '2.5'"),
        (["--lr", "-1"], r"argument --lr: must be a positive number, got -1"),
        (["--lr", "nan"], r"argument --lr: must be a positive number"),
        (["--seed", "-3"], r"argument --seed: must be at least 0"),
        (["--model", "resnet"], r"argument --model: invalid choice: 'resnet'"),
        (["--backend", "tensorflow"], r"argument --backend: invalid choice: 'tensorflow'"),
        (["--preset", "huge"], r"argument --preset: invalid choice: 'huge'"),
        (["--dataset", "cifar10"], r"--dataset 'cifar10' is unknown: expected one of mnist, mnist1d, digits"),
        (["--dataset", "nothere.npz"], r"--dataset 'nothere.npz': no such file"),
        ([*TINY, "--rewind-step", "23"], r"--rewind-step must be below the 22 steps of one training"),
        (["--schedule", "cubic"], r"argument --schedule: invalid choice: 'cubic'"),
        (["--retrain", "rewinding"], r"argument --retrain: invalid choice: 'rewinding'"),
        (["--lr-schedule", "cosine"], r"argument --lr-schedule: invalid choice: 'cosine'"),
    ],
)
def test_bad_options_stop_before_training(capsys, tmp_path, options, message):
    err = _fails(capsys, tmp_path, *options)
    assert "usage: lotto" in err
    assert re.search(message, err), err


def test_bad_npz_stops_before_training(capsys, tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((10, 3)), y_train=np.zeros(10, dtype=int))
    err = _fails(capsys, tmp_path, "--dataset", str(path))
    assert "lacks x_test, y_test" in err


def test_cnn_on_too_short_inputs(capsys, tmp_path):
    path = tmp_path / "short.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((20, 2)), y_train=np.arange(20) % 2, x_test=rng.random((4, 2)), y_test=[0, 1] * 2)
    err = _fails(capsys, tmp_path, "--dataset", str(path), "--model", "cnn")
    assert "--model cnn needs inputs of at least 3 features, got 2" in err


def test_out_that_is_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "file")])
    assert f"--out {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_presets_and_explicit_options():
    parser = build_parser()
    settings, out = _settings(parser.parse_args([]))
    quick = PRESETS["quick"]
    assert (settings.rounds, settings.rate, settings.epochs, settings.seeds) == (
        quick["rounds"],
        quick["rate"],
        quick["epochs"],
        quick["seeds"],
    )
    assert (settings.dataset, settings.model, settings.batch_size, settings.lr) == ("mnist", "lenet", 60, 3e-3)
    assert settings.backend == "torch"
    assert str(out) == "lotto-results"
    paper, out = _settings(parser.parse_args(["--preset", "paper", "--rounds", "3"]))
    assert paper.rounds == 3
    assert paper.seeds == PRESETS["paper"]["seeds"] > 1
    assert paper.rate == 0.2
    assert str(out) == "lotto-results-paper"
    assert "preset paper:" in parser.format_help()


def test_backends_are_found_by_name(monkeypatch):
    torch_backend = load_backend("torch")
    assert isinstance(torch_backend, Backend)
    assert torch_backend.name == "torch"
    with pytest.raises(BackendError, match=r"--backend 'mxnet' is unknown: expected one of torch, jax"):
        load_backend("mxnet")
    monkeypatch.setattr(backend_module, "_module", lambda name: f"lotto_backends.experiment.no_{name}_backend")
    with pytest.raises(BackendError, match=r"--backend jax: the experiment has no jax backend yet"):
        load_backend("jax")


def test_a_folder_of_another_run_is_refused_and_left_as_it_was(capsys, tmp_path):
    out = tmp_path / "out"
    run_lotto(out, "--rounds", "1")
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    for options, changed in [
        (["--rate", "0.25"], "rate 0.5 there, 0.25 now"),
        (["--seed", "3"], "seeds_from 0 there, 3 now"),
        (["--lr", "0.01"], "lr 0.003 there, 0.01 now"),
    ]:
        assert main([*TINY, "--rounds", "1", *options, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} holds a run with other settings ({changed}); use another --out" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_state_with_other_settings_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    run_lotto(out, "--rounds", "1")
    (out / "run.json").unlink()  # a folder from before run.json: the state itself is checked
    state = out / "state_seed0.torch.state"
    before = state.read_bytes()
    assert main([*TINY, "--rounds", "1", "--rate", "0.25", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "was written with other settings (rate 0.5 there, 0.25 now)" in err
    assert f"delete {state}" in err
    assert state.read_bytes() == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_a_damaged_state_stops_the_run_naming_the_file(capsys, tmp_path, damage):
    out = tmp_path / "out"
    run_lotto(out, "--rounds", "1")
    state = out / "state_seed0.torch.state"
    data = bytearray(state.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10  # one bit, inside a weight
    elif damage == "truncate":
        data = data[: len(data) - 100]
    else:
        data = bytearray(b"PK\x03\x04" + bytes(data[40:]))
    state.write_bytes(bytes(data))
    assert main([*TINY, "--rounds", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the saved state {state}" in err
    assert "Traceback" not in err


def test_ctrl_c_says_how_to_continue(capsys, tmp_path, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    assert main([*TINY, "--rounds", "1", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "run the same command again to continue" in err
    assert "Traceback" not in err


def test_importing_the_package_imports_no_framework():
    script = (
        "import sys, lotto_backends.experiment, lotto_backends.experiment.cli;"
        "print(sorted(m for m in ('torch', 'jax', 'flax', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unreadable_state_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "state_seed0.torch.state").write_bytes(b"not a state")
    assert main([*TINY, "--rounds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the saved state {out / 'state_seed0.torch.state'}" in err
    assert not (out / "results.json").exists()
