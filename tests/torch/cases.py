"""One small instance and a matching input for every supported torch.nn layer type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _x(*shape: int) -> Callable[[], tuple[Any, ...]]:
    return lambda: (torch.randn(*shape),)


def _tokens(n: int) -> Callable[[], tuple[Any, ...]]:
    return lambda: (torch.randint(0, n, (3, 5)),)


CASES: dict[type[nn.Module], tuple[Callable[[], nn.Module], Callable[[], tuple[Any, ...]]]] = {
    nn.Linear: (lambda: nn.Linear(6, 4), _x(3, 6)),
    nn.Bilinear: (lambda: nn.Bilinear(3, 4, 5), lambda: (torch.randn(2, 3), torch.randn(2, 4))),
    nn.Conv1d: (lambda: nn.Conv1d(2, 3, 3), _x(2, 2, 8)),
    nn.Conv2d: (lambda: nn.Conv2d(2, 3, 3), _x(2, 2, 6, 6)),
    nn.Conv3d: (lambda: nn.Conv3d(2, 3, 2), _x(2, 2, 4, 4, 4)),
    nn.ConvTranspose1d: (lambda: nn.ConvTranspose1d(2, 3, 3), _x(2, 2, 8)),
    nn.ConvTranspose2d: (lambda: nn.ConvTranspose2d(2, 3, 3), _x(2, 2, 5, 5)),
    nn.ConvTranspose3d: (lambda: nn.ConvTranspose3d(2, 3, 2), _x(2, 2, 3, 3, 3)),
    nn.Embedding: (lambda: nn.Embedding(10, 4), _tokens(10)),
    nn.EmbeddingBag: (lambda: nn.EmbeddingBag(10, 4), _tokens(10)),
    nn.RNN: (lambda: nn.RNN(4, 5, num_layers=2, bidirectional=True), _x(7, 2, 4)),
    nn.LSTM: (lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3), _x(7, 2, 4)),
    nn.GRU: (lambda: nn.GRU(4, 5, num_layers=2, batch_first=True), _x(2, 7, 4)),
    nn.RNNCell: (lambda: nn.RNNCell(4, 5), _x(3, 4)),
    nn.LSTMCell: (lambda: nn.LSTMCell(4, 5), _x(3, 4)),
    nn.GRUCell: (lambda: nn.GRUCell(4, 5), _x(3, 4)),
    nn.MultiheadAttention: (lambda: nn.MultiheadAttention(8, 2), lambda: (torch.randn(5, 2, 8),) * 3),
    nn.BatchNorm1d: (lambda: nn.BatchNorm1d(4), _x(6, 4)),
    nn.BatchNorm2d: (lambda: nn.BatchNorm2d(3), _x(2, 3, 4, 4)),
    nn.BatchNorm3d: (lambda: nn.BatchNorm3d(2), _x(2, 2, 3, 3, 3)),
    nn.LayerNorm: (lambda: nn.LayerNorm(6), _x(3, 6)),
    nn.GroupNorm: (lambda: nn.GroupNorm(2, 4), _x(3, 4, 5)),
    nn.InstanceNorm1d: (lambda: nn.InstanceNorm1d(4, affine=True), _x(2, 4, 6)),
    nn.InstanceNorm2d: (lambda: nn.InstanceNorm2d(3, affine=True), _x(2, 3, 4, 4)),
    nn.InstanceNorm3d: (lambda: nn.InstanceNorm3d(2, affine=True), _x(2, 2, 3, 3, 3)),
    nn.RMSNorm: (lambda: nn.RMSNorm(6), _x(3, 6)),
}


def first_tensor(out: Any) -> torch.Tensor:
    """The main output of a layer (RNNs and attention return tuples)."""
    return out[0] if isinstance(out, tuple) else out


def assert_same_outputs(a: nn.Module, b: nn.Module, inputs: Callable[[], tuple[Any, ...]], exact: bool = True) -> None:
    """``a`` and ``b`` give the same main output on one draw of ``inputs``."""
    args = inputs()
    tolerance = {"rtol": 0, "atol": 0} if exact else {}
    torch.testing.assert_close(first_tensor(a(*args)), first_tensor(b(*args)), **tolerance)
