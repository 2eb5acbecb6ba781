"""Losses: each batch-mean loss sits next to its hand-written gradient.

A :class:`Loss` has ``fn(y_true, y_pred) -> scalar`` and ``gradient(y_true, y_pred) -> dL/dy_pred``
(same shape as ``y_pred``), the gradient of that scalar. ``y_pred`` has shape ``(N, D)``.

Reductions follow Keras: elementwise losses (mse, mae, huber, binary cross-entropies) take the
mean over the ``D`` output units and then over the ``N`` rows, so their gradients carry
``1/(N*D)``; categorical cross-entropies sum over the classes and take the mean over rows, so
theirs carry ``1/N``.

Losses on probabilities clip ``y_pred`` to ``[epsilon, 1 - epsilon]`` (``epsilon = 1e-7``, as
Keras), so the loss stays finite and its gradient is zero outside that interval. Losses on logits
never clip: they go through log-sigmoid / log-softmax and stay finite for logits of any size.

Fused pairings: a sigmoid output with ``binary_crossentropy``, and a softmax output with
``categorical_crossentropy``, are computed by the model from the logits (``fused`` below), with
output gradient ``(a - y)/(N*D)`` and ``(a - y)/N`` respectively.

The catalogue is one :class:`LossRecord` per loss (``LOSSES``): loss and gradient, the labels it
takes, its kinks, its parameters, the output activations it pairs with, its fused form, and the
independent form, written from other ``tf.nn``/``tf.math`` primitives, that ``reference``
recomputes a network's loss with. Adding a loss is one record (plus its tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from ._catalogue import (
    Param,
    catalogue_call,
    check_record,
    defaults,
    merged_params,
    passthrough,
    resolve,
)

__all__ = ["Loss", "LossRecord", "LOSSES", "get_loss", "loss_names", "LABEL_KINDS"]

LABEL_KINDS = ("real", "binary", "categorical", "sparse")
_EPSILON = 1e-7


@dataclass(frozen=True, eq=False)
class Loss:
    """A named batch-mean loss with its hand-written gradient.

    Args:
      name: a short name, used in reports and reprs.
      fn: ``fn(y_true, y_pred) -> scalar``, written in TF ops.
      gradient: ``gradient(y_true, y_pred) -> dL/dy_pred``, same shape and dtype as ``y_pred``.
      labels: what ``y_true`` must hold, checked before any arithmetic: ``"real"`` (any finite
        values, shape ``(N, D)``), ``"binary"`` (values in ``[0, 1]``), ``"categorical"`` (rows of
        non-negative values summing to 1), ``"sparse"`` (integer class indices in ``[0, D)``,
        shape ``(N,)``).
      params: the loss's parameters (``{"delta": 1.0}``), for reprs and for rebuilding it.
      probabilities: True when ``y_pred`` must be a probability (the output activation must be
        bounded to ``[0, 1]``).
      fused: output-activation name -> the loss on that activation's logits, used by the model
        in place of this loss for built-in activations.
      fused_gradient: for a loss on logits, ``fused_gradient(y, z, a)``: dL/dz given the output
        ``a`` of the activation it fuses with, already computed by the forward pass.
    """

    name: str
    fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    gradient: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    labels: str = "real"
    params: Mapping[str, float] = field(default_factory=dict)
    probabilities: bool = False
    fused: Mapping[str, "Loss"] = field(default_factory=dict, repr=False)
    fused_gradient: Optional[Callable] = field(default=None, repr=False)
    builtin: bool = field(default=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Loss name must be a non-empty string; got {self.name!r}.")
        for label, value in (("fn", self.fn), ("gradient", self.gradient)):
            if not callable(value):
                raise TypeError(f"Loss {self.name!r}: {label} must be callable; got {value!r}.")
        if self.labels not in LABEL_KINDS:
            raise ValueError(
                f"Loss {self.name!r}: labels must be one of {LABEL_KINDS}; got {self.labels!r}."
            )

    def __call__(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    @property
    def spec(self) -> str:
        """A short, copy-pasteable description: the name alone for a catalogue loss with its
        default parameters, else ``get_loss('huber', delta=0.5)``."""
        if self.builtin:
            return catalogue_call("get_loss", self.name, self.params, defaults(LOSSES[self.name]))
        return f"<Loss {self.name!r}>"

    def __repr__(self) -> str:
        if self.builtin:
            return catalogue_call("get_loss", self.name, self.params)
        return f"Loss({self.name!r}, fn={self.fn!r}, gradient={self.gradient!r})"


# Every loss reduces over the last two axes, (N, D): on a stack of K predictions of shape
# (K, N, D) it returns the K losses, which is how finite differences evaluate many perturbed
# copies of a model in one pass. Labels broadcast against the stack.
_ROWS_AND_UNITS = (-2, -1)


def _count(t):
    """Number of elements of one (N, D) batch of ``t`` in its own dtype (the N*D of a mean); a
    Python number when the shape is static, so a traced graph carries no shape ops for it."""
    n, d = t.shape[-2], t.shape[-1]
    if n is not None and d is not None:
        return float(n * d)
    return tf.cast(tf.reduce_prod(tf.shape(t)[-2:]), t.dtype)


def _rows(t):
    """Number of rows of one (N, D) batch of ``t`` in its own dtype (the N of a batch-mean)."""
    if t.shape[-2] is not None:
        return float(t.shape[-2])
    return tf.cast(tf.shape(t)[-2], t.dtype)


def _mean(t):
    """The mean over the last two axes (one batch); a stack of K batches gives K means."""
    return tf.reduce_mean(t, axis=_ROWS_AND_UNITS)


# --- the catalogue: loss, then its gradient ------------------------------------------------


def _mse(y, p):
    """mean((p - y)^2) over all N*D elements"""
    return _mean(tf.math.square(p - y))


def _mse_g(y, p):
    """2 (p - y) / (N*D)"""
    return 2.0 * (p - y) / _count(p)


def _mae(y, p):
    """mean(|p - y|) over all N*D elements"""
    return _mean(tf.math.abs(p - y))


def _mae_g(y, p):
    """sign(p - y) / (N*D); sign(0) = 0"""
    return tf.math.sign(p - y) / _count(p)


def _make_huber(delta):
    def fn(y, p):
        """mean over N*D of 0.5 r^2 if |r| <= delta else delta (|r| - delta/2), r = p - y"""
        r = p - y
        abs_r = tf.math.abs(r)
        return _mean(tf.where(abs_r <= delta, 0.5 * r * r, delta * (abs_r - 0.5 * delta)))

    def gradient(y, p):
        """clip(r, -delta, delta) / (N*D): r inside the quadratic zone, delta sign(r) outside"""
        return tf.clip_by_value(p - y, -delta, delta) / _count(p)

    return fn, gradient


def _make_bce(epsilon):
    def fn(y, p):
        """-mean(y log q + (1 - y) log(1 - q)) over N*D, q = clip(p, eps, 1 - eps)"""
        q = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
        return -_mean(y * tf.math.log(q) + (1.0 - y) * tf.math.log(1.0 - q))

    def gradient(y, p):
        """(q - y) / (q (1 - q)) / (N*D) inside [eps, 1 - eps], 0 outside"""
        q = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
        inside = tf.logical_and(p >= epsilon, p <= 1.0 - epsilon)
        g = (q - y) / (q * (1.0 - q)) / _count(p)
        return tf.where(inside, g, tf.zeros_like(g))

    return fn, gradient


def _bce_logits(y, z):
    """mean over N*D of -(y log sigmoid(z) + (1 - y) log sigmoid(-z)), via log-sigmoid"""
    y = tf.broadcast_to(y, tf.shape(z))
    return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))


def _bce_logits_g(y, z):
    """(sigmoid(z) - y) / (N*D), written (1 - y) sigmoid(z) - y sigmoid(-z) so that a saturated
    logit keeps its tiny gradient instead of rounding sigmoid(z) - 1 to zero"""
    return ((1.0 - y) * tf.math.sigmoid(z) - y * tf.math.sigmoid(-z)) / _count(z)


def _bce_fused_g(y, z, a):
    """(a - y) / (N*D) with a = sigmoid(z) from the forward pass, in the same stable form"""
    return ((1.0 - y) * a - y * tf.math.sigmoid(-z)) / _count(z)


def _make_cce(epsilon):
    def fn(y, p):
        """mean over N of -sum_k y_k log q_k, q = clip(p, eps, 1 - eps)"""
        q = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
        return tf.reduce_mean(-tf.reduce_sum(y * tf.math.log(q), axis=-1), axis=-1)

    def gradient(y, p):
        """-y / q / N inside [eps, 1 - eps], 0 outside"""
        q = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
        inside = tf.logical_and(p >= epsilon, p <= 1.0 - epsilon)
        g = -y / q / _rows(p)
        return tf.where(inside, g, tf.zeros_like(g))

    return fn, gradient


def _cce_logits(y, z):
    """mean over N of -sum_k y_k log softmax(z)_k, via log-softmax"""
    if z.shape.rank is not None and z.shape.rank > 2:
        # K stacked outputs (K, N, D): sum_k y_k (logsumexp(z) - z_k), in half the time of the
        # fused kernel on K * N rows (y stays (N, D), broadcast).
        top = tf.reduce_max(z, axis=-1, keepdims=True)
        lse = tf.math.log(tf.reduce_sum(tf.exp(z - top), axis=-1)) + top[..., 0]
        per_row = lse * tf.reduce_sum(y, axis=-1) - tf.reduce_sum(y * z, axis=-1)
        return tf.reduce_mean(per_row, axis=-1)
    y = tf.broadcast_to(y, tf.shape(z))
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z), axis=-1)


def _cce_logits_g(y, z):
    """(softmax(z) - y) / N"""
    return (tf.nn.softmax(z, axis=-1) - y) / _rows(z)


def _cce_fused_g(y, z, a):
    """(a - y) / N with a = softmax(z) from the forward pass"""
    return (a - y) / _rows(z)


def _sparse_cce_logits(y, z):
    """mean over N of -log softmax(z)[y], y integer class indices"""
    y = tf.broadcast_to(y, tf.shape(z)[:-1])
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z), axis=-1
    )


def _sparse_cce_logits_g(y, z):
    """(softmax(z) - onehot(y)) / N"""
    onehot = tf.one_hot(y, tf.shape(z)[-1], dtype=z.dtype)
    return (tf.nn.softmax(z, axis=-1) - onehot) / _rows(z)


# --- the independent forms: the same losses from other primitives, for reference -----------


def _clipped(p, epsilon):
    return tf.clip_by_value(p, epsilon, 1.0 - epsilon)


def _mse_independent(y, p):
    return tf.reduce_mean(tf.math.squared_difference(p, y))


def _mae_independent(y, p):
    return tf.reduce_mean(tf.abs(y - p))


def _huber_independent(y, p, delta):
    r = tf.abs(p - y)
    quad = tf.minimum(r, delta)
    return tf.reduce_mean(0.5 * tf.square(quad) + delta * (r - quad))


def _bce_independent(y, p, epsilon):
    q = _clipped(p, epsilon)
    return -tf.reduce_mean(y * tf.math.log(q) + (1.0 - y) * tf.math.log1p(-q))


def _bce_logits_independent(y, z):
    return -tf.reduce_mean(y * tf.math.log_sigmoid(z) + (1.0 - y) * tf.math.log_sigmoid(-z))


def _cce_independent(y, p, epsilon):
    return -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(_clipped(p, epsilon)), axis=-1))


def _cce_logits_independent(y, z):
    return -tf.reduce_mean(tf.reduce_sum(y * tf.nn.log_softmax(z, axis=-1), axis=-1))


def _sparse_logits_independent(y, z):
    picked = tf.gather(tf.nn.log_softmax(z, axis=-1), tf.cast(y, tf.int32), axis=-1, batch_dims=1)
    return -tf.reduce_mean(picked)


# --- the records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LossRecord:
    """Everything known about one catalogue loss, in one place.

    Args:
      name: the registry name.
      build: ``build(**params) -> (fn, gradient)``.
      labels: the kind of labels it takes (one of ``LABEL_KINDS``).
      kinks: ``kinks(**params) -> [(y_true, y_pred), ...]``: single-element points where the
        loss is not differentiable; the gradient there follows TensorFlow's tape.
      independent: ``independent(y_true, y_pred, **params) -> scalar``, the batch-mean loss
        written from other ``tf.nn``/``tf.math`` primitives (``y_true`` as float64, or int class
        indices for sparse labels): what ``reference`` recomputes a network's loss with.
      matrix_outputs: the output activations ``gradcheck``'s matrix pairs this loss with.
      params: name -> :class:`Param` (default and the values property tests draw).
      outputs: the output activations it may follow (None: any); losses on probabilities need
        an output in [0, 1].
      probabilities: True when ``y_pred`` must be a probability.
      fuses: ``(activation, logits loss)``: after that output activation, the model computes
        this loss from the logits through the named loss on logits.
      fused_gradient: for a loss on logits, ``fused_gradient(y, z, a)``: dL/dz given the output
        ``a`` of the activation it fuses with, already computed by the forward pass.
      aliases: other names ``get_loss`` accepts.
    """

    name: str
    build: Callable[..., Tuple]
    labels: str
    kinks: Callable[..., Sequence[Tuple[float, float]]]
    independent: Callable[..., tf.Tensor]
    matrix_outputs: Tuple[str, ...]
    params: Mapping[str, Param] = field(default_factory=dict)
    outputs: Optional[Tuple[str, ...]] = None
    probabilities: bool = False
    fuses: Optional[Tuple[str, str]] = None
    fused_gradient: Optional[Callable] = None
    aliases: Tuple[str, ...] = ()

    def __post_init__(self):
        check_record("loss", self, ("build", "kinks", "independent"))
        if self.labels not in LABEL_KINDS:
            raise TypeError(
                f"loss record {self.name!r}: labels must be one of {LABEL_KINDS}; "
                f"got {self.labels!r}."
            )
        for what, names in (
            ("matrix_outputs", self.matrix_outputs),
            ("outputs", self.outputs or ("any",)),
        ):
            if not (isinstance(names, tuple) and names and all(isinstance(n, str) for n in names)):
                raise TypeError(
                    f"loss record {self.name!r}: {what} must be a non-empty tuple of "
                    f"activation names; got {names!r}."
                )
        if self.probabilities != (self.outputs is not None):
            raise TypeError(
                f"loss record {self.name!r}: a loss on probabilities lists the "
                f"outputs it may follow (outputs), and only such a loss does."
            )


def _fixed(fn, gradient):
    """``build`` for a loss without parameters."""
    return lambda: (fn, gradient)


def _no_kinks(**params):
    return ()


def _clip_edges(epsilon):
    """Where a probability loss's clipping starts: p = epsilon and p = 1 - epsilon."""
    return ((0.3, epsilon), (0.3, 1.0 - epsilon))


def _clip_edges_one_class(epsilon):
    """The clipping edges of a categorical loss on a single class (whose label is 1)."""
    return ((1.0, epsilon), (1.0, 1.0 - epsilon))


_EPSILON_PARAM = {"epsilon": Param(_EPSILON, positive=True)}

_RECORDS = [
    LossRecord(
        "mse",
        _fixed(_mse, _mse_g),
        "real",
        _no_kinks,
        _mse_independent,
        matrix_outputs=("linear", "sigmoid", "softmax"),
        aliases=("mean_squared_error",),
    ),
    LossRecord(
        "mae",
        _fixed(_mae, _mae_g),
        "real",
        kinks=lambda: ((0.5, 0.5),),
        independent=_mae_independent,
        matrix_outputs=("linear",),
        aliases=("mean_absolute_error",),
    ),
    LossRecord(
        "huber",
        _make_huber,
        "real",
        kinks=_no_kinks,  # C1 at |r| = delta
        independent=_huber_independent,
        matrix_outputs=("linear",),
        params={"delta": Param(1.0, examples=(0.1, 0.5, 1.0, 3.0), positive=True)},
    ),
    LossRecord(
        "binary_crossentropy",
        _make_bce,
        "binary",
        _clip_edges,
        _bce_independent,
        matrix_outputs=("sigmoid", "hard_sigmoid"),
        params=_EPSILON_PARAM,
        outputs=("sigmoid", "hard_sigmoid", "softmax"),
        probabilities=True,
        fuses=("sigmoid", "binary_crossentropy_from_logits"),
    ),
    LossRecord(
        "binary_crossentropy_from_logits",
        _fixed(_bce_logits, _bce_logits_g),
        "binary",
        _no_kinks,
        _bce_logits_independent,
        matrix_outputs=("linear",),
        fused_gradient=_bce_fused_g,
    ),
    LossRecord(
        "categorical_crossentropy",
        _make_cce,
        "categorical",
        _clip_edges_one_class,
        _cce_independent,
        matrix_outputs=("softmax", "sigmoid"),
        params=_EPSILON_PARAM,
        outputs=("softmax", "sigmoid"),
        probabilities=True,
        fuses=("softmax", "categorical_crossentropy_from_logits"),
    ),
    LossRecord(
        "categorical_crossentropy_from_logits",
        _fixed(_cce_logits, _cce_logits_g),
        "categorical",
        _no_kinks,
        _cce_logits_independent,
        matrix_outputs=("linear",),
        fused_gradient=_cce_fused_g,
    ),
    LossRecord(
        "sparse_categorical_crossentropy_from_logits",
        _fixed(_sparse_cce_logits, _sparse_cce_logits_g),
        "sparse",
        _no_kinks,
        _sparse_logits_independent,
        matrix_outputs=("linear",),
    ),
]

# name -> record, in catalogue order; read-only.
LOSSES: Mapping[str, LossRecord] = MappingProxyType({r.name: r for r in _RECORDS})


def loss_names() -> tuple:
    """The registry's names (aliases: ``mean_squared_error``, ``mean_absolute_error``)."""
    return tuple(LOSSES)


def get_loss(name, **params) -> Loss:
    """Build a catalogue loss by name, e.g. ``get_loss("huber", delta=0.5)``.

    A :class:`Loss` passed in is returned unchanged (``params`` must then be empty).
    Parameters: ``huber(delta=1.0)``; ``binary_crossentropy`` and ``categorical_crossentropy``
    take ``epsilon=1e-7``, the clipping bound.
    """
    if isinstance(name, Loss):
        return passthrough("loss", name, params)
    key = resolve("loss", name, params, cls=Loss, records=LOSSES)
    record = LOSSES[key]
    merged = merged_params("loss", record, params)
    fn, gradient = record.build(**merged)
    fused = {}
    if record.fuses is not None:
        activation, logits_loss = record.fuses
        fused = {activation: get_loss(logits_loss)}
    return Loss(
        key,
        fn,
        gradient,
        labels=record.labels,
        params=merged,
        probabilities=record.probabilities,
        fused=fused,
        fused_gradient=record.fused_gradient,
        builtin=True,
    )
