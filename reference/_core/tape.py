"""The tape witness: tf.GradientTape over the model's own loss.

It gives the exact gradient (up to rounding) of the forward the model actually computes, so it is
held to the tightest tolerance. It cannot see a forward bug that the backward mirrors (the
independent forward does), nor a wrong ``tf.custom_gradient`` inside the forward (finite
differences do).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import tensorflow as tf

from .adapter import Adapter, guarded

__all__ = ["tape_gradients", "tape_values"]


def tape_gradients(model, X, y, *, include_input: bool = False) -> List[tf.Tensor]:
    """``dL/dparam`` for every tensor in ``model.params`` (a parameter the loss does not depend
    on gets zeros), by ``tf.GradientTape`` over ``model.loss(X, y)``; with
    ``include_input=True`` the list ends with ``dL/dX``."""
    params = list(model.params)
    dtype = params[0].dtype if params else tf.float64
    Xt = (
        X
        if isinstance(X, tf.Tensor)
        else tf.convert_to_tensor(np.asarray(X, dtype=dtype.as_numpy_dtype))
    )
    sources = params + ([Xt] if include_input else [])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(sources)
        loss = model.loss(Xt, y)
    if tf.rank(loss) != 0:
        raise ValueError(
            f"model.loss(X, y) must return a scalar (the batch mean); got shape "
            f"{tuple(loss.shape)}."
        )
    return tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def tape_values(adapter: Adapter) -> Dict:
    """The tape's gradients keyed like ``adapter.keys``, as float64 arrays (ModelError when the
    model's loss raises or is not a scalar)."""
    grads = guarded(
        "tf.GradientTape over model.loss(X, y)",
        tape_gradients,
        adapter.model,
        adapter.X,
        adapter.y,
        include_input=adapter.include_input,
    )
    return {k: np.asarray(g.numpy(), dtype=np.float64) for k, g in zip(adapter.keys, grads)}
