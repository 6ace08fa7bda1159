"""The experiment on PyTorch, through Lotto's public torch API: models of
``PrunableLinear`` / ``PrunableConv1d`` layers, Adam, cross-entropy, ``torch.save``, and
``sparsify`` for the final ticket.

Runs use the CPU with one thread (restored afterwards): the networks are small enough
that one thread is as fast as two, and the CPU kernels then give the same bits on every
run on a machine, whatever its number of cores. (``torch.use_deterministic_algorithms``
would add nothing on the CPU here, and it imports the compiler stack: 3 s at start.)

Started by ``torchrun`` (``WORLD_SIZE`` > 1), the run is data-parallel on gloo: each rank
trains on its share of every batch under ``DistributedDataParallel``, with the loss
scaled so that DDP's average of the ranks' gradients is the gradient of the whole
batch's mean loss, as in one process; every rank prunes (``Pruner.prune`` checks that
they agree) and evaluates, and rank 0 alone writes files and prints.
"""

from __future__ import annotations

import copy
import gc
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lotto_backends.torch import (
    Instability,
    PrunableConv1d,
    PrunableLinear,
    PrunableModule,
    instability,
    make_prunable,
    sparsify,
    synaptic_flow,
)
from lotto_core.strategy import SNIP, GraSP, Score, SynFlow

from . import models
from .data import Dataset

__all__ = ["BACKEND", "TorchBackend"]

_EVAL_CHUNK = 4096


@dataclass(frozen=True)
class _DataParallel:
    """A data-parallel run's training: the model under DDP and its optimizer."""

    model: DistributedDataParallel
    optimizer: torch.optim.Optimizer


@dataclass(frozen=True)
class TorchArrays:
    """The dataset's splits as tensors."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]


class TorchBackend:
    """The :class:`~lotto_backends.experiment.backend.Backend` for PyTorch."""

    name = "torch"
    suffix = ".pt"
    load_hint = (
        "load the sparse model with torch.load(path, weights_only=False): it is a pickled torch.nn.Module, "
        "so load only files you trust (lotto_backends.torch must be importable)"
    )

    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))

    @contextmanager
    def session(self) -> Iterator[None]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        joined = self.world > 1 and not dist.is_initialized()
        if joined:
            dist.init_process_group("gloo")
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if joined:
                gc.collect()  # DDP's reducers go while their process group lives (else exit can abort)
                dist.destroy_process_group()

    def arrays(self, dataset: Dataset) -> TorchArrays:
        splits = {
            name: (torch.from_numpy(x), torch.from_numpy(y))
            for name, x, y in (
                ("train", dataset.x_train, dataset.y_train),
                ("val", dataset.x_val, dataset.y_val),
                ("test", dataset.x_test, dataset.y_test),
            )
        }
        return TorchArrays(splits)

    def build(self, model: str, n_features: int, n_classes: int, seed: int) -> nn.Sequential:
        with torch.random.fork_rng(devices=[]):  # the layers' own default init must not move the global RNG
            net = _lenet(n_features, n_classes) if model == "lenet" else _cnn(n_features, n_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.prunable_layers(net):
                nn.init.xavier_normal_(layer.weight, generator=generator)
                nn.init.zeros_(layer.bias)
        return make_prunable(net)  # its layers are prunable already: this keeps their masks out of DDP's broadcast

    def prunable_layers(self, model: nn.Module) -> Sequence[PrunableModule]:
        return [m for m in model.modules() if isinstance(m, PrunableModule)]

    def copy(self, model: nn.Module) -> nn.Module:
        return copy.deepcopy(model)

    def instability(
        self,
        model: nn.Module,
        train: Callable[[nn.Module, Any], None],
        evaluate: Callable[[nn.Module], float],
        *,
        points: int,
        data_orders: Sequence[int],
    ) -> Instability:
        return instability(model, train, evaluate, points=points, data_orders=data_orders)

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer | _DataParallel:
        # foreach: the multi-tensor Adam, the same bits as the per-tensor loop (the CPU's
        # default) and 1.5 times faster per LeNet step
        optimizer = torch.optim.Adam(model.parameters(), foreach=True)
        return optimizer if self.world == 1 else _DataParallel(DistributedDataParallel(model), optimizer)

    def train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | _DataParallel,
        arrays: TorchArrays,
        index: np.ndarray,
        lr: float,
    ) -> None:
        x, y = arrays.splits["train"]
        model.train()
        adam = optimizer.optimizer if isinstance(optimizer, _DataParallel) else optimizer
        for group in adam.param_groups:
            group["lr"] = lr
        if isinstance(optimizer, _DataParallel):
            # this rank's share; DDP averages the ranks' gradients, so each sums its share's
            # losses over the whole batch's size times the ranks: the gradient of the batch's mean
            share = torch.from_numpy(np.array_split(index, self.world)[self.rank])
            optimizer.optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(optimizer.model(x[share]), y[share], reduction="sum")
            (loss * (self.world / len(index))).backward()
            optimizer.optimizer.step()
            return
        batch = torch.from_numpy(index)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()

    def evaluate(self, model: nn.Module, arrays: TorchArrays, split: str) -> tuple[float, float]:
        x, y = arrays.splits[split]
        model.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(y), _EVAL_CHUNK):
                logits = model(x[start : start + _EVAL_CHUNK])
                target = y[start : start + _EVAL_CHUNK]
                loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return loss / len(y), correct / len(y)

    def score(self, model: nn.Module, method: str, arrays: TorchArrays, index: np.ndarray) -> Score:
        x, y = arrays.splits["train"]
        if method == "synflow":
            return SynFlow(synaptic_flow(model, x[:1]))
        layers = self.prunable_layers(model)
        weights = [layer.weight for layer in layers]
        batch = torch.from_numpy(index)
        model.eval()
        if method == "snip":
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            return SNIP(_by_layer(layers, torch.autograd.grad(loss, weights)))
        # GraSP: the Hessian times the gradient, of the loss with the logits divided by GRASP_TEMPERATURE
        loss = nn.functional.cross_entropy(model(x[batch]) / models.GRASP_TEMPERATURE, y[batch])
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        hessian_gradient = torch.autograd.grad(sum((g * g.detach()).sum() for g in grads), weights)
        return GraSP(_by_layer(layers, hessian_gradient))

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return model.state_dict()

    def load_model_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(state)

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        torch.save(obj, file)

    def load(self, file: IO[bytes]) -> Any:
        return torch.load(file, weights_only=True)

    def sparsify(self, model: nn.Module) -> tuple[nn.Module, int, int]:
        sparse = sparsify(model).eval()  # an inference model, whatever mode training left
        dense_bytes = sum(_nbytes(p) for p in model.parameters())
        return sparse, sum(_nbytes(t) for t in sparse.state_dict().values()), dense_bytes


def _by_layer(layers: Sequence[nn.Module], grads: Sequence[torch.Tensor]) -> Any:
    """``gradient(layer, "weight")`` over one gradient per layer."""
    table = {id(layer): g.detach() for layer, g in zip(layers, grads, strict=True)}
    return lambda layer, name: table[id(layer)]


def _nbytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's stored values (and indices, for a sparse CSR tensor)."""
    if t.layout == torch.sparse_csr:
        return sum(_nbytes(part) for part in (t.values(), t.crow_indices(), t.col_indices()))
    return t.numel() * t.element_size()


def _lenet(n_features: int, n_classes: int) -> nn.Sequential:
    sizes = [n_features, *models.LENET_HIDDEN]
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [PrunableLinear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers, PrunableLinear(sizes[-1], n_classes))


def _cnn(n_features: int, n_classes: int) -> nn.Sequential:
    lengths = models.cnn_lengths(n_features)
    layers: list[nn.Module] = [nn.Unflatten(1, (1, n_features))]
    channels = 1
    for kernel in models.CNN_KERNELS:
        layers += [
            PrunableConv1d(channels, models.CNN_CHANNELS, kernel, stride=models.CNN_STRIDE, padding=models.CNN_PADDING),
            nn.ReLU(),
        ]
        channels = models.CNN_CHANNELS
    return nn.Sequential(*layers, nn.Flatten(), PrunableLinear(channels * lengths[-1], n_classes))


BACKEND = TorchBackend()
