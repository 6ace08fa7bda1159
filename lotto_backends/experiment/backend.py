"""What the experiment needs from a framework, and how a backend is found.

The IMP loop (``runner``), the training loop (``training``) and the reports are written
once; a backend is one module, ``<name>_backend.py`` in this package, whose ``BACKEND``
object implements :class:`Backend`. Models are the framework's own objects (a
``torch.nn.Module``, an ``nnx.Module``): the loop only hands them back to the backend
and prunes their layers through the core's ``Pruner``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np

from lotto_core import Instability, PrunableLayer
from lotto_core.strategy import Score

from .data import Dataset

__all__ = ["BACKENDS", "Backend", "BackendError", "load_backend"]

BACKENDS = ("torch", "jax")
"""The ``--backend`` choices; ``torch`` is the default."""

_INSTALL = {"torch": "torch,experiment", "jax": "jax,experiment"}


class BackendError(RuntimeError):
    """A backend that cannot be used here, with what to do about it."""


@runtime_checkable
class Backend(Protocol):
    """One framework's part of the experiment.

    Every method is deterministic given its arguments: the loop derives every seed
    from the experiment's seed, so a resumed run repeats the interrupted one exactly.
    """

    name: str
    suffix: str
    """File-name suffix of the files that ``dump`` writes (``".pt"``)."""
    load_hint: str
    """How to load the saved sparse model, printed as the command's last line."""
    rank: int
    """This process's rank in a data-parallel run (torchrun), else 0: only rank 0 writes
    files and prints."""

    def session(self) -> AbstractContextManager[None]:
        """A context in which runs are deterministic (and, where it matters, single-threaded),
        restoring the framework's global settings on exit."""
        ...

    def arrays(self, dataset: Dataset) -> Any:
        """The dataset's splits as the framework's arrays, made once per experiment."""
        ...

    def build(self, model: str, n_features: int, n_classes: int, seed: int) -> Any:
        """A new ``model`` (one of ``models.MODELS``) with prunable layers, Gaussian Glorot
        weights and zero biases drawn from ``seed``; no global random state is used."""
        ...

    def prunable_layers(self, model: Any) -> Sequence[PrunableLayer]:
        """The model's prunable layers in order; the last one is the output layer."""
        ...

    def copy(self, model: Any) -> Any:
        """An independent copy of ``model`` with its masks and rewind points."""
        ...

    def optimizer(self, model: Any) -> Any:
        """A fresh Adam optimizer over the model's parameters (its learning rate is given
        at every step)."""
        ...

    def train_step(self, model: Any, optimizer: Any, arrays: Any, index: np.ndarray, lr: float) -> None:
        """One step of cross-entropy training on the training samples ``index`` at
        learning rate ``lr``."""
        ...

    def evaluate(self, model: Any, arrays: Any, split: str) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``split`` (``"val"`` or ``"test"``)."""
        ...

    def score(self, model: Any, method: str, arrays: Any, index: np.ndarray) -> Score:
        """The score of a pruning-at-initialization method (``"snip"``, ``"grasp"``: the
        loss on the training samples ``index``; ``"synflow"``: no data) on ``model`` as
        it is now."""
        ...

    def model_state(self, model: Any) -> Any:
        """Everything ``load_model_state`` needs to restore the model's values."""
        ...

    def load_model_state(self, model: Any, state: Any) -> None:
        """Restore values saved by ``model_state`` into a model built the same way."""
        ...

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        """Write ``obj`` (nested dicts and lists of numbers, strings and framework arrays)."""
        ...

    def load(self, file: IO[bytes]) -> Any:
        """Read what ``dump`` wrote."""
        ...

    def instability(
        self, model: Any, train: Any, evaluate: Any, *, points: int, data_orders: Sequence[int]
    ) -> Instability:
        """The adapter's ``instability``: two copies of ``model`` trained by
        ``train(copy, order)``, ``evaluate`` along the line between them."""
        ...

    def versions(self) -> dict[str, str]:
        """The versions of the framework's packages, for ``results.json``."""
        ...

    def sparsify(self, model: Any) -> tuple[Any, int, int]:
        """The ``sparsify()`` model of a pruned ``model``, the bytes of its stored arrays,
        and the bytes of the dense model's parameters."""
        ...


def _module(name: str) -> str:
    return f"{__package__}.{name}_backend"


def load_backend(name: str) -> Backend:
    """The backend that ``--backend name`` chooses.

    Raises
    ------
    BackendError
        If ``name`` is not a backend, its module is not written yet, or its framework is
        not installed.
    """
    if name not in BACKENDS:
        raise BackendError(f"--backend {name!r} is unknown: expected one of {', '.join(BACKENDS)}")
    module = _module(name)
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"--backend {name}: the experiment has no {name} backend yet ({module} is missing)")
    try:
        backend = importlib.import_module(module).BACKEND
    except ModuleNotFoundError as error:
        raise BackendError(
            f"--backend {name} needs {error.name}, which is not installed: pip install 'lotto[{_INSTALL[name]}]'"
        ) from None
    if not isinstance(backend, Backend):
        raise BackendError(f"{module}.BACKEND does not implement the Backend protocol")
    return backend
