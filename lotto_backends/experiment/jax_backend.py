"""The experiment on JAX, through Lotto's public JAX API: Flax NNX models of
``PrunableLinear`` / ``PrunableConv`` layers, optax's Adam, cross-entropy, ``.npz`` files,
and ``sparsify`` for the final ticket.

Runs use the CPU, as the torch backend does: XLA's CPU programs give the same bits on
every run of the same program. The training step and the evaluation are compiled once
per architecture and batch shape and reused by every model and round: models built the
same way have equal graph definitions, and optimizers too, as long as they share one
optax transformation (a new ``optax.adam`` would be a new static argument, so a new
compilation each round): its learning rate is a variable of the optimizer's state
(``optax.inject_hyperparams``), set before each step. Every array is committed to the CPU, since a
mix of committed and uncommitted arguments would be compiled anew as well.

``dump`` writes an ``.npz`` archive that ``numpy.load`` reads without pickle: every array
under its path in the saved object (``ticket/model/layers.0.kernel``, BCOO weights as
``.../data`` and ``.../indices``), and the rest of the object as JSON in ``__structure__``.
A sparse model is saved as its variables by path; to use it again, build the same
architecture, ``sparsify`` it, and ``load_model_state`` the file's contents into it.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import sparse as jsparse

from lotto_backends.jax import (
    Instability,
    PrunableConv,
    PrunableLinear,
    PrunableModule,
    instability,
    layer_gradients,
    model_masks,
    pytree,
    sparsify,
    synaptic_flow,
)
from lotto_core.strategy import SNIP, GraSP, Score, SynFlow

from . import models
from .data import Dataset

__all__ = ["BACKEND", "JaxBackend"]

_EVAL_CHUNK = 4096
_STRUCTURE = "__structure__"
_ARRAY, _BCOO = "__array__", "__bcoo__"
_GLOROT_NORMAL = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")
"""Gaussian Glorot as torch's ``xavier_normal_`` draws it (Flax's ``glorot_normal`` is truncated)."""


@dataclass(frozen=True)
class JaxArrays:
    """The training split as device arrays, and the evaluation splits in chunks of at most
    ``_EVAL_CHUNK`` samples (labels as int32: JAX's default integer)."""

    train: tuple[jax.Array, jax.Array]
    chunks: dict[str, list[tuple[jax.Array, jax.Array]]]
    sizes: dict[str, int]


@dataclass
class _Trainer:
    """An Adam optimizer over a model that keeps its pruned weights at 0 (also when the
    model is pruned while it trains: ``--schedule gradual``), and what its training step is compiled for: the
    structure of (model, optimizer), and their variables in the order of its arguments.
    Reading and writing the variables directly, rather than having ``nnx.jit`` traverse the
    model and the optimizer at every call, halves a step on these small networks."""

    optimizer: nnx.Optimizer[nnx.Sequential]
    graphdef: nnx.GraphDef[Any]
    treedef: Any
    variables: list[nnx.Variable[Any]]
    learning_rate: nnx.Variable[Any]
    lr: float = 0.0
    """The rate that ``learning_rate`` holds (read without a copy from the device)."""

    @classmethod
    def create(cls, model: nnx.Sequential) -> _Trainer:
        optimizer = nnx.Optimizer(model, _ADAM, wrt=nnx.Param)
        nnx.update(optimizer, _commit(nnx.state(optimizer)))
        graphdef, state = nnx.split((model, optimizer))
        flat = jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda node: isinstance(node, nnx.Variable))[0]
        (learning_rate,) = [v for path, v in flat if jax.tree_util.keystr(path).endswith("['learning_rate']")]
        return cls(optimizer, graphdef, jax.tree.structure(state), [v for _, v in flat], learning_rate)

    def step(self, x: jax.Array, y: jax.Array, index: np.ndarray, lr: float) -> None:
        if lr != self.lr:  # a new rate: Adam's injected hyperparameter
            self.learning_rate.set_value(_commit(np.float32(lr)))
            self.lr = lr
        values = [variable.get_value() for variable in self.variables]
        new = _train_step(self.graphdef, self.treedef, values, x, y, _commit(index.astype(np.int32)))
        for variable, value in zip(self.variables, new, strict=True):
            variable.set_value(value)


class JaxBackend:
    """The :class:`~lotto_backends.experiment.backend.Backend` for JAX and Flax NNX."""

    name = "jax"
    rank = 0
    suffix = ".npz"
    load_hint = (
        "load the sparse model's arrays with numpy.load(path, allow_pickle=False), or "
        "lotto_backends.experiment.jax_backend.BACKEND.load(open(path, 'rb'))"
    )

    @contextmanager
    def session(self) -> Iterator[None]:
        with jax.default_device(_cpu()):
            yield

    def arrays(self, dataset: Dataset) -> JaxArrays:
        def device(x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
            return _commit(x), _commit(y.astype(np.int32))

        chunks = {
            name: [device(x[i : i + _EVAL_CHUNK], y[i : i + _EVAL_CHUNK]) for i in range(0, len(y), _EVAL_CHUNK)]
            for name, x, y in (("val", dataset.x_val, dataset.y_val), ("test", dataset.x_test, dataset.y_test))
        }
        sizes = {"val": len(dataset.y_val), "test": len(dataset.y_test)}
        return JaxArrays(device(dataset.x_train, dataset.y_train), chunks, sizes)

    def build(self, model: str, n_features: int, n_classes: int, seed: int) -> nnx.Sequential:
        rngs = nnx.Rngs(seed)
        net = _lenet(n_features, n_classes, rngs) if model == "lenet" else _cnn(n_features, n_classes, rngs)
        nnx.update(net, _commit(nnx.state(net)))
        return net

    def prunable_layers(self, model: nnx.Sequential) -> Sequence[PrunableModule]:
        return [layer for layer in model.layers if isinstance(layer, PrunableModule)]

    def copy(self, model: nnx.Sequential) -> nnx.Sequential:
        return nnx.clone(model)

    def instability(
        self,
        model: nnx.Sequential,
        train: Callable[[nnx.Sequential, Any], None],
        evaluate: Callable[[nnx.Sequential], float],
        *,
        points: int,
        data_orders: Sequence[int],
    ) -> Instability:
        return instability(model, train, evaluate, points=points, data_orders=data_orders)

    def versions(self) -> dict[str, str]:
        import flax  # a package's version only

        return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}

    def optimizer(self, model: nnx.Sequential) -> _Trainer:
        return _Trainer.create(model)

    def train_step(
        self, model: nnx.Sequential, optimizer: _Trainer, arrays: JaxArrays, index: np.ndarray, lr: float
    ) -> None:
        optimizer.step(*arrays.train, index, lr)

    def evaluate(self, model: nnx.Sequential, arrays: JaxArrays, split: str) -> tuple[float, float]:
        loss, correct = 0.0, 0
        for x, y in arrays.chunks[split]:
            chunk_loss, chunk_correct = _evaluate(model, x, y)
            loss += float(chunk_loss)
            correct += int(chunk_correct)
        n = arrays.sizes[split]
        return loss / n, correct / n

    def score(self, model: nnx.Sequential, method: str, arrays: JaxArrays, index: np.ndarray) -> Score:
        x, y = arrays.train
        if method == "synflow":
            return SynFlow(synaptic_flow(model, x[:1]))
        graphdef, params, *rest = nnx.split(model, nnx.Param, ...)
        batch_x, batch_y = x[index], y[index]
        # GraSP: the logits divided by its temperature (models.GRASP_TEMPERATURE)
        temperature = 1.0 if method == "snip" else models.GRASP_TEMPERATURE

        def loss(p: Any) -> jax.Array:
            logits = nnx.merge(graphdef, p, *rest)(batch_x) / temperature
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch_y).mean()

        grads = jax.grad(loss)(params)
        if method == "snip":
            return SNIP(layer_gradients(model, grads))
        _, hessian_gradient = jax.jvp(jax.grad(loss), (params,), (grads,))  # the Hessian times the gradient
        return GraSP(layer_gradients(model, hessian_gradient))

    def model_state(self, model: nnx.Module) -> dict[str, Any]:
        """Every variable of ``model`` (weights, masks, rewind points) by dotted path."""
        return {path: variable.get_raw_value() for path, variable in _variables(model).items()}

    def load_model_state(self, model: nnx.Module, state: dict[str, Any]) -> None:
        """Write the values of ``state`` (from ``model_state`` of a model built the same way,
        or of its ``sparsify()`` model) into ``model``; everything is checked first.

        Raises
        ------
        ValueError
            If ``state`` names other variables, or a value's shape or dtype differs.
        """
        variables = _variables(model)
        if set(state) != set(variables):
            raise ValueError(
                f"the saved model state has variables {sorted(set(state) - set(variables))} that the model lacks "
                f"and lacks {sorted(set(variables) - set(state))}: it was saved from another architecture"
            )
        for path, variable in variables.items():
            _check_value(path, state[path], variable.get_raw_value())
        for path, variable in variables.items():
            value = state[path]
            variable.set_raw_value(value if isinstance(value, jsparse.BCOO) else _commit(value))

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        """Write ``obj`` (nested dicts with string keys, lists, numbers, strings, ``None``,
        arrays and BCOO arrays; an ``nnx.Module`` as its ``model_state``) as ``.npz``."""
        if isinstance(obj, nnx.Module):
            obj = self.model_state(obj)
        arrays: dict[str, np.ndarray] = {}
        structure = _encode(obj, "", arrays)
        np.savez(file, **{_STRUCTURE: np.array(json.dumps(structure))}, **arrays)

    def load(self, file: IO[bytes]) -> Any:
        """Read what ``dump`` wrote, arrays as JAX arrays on the CPU."""
        with np.load(file, allow_pickle=False) as archive:
            structure = json.loads(str(archive[_STRUCTURE]))
            return _decode(structure, archive)

    def sparsify(self, model: nnx.Sequential) -> tuple[nnx.Module, int, int]:
        small = sparsify(model)
        dense_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
        return small, sum(leaf.nbytes for leaf in jax.tree.leaves(nnx.state(small))), dense_bytes


def _cpu() -> jax.Device:
    return jax.devices("cpu")[0]


def _commit(tree: Any) -> Any:
    """The arrays of ``tree`` committed to the CPU (arrays computed from committed arrays
    are committed too)."""
    return jax.device_put(tree, _cpu())


_ADAM = pytree.keep_pruned(optax.inject_hyperparams(optax.adam)(learning_rate=0.0))
"""One Adam transformation for every optimizer, with its learning rate a variable of the
optimizer's state (set before each step), so that every optimizer has the same static
structure and reuses the compiled training step; wrapped by ``pytree.keep_pruned``, so
Adam's moments from before a prune cannot move a pruned weight (what
``lotto_backends.jax.Optimizer`` does, with a transformation of its own per optimizer)."""


def _loss(model: nnx.Sequential, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(
    graphdef: nnx.GraphDef[Any], treedef: Any, values: list[jax.Array], x: jax.Array, y: jax.Array, index: jax.Array
) -> list[jax.Array]:
    """One Adam step on the samples ``index``: the new values of the variables of (model,
    optimizer), given as ``values`` in the order of their state's leaves."""
    model, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, values))
    model_def, params, rest = nnx.split(model, nnx.Param, ...)  # the same in NNX's graph and tree modes
    grads = jax.grad(lambda p: _loss(nnx.merge(model_def, p, rest), x[index], y[index]))(params)
    optimizer.update(model, grads, masks=model_masks(model))
    state = nnx.state((model, optimizer))
    if jax.tree.structure(state) != treedef:  # checked once, while tracing
        raise RuntimeError("the training step changed the structure of the model or the optimizer")
    return jax.tree.leaves(state)


@nnx.jit
def _evaluate(model: nnx.Sequential, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Summed cross-entropy and the number of correct predictions on one chunk."""
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, (logits.argmax(axis=1) == y).sum()


def _variables(model: nnx.Module) -> dict[str, nnx.Variable[Any]]:
    """The model's variables by dotted path (``layers.0.kernel_mask``)."""
    return {
        ".".join(str(key) for key in path): node
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }


def _check_value(path: str, saved: Any, current: Any) -> None:
    if isinstance(current, jsparse.BCOO):
        if not isinstance(saved, jsparse.BCOO) or saved.shape != current.shape or saved.dtype != current.dtype:
            raise ValueError(f"the saved {path!r} must be a BCOO array {current.dtype}{list(current.shape)}")
        return
    shape, dtype = getattr(saved, "shape", None), getattr(saved, "dtype", None)
    if isinstance(saved, jsparse.BCOO) or shape != current.shape or dtype != current.dtype:
        raise ValueError(
            f"the saved {path!r} is {type(saved).__name__} {dtype}{list(shape or [])}; "
            f"the model's is {current.dtype}{list(current.shape)}"
        )


def _encode(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON, with each array stored in ``arrays`` under its path."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    name = path or "value"  # an array at the top has no path
    if isinstance(obj, jsparse.BCOO):
        arrays[f"{name}/data"], arrays[f"{name}/indices"] = np.asarray(obj.data), np.asarray(obj.indices)
        sorted_, unique = obj.indices_sorted, obj.unique_indices
        return {_BCOO: {"path": name, "shape": list(obj.shape), "indices_sorted": sorted_, "unique_indices": unique}}
    if isinstance(obj, jax.Array | np.ndarray):
        arrays[name] = np.asarray(obj)
        return {_ARRAY: name}
    if isinstance(obj, list | tuple):
        return [_encode(item, f"{path}/{i}" if path else str(i), arrays) for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str) or key.startswith("__") or "/" in key:
                raise TypeError(f"dump: keys must be strings without '/' that do not start with '__', got {key!r}")
        return {key: _encode(value, f"{path}/{key}" if path else key, arrays) for key, value in obj.items()}
    raise TypeError(f"dump: cannot write a {type(obj).__name__} at {path or 'the top'}")


def _decode(obj: Any, archive: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(item, archive) for item in obj]
    if not isinstance(obj, dict):
        return obj
    if _ARRAY in obj:
        return _commit(archive[obj[_ARRAY]])
    if _BCOO in obj:
        spec = obj[_BCOO]
        parts = (_commit(archive[f"{spec['path']}/data"]), _commit(archive[f"{spec['path']}/indices"]))
        return jsparse.BCOO(
            parts,
            shape=tuple(spec["shape"]),
            indices_sorted=spec["indices_sorted"],
            unique_indices=spec["unique_indices"],
        )
    return {key: _decode(value, archive) for key, value in obj.items()}


def _as_signal(x: jax.Array) -> jax.Array:
    """Rows of features as one-channel signals ``(n, length, 1)``, Flax's channel-last layout."""
    return x[..., None]


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _linear(n_in: int, n_out: int, rngs: nnx.Rngs) -> PrunableLinear:
    return PrunableLinear(n_in, n_out, kernel_init=_GLOROT_NORMAL, bias_init=nnx.initializers.zeros_init(), rngs=rngs)


def _lenet(n_features: int, n_classes: int, rngs: nnx.Rngs) -> nnx.Sequential:
    sizes = [n_features, *models.LENET_HIDDEN]
    layers: list[Any] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [_linear(n_in, n_out, rngs), nnx.relu]
    return nnx.Sequential(*layers, _linear(sizes[-1], n_classes, rngs))


def _cnn(n_features: int, n_classes: int, rngs: nnx.Rngs) -> nnx.Sequential:
    lengths = models.cnn_lengths(n_features)
    layers: list[Any] = [_as_signal]
    channels = 1
    for kernel in models.CNN_KERNELS:
        conv = PrunableConv(
            channels,
            models.CNN_CHANNELS,
            kernel_size=(kernel,),
            strides=(models.CNN_STRIDE,),
            padding=((models.CNN_PADDING, models.CNN_PADDING),),
            kernel_init=_GLOROT_NORMAL,
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )
        layers += [conv, nnx.relu]
        channels = models.CNN_CHANNELS
    return nnx.Sequential(*layers, _flatten, _linear(channels * lengths[-1], n_classes, rngs))


BACKEND = JaxBackend()
