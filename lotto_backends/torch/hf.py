"""Hugging Face round trip: a pruned transformers model saved and loaded back pruned.

``save_pretrained(model, path)`` writes the model with ``model.save_pretrained`` as
plain weights (pruned entries are zeros, so any transformers user loads the pruned
model with no unexpected keys), and beside them ``lotto_state.pt``: every mask and
rewind point under the model's own module names, which no key renaming of
transformers' (ViT, ...) touches. ``from_pretrained(cls, path)`` loads the weights with
``cls.from_pretrained``, makes the model prunable and restores the masks and rewind
points. ``init_weights(model)`` is the model's own initializer for
``reinitialize(model, init=...)``. Nothing here imports transformers: it calls the
model's own methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._masking import remask
from .convert import make_prunable
from .layers import PrunableModule

__all__ = ["LOTTO_STATE", "from_pretrained", "init_weights", "save_pretrained"]

LOTTO_STATE = "lotto_state.pt"
"""The file beside the weights that holds the masks and rewind points."""

_FORMAT = "lotto.hf/1"


def _lotto_state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, layer in model.named_modules():
        if isinstance(layer, PrunableModule):
            for key, buffer in layer._buffers.items():
                if buffer is not None and key.endswith(("_mask", "_rewind")):
                    out[f"{prefix}.{key}" if prefix else key] = buffer.detach().cpu()
    return out


_INITIALIZED = "_is_hf_initialized"
"""The flag with which transformers marks a module or tensor that its initializers skip."""


def init_weights(model: nn.Module) -> Callable[[nn.Module], None]:
    """The model's own ``_init_weights`` as ``reinitialize``'s ``init``: a fresh draw even
    of tensors that transformers marks as initialized (it skips those, so that loading
    does not draw twice), which stay marked afterwards.

    Raises
    ------
    TypeError
        If ``model`` has no ``_init_weights`` (not a transformers ``PreTrainedModel``).
    """
    own = getattr(model, "_init_weights", None)
    if not callable(own):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")

    def init(module: nn.Module) -> None:
        marked = [module, *module.parameters(recurse=False), *module.buffers(recurse=False)]
        for thing in marked:
            thing.__dict__.pop(_INITIALIZED, None)
        own(module)
        for thing in marked:
            thing.__dict__[_INITIALIZED] = True

    return init


def save_pretrained(model: nn.Module, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """``model.save_pretrained(path, **kwargs)`` with plain weights only, and the masks
    and rewind points in ``path/lotto_state.pt`` (loadable with ``torch.load``'s
    ``weights_only=True``)."""
    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    lotto = _lotto_state(model)
    if not lotto:
        raise ValueError("model has no prunable layer: make_prunable(model) first")
    plain = {k: v for k, v in model.state_dict().items() if k not in lotto}
    model.save_pretrained(path, state_dict=plain, **kwargs)  # type: ignore[operator]
    torch.save({"format": _FORMAT, "state": lotto}, os.path.join(path, LOTTO_STATE))


def from_pretrained(
    model_class: Any, path: str | os.PathLike[str], *, include: Any = None, exclude: Any = None, **kwargs: Any
) -> nn.Module:
    """``model_class.from_pretrained(path, **kwargs)`` made prunable (``include`` and
    ``exclude`` as in ``make_prunable``) with the masks and rewind points that
    ``save_pretrained`` stored.

    Raises
    ------
    FileNotFoundError
        If ``path`` holds no ``lotto_state.pt``.
    ValueError
        If the stored masks do not match the model's prunable layers (names or shapes).
    """
    file = os.path.join(path, LOTTO_STATE)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} does not exist: save the model with lotto_backends.torch.save_pretrained")
    saved = torch.load(file, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        raise ValueError(f"{file} is not a state written by lotto_backends.torch.save_pretrained")
    model = make_prunable(model_class.from_pretrained(path, **kwargs), include=include, exclude=exclude)
    own = _lotto_state(model)
    state = saved["state"]
    if set(state) != set(own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ValueError(
            f"{file} does not match the model's prunable layers: missing {missing[:5]}, unexpected {extra[:5]} "
            "(make the model prunable with the same include/exclude as when it was saved)"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{file}: {key} has shape {tuple(value.shape)}, the model's {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)
    remask(model)
    return model
