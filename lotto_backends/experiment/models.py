"""The experiment's two architectures, described once so that every backend builds the
same networks.

* ``lenet``: LeNet-300-100, the fully connected network of Frankle & Carbin (2019):
  inputs -> 300 -> 100 -> classes, ReLU between.
* ``cnn``: the small 1-D CNN of MNIST-1D (Greydanus 2020): three convolutions of 25
  channels (kernels 5, 3, 3, stride 2, padding 1, ReLU) over the input read as one
  channel, then a linear output layer.

Weights start from a Gaussian Glorot (Xavier normal) draw and biases from zero, as in
the lottery-ticket paper. The output layer is the last prunable layer; every other
prunable layer is hidden.
"""

from __future__ import annotations

__all__ = ["CNN_CHANNELS", "CNN_KERNELS", "CNN_PADDING", "CNN_STRIDE", "LENET_HIDDEN", "MODELS", "cnn_lengths"]

MODELS = ("lenet", "cnn")
LENET_HIDDEN = (300, 100)
CNN_CHANNELS = 25
CNN_KERNELS = (5, 3, 3)
CNN_STRIDE = 2
CNN_PADDING = 1


def cnn_lengths(n_features: int) -> list[int]:
    """The signal length after each convolution of ``cnn`` for inputs of ``n_features``.

    Raises
    ------
    ValueError
        If the inputs are too short for the three convolutions.

    Examples
    --------
    >>> cnn_lengths(40)  # MNIST-1D: 25 channels x 5 reach the output layer
    [19, 10, 5]
    """
    lengths, n = [], n_features
    for kernel in CNN_KERNELS:
        n = (n + 2 * CNN_PADDING - kernel) // CNN_STRIDE + 1
        if n < 1:
            raise ValueError(f"--model cnn needs inputs of at least 3 features, got {n_features}")
        lengths.append(n)
    return lengths


GRASP_TEMPERATURE = 200.0
"""GraSP's logits are divided by this before its loss (the temperature of Wang et al.'s
code): a near-uniform softmax, without which its scores prune far worse than at random."""
