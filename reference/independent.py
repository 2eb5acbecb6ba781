"""The independent forward: the same network rebuilt from tf.nn / tf.math primitives, in float64.

The tape and finite differences both differentiate the model's own forward, so a forward bug
that the backward faithfully mirrors (a loss without its 1/N, whose gradient also lacks it)
passes them both. This witness recomputes the loss with formulas written differently from
manual_backprop's and compares values.

It applies to models that describe themselves the way ``manual_backprop.MLP`` does:
``layer_sizes``, ``activations`` (objects with ``name`` and ``params``), ``loss_function``
(``name`` and ``params``), optionally ``fused``; with catalogue names only. Other models are not
rebuilt (the report says so).

The TensorFlow built-ins are not all exact in float64: ``tf.nn.leaky_relu`` keeps alpha as
float32 and ``tf.nn.gelu`` a float32-rounded 1/sqrt(2), so those are written from ``tf.math``.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

__all__ = ["independent_loss", "describable", "FORWARD_RTOL"]

# Relative tolerance of the model's loss (in float64) against the rebuilt one.
FORWARD_RTOL = 1e-9


def _hard_sigmoid(z, p):
    return tf.clip_by_value(z / 6.0 + 0.5, 0.0, 1.0)


def _leaky(z, p):
    alpha = p["alpha"]
    return tf.maximum(z, alpha * z) if alpha <= 1 else tf.minimum(z, alpha * z)


def _elu(z, p):
    return tf.where(z > 0, z, p["alpha"] * tf.nn.elu(tf.minimum(z, 0.0)))


ACTIVATIONS: Dict[str, Callable] = {
    "linear": lambda z, p: z,
    "sigmoid": lambda z, p: 0.5 * (1.0 + tf.math.tanh(0.5 * z)),
    "tanh": lambda z, p: tf.math.tanh(z),
    "relu": lambda z, p: tf.maximum(z, 0.0),
    "leaky_relu": _leaky,
    "elu": _elu,
    "selu": lambda z, p: tf.nn.selu(z),
    "gelu": lambda z, p: 0.5 * z * tf.math.erfc(-z / math.sqrt(2.0)),
    "gelu_tanh": lambda z, p: 0.5 * z * (1.0 + tf.math.tanh(
        math.sqrt(2.0 / math.pi) * z * (1.0 + 0.044715 * tf.square(z)))),
    "softplus": lambda z, p: tf.maximum(z, 0.0) + tf.math.log1p(tf.exp(-tf.abs(z))),
    "swish": lambda z, p: tf.nn.silu(z),
    "softsign": lambda z, p: z / (1.0 + tf.abs(z)),
    "hard_sigmoid": _hard_sigmoid,
    "softmax": lambda z, p: tf.exp(z - tf.reduce_logsumexp(z, axis=-1, keepdims=True)),
}


def _clip(p, eps):
    return tf.clip_by_value(p, eps, 1.0 - eps)


def _huber(y, p, params):
    r = tf.abs(p - y)
    quad = tf.minimum(r, params["delta"])
    return tf.reduce_mean(0.5 * tf.square(quad) + params["delta"] * (r - quad))


def _bce(y, p, params):
    q = _clip(p, params["epsilon"])
    return -tf.reduce_mean(y * tf.math.log(q) + (1.0 - y) * tf.math.log1p(-q))


def _bce_logits(y, z, params):
    return -tf.reduce_mean(y * tf.math.log_sigmoid(z) + (1.0 - y) * tf.math.log_sigmoid(-z))


def _cce(y, p, params):
    q = _clip(p, params["epsilon"])
    return -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(q), axis=-1))


def _cce_logits(y, z, params):
    return -tf.reduce_mean(tf.reduce_sum(y * tf.nn.log_softmax(z, axis=-1), axis=-1))


def _sparse_logits(y, z, params):
    picked = tf.gather(tf.nn.log_softmax(z, axis=-1), tf.cast(y, tf.int32), axis=-1, batch_dims=1)
    return -tf.reduce_mean(picked)


LOSSES: Dict[str, Callable] = {
    "mse": lambda y, p, k: tf.reduce_mean(tf.math.squared_difference(p, y)),
    "mae": lambda y, p, k: tf.reduce_mean(tf.abs(y - p)),
    "huber": _huber,
    "binary_crossentropy": _bce,
    "binary_crossentropy_from_logits": _bce_logits,
    "categorical_crossentropy": _cce,
    "categorical_crossentropy_from_logits": _cce_logits,
    "sparse_categorical_crossentropy_from_logits": _sparse_logits,
}
# A fused pairing is computed from the logits, with no clipping.
_FUSED = {"sigmoid+binary_crossentropy": _bce_logits,
          "softmax+categorical_crossentropy": _cce_logits}


def describable(model) -> Optional[str]:
    """None when the model can be rebuilt; otherwise why not."""
    for attr in ("layer_sizes", "activations", "loss_function"):
        if not hasattr(model, attr):
            return f"the model has no {attr!r}, so it cannot be rebuilt"
    for act in model.activations:
        if not getattr(act, "builtin", False) or getattr(act, "name", None) not in ACTIVATIONS:
            return f"activation {getattr(act, 'name', act)!r} is not a catalogue activation"
    loss = model.loss_function
    if not getattr(loss, "builtin", False) or getattr(loss, "name", None) not in LOSSES:
        return f"loss {getattr(loss, 'name', loss)!r} is not a catalogue loss"
    if len(model.params) != 2 * (len(model.layer_sizes) - 1):
        return "the model's params are not one (W, b) pair per layer"
    return None


def independent_loss(model, X, y):
    """The loss of ``model`` at ``X, y`` recomputed from primitives in float64, and the scale of
    the values it was computed from (``1 + max |output pre-activation|``): rounding in any
    forward is relative to that, not to the loss, which may be nearly zero."""
    a = tf.constant(np.asarray(X.numpy() if isinstance(X, tf.Tensor) else X, np.float64))
    sparse = model.loss_function.name.startswith("sparse")
    y_arr = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y)
    if sparse:
        yt = tf.constant(y_arr.reshape(-1).astype(np.int64))
    else:
        yt = tf.constant(y_arr.astype(np.float64).reshape(len(y_arr), -1))
    params = [tf.constant(p.numpy().astype(np.float64)) for p in model.params]
    fused = getattr(model, "fused", None)
    n_layers = len(model.activations)
    for l, act in enumerate(model.activations):
        z = tf.linalg.matmul(a, params[2 * l]) + params[2 * l + 1]
        scale = 1.0 + float(tf.reduce_max(tf.abs(z)))
        if l == n_layers - 1 and fused in _FUSED:
            return float(_FUSED[fused](yt, z, model.loss_function.params)), scale
        a = ACTIVATIONS[act.name](z, dict(act.params))
    return float(LOSSES[model.loss_function.name](yt, a, dict(model.loss_function.params))), scale
