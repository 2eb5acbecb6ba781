"""A catalogue of custom derivatives written the way people write them: right ones that
``check_function`` must pass and planted bugs it must catch, in both modes and both dtypes.

Each :class:`Case` builds its inputs at any seed and dtype; ``fn`` is written in TF ops and
dtype-generic (as user code usually is), ``vjp``/``jvp`` by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable
    inputs: Callable  # inputs(rng) -> tuple of float64 arrays
    vjp: Optional[Callable] = None
    jvp: Optional[Callable] = None
    order: int = 1
    right: bool = True
    bug: str = ""

    def build(self, dtype="float64", seed=0):
        xs = self.inputs(np.random.default_rng(seed))
        return tuple(np.asarray(x, dtype=dtype) for x in xs)


def _normal(*shape, scale=1.0):
    return lambda rng: (rng.normal(scale=scale, size=shape),)


# --- softmax, log-softmax, log-sum-exp ------------------------------------------------------------


def softmax(x):
    return tf.nn.softmax(x, axis=-1)


def softmax_vjp(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return s * (dy - tf.reduce_sum(dy * s, axis=-1, keepdims=True))


def softmax_vjp_diagonal(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return dy * s * (1.0 - s)


def softmax_jvp(dx, x):
    s = tf.nn.softmax(x, axis=-1)
    return s * (dx - tf.reduce_sum(dx * s, axis=-1, keepdims=True))


def softmax_jvp_diagonal(dx, x):
    s = tf.nn.softmax(x, axis=-1)
    return s * (1.0 - s) * dx


def log_softmax(x):
    return x - tf.reduce_logsumexp(x, axis=-1, keepdims=True)


def log_softmax_vjp(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return dy - s * tf.reduce_sum(dy, axis=-1, keepdims=True)


def log_softmax_vjp_sign(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return dy + s * tf.reduce_sum(dy, axis=-1, keepdims=True)


@tf.custom_gradient
def stable_logsumexp(x):
    """log sum exp over rows, shifted by the row max: exp(300) overflows, this does not."""
    m = tf.reduce_max(x, axis=-1, keepdims=True)
    y = tf.squeeze(m, -1) + tf.math.log(tf.reduce_sum(tf.exp(x - m), axis=-1))

    def grad(dy):
        return dy[:, None] * tf.nn.softmax(x, axis=-1)

    return y, grad


@tf.custom_gradient
def logsumexp_ignores_dy(x):
    m = tf.reduce_max(x, axis=-1, keepdims=True)
    y = tf.squeeze(m, -1) + tf.math.log(tf.reduce_sum(tf.exp(x - m), axis=-1))

    def grad(dy):
        return tf.nn.softmax(x, axis=-1)

    return y, grad


def _saturated_logits(rng):
    return (40.0 * rng.normal(size=(4, 6)),)


def _offset_rows(rng):
    return (50.0 + rng.normal(size=(4, 6)),)


def _logits_of_hundreds(rng):
    return (300.0 + 20.0 * rng.normal(size=(4, 6)),)


# --- normalisation --------------------------------------------------------------------------------

_EPS = 1e-5


def layer_norm(x):
    mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mu) / tf.sqrt(var + _EPS)


def layer_norm_vjp(dy, x):
    mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    inv = 1.0 / tf.sqrt(var + _EPS)
    xhat = (x - mu) * inv
    mean_dy = tf.reduce_mean(dy, axis=-1, keepdims=True)
    mean_dy_xhat = tf.reduce_mean(dy * xhat, axis=-1, keepdims=True)
    return inv * (dy - mean_dy - xhat * mean_dy_xhat)


def layer_norm_vjp_no_mean(dy, x):
    mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    inv = 1.0 / tf.sqrt(var + _EPS)
    xhat = (x - mu) * inv
    mean_dy_xhat = tf.reduce_mean(dy * xhat, axis=-1, keepdims=True)
    return inv * (dy - xhat * mean_dy_xhat)


def batch_norm(x, gamma, beta):
    """Training mode: statistics of the batch (axis 0)."""
    mu, var = tf.nn.moments(x, axes=[0], keepdims=True)
    return gamma * (x - mu) / tf.sqrt(var + _EPS) + beta


def _batch_norm_vjp(dy, x, gamma, beta, variance_term=True):
    n = tf.cast(tf.shape(x)[0], x.dtype)
    mu, var = tf.nn.moments(x, axes=[0], keepdims=True)
    inv = 1.0 / tf.sqrt(var + _EPS)
    xhat = (x - mu) * inv
    dxhat = dy * gamma
    dx = dxhat - tf.reduce_mean(dxhat, axis=0, keepdims=True)
    if variance_term:
        dx -= xhat * tf.reduce_sum(dxhat * xhat, axis=0, keepdims=True) / n
    return dx * inv, tf.reduce_sum(dy * xhat, axis=0), tf.reduce_sum(dy, axis=0)


def batch_norm_vjp(dy, x, gamma, beta):
    return _batch_norm_vjp(dy, x, gamma, beta)


def batch_norm_vjp_no_variance(dy, x, gamma, beta):
    return _batch_norm_vjp(dy, x, gamma, beta, variance_term=False)


def _batch_norm_inputs(rng):
    return rng.normal(size=(6, 4)), 1.0 + 0.2 * rng.normal(size=4), rng.normal(size=4)


def l2_normalize(x):
    return x / tf.norm(x, axis=-1, keepdims=True)


def l2_normalize_vjp(dy, x):
    n = tf.norm(x, axis=-1, keepdims=True)
    u = x / n
    return (dy - u * tf.reduce_sum(dy * u, axis=-1, keepdims=True)) / n


def l2_normalize_vjp_no_projection(dy, x):
    return dy / tf.norm(x, axis=-1, keepdims=True)


# --- two inputs -----------------------------------------------------------------------------------


def matmul(a, b):
    return a @ b


def matmul_vjp(dy, a, b):
    return dy @ tf.transpose(b), tf.transpose(a) @ dy


def matmul_vjp_no_transpose(dy, a, b):
    return dy @ b, a @ dy


def matmul_jvp(tangents, a, b):
    da, db = tangents
    return da @ b + a @ db


def matmul_jvp_missing_term(tangents, a, b):
    da, db = tangents
    return da @ b


def _matmul_inputs(rng):
    return rng.normal(size=(3, 4)), rng.normal(size=(4, 2))


def _square_inputs(rng):
    return rng.normal(size=(4, 4)), rng.normal(size=(4, 4))


def product(x, w):
    return x * w


def product_vjp(dy, x, w):
    return dy * w, dy * x


def product_vjp_swapped(dy, x, w):
    return dy * x, dy * w


def attention_scores(q, k):
    d = tf.cast(tf.shape(q)[-1], q.dtype)
    return tf.nn.softmax(q @ tf.transpose(k) / tf.sqrt(d), axis=-1)


def _attention_vjp(dy, q, k, scaled=True):
    d = tf.cast(tf.shape(q)[-1], q.dtype)
    p = tf.nn.softmax(q @ tf.transpose(k) / tf.sqrt(d), axis=-1)
    ds = p * (dy - tf.reduce_sum(dy * p, axis=-1, keepdims=True))
    if scaled:
        ds = ds / tf.sqrt(d)
    return ds @ k, tf.transpose(ds) @ q


def attention_vjp(dy, q, k):
    return _attention_vjp(dy, q, k)


def attention_vjp_unscaled(dy, q, k):
    return _attention_vjp(dy, q, k, scaled=False)


def _attention_inputs(rng):
    return rng.normal(size=(3, 4)), rng.normal(size=(5, 4))


# --- losses ---------------------------------------------------------------------------------------


def mse(pred, target):
    return tf.reduce_mean((pred - target) ** 2)


def mse_vjp(dy, pred, target):
    n = tf.cast(tf.size(pred), pred.dtype)
    g = 2.0 * (pred - target) / n * dy
    return g, -g


def mse_vjp_no_mean(dy, pred, target):
    g = 2.0 * (pred - target) * dy
    return g, -g


def _mse_inputs(rng):
    return rng.normal(size=(8, 3)), rng.normal(size=(8, 3))


_LABELS = np.eye(5)[[0, 3, 1, 4, 2, 2]]


def cross_entropy(logits):
    """Mean over the batch of the softmax cross-entropy with fixed one-hot labels."""
    labels = tf.constant(_LABELS, logits.dtype)
    return tf.reduce_mean(tf.reduce_logsumexp(logits, -1) - tf.reduce_sum(labels * logits, -1))


def cross_entropy_vjp(dy, logits):
    n = tf.cast(tf.shape(logits)[0], logits.dtype)
    return dy * (tf.nn.softmax(logits, -1) - tf.constant(_LABELS, logits.dtype)) / n


def cross_entropy_vjp_no_mean(dy, logits):
    return dy * (tf.nn.softmax(logits, -1) - tf.constant(_LABELS, logits.dtype))


# --- several outputs ------------------------------------------------------------------------------


def norm_and_sine(x):
    return tf.reduce_sum(x * x, axis=1), tf.sin(x)


def norm_and_sine_vjp(dys, x):
    d_norm, d_sine = dys
    return 2.0 * x * d_norm[:, None] + tf.cos(x) * d_sine


def norm_and_sine_vjp_first_only(dys, x):
    d_norm, _ = dys
    return 2.0 * x * d_norm[:, None]


# --- kinks ----------------------------------------------------------------------------------------


def row_max(x):
    return tf.reduce_max(x, axis=-1)


def row_max_vjp(dy, x):
    """The whole gradient to the first maximum of each row (np.argmax's choice)."""
    first = tf.one_hot(tf.argmax(x, axis=-1), tf.shape(x)[-1], dtype=x.dtype)
    return dy[:, None] * first


def row_max_vjp_every_tie(dy, x):
    """The whole gradient to every tied maximum: at a tie the gradient is counted twice."""
    at_max = tf.cast(tf.equal(x, tf.reduce_max(x, axis=-1, keepdims=True)), x.dtype)
    return dy[:, None] * at_max


def _rows_with_ties(rng):
    x = rng.normal(size=(4, 5))
    x[:, 3] = x.max(axis=1) + 0.5  # two exact maxima per row
    x[:, 1] = x[:, 3]
    return (x,)


def absolute(x):
    return tf.abs(x)


def absolute_vjp(dy, x):
    return dy * tf.sign(x)


def _with_zeros(rng):
    x = rng.normal(size=(3, 4))
    x[0, :2] = 0.0
    return (x,)


def relu(x):
    return tf.nn.relu(x)


def relu_vjp_one_at_zero(dy, x):
    """relu'(0) = 1, not TensorFlow's 0: a valid subgradient at the kink."""
    return dy * tf.cast(x >= 0, x.dtype)


def cumsum(x):
    return tf.cumsum(x, axis=-1)


def cumsum_vjp(dy, x):
    return tf.cumsum(dy, axis=-1, reverse=True)


def cumsum_vjp_forward(dy, x):
    return tf.cumsum(dy, axis=-1)


# --- custom gradients and the second order --------------------------------------------------------


@tf.custom_gradient
def stable_softplus(x):
    """log(1 + e^x) written so that e^x never overflows."""

    def grad(dy):
        return dy * tf.sigmoid(x)

    return tf.maximum(x, 0.0) + tf.math.log1p(tf.exp(-tf.abs(x))), grad


def _softplus_inputs(rng):
    x = rng.normal(scale=3.0, size=(3, 4))
    x[0] = [-120.0, -40.0, 40.0, 120.0]
    return (x,)


@tf.custom_gradient
def tanh_custom(x):
    y = tf.tanh(x)

    def grad(dy):
        return dy * (1.0 - y * y)

    return y, grad


@tf.custom_gradient
def tanh_stop_gradient(x):
    """Right at first order; the stop_gradient hides its own derivative from the second."""
    y = tf.tanh(x)

    def grad(dy):
        return dy * tf.stop_gradient(1.0 - y * y)

    return y, grad


def tanh(x):
    return tf.tanh(x)


def tanh_vjp_numpy(dy, x):
    """Right at first order, computed in NumPy: TensorFlow cannot differentiate it."""
    t = np.tanh(x.numpy())
    return tf.constant(dy.numpy() * (1.0 - t * t))


RIGHT = [
    Case("softmax", softmax, _normal(4, 5), vjp=softmax_vjp),
    Case("softmax_jvp", softmax, _normal(4, 5), jvp=softmax_jvp),
    Case("softmax_saturated", softmax, _saturated_logits, vjp=softmax_vjp),
    Case("log_softmax", log_softmax, _normal(4, 5), vjp=log_softmax_vjp),
    Case("logsumexp_of_hundreds", stable_logsumexp, _logits_of_hundreds),
    Case("layer_norm", layer_norm, _normal(4, 6), vjp=layer_norm_vjp),
    Case("layer_norm_offset_rows", layer_norm, _offset_rows, vjp=layer_norm_vjp),
    Case("batch_norm_training", batch_norm, _batch_norm_inputs, vjp=batch_norm_vjp),
    Case("l2_normalize", l2_normalize, _normal(3, 4), vjp=l2_normalize_vjp),
    Case("matmul", matmul, _matmul_inputs, vjp=matmul_vjp),
    Case("matmul_square", matmul, _square_inputs, vjp=matmul_vjp),
    Case("matmul_jvp", matmul, _matmul_inputs, jvp=matmul_jvp),
    Case("product", product, _square_inputs, vjp=product_vjp),
    Case("attention_scores", attention_scores, _attention_inputs, vjp=attention_vjp),
    Case("mse", mse, _mse_inputs, vjp=mse_vjp),
    Case("cross_entropy", cross_entropy, _normal(6, 5), vjp=cross_entropy_vjp),
    Case("norm_and_sine", norm_and_sine, _normal(3, 4), vjp=norm_and_sine_vjp),
    Case("row_max_with_ties", row_max, _rows_with_ties, vjp=row_max_vjp),
    Case("abs_at_zero", absolute, _with_zeros, vjp=absolute_vjp),
    Case("relu_one_at_zero", relu, _with_zeros, vjp=relu_vjp_one_at_zero),
    Case("cumsum", cumsum, _normal(3, 5), vjp=cumsum_vjp),
    Case("stable_softplus", stable_softplus, _softplus_inputs),
    Case("tanh_custom_order2", tanh_custom, _normal(3, 4), order=2),
    Case("logsumexp_order2", stable_logsumexp, _normal(3, 4), order=2),
    Case("layer_norm_order2", layer_norm, _normal(3, 4), vjp=layer_norm_vjp, order=2),
]

BUGS = [
    Case(
        "softmax_diagonal_only",
        softmax,
        _normal(4, 5),
        vjp=softmax_vjp_diagonal,
        right=False,
        bug="the diagonal of the Jacobian only",
    ),
    Case(
        "softmax_jvp_diagonal_only",
        softmax,
        _normal(4, 5),
        jvp=softmax_jvp_diagonal,
        right=False,
        bug="a JVP with the diagonal only",
    ),
    Case(
        "log_softmax_sign",
        log_softmax,
        _normal(4, 5),
        vjp=log_softmax_vjp_sign,
        right=False,
        bug="a sign flipped in the sum term",
    ),
    Case(
        "logsumexp_ignores_dy",
        logsumexp_ignores_dy,
        _logits_of_hundreds,
        right=False,
        bug="a custom_gradient that ignores dy",
    ),
    Case(
        "layer_norm_no_mean_term",
        layer_norm,
        _normal(4, 6),
        vjp=layer_norm_vjp_no_mean,
        right=False,
        bug="layer norm without the mean term",
    ),
    Case(
        "batch_norm_no_variance_term",
        batch_norm,
        _batch_norm_inputs,
        vjp=batch_norm_vjp_no_variance,
        right=False,
        bug="batch norm without the variance term",
    ),
    Case(
        "l2_normalize_no_projection",
        l2_normalize,
        _normal(3, 4),
        vjp=l2_normalize_vjp_no_projection,
        right=False,
        bug="the projection term missing",
    ),
    Case(
        "matmul_no_transpose",
        matmul,
        _square_inputs,
        vjp=matmul_vjp_no_transpose,
        right=False,
        bug="a missing transpose on square inputs",
    ),
    Case(
        "matmul_jvp_missing_term",
        matmul,
        _matmul_inputs,
        jvp=matmul_jvp_missing_term,
        right=False,
        bug="a JVP missing a term",
    ),
    Case(
        "product_swapped",
        product,
        _square_inputs,
        vjp=product_vjp_swapped,
        right=False,
        bug="a swapped pair of input gradients",
    ),
    Case(
        "attention_unscaled",
        attention_scores,
        _attention_inputs,
        vjp=attention_vjp_unscaled,
        right=False,
        bug="the 1/sqrt(d) missing from the gradient",
    ),
    Case(
        "mse_no_mean",
        mse,
        _mse_inputs,
        vjp=mse_vjp_no_mean,
        right=False,
        bug="a batch mean without 1/N",
    ),
    Case(
        "cross_entropy_no_mean",
        cross_entropy,
        _normal(6, 5),
        vjp=cross_entropy_vjp_no_mean,
        right=False,
        bug="a batch mean without 1/N",
    ),
    Case(
        "norm_and_sine_first_output_only",
        norm_and_sine,
        _normal(3, 4),
        vjp=norm_and_sine_vjp_first_only,
        right=False,
        bug="one output's cotangent ignored",
    ),
    Case(
        "row_max_every_tie",
        row_max,
        _rows_with_ties,
        vjp=row_max_vjp_every_tie,
        right=False,
        bug="the whole gradient to every tied maximum",
    ),
    Case(
        "cumsum_forward",
        cumsum,
        _normal(3, 5),
        vjp=cumsum_vjp_forward,
        right=False,
        bug="a cumulative sum the wrong way",
    ),
    Case(
        "tanh_stop_gradient_order2",
        tanh_stop_gradient,
        _normal(3, 4),
        order=2,
        right=False,
        bug="a right first order with a wrong second order",
    ),
    Case(
        "tanh_numpy_vjp_order2",
        tanh,
        _normal(3, 4),
        vjp=tanh_vjp_numpy,
        order=2,
        right=False,
        bug="a gradient TensorFlow cannot differentiate",
    ),
]

CASES = RIGHT + BUGS
