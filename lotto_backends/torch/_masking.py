"""How a prunable torch layer keeps its pruned weights at exactly zero.

Masks and rewind points are buffers of the layer (``weight_mask``, ``weight_rewind``,
...), so they travel with ``state_dict``, ``.to()``, ``deepcopy`` and ``torch.save``.

Pruned entries are re-zeroed at two moments only (large CPU parameters by the host
kernels, exactly +0.0 in one fused pass; others multiplied in place by the mask, read as
uint8: a bool operand would make torch cast every element and take twice as long):

* right after any ``torch.optim`` optimizer steps over a masked parameter (a global
  optimizer post-step hook), so weights read zero between steps too;
* at the start of a forward call, if the parameter or its mask changed since it was
  last masked (a ``_version`` counter moved or the tensor was replaced: a hand-written
  update, a mask edited or assigned, a loaded state), so a forward never sees a pruned
  weight. A compiled forward skips this check (see ``remask_if_changed``).

Nothing else runs per step: no reparametrization, no extra copy, and when the weights are
clean a few dictionary look-ups per parameter in forward, none in backward. Tied
parameters (one ``nn.Parameter`` in several layers) have one mask, held by the first
layer that took them. Like ``torch.nn.utils.prune``'s ``weight_orig *
mask``, the per-step multiply leaves a pruned weight that an optimizer drove to inf or
NaN non-finite, and a negative one as -0.0 (equal to 0); pruning, rewinding and loading
(``zero_pruned``) set pruned entries to exactly +0.0 whatever they held.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.autograd.graph import increment_version
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.weak import WeakIdKeyDictionary

from lotto_backends._host import pool

from . import _cpu
from ._layout import LAYERS, follow_layout, is_dtensor, same_layout

if TYPE_CHECKING:
    from .layers import PrunableModule

__all__ = [
    "buffer_key",
    "check_mask",
    "hold",
    "holder",
    "mark_clean",
    "mask_gradients",
    "mask_key",
    "remask",
    "remask_if_changed",
    "zero_pruned",
]

# parameter -> (layer that holds its mask, parameter's dotted name)
_MASKED: WeakIdKeyDictionary = WeakIdKeyDictionary()
# parameter -> (layer that holds its rewind point and mask, if any; dotted name): the
# first prunable layer that took the parameter. A parameter shared by several modules
# (tied embeddings) has its one mask and rewind point there.
_HELD: WeakIdKeyDictionary = WeakIdKeyDictionary()


def buffer_key(name: str) -> str:
    """Buffer-name stem of a (possibly dotted) parameter name: ``out_proj.weight`` ->
    ``out_proj_weight``."""
    return name.replace(".", "_")


def holder(param: torch.Tensor) -> tuple[PrunableModule, str] | None:
    """The live layer that holds ``param``'s mask and rewind point, and its name there."""
    entry = _HELD.get(param)  # type: ignore[no-untyped-call]
    layer = None if entry is None else entry[0]()
    return None if layer is None else (layer, entry[1])


def hold(layer: PrunableModule, name: str, param: torch.Tensor) -> None:
    """Record that ``layer`` holds ``param``'s mask and rewind point."""
    _HELD[param] = (weakref.ref(layer), name)


_generation = 0  # moves whenever a masked parameter or a mask object changes: optimizer plans rebuild


def _moved() -> None:
    global _generation
    _generation += 1


def mask_key(name: str) -> str:
    """The mask buffer's name for parameter ``name`` of its holding layer."""
    return name.replace(".", "_") + "_mask"


def mark_clean(layer: PrunableModule, name: str, param: torch.Tensor) -> None:
    """Record that ``param`` is masked as of now: the parameter, its version, the mask
    and its version, and the layer's identity (a copied or unpickled layer is not the
    one recorded); register it for the optimizer hook when any of them is new."""
    mask = _mask_of(layer, name)
    seen = layer._lotto_versions.get(name)
    if seen is None or seen[0] is not param or seen[2] is not mask or seen[4] != id(layer):
        _MASKED[param] = (weakref.ref(layer), name)
        _moved()
    layer._lotto_versions[name] = (param, param._version, mask, mask._version, id(layer))


def _mask_of(layer: nn.Module, name: str) -> torch.Tensor:
    return cast(torch.Tensor, layer._buffers[mask_key(name)])


def check_mask(mask: object, param: torch.Tensor, where: str) -> torch.Tensor:
    """``mask`` if it is a boolean tensor of ``param``'s exact shape on its device; else
    a ``TypeError``/``ValueError`` naming ``where``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{where} must have dtype torch.bool, got {mask.dtype}")
    if tuple(mask.shape) != tuple(param.shape):
        raise ValueError(f"{where} has shape {tuple(mask.shape)}, the parameter has {tuple(param.shape)}")
    if mask.device != param.device:
        raise ValueError(f"{where} is on {mask.device}, the parameter is on {param.device}")
    return mask


def zero_pruned(param: torch.Tensor, mask: torch.Tensor, *, views: bool = True) -> None:
    """Set the entries of ``param`` that ``mask`` prunes to exactly 0, whatever they hold:
    on the CPU in one fused pass (``_cpu.zero_pruned``), elsewhere, or without ``views``,
    with torch ops. A DTensor with its mask's layout is zeroed shard by shard, with no
    communication."""
    if same_layout(param, mask):
        param, mask = cast(Any, param).to_local(), cast(Any, mask).to_local()
    if views and _cpu.zero_pruned(param, mask):
        return
    with torch.no_grad():  # one pass, exact for inf and NaN, and no temporary: it cannot fail part-way
        torch.where(mask, param, param.new_zeros(()), out=param)


def _remultiply(layer: PrunableModule, name: str, param: torch.Tensor) -> None:
    """Multiply ``param`` in place by its mask (pruned entries become 0)."""
    with torch.no_grad():
        param.mul_(_mask_of(layer, name).view(torch.uint8))
    mark_clean(layer, name, param)


def remask_if_changed(layer: PrunableModule, _args: Any) -> None:
    """Before each forward: re-zero each masked parameter that changed since it was masked,
    and apply a mask that was edited in place, assigned or loaded since then (checked
    first: a broken mask raises before anything is written). A few dictionary look-ups
    and version reads per parameter when nothing changed.

    A compiled forward skips it (``torch.compile`` cannot trace version counters without a
    graph break): there the optimizer hook keeps pruned weights at zero, and a mask or
    weight edited by hand takes effect at the next optimizer step or ``remask(model)``."""
    if torch.compiler.is_compiling():
        return
    for owner, name, module, attr, key in layer._lotto_plan:
        param = cast(torch.Tensor, module._parameters[attr])
        mask = cast(torch.Tensor, owner._buffers[key])
        seen = owner._lotto_versions.get(name)
        if seen is not None and seen[0] is param and seen[2] is mask and seen[3] == mask._version:
            if seen[1] != param._version or seen[4] != id(owner):
                _remultiply(owner, name, param)
            continue
        if is_dtensor(mask) and not is_dtensor(param):
            continue  # FSDP2's unsharded copy, gathered from shards that the optimizer hook keeps masked
        _apply_mask(owner, name, param)


def _apply_mask(owner: PrunableModule, name: str, param: torch.Tensor) -> None:
    follow_layout(owner)
    mask = _mask_of(owner, name)
    check_mask(mask, param, f"{type(owner).__name__}.{buffer_key(name)}_mask")
    # exact +0.0 wherever it prunes; with FSDP2 loaded, through torch ops: a NumPy view of a
    # parameter makes its storage non-resizable, and FSDP2 frees its unsharded copies by resizing
    zero_pruned(param, mask, views="torch.distributed.fsdp" not in sys.modules)
    mark_clean(owner, name, param)


def remask(model: nn.Module) -> None:
    """Apply every mask of ``model``'s prunable layers to its weight now: pruned entries
    become exactly +0.0. A forward call does this by itself for masks and weights edited
    by hand; a compiled forward does not (see ``remask_if_changed``), so call it after
    such edits when the model runs under ``torch.compile``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for layer in _prunable_layers(model):
        for owner, name, param in layer._lotto_masked_parameters():
            _apply_mask(owner, name, param)


def _prunable_layers(model: nn.Module) -> list[PrunableModule]:
    from .layers import PrunableModule

    return [layer for layer in model.modules() if isinstance(layer, PrunableModule)]


_GRAD_HOOKS: WeakIdKeyDictionary = WeakIdKeyDictionary()  # parameter -> its gradient-masking hook


def mask_gradients(model: nn.Module, enabled: bool = True) -> None:
    """Make the gradients of ``model``'s pruned weights exactly 0 (``enabled=False``:
    leave them as autograd computes them again, the default).

    By default a pruned weight's gradient is whatever autograd computes: the weight reads
    0 and the optimizer hook keeps it there, but gradient clipping (``clip_grad_norm_``)
    and gradient hooks see the pruned entries' gradients too, where
    ``torch.nn.utils.prune``'s reparametrization gives them 0. With masked gradients each
    masked parameter multiplies its gradient in place by its mask once it is accumulated
    (a post-accumulate-grad hook; on the CPU the fused zeroing kernel): one extra pass
    over the weights per backward,
    measured by ``bench/bench_torch_train_step.py``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for layer in _prunable_layers(model):
        for owner, name, param in layer._lotto_masked_parameters():
            hook = _GRAD_HOOKS.pop(param, None)  # type: ignore[no-untyped-call]
            if hook is not None:
                hook.remove()
            if enabled:
                _GRAD_HOOKS[param] = param.register_post_accumulate_grad_hook(  # type: ignore[no-untyped-call]
                    _grad_masker(owner, name)
                )


def _grad_masker(owner: nn.Module, name: str) -> Any:
    ref = weakref.ref(owner)

    def mask_grad(param: torch.Tensor) -> None:
        layer = ref()
        if layer is not None and param.grad is not None:
            zero_pruned(param.grad, _mask_of(layer, name))

    return mask_grad


_FUSED_FROM = 1 << 16
"""Parameters of at least this many entries are zeroed by the host kernels (one fused
pass, exact +0.0); smaller ones by one batched multiply, whose per-call cost is less."""


@dataclass(frozen=True)
class _StepPlan:
    """What the optimizer hook masks, worked out once per optimizer and reused until a
    parameter or mask object changes: CPU parameters zeroed by the host kernels through
    views of their memory (checked against ``data_ptr`` at every step, so a parameter
    whose storage was replaced is never written through a stale view), the others by
    ``torch._foreach_mul_`` (by a copy of each small mask in its parameter's dtype, as a
    multiply of one dtype runs three times faster)."""

    key: tuple[Any, ...]
    params: list[torch.Tensor]
    masks: list[torch.Tensor]
    fused: list[int]
    keys: list[Any]
    flags: list[Any]
    pointers: list[tuple[int, int]]
    multiplied: list[int]
    factors: list[torch.Tensor]
    copied: list[tuple[int, int]]
    """``(index into factors, mask version)`` of each factor that is a copy of its mask
    in the parameter's dtype, refreshed when the mask's version moves on."""
    records: list[tuple[dict[str, Any], str, torch.Tensor, torch.Tensor, int]]
    """Per parameter, where the masking hooks record the versions it was masked at."""


_PLANS: weakref.WeakKeyDictionary[torch.optim.Optimizer, _StepPlan] = weakref.WeakKeyDictionary()


def _plan(optimizer: torch.optim.Optimizer, *, fresh: bool = False) -> _StepPlan:
    held = [p for group in optimizer.param_groups for p in group["params"]]
    key = (_generation, tuple(map(id, held)))
    plan = _PLANS.get(optimizer)
    if plan is not None and plan.key == key and not fresh:
        return plan
    if any(is_dtensor(p) and p not in _MASKED for p in held) and _adopt_sharded():
        return _plan(optimizer, fresh=True)
    owners, params, masks = [], [], []
    for param in held:
        entry = _MASKED.get(param)  # type: ignore[no-untyped-call]
        layer = None if entry is None else entry[0]()
        if layer is not None:
            owners.append((layer, entry[1]))
            params.append(param)
            masks.append(_mask_of(layer, entry[1]))
    fused, keys, flags, pointers, multiplied = [], [], [], [], []
    for i, (param, mask) in enumerate(zip(params, masks, strict=True)):
        view = _cpu.key_view(param, in_place=True) if param.numel() >= _FUSED_FROM else None
        bits = None if view is None else _cpu.bool_view(mask)
        if view is not None and bits is not None and mask.is_contiguous() and bits.size == view.size:
            fused.append(i)
            keys.append(view)
            flags.append(bits)
            pointers.append((param.data_ptr(), mask.data_ptr()))
        else:
            multiplied.append(i)
    if fused and pool.kernels() is None:
        fused, keys, flags, pointers, multiplied = [], [], [], [], list(range(len(params)))
    factors, copied = [], []
    for j, i in enumerate(multiplied):
        if masks[i].numel() < _FUSED_FROM:  # a multiply of one dtype is 3x faster; the copy is small
            factors.append(masks[i].to(params[i].dtype))
            copied.append((j, masks[i]._version))
        else:
            factors.append(masks[i].view(torch.uint8))
    records = [
        (layer._lotto_versions, name, param, mask, id(layer))
        for (layer, name), param, mask in zip(owners, params, masks, strict=True)
    ]
    plan = _StepPlan(key, params, masks, fused, keys, flags, pointers, multiplied, factors, copied, records)
    _PLANS[optimizer] = plan
    return plan


def _adopt_sharded() -> bool:
    """Register the parameters that became DTensors after their layer was made prunable
    (``fully_shard`` after ``make_prunable``), with masks laid out like them; whether any
    was new."""
    adopted = False
    for layer in list(LAYERS):
        follow_layout(layer)
        for owner, name, param in layer._lotto_masked_parameters():
            if is_dtensor(param) and param not in _MASKED:
                _apply_mask(owner, name, param)
                adopted = True
    return adopted


def _after_optimizer_step(optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
    """Re-zero every masked parameter that the optimizer holds: the large CPU ones in one
    call of the host kernels, the others in one fused multiply."""
    plan = _plan(optimizer)
    stale = zip(plan.fused, plan.pointers, strict=True)
    if any((plan.params[i].data_ptr(), plan.masks[i].data_ptr()) != p for i, p in stale):
        plan = _plan(optimizer, fresh=True)  # a parameter or mask got new storage
    if plan.fused:
        pool.zero_pruned(plan.keys, plan.flags, _cpu.threads())
        for i in plan.fused:
            increment_version(plan.params[i])
    if plan.multiplied:
        with torch.no_grad():
            for n, (j, version) in enumerate(plan.copied):
                mask = plan.masks[plan.multiplied[j]]
                if mask._version != version:  # the mask was written since: copy it again
                    plan.factors[j].copy_(mask)
                    plan.copied[n] = (j, mask._version)
            torch._foreach_mul_([plan.params[i] for i in plan.multiplied], plan.factors)
    for versions, name, param, mask, layer_id in plan.records:
        versions[name] = (param, param._version, mask, mask._version, layer_id)


register_optimizer_step_post_hook(_after_optimizer_step)
