"""The re-initialization control for torch models: a ticket's masks on a fresh draw of
the model's own initializers (Frankle & Carbin 2019: the ticket's structure with other
initial values). The shuffled-mask and random-pruning controls are the core's
(``lotto_core.shuffle_masks``, ``lotto_core.random_prune_like``) and work on this
adapter's ``Pruner`` as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from lotto_core.strategy import Random

from ._masking import remask
from .layers import PrunableModule
from .pruner import Pruner

__all__ = ["reinitialize"]


def _initializer(module: nn.Module) -> Callable[[], None] | None:
    """The module's own ``reset_parameters`` (``_reset_parameters`` for
    ``nn.MultiheadAttention``), if it has one."""
    for name in ("reset_parameters", "_reset_parameters"):
        method = getattr(module, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    return None


def _statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's buffers but Lotto's masks and rewind points (those an initializer
    writes: BatchNorm's running statistics)."""
    ours = {
        f"{prefix}.{key}" if prefix else key
        for prefix, layer in model.named_modules()
        if isinstance(layer, PrunableModule)
        for key in layer._buffers
        if key.endswith(("_mask", "_rewind"))
    }
    return {name: b for name, b in model.named_buffers() if name not in ours}


def reinitialize(
    model: nn.Module,
    pruner: Pruner | None = None,
    *,
    seed: int,
    init: Callable[[nn.Module], None] | None = None,
) -> None:
    """Draw every parameter of ``model`` afresh from its modules' own initializers, seeded
    by ``seed``, keeping every mask: pruned weights stay exactly 0. With ``pruner``, the
    new values become its rewind point, so that ``rewind()`` returns to them.

    Each module that holds parameters of its own is initialized once, by ``init(module)``
    if given (``lotto_backends.torch.hf.init_weights(model)`` for a Hugging Face model),
    else by its ``reset_parameters()``, which also resets BatchNorm's running
    statistics. The global random state is left as it was (``torch.random.fork_rng``).

    Raises
    ------
    TypeError, ValueError
        If ``model`` is not a module, ``seed`` not a non-negative int, or, without
        ``init``, a module with parameters of its own has no ``reset_parameters``
        (named); or if the initializers left a parameter unwritten (named). Nothing
        changes then: on any failure part-way (an initializer, the rewind point) every
        parameter and statistic is put back.

    Examples
    --------
    >>> from torch import nn
    >>> from lotto_backends.torch import MagnitudePruneGroup, Pruner, make_prunable
    >>> model = make_prunable(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> pruner = Pruner([MagnitudePruneGroup([model[0]], 0.5)], model=model)
    >>> pruner.prune_and_rewind()
    >>> reinitialize(model, pruner, seed=1)
    >>> int((model[0].weight != 0).sum()), int(model[0].weight_mask.sum())
    (32, 32)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    Random(seed)  # raises naming seed unless a non-negative int
    if init is not None and not callable(init):
        raise TypeError(f"init must be a function of a module, got {type(init).__name__}")
    owners = [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    calls: list[Callable[[], None]] = []
    missing = []
    for name, module in owners:
        own = _initializer(module)
        if init is not None:
            calls.append(functools.partial(init, module))
        elif own is None:
            missing.append(f"{name or 'the model'} ({type(module).__name__})")
        else:
            calls.append(own)
    if missing:
        raise ValueError(
            f"no initializer for the parameters of {', '.join(missing)}: give these modules a reset_parameters() "
            "or pass init=, a function that initializes one module"
        )
    params = dict(model.named_parameters())
    versions = {name: p._version for name, p in params.items()}
    tensors = {**params, **_statistics(model)}  # what the initializers may write
    saved = {name: t.detach().clone() for name, t in tensors.items()}
    devices = sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for call in calls:
                call()
            unwritten = [name for name, p in params.items() if p._version == versions[name]]
            if unwritten:
                raise ValueError(
                    f"the initializers left {', '.join(unwritten)} as they were; the model is restored (pass init= "
                    "that draws every parameter: lotto_backends.torch.hf.init_weights(model) for a transformers model)"
                )
        remask(model)
        if pruner is not None:
            pruner.set_rewind_point()
    except BaseException:  # an initializer or the rewind point failed: put every tensor back
        with torch.no_grad():
            for name, t in tensors.items():
                t.copy_(saved[name])
        raise
