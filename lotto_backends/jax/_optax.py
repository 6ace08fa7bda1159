"""An optax wrapper that keeps pruned weights at exactly zero while training."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._tree import leaves

__all__ = ["keep_pruned"]


def _zero_pruned(updates: Any, masks: Any) -> Any:
    """``updates`` with every pruned entry set to exactly 0 (``where``, not a multiply,
    so an infinite or NaN update cannot leak through as NaN)."""
    flat, treedef = leaves(updates, masks)
    out = [
        leaf.value if leaf.mask is None else jnp.where(leaf.mask, leaf.value, jnp.zeros((), leaf.value.dtype))
        for leaf in flat
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def keep_pruned(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap an optax optimizer so that its updates leave pruned entries exactly 0.

    The masks are an argument of every step, ``tx.update(grads, state, params,
    masks=masks)``, rather than part of the optimizer state: a prune round then needs no
    new optimizer state and no setter, the step stays a pure function of its inputs
    under ``jax.jit``, and ``nnx.Optimizer.update(model, grads, masks=masks)`` passes
    them through as it does any extra argument.

    Gradients are masked before ``inner`` sees them, so its state (momentum, Adam's
    moments) never accumulates anything for a pruned entry; updates are masked again
    after it, so terms that ``inner`` adds on its own (weight decay, a momentum left
    from before a round) cannot move a pruned entry either. With parameters whose
    pruned entries are 0 (what ``prune`` and ``rewind`` return), they stay exactly 0.

    Parameters
    ----------
    inner
        Any optax gradient transformation (``optax.adamw(1e-3)``, a chain, ...).

    Returns
    -------
    optax.GradientTransformationExtraArgs
        Its ``update`` requires ``masks=``: the mask pytree of ``init_masks`` /
        ``prune`` (a boolean array or ``None`` per leaf of the updates); other extra
        arguments go on to ``inner``.

    Examples
    --------
    >>> import jax.numpy as jnp, optax
    >>> from lotto_backends.jax import pytree
    >>> params = {"w": jnp.array([[1.0, -2.0], [0.0, 3.0]])}
    >>> masks = {"w": jnp.array([[True, True], [False, True]])}
    >>> tx = pytree.keep_pruned(optax.adamw(0.1, weight_decay=0.1))
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params, masks=masks)
    >>> optax.apply_updates(params, updates)["w"][1, 0].item()
    0.0
    """
    inner = optax.with_extra_args_support(inner)

    def update(
        updates: Any, state: Any, params: Any = None, *, masks: Any = None, **extra_args: Any
    ) -> tuple[Any, Any]:
        if masks is None:
            raise TypeError(
                "keep_pruned(...).update needs masks=: the pytree of boolean masks (None for leaves "
                "without one) that init_masks() and prune() return"
            )
        updates, state = inner.update(_zero_pruned(updates, masks), state, params, **extra_args)
        return _zero_pruned(updates, masks), state

    return optax.GradientTransformationExtraArgs(inner.init, update)
