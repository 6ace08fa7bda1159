"""An ``nnx.Optimizer`` that keeps pruned weights at exactly zero whatever moves them.

A prunable layer masks its weights' gradients inside its own call, which is enough for a
fresh optimizer fed by that call alone. Everything else revives pruned weights: an
optimizer state kept across a prune (momentum, Adam's moments), a weight read outside
the layer's call (a tied head ``h @ embed.embedding[...].T``, an L1 penalty), gradient
noise, weight decay. ``Optimizer`` wraps the transformation with ``pytree.keep_pruned``
and reads the masks from the model itself at every ``update``, so the masks it applies
are always the model's current ones, also after a prune, with nothing to pass by hand.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx

from ._masking import Mask
from ._optax import keep_pruned

__all__ = ["Optimizer", "model_masks"]


def model_masks(model: nnx.Module, wrt: Any = nnx.Param) -> Any:
    """The masks of ``model``'s parameters, in the structure of ``nnx.state(model, wrt)``
    (of the gradients ``nnx.grad`` gives): each masked parameter's current boolean mask,
    ``None`` for the others. ``pytree.keep_pruned(tx).update(..., masks=model_masks(m))``
    takes it as it is."""
    params = nnx.as_pure(nnx.state(model, wrt))
    masks = {tuple(path): value for path, value in nnx.to_flat_state(nnx.as_pure(nnx.state(model, Mask)))}

    def mask_of(path: tuple[Any, ...], _: Any) -> Any:
        keys = tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)
        return masks.get((*keys[:-1], f"{keys[-1]}_mask"))

    return jax.tree_util.tree_map_with_path(mask_of, params)


class Optimizer(nnx.Optimizer):  # type: ignore[type-arg]
    """``nnx.Optimizer`` whose updates leave every pruned weight of the model at exactly
    0, whatever produced the update: use it in place of ``nnx.Optimizer``.

    ``tx`` is wrapped with ``pytree.keep_pruned`` (gradients masked before ``tx`` sees
    them, updates masked after), and each ``update(model, grads)`` reads the model's
    current masks, so an optimizer kept across a prune goes on with the new masks.

    Examples
    --------
    >>> import jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> from lotto_backends.jax import MagnitudePruneGroup, Optimizer, PrunableLinear, Pruner
    >>> layer = PrunableLinear(4, 2, rngs=nnx.Rngs(0))
    >>> optimizer = Optimizer(layer, optax.adamw(0.1, weight_decay=0.1), wrt=nnx.Param)
    >>> Pruner([MagnitudePruneGroup([layer], 0.5)], model=layer).prune()
    >>> grads = nnx.grad(lambda m: (m.kernel[...] ** 2).sum())(layer)  # reads the kernel directly
    >>> _ = optimizer.update(layer, grads)
    >>> bool((layer.kernel[...][~layer.kernel_mask[...]] == 0).all())
    True
    """

    def __init__(self, model: nnx.Module, tx: optax.GradientTransformation, *, wrt: Any = nnx.Param, **kwargs: Any):
        super().__init__(model, keep_pruned(tx), wrt=wrt, **kwargs)

    def update(self, model: nnx.Module, grads: Any, /, **kwargs: Any) -> Any:
        """``nnx.Optimizer.update`` with the model's current masks applied."""
        return super().update(model, grads, masks=model_masks(model, self.wrt), **kwargs)
