"""A corpus of course-assignment code: the layers a CS231n-like course has its students write in
NumPy, each as a forward function returning ``(out, cache)`` and a backward function
``(dout, cache) -> grads``, rows as examples (N, D); and a Keras 3 layer whose activation is a
``tf.custom_gradient``. Written for this corpus (not copied from any course), with the right
backward and the bugs students make, each under ``if bug == ...`` beside the right line.

Kinds: affine, relu, batchnorm, layernorm, dropout, conv, maxpool, softmax, svm, rnn,
keras_custom_gradient. What a case expects (``case.expect``):

``"pass"``
    the backward is right; a few right cases sit at a kink (ReLU at exact zeros, an SVM margin
    exactly 0, tied maxima in a max pool) where the backward's choice is one valid subgradient
    among several (the flag of such a convention, e.g. ``mask_ge``, is then not a bug).
``"fail"``
    a planted bug, which moves some gradient by more than 1e-3 of that tensor's largest
    (``test_course.py`` checks it against the right twin; the right twins against central
    differences).

``case.build()`` returns what the harness is handed, the way a user writes it: for a NumPy
layer ``(fn, inputs, vjp)`` with ``fn = lambda *ts: tf.constant(forward(*[t.numpy() ...])[0])``
and a vjp that recomputes the cache from the inputs and returns one gradient per input (None
for an unfilled template gradient); labels, masks and indices are closed over, not inputs. For
the Keras layer ``(fn, inputs, None)`` (the custom gradient's tape is what is judged) or, for
the model cases (``case.harness == "model"``), ``(model, X, y)`` for ``check_gradients``.
``case.numpy()`` gives a NumPy case's forward, backward and inputs for checks that need no
TensorFlow. Everything is seeded: the same case builds the same inputs every time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["Case", "CASES", "NumpyProblem", "KINDS"]

KINDS = (
    "affine",
    "relu",
    "batchnorm",
    "layernorm",
    "dropout",
    "conv",
    "maxpool",
    "softmax",
    "svm",
    "rnn",
    "keras_custom_gradient",
)


# --- 1. affine ------------------------------------------------------------------------------


def affine_forward(x, w, b):
    """x (N, d1, ..., dk) is reshaped to rows (N, D); out = x w + b, (N, M)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache, bug=None):
    x, w, b = cache
    N = x.shape[0]
    dx = (dout @ w.T).reshape(x.shape)
    if bug == "dx_transposed_before_reshape":
        dx = (dout @ w.T).T.reshape(x.shape)  # (D, N) read as (N, d1, d2): the shape still fits
    dw = x.reshape(N, -1).T @ dout
    if bug == "dw_reshape_not_transpose":
        dw = x.reshape(-1, N) @ dout  # (D, N) by a reshape, not a transpose
    db = dout.sum(axis=0)
    if bug == "db_wrong_axis":
        db = dout.sum(axis=1)  # (N,), which is b's shape because N == M here
    if bug == "db_scalar_broadcast":
        db = np.full_like(b, dout.sum())  # the grand total, broadcast to b's shape
    if bug == "db_unfilled":
        db = None  # the template's "TODO: compute db" left as it was
    return dx, dw, db


# --- 2. ReLU --------------------------------------------------------------------------------


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache, bug=None):
    x = cache
    dx = dout * (x > 0)
    if bug == "mask_ge":
        # relu'(0) taken as 1: any value in [0, 1] is a valid subgradient at 0, so not a bug
        dx = dout * (x >= 0)
    if bug == "mask_forgotten":
        dx = dout
    return (dx,)


# --- 3. batch norm, training mode -----------------------------------------------------------

BN_EPS = 1e-5


def batchnorm_forward(x, gamma, beta, eps=BN_EPS):
    """Training mode: each column normalised by the batch's mean and (biased) variance."""
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, xc, std, gamma)


def batchnorm_backward(dout, cache, bug=None):
    """Step by step through the computational graph of the forward."""
    xhat, xc, std, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    if bug == "dgamma_wrong_axis":
        dgamma = (dout * xhat).sum(axis=1)  # (N,) is gamma's shape because N == D here
    if bug == "dgamma_unfilled":
        dgamma = None
    dxhat = dout * gamma
    # xhat = xc * invstd
    dinvstd = (dxhat * xc).sum(axis=0)
    dxc = dxhat / std
    # invstd = 1 / std, std = sqrt(var + eps)
    dstd = -dinvstd / std**2
    dvar = 0.5 * dstd / std
    # var = mean(sq), sq = xc ** 2
    dsq = dvar * np.ones_like(xc) / N
    if bug == "var_missing_1_over_n":
        dsq = dvar * np.ones_like(xc)
    dxc = dxc + 2 * xc * dsq
    # xc = x - mu, mu = mean(x)
    dmu = -dxc.sum(axis=0)
    dx = dxc + dmu / N
    if bug == "mean_term_missing":
        dx = dxc  # the path through mu left out
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache, bug=None):
    """The simplified backward, dx on one line."""
    xhat, _, std, gamma = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    if bug == "mean_term_missing":
        dx = (dxhat - xhat * (dxhat * xhat).mean(axis=0)) / std
    if bug == "var_missing_1_over_n":
        dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / std
    return dx, dgamma, dbeta


# --- 4. layer norm --------------------------------------------------------------------------


def layernorm_forward(x, gamma, beta, eps=BN_EPS):
    """Each row normalised by its own mean and variance over its D features."""
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = xc / std
    return gamma * xhat + beta, (xhat, std, gamma)


def layernorm_backward(dout, cache, bug=None):
    xhat, std, gamma = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    proj = (dxhat * xhat).sum(axis=1, keepdims=True)
    if bug == "proj_wrong_axis":
        proj = (dxhat * xhat).sum(axis=0, keepdims=True)  # (1, D): broadcasts all the same
    dx = (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * proj / D) / std
    if bug == "proj_missing_1_over_d":
        dx = (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * proj) / std
    return dx, dgamma, dbeta


# --- 5. inverted dropout --------------------------------------------------------------------


def dropout_forward(x, mask, p):
    """Inverted dropout, training mode: ``mask`` (keep with probability p) is drawn once by the
    caller and passed in, so the function is deterministic."""
    return x * mask / p, (mask, p)


def dropout_backward(dout, cache, bug=None):
    mask, p = cache
    dx = dout * mask / p
    if bug == "not_divided_by_p":
        dx = dout * mask
    return (dx,)


# --- 6. naive convolution -------------------------------------------------------------------


def conv_forward_naive(x, w, b, stride, pad):
    """x (N, C, H, W), w (F, C, HH, WW), b (F,): loops over every output position."""
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    Ho = 1 + (H + 2 * pad - HH) // stride
    Wo = 1 + (W + 2 * pad - WW) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    out[n, f, i, j] = np.sum(xp[n, :, hs : hs + HH, ws : ws + WW] * w[f]) + b[f]
    return out, (x, w, b, stride, pad)


def conv_backward_naive(dout, cache, bug=None):
    x, w, b, stride, pad = cache
    _, _, H, W = x.shape
    F, _, HH, WW = w.shape
    N, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = xp  # where dw reads each window
    if bug == "dw_unpadded_window":
        # the padding all put at the far end: windows read at x's own offsets, not shifted by pad
        windows = np.pad(x, ((0, 0), (0, 0), (0, 2 * pad), (0, 2 * pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    if bug == "db_one_position":
        db = dout[:, :, 0, 0].sum(axis=0)  # not summed over the spatial positions
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    dw[f] += windows[n, :, hs : hs + HH, ws : ws + WW] * dout[n, f, i, j]
                    dxp[n, :, hs : hs + HH, ws : ws + WW] += w[f] * dout[n, f, i, j]
    dx = dxp[:, :, pad : pad + H, pad : pad + W]
    if bug == "dx_cropped_at_corner":
        dx = dxp[:, :, :H, :W]  # the right shape, cut from the wrong place
    return dx, dw, db


# --- 7. naive max pooling -------------------------------------------------------------------


def max_pool_forward_naive(x, size, stride):
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - size) // stride, 1 + (W - size) // stride
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    out[n, c, i, j] = x[n, c, hs : hs + size, ws : ws + size].max()
    return out, (x, size, stride)


def max_pool_backward_naive(dout, cache, bug=None):
    # Where a window's maximum is tied, the gradient routed to the first (argmax) maximum only
    # is a valid subgradient (max is convex: a one-hot on any maximum, or any convex combination
    # of them, is in its subdifferential), and so is splitting it among the tied maxima
    # (``split_ties``). Giving the whole of it to every tied maximum counts it once per tie.
    x, size, stride = cache
    N, C, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    window = x[n, c, hs : hs + size, ws : ws + size]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    if bug == "every_tied_max":
                        mask = window == window.max()
                        dx[n, c, hs : hs + size, ws : ws + size] += mask * dout[n, c, i, j]
                    elif bug == "split_ties":
                        mask = window == window.max()
                        share = mask / mask.sum()
                        dx[n, c, hs : hs + size, ws : ws + size] += share * dout[n, c, i, j]
                    elif bug == "col_off_by_one":
                        # a column to the left (wrapping to the last one at the left edge)
                        dx[n, c, hs + r, ws + s - 1] += dout[n, c, i, j]
                    else:
                        dx[n, c, hs + r, ws + s] += dout[n, c, i, j]
    return (dx,)


# --- 8. softmax loss ------------------------------------------------------------------------


def softmax_loss(x, y, bug=None):
    """The mean cross-entropy of the softmax of scores x (N, C) at integer labels y; returns
    (loss, dx)."""
    N = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(N), y].mean()
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if bug == "normaliser_wrong_axis":
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=0, keepdims=True)
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    if bug != "missing_1_over_n":
        dx /= N
    return loss, dx


# --- 9. multiclass SVM loss -----------------------------------------------------------------


def svm_loss(x, y, bug=None):
    """The mean multiclass hinge loss (margin 1) of scores x (N, C); returns (loss, dx)."""
    N = x.shape[0]
    correct = x[np.arange(N), y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[np.arange(N), y] = 0
    loss = margins.sum() / N
    positive = (margins > 0).astype(x.dtype)
    dx = positive.copy()
    dx[np.arange(N), y] -= positive.sum(axis=1)
    if bug == "correct_class_term_missing":
        dx = positive.copy()  # the -count at each correct class left out
    if bug != "missing_1_over_n":
        dx /= N
    return loss, dx


# --- 10. a character-level vanilla RNN ------------------------------------------------------


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache, bug=None):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    if bug == "tanh_derivative_of_h_prev":
        da = dnext_h * (1 - prev_h**2)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """x (N, T, D), h0 (N, H): the hidden states h (N, T, H)."""
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(cache)
    return h, caches


def rnn_backward(dh, caches, bug=None):
    N, T, _ = dh.shape
    x0, _, Wx, Wh, _ = caches[0]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(Wh.shape[0], dtype=dh.dtype)
    dprev_h = np.zeros((N, Wh.shape[0]), dtype=dh.dtype)
    for t in reversed(range(T)):
        dnext_h = dh[:, t] + dprev_h
        if bug == "dh_not_carried":
            dnext_h = dh[:, t]  # truncated: the gradient from step t + 1 dropped
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dnext_h, caches[t], bug)
        dWx += dWx_t
        dWh += dWh_t
        if bug == "dWh_not_accumulated":
            dWh = dWh_t  # only the step seen last (t = 0) survives
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x, W):
    """x (N, T) integer word indices into W (V, D): out (N, T, D)."""
    return W[x], (x, W.shape)


def word_embedding_backward(dout, cache, bug=None):
    x, shape = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)
    if bug == "repeated_words_not_accumulated":
        dW = np.zeros(shape, dtype=dout.dtype)
        dW[x] += dout  # buffered: a word that appears twice keeps one of its gradients
    return dW


def temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, -1)
    return out, (x, w, b)


def temporal_affine_backward(dout, cache):
    x, w, _ = cache
    N, T, D = x.shape
    M = w.shape[1]
    dx = (dout.reshape(N * T, M) @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ dout.reshape(N * T, M)
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, bug=None):
    """Scores x (N, T, V), labels y (N, T), mask (N, T) of the steps that count: the summed
    cross-entropy over the steps kept, averaged over the N sequences; returns (loss, dx)."""
    N, T, V = x.shape
    xf, yf, mf = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    shifted = xf - xf.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.sum(mf * log_probs[np.arange(N * T), yf]) / N
    dxf = np.exp(log_probs)
    dxf[np.arange(N * T), yf] -= 1
    dxf /= N
    if bug != "mask_ignored_in_backward":
        dxf *= mf[:, None]
    return loss, dxf.reshape(N, T, V)


NULL = 0  # the padding character


def char_rnn_loss(W_embed, h_init, Wx, Wh, b, W_vocab, b_vocab, chars, bug=None):
    """A character-level RNN language model: embed chars[:, :-1], run the RNN from the learned
    initial state h_init, score the next character, temporal softmax loss on chars[:, 1:]
    (NULL targets masked out). Returns (loss, grads) with grads aligned with the parameters."""
    N = chars.shape[0]
    inputs, targets = chars[:, :-1], chars[:, 1:]
    mask = (targets != NULL).astype(W_embed.dtype)
    emb, emb_cache = word_embedding_forward(inputs, W_embed)
    h0 = np.tile(h_init, (N, 1))
    h, rnn_cache = rnn_forward(emb, h0, Wx, Wh, b)
    scores, aff_cache = temporal_affine_forward(h, W_vocab, b_vocab)
    loss, dscores = temporal_softmax_loss(scores, targets, mask, bug)
    dh, dW_vocab, db_vocab = temporal_affine_backward(dscores, aff_cache)
    demb, dh0, dWx, dWh, db = rnn_backward(dh, rnn_cache, bug)
    dW_embed = word_embedding_backward(demb, emb_cache, bug)
    dh_init = dh0.sum(axis=0)
    return loss, (dW_embed, dh_init, dWx, dWh, db, dW_vocab, db_vocab)


# --- 11. a Keras 3 layer with a tf.custom_gradient activation -------------------------------


def make_swish(bug=None):
    """``swish(z, beta) = z * sigmoid(beta * z)`` with its hand-written gradient, as a
    ``tf.custom_gradient`` of both z and the (trainable, scalar) beta."""
    import tensorflow as tf

    @tf.custom_gradient
    def swish(z, beta):
        s = tf.sigmoid(beta * z)

        def grad(dy):
            dz = dy * (s + beta * z * s * (1 - s))
            if bug == "beta_factor_missing":
                dz = dy * (s + z * s * (1 - s))
            dbeta = tf.reduce_sum(dy * z * z * s * (1 - s))
            if bug == "dbeta_wrt_z":
                # d sigmoid(beta z) / d z (a factor beta) where d / d beta (a factor z) belongs
                dbeta = tf.reduce_sum(dy * z * beta * s * (1 - s))
            return dz, dbeta

        return z * s, grad

    return swish


@functools.lru_cache(maxsize=None)
def _swish_dense_class():
    """The Keras layer class, made on first use (so that importing the corpus needs no Keras)."""
    import keras
    import tensorflow as tf

    class SwishDense(keras.layers.Layer):
        """Dense, then swish with a trainable beta, whose gradient is the hand-written one of
        ``make_swish``."""

        def __init__(self, units, bug=None, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.swish = make_swish(bug)

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
            self.beta = self.add_weight(shape=(), initializer="ones", name="beta")

        def call(self, x):
            z = tf.matmul(x, self.kernel) + self.bias
            # beta read as a tensor: a tf.custom_gradient whose body reads a variable must take
            # ``variables`` in its grad_fn, and this one takes beta as an input instead.
            return self.swish(z, tf.convert_to_tensor(self.beta))

    return SwishDense


def swish_dense(units, in_dim, bug, dtype, seed):
    """A built SwishDense with seeded weights (beta 1.5, so that a missing beta shows)."""
    layer = _swish_dense_class()(units, bug=bug, dtype=dtype)
    layer.build((None, in_dim))
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.standard_normal((in_dim, units)).astype(dtype))
    layer.bias.assign((0.1 * rng.standard_normal(units)).astype(dtype))
    layer.beta.assign(np.asarray(1.5, dtype))
    return layer


class KerasLayerModel:
    """How a Keras user checks their layer with ``check_gradients``: a mean squared error
    through the layer, its gradients by ``tf.GradientTape`` (which runs the custom gradient).

    ``params`` are the tf.Variables underneath the Keras 3 variables (``layer.kernel.value``):
    the harness refuses ``keras.Variable`` parameters (it asks for the tf.Variable underneath),
    and assigning to the tf.Variable is assigning to the layer's weight."""

    param_names = ["kernel", "bias", "beta"]

    def __init__(self, layer):
        self.layer = layer
        self.params = [layer.kernel.value, layer.bias.value, layer.beta.value]

    def loss(self, X, y):
        import tensorflow as tf

        out = self.layer(tf.constant(X))
        return tf.reduce_mean((out - tf.constant(y, out.dtype)) ** 2)

    def gradients(self, X, y):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss(X, y)
        return tape.gradient(loss, self.params)


# --- the cases ------------------------------------------------------------------------------


@dataclass
class NumpyProblem:
    """A NumPy case: ``forward(*inputs) -> (out, cache)`` (a scalar out for losses) and
    ``backward(dout, cache) -> grads``, one per input (None for an unfilled one).

    ``kink``: the inputs sit at a kink on purpose (exact zeros, a zero margin, ties), so the
    right backward is judged as a subgradient, not against central differences. ``ties``:
    groups of flat indices of input 0 whose values tie for a maximum."""

    forward: Callable
    backward: Callable
    inputs: Tuple[np.ndarray, ...]
    kink: bool = False
    ties: Tuple[Tuple[int, ...], ...] = ()

    def gradients(self, dout, *inputs):
        """The backward at ``inputs`` (default: the case's), the cache recomputed."""
        grads = self.backward(dout, self.forward(*(inputs or self.inputs))[1])
        return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


def _as_harness(p: NumpyProblem):
    """``(fn, inputs, vjp)`` as a user hands a NumPy layer to ``check_function``."""
    import tensorflow as tf

    forward, backward = p.forward, p.backward

    def fn(*ts):
        return tf.constant(forward(*[t.numpy() for t in ts])[0])

    def vjp(dy, *ts):
        return backward(dy.numpy(), forward(*[t.numpy() for t in ts])[1])

    return fn, p.inputs, vjp


def _loss(loss_fn):
    """A ``(loss, dx)`` function as forward (the cache is dx) and backward (dout * dx)."""
    return (lambda x: loss_fn(x)), (lambda dout, dx: (dout * dx,))


@dataclass(frozen=True)
class Case:
    """One case: ``id`` is kind/variant/flag ("right", a bug, or a right convention's flag),
    with ``[float32]`` appended for a float32 variant."""

    kind: str
    variant: str
    flag: Optional[str]  # None for the right twin
    expect: str  # "pass" | "fail"
    dtype: str  # "float64" | "float32"
    harness: str  # "function" (check_function) or "model" (check_gradients)
    maker: Callable = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        base = f"{self.kind}/{self.variant}/{self.flag or 'right'}"
        return base if self.dtype == "float64" else f"{base}[{self.dtype}]"

    @property
    def twin_id(self) -> str:
        """The id of the right twin (the same variant and dtype, no flag)."""
        base = f"{self.kind}/{self.variant}/right"
        return base if self.dtype == "float64" else f"{base}[{self.dtype}]"

    @property
    def is_numpy(self) -> bool:
        return self.kind != "keras_custom_gradient"

    def numpy(self) -> NumpyProblem:
        """A NumPy case's forward, backward and inputs."""
        if not self.is_numpy:
            raise TypeError(f"{self.id} is not a NumPy case")
        return self.maker(self.flag, np.dtype(self.dtype))

    def build(self):
        """``(fn, inputs, vjp)`` for ``check_function`` or ``(model, X, y)`` for
        ``check_gradients``."""
        if self.is_numpy:
            return _as_harness(self.numpy())
        return self.maker(self.flag, np.dtype(self.dtype))


def _rng(name: str) -> np.random.Generator:
    """A generator seeded by the variant's name: every case of a variant gets the same inputs."""
    return np.random.default_rng([ord(c) for c in name])


def _normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _affine(bug, dtype):
    rng = _rng("affine")
    x, w, b = _normal(rng, (4, 2, 3), dtype), _normal(rng, (6, 4), dtype), _normal(rng, 4, dtype)
    return NumpyProblem(affine_forward, lambda d, c: affine_backward(d, c, bug), (x, w, b))


def _relu(zeros):
    def make(bug, dtype):
        x = _normal(_rng("relu"), (4, 5), dtype)
        if zeros:
            x[0, :3] = 0.0  # exact zeros: relu's kink
            x[2, 1] = 0.0
        return NumpyProblem(relu_forward, lambda d, c: relu_backward(d, c, bug), (x,), zeros)

    return make


def _batchnorm(backward):
    def make(bug, dtype):
        rng = _rng("batchnorm")
        x = _normal(rng, (5, 5), dtype, 2.0) + np.asarray(1.0, dtype)  # N == D
        gamma = (1.0 + 0.5 * rng.standard_normal(5)).astype(dtype)
        beta = _normal(rng, 5, dtype)
        return NumpyProblem(batchnorm_forward, lambda d, c: backward(d, c, bug), (x, gamma, beta))

    return make


def _layernorm(bug, dtype):
    rng = _rng("layernorm")
    x = _normal(rng, (4, 6), dtype, 2.0)
    gamma = (1.0 + 0.5 * rng.standard_normal(6)).astype(dtype)
    beta = _normal(rng, 6, dtype)
    return NumpyProblem(
        layernorm_forward, lambda d, c: layernorm_backward(d, c, bug), (x, gamma, beta)
    )


def _dropout(bug, dtype):
    rng = _rng("dropout")
    p = 0.6
    x = _normal(rng, (4, 5), dtype)
    mask = rng.random((4, 5)) < p  # drawn once: a constant of the function
    return NumpyProblem(
        lambda x: dropout_forward(x, mask, p), lambda d, c: dropout_backward(d, c, bug), (x,)
    )


def _conv(bug, dtype):
    rng = _rng("conv")
    x, w, b = (
        _normal(rng, (2, 2, 5, 5), dtype),
        _normal(rng, (2, 2, 3, 3), dtype),
        _normal(rng, 2, dtype),
    )
    return NumpyProblem(
        lambda x, w, b: conv_forward_naive(x, w, b, stride=2, pad=1),
        lambda d, c: conv_backward_naive(d, c, bug),
        (x, w, b),
    )


def _maxpool(bug, dtype):
    """2x2 windows, stride 2, distinct values: no ties."""
    x = _normal(_rng("maxpool"), (2, 2, 4, 4), dtype)
    return NumpyProblem(
        lambda x: max_pool_forward_naive(x, 2, 2),
        lambda d, c: max_pool_backward_naive(d, c, bug),
        (x,),
    )


def _maxpool_ties(bug, dtype):
    """3x3 windows, stride 2, on 5x5: the windows overlap on row and column 2. Tied maxima: a
    pair inside window (0, 0) alone; a pair on the shared row 2 that is the maximum of both
    windows containing it, (0, 1) and (1, 1); a pair inside window (1, 0) alone; and in channel
    1 three tied values in window (0, 0). Each tied group is the whole set of maxima of every
    window it lies in, so the argmax routes it consistently."""
    x = np.random.default_rng(7).uniform(-1.0, 1.0, (1, 2, 5, 5)).astype(dtype)
    groups = (
        [(0, 0, 0, 0), (0, 0, 1, 1)],
        [(0, 0, 2, 3), (0, 0, 2, 4)],
        [(0, 0, 3, 0), (0, 0, 4, 1)],
        [(0, 1, 0, 0), (0, 1, 0, 1), (0, 1, 1, 0)],
    )
    for group, value in zip(groups, (2.0, 3.0, 2.0, 2.5)):
        for at in group:
            x[at] = value
    ties = tuple(tuple(int(np.ravel_multi_index(at, x.shape)) for at in g) for g in groups)
    return NumpyProblem(
        lambda x: max_pool_forward_naive(x, 3, 2),
        lambda d, c: max_pool_backward_naive(d, c, bug),
        (x,),
        kink=True,
        ties=ties,
    )


def _softmax(bug, dtype):
    rng = _rng("softmax")
    x = _normal(rng, (5, 4), dtype)
    y = rng.integers(0, 4, size=5)
    return NumpyProblem(*_loss(lambda x: softmax_loss(x, y, bug)), (x,))


def _svm(zero_margin):
    def make(bug, dtype):
        rng = _rng("svm")
        x = _normal(rng, (5, 4), dtype)
        y = np.array([0, 2, 1, 3, 2])
        if zero_margin:
            # x[0, 1] - x[0, 0] + 1 == 0 exactly in float32 and float64
            x[0, 0], x[0, 1] = 0.25, -0.75
        return NumpyProblem(*_loss(lambda x: svm_loss(x, y, bug)), (x,), zero_margin)

    return make


def _rnn_step(bug, dtype):
    rng = _rng("rnn_step")
    shapes = ((3, 4), (3, 5), (4, 5), (5, 5), (5,))  # x, prev_h, Wx, Wh, b
    inputs = tuple(_normal(rng, s, dtype, 0.6) for s in shapes)
    return NumpyProblem(rnn_step_forward, lambda d, c: rnn_step_backward(d, c, bug), inputs)


def _rnn_bptt(bug, dtype):
    rng = _rng("rnn_bptt")
    shapes = ((2, 4, 3), (2, 4), (3, 4), (4, 4), (4,))  # x, h0, Wx, Wh, b
    inputs = tuple(_normal(rng, s, dtype, 0.6) for s in shapes)
    return NumpyProblem(rnn_forward, lambda d, c: rnn_backward(d, c, bug), inputs)


def _embedding(bug, dtype):
    rng = _rng("embedding")
    words = np.array([[1, 3, 3, 0], [5, 1, 2, 3]])  # 1 and 3 repeat
    W = _normal(rng, (6, 3), dtype)
    return NumpyProblem(
        lambda W: word_embedding_forward(words, W),
        lambda d, c: (word_embedding_backward(d, c, bug),),
        (W,),
    )


def _temporal_affine(bug, dtype):
    rng = _rng("temporal_affine")
    inputs = (_normal(rng, (2, 4, 3), dtype), _normal(rng, (3, 5), dtype), _normal(rng, 5, dtype))
    return NumpyProblem(temporal_affine_forward, temporal_affine_backward, inputs)


def _temporal_softmax(bug, dtype):
    rng = _rng("temporal_softmax")
    x = _normal(rng, (2, 4, 5), dtype)
    y = rng.integers(0, 5, size=(2, 4))
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=dtype)
    return NumpyProblem(*_loss(lambda x: temporal_softmax_loss(x, y, mask, bug)), (x,))


def _char_rnn(bug, dtype):
    rng = _rng("char_rnn")
    V, D, H = 5, 3, 4
    shapes = ((V, D), (H,), (D, H), (H, H), (H,), (H, V), (V,))
    params = tuple(_normal(rng, s, dtype, 0.6) for s in shapes)
    chars = np.array([[1, 2, 2, 4, 3], [3, 1, 4, NULL, NULL]])  # the second one padded

    def forward(*ps):
        loss, grads = char_rnn_loss(*ps, chars, bug)
        return loss, grads

    return NumpyProblem(forward, lambda d, grads: tuple(d * g for g in grads), params)


def _keras_function(variant):
    def make(bug, dtype):
        layer = swish_dense(4, 3, bug, dtype.name, seed=11)
        x = np.random.default_rng(12).standard_normal((5, 3)).astype(dtype)
        if variant == "layer_call":
            return (lambda x: layer(x)), (x,), None
        z = x @ layer.kernel.numpy() + layer.bias.numpy()
        return (lambda z, beta: layer.swish(z, beta)), (z, np.asarray(1.5, dtype)), None

    return make


def _keras_model(bug, dtype):
    layer = swish_dense(4, 3, bug, dtype.name, seed=11)
    rng = np.random.default_rng(13)
    X = rng.standard_normal((5, 3)).astype(dtype)
    y = rng.standard_normal((5, 4)).astype(dtype)
    return KerasLayerModel(layer), X, y


# kind -> variant -> (maker, {flag: expect}, dtypes, harness)
_F32 = ("float64", "float32")
_SPECS: Dict[str, Dict[str, tuple]] = {
    "affine": {
        "rows": (
            _affine,
            {
                "db_wrong_axis": "fail",
                "db_scalar_broadcast": "fail",
                "dw_reshape_not_transpose": "fail",
                "dx_transposed_before_reshape": "fail",
                "db_unfilled": "fail",
            },
            _F32,
        ),
    },
    "relu": {
        "random": (_relu(False), {"mask_forgotten": "fail"}),
        "exact_zeros": (_relu(True), {"mask_ge": "pass"}),
    },
    "batchnorm": {
        "step_by_step": (
            _batchnorm(batchnorm_backward),
            {
                "mean_term_missing": "fail",
                "var_missing_1_over_n": "fail",
                "dgamma_wrong_axis": "fail",
                "dgamma_unfilled": "fail",
            },
            _F32,
        ),
        "simplified": (
            _batchnorm(batchnorm_backward_alt),
            {"mean_term_missing": "fail", "var_missing_1_over_n": "fail"},
            _F32,
        ),
    },
    "layernorm": {
        "rows": (_layernorm, {"proj_wrong_axis": "fail", "proj_missing_1_over_d": "fail"}),
    },
    "dropout": {"inverted": (_dropout, {"not_divided_by_p": "fail"})},
    "conv": {
        "naive": (
            _conv,
            {
                "db_one_position": "fail",
                "dw_unpadded_window": "fail",
                "dx_cropped_at_corner": "fail",
            },
        ),
    },
    "maxpool": {
        "no_ties": (_maxpool, {"col_off_by_one": "fail"}),
        "overlap_ties": (_maxpool_ties, {"split_ties": "pass", "every_tied_max": "fail"}),
    },
    "softmax": {
        "loss": (_softmax, {"missing_1_over_n": "fail", "normaliser_wrong_axis": "fail"}, _F32),
    },
    "svm": {
        "loss": (_svm(False), {"correct_class_term_missing": "fail", "missing_1_over_n": "fail"}),
        "zero_margin": (_svm(True), {}),
    },
    "rnn": {
        "step": (_rnn_step, {"tanh_derivative_of_h_prev": "fail"}),
        "bptt": (
            _rnn_bptt,
            {
                "dh_not_carried": "fail",
                "dWh_not_accumulated": "fail",
                "tanh_derivative_of_h_prev": "fail",
            },
        ),
        "embedding": (_embedding, {"repeated_words_not_accumulated": "fail"}),
        "temporal_affine": (_temporal_affine, {}),
        "temporal_softmax": (_temporal_softmax, {"mask_ignored_in_backward": "fail"}),
        "char_model": (
            _char_rnn,
            {
                "dh_not_carried": "fail",
                "dWh_not_accumulated": "fail",
                "tanh_derivative_of_h_prev": "fail",
                "repeated_words_not_accumulated": "fail",
            },
        ),
    },
    "keras_custom_gradient": {
        # dbeta_wrt_z moves only beta's gradient, which a check over x alone cannot see
        "layer_call": (_keras_function("layer_call"), {"beta_factor_missing": "fail"}),
        "activation": (
            _keras_function("activation"),
            {"beta_factor_missing": "fail", "dbeta_wrt_z": "fail"},
        ),
        "model": (
            _keras_model,
            {"beta_factor_missing": "fail", "dbeta_wrt_z": "fail"},
            ("float64",),
            "model",
        ),
    },
}


def _cases() -> List[Case]:
    cases = []
    for kind, variants in _SPECS.items():
        for variant, spec in variants.items():
            maker, flags = spec[0], spec[1]
            dtypes = spec[2] if len(spec) > 2 else ("float64",)
            harness = spec[3] if len(spec) > 3 else "function"
            for dtype in dtypes:
                cases.append(Case(kind, variant, None, "pass", dtype, harness, maker))
                cases.extend(
                    Case(kind, variant, flag, expect, dtype, harness, maker)
                    for flag, expect in flags.items()
                )
    return cases


CASES: List[Case] = _cases()
