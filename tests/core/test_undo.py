"""A call that fails part-way changes nothing: ``prune()``, ``step()``, ``rewind()``,
``set_rewind_point()``, ``load_state_dict()`` and the controls, with a failure injected
at the third parameter they write, leave every weight, mask, rewind point and round
counter as it was, and the user's arrays stay theirs; the call then succeeds as if the
failure had never happened."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace

from lotto_core import ArrayLayer, Gradual, MagnitudePruneGroup, PruneGroup, Pruner
from lotto_core.backend import backend_for
from lotto_core.undo import Undo, write_masks

from ..failures import pruner_calls
from .helpers import host


def _model(xp: Any, device: Any) -> tuple[list[ArrayLayer], Pruner]:
    """Two groups over four layers (weight and bias each) and one layer outside them,
    pruned once and trained, so that masks, rewind points and weights all differ."""
    rng = np.random.default_rng(0)

    def layer() -> ArrayLayer:
        w, b = rng.standard_normal((6, 5)), rng.standard_normal(6)
        return ArrayLayer(
            {"weight": xp.asarray(w, dtype=xp.float32, device=device), "bias": xp.asarray(b, device=device)},
            prunable=["weight"],
        )

    layers = [layer() for _ in range(5)]
    pruner = Pruner([MagnitudePruneGroup(layers[:3], 0.3), MagnitudePruneGroup(layers[3:4], 0.4)], others=layers[4:])
    pruner.prune()
    _train(layers, 1.5)
    return layers, pruner


def _train(layers: list[ArrayLayer], by: float) -> None:
    """A "training step" that respects the masks (pruned entries stay 0)."""
    for layer in layers:
        for param in layer.params.values():
            xp = array_namespace(param.value)
            new = param.value * by + 0.25
            if param.mask is not None:
                new = xp.where(param.mask, new, xp.zeros_like(new))
            param.set_value(new)


def _state(layers: list[ArrayLayer], pruner: Pruner) -> list[Any]:
    """Everything a call may change, as NumPy copies, and which arrays the layers hold."""
    out: list[Any] = [pruner.rounds, [g.rounds for g in pruner.groups]]
    for layer in layers:
        for name, param in layer.params.items():
            out.append((name, host(param.value).copy(), host(param.rewind_point).copy(), id(param.value)))
            out.append(None if param.mask is None else host(param.mask).copy())
    return out


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert a[:2] == b[:2]
    for x, y in zip(a[2:], b[2:], strict=True):
        if isinstance(x, tuple):
            assert x[0] == y[0]
            assert x[3] == y[3]
            np.testing.assert_array_equal(x[1], y[1])
            np.testing.assert_array_equal(x[2], y[2])
        else:
            np.testing.assert_array_equal(x, y)


def _fail_third(monkeypatch: pytest.MonkeyPatch, layers: list[ArrayLayer], which: str, param: str = "weight") -> None:
    """Make the third layer's ``param`` raise ``MemoryError`` from ``which`` (one of its
    handle's writes), as an allocation failing inside it would."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("injected")

    monkeypatch.setattr(layers[2].params[param], which, boom)


CALLS = {  # the call, by its name in pruner_calls, and the handle method that fails
    "prune": ("prune", "store_mask"),
    "rewind": ("rewind", "set_value"),
    "set_rewind_point": ("set_rewind_point", "set_rewind_point"),
    "load_state_dict (rewind points)": ("load_state_dict", "set_rewind_point"),
    "load_state_dict (masks)": ("load_state_dict", "store_mask"),
    "shuffle_masks": ("shuffle_masks", "store_mask"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_call_failing_at_the_third_parameter_changes_nothing(xp, device, monkeypatch, call):
    name, which = CALLS[call]
    layers, pruner = _model(xp, device)
    saved = pruner.state_dict()  # the state after one round; then a second round and training
    pruner.prune()
    pruner.set_rewind_point()
    _train(layers, 0.5)
    before = _state(layers, pruner)
    twin_layers, twin = _model(xp, device)
    twin_saved = twin.state_dict()
    twin.prune()
    twin.set_rewind_point()
    _train(twin_layers, 0.5)

    with monkeypatch.context() as patch:
        _fail_third(patch, layers, which)
        with pytest.raises(MemoryError, match="injected"):
            pruner_calls(pruner, saved)[name]()
        _assert_same(_state(layers, pruner), before)

    pruner_calls(pruner, saved)[name]()  # the same call, now without the failure, as on an untouched twin
    pruner_calls(twin, twin_saved)[name]()
    _assert_same(_state(layers, pruner)[:2], _state(twin_layers, twin)[:2])
    for a, b in zip(_state(layers, pruner)[2:], _state(twin_layers, twin)[2:], strict=True):
        if isinstance(a, tuple):
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[2], b[2])
        else:
            np.testing.assert_array_equal(a, b)


def test_a_first_round_failing_restores_masks_that_kept_everything(xp, device, monkeypatch):
    layers, _ = _model(xp, device)
    fresh = [ArrayLayer({"weight": layer["weight"]}) for layer in layers[:3]]
    for layer in fresh:
        layer.params["weight"].mask = xp.ones_like(layer["weight"], dtype=xp.bool)
    before = [host(layer["weight"]).copy() for layer in fresh]
    pruner = Pruner([MagnitudePruneGroup(fresh, 0.5)])
    with monkeypatch.context() as patch:
        _fail_third(patch, fresh, "store_mask")
        with pytest.raises(MemoryError):
            pruner.prune()
    for layer, w in zip(fresh, before, strict=True):
        assert bool(np.all(host(layer.params["weight"].mask)))
        np.testing.assert_array_equal(host(layer["weight"]), w)
    assert pruner.rounds == 0
    assert pruner.groups[0].rounds == 0


def test_a_gradual_step_failing_changes_nothing(xp, device, monkeypatch):
    layers, _ = _model(xp, device)
    pruner = Pruner([PruneGroup(layers[:3], Gradual(0.0, 0.8, begin_step=0, end_step=4, frequency=1))])
    pruner.step(0)
    before = _state(layers, pruner)
    with monkeypatch.context() as patch:
        _fail_third(patch, layers, "store_mask")
        with pytest.raises(MemoryError):
            pruner.step(1)
    _assert_same(_state(layers, pruner), before)
    assert pruner.step(1)


def test_an_undo_that_cannot_restore_a_handle_says_which(xp, device, monkeypatch):
    layers, _ = _model(xp, device)
    param = layers[1].params["bias"]

    def failing_call() -> None:
        with Undo() as undo:
            undo.keep(param, value=True)
            raise RuntimeError("the call failed")

    with monkeypatch.context() as patch:
        patch.setattr(param, "set_value", lambda value: (_ for _ in ()).throw(OSError("stuck")))
        with pytest.raises(RuntimeError) as caught:
            failing_call()
    assert "could not put back" in "\n".join(caught.value.__notes__)
    assert "stuck" in "\n".join(caught.value.__notes__)


def test_a_failure_while_the_weights_are_zeroed_in_place_is_said(monkeypatch):
    """The one step that is not undone (zeroing in place, after every mask is stored) says
    so when it fails, rather than leaving masks and weights that disagree unsaid."""
    layers = [ArrayLayer({"w": np.arange(1.0, 7.0)}) for _ in range(3)]
    backend = backend_for(layers[0]["w"])

    def failing_write(writes: Any) -> None:
        raise MemoryError("injected")

    monkeypatch.setattr(type(backend), "write", lambda self, writes: failing_write(writes))
    new = [(layer.params["w"], np.arange(6) > 2, None) for layer in layers]

    def failing_call() -> None:
        with Undo() as undo:
            write_masks(undo, new)

    with pytest.raises(MemoryError) as caught:
        failing_call()
    assert "zeroed in place" in "\n".join(caught.value.__notes__)
    assert all(bool(np.all(layer.params["w"].mask)) for layer in layers)
