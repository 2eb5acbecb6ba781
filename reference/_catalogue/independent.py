"""The independent forward: the same network rebuilt from tf.nn / tf.math primitives, in float64.

The tape and finite differences both differentiate the model's own forward, so a forward bug
that the backward faithfully mirrors (a loss without its 1/N, whose gradient also lacks it)
passes them both. This witness recomputes the loss from the ``independent`` forms in
``manual_backprop``'s catalogue records, written differently from the forwards, and compares
values.

It applies to models that describe themselves the way ``manual_backprop.MLP`` does:
``layer_sizes``, ``activations`` (objects with ``name`` and ``params``), ``loss_function``
(``name`` and ``params``), optionally ``fused``; with catalogue names only. For any other model
``why_not`` says why it cannot be rebuilt, and the report says so.
"""

from __future__ import annotations

import inspect
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

import manual_backprop as mb

__all__ = ["why_not", "independent_loss"]


# The methods an MLP's loss runs through: a subclass overriding any of them computes a loss its
# description (layer sizes, activations, loss) no longer tells.
_LOSS_METHODS = ("loss", "forward", "_forward_all", "_loss_from_cache", "_inputs_and_labels")


def why_not(model) -> Optional[str]:
    """None when the model can be rebuilt from the catalogue; otherwise why not."""
    for attr in ("layer_sizes", "activations", "loss_function"):
        if not hasattr(model, attr):
            return f"the model has no {attr!r}, so it cannot be rebuilt from primitives"
        try:
            inspect.getattr_static(model, attr)
        except AttributeError:
            return (
                f"the model's {attr!r} comes from an object it wraps (by __getattr__), whose "
                f"loss need not be the model's"
            )
    if isinstance(model, mb.MLP):
        for method in _LOSS_METHODS:
            if getattr(type(model), method) is not getattr(mb.MLP, method):
                return (
                    f"{type(model).__name__} overrides MLP.{method}, so its loss need not be "
                    f"the network its layer sizes, activations and loss describe"
                )
    for act in model.activations:
        if not getattr(act, "builtin", False) or getattr(act, "name", None) not in mb.ACTIVATIONS:
            return f"activation {getattr(act, 'name', act)!r} is not a catalogue activation"
    loss = model.loss_function
    if not getattr(loss, "builtin", False) or getattr(loss, "name", None) not in mb.LOSSES:
        return f"loss {getattr(loss, 'name', loss)!r} is not a catalogue loss"
    if len(model.params) != 2 * (len(model.layer_sizes) - 1):
        return "the model's params are not one (W, b) pair per layer"
    return None


def _labels(model, y):
    y_arr = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y)
    if mb.LOSSES[model.loss_function.name].labels == "sparse":
        return tf.constant(y_arr.reshape(-1).astype(np.int64))
    return tf.constant(y_arr.astype(np.float64).reshape(len(y_arr), -1))


def independent_loss(model, X, y) -> Tuple[float, float]:
    """The loss of ``model`` at ``X, y`` recomputed from primitives in float64, and the scale of
    the values it was computed from (``1 + max |output pre-activation|``): rounding in any
    forward is relative to that, not to the loss, which may be nearly zero."""
    a = tf.constant(np.asarray(X.numpy() if isinstance(X, tf.Tensor) else X, np.float64))
    yt = _labels(model, y)
    params = [tf.constant(p.numpy().astype(np.float64)) for p in model.params]
    loss = model.loss_function
    record = mb.LOSSES[loss.name]
    loss_params = dict(loss.params)
    fused = record.fuses if getattr(model, "fused", None) else None
    n_layers = len(model.activations)
    for l, act in enumerate(model.activations):
        z = tf.linalg.matmul(a, params[2 * l]) + params[2 * l + 1]
        scale = 1.0 + float(tf.reduce_max(tf.abs(z)))
        if l == n_layers - 1 and fused is not None and fused[0] == act.name:
            # A fused pairing is computed from the logits, with no clipping.
            return float(mb.LOSSES[fused[1]].independent(yt, z)), scale
        a = mb.ACTIVATIONS[act.name].independent(z, **dict(act.params))
    return float(record.independent(yt, a, **loss_params)), scale
