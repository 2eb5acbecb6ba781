"""Activations: each forward ``fn`` sits next to its hand-written derivative.

An :class:`Activation` maps the pre-activation ``z`` to ``a = fn(z)``. Its ``derivative(z, a)``
returns ``da/dz`` elementwise, in ``z``'s float dtype, written in terms of whatever the backward
pass already holds (``a`` where that is cheaper and exact). An activation that is not elementwise
(softmax) supplies ``vjp(z, a, g)`` instead: the vector-Jacobian product ``g @ (da/dz)`` row-wise.

The catalogue is one :class:`ActivationRecord` per activation (``ACTIVATIONS``): forward and
derivative, TensorFlow's convention at its kinks, its output range, its parameters, and the
independent form, written from other ``tf.nn``/``tf.math`` primitives, that ``reference``
rebuilds a network from. Adding an activation is one record (plus its tests).

At points where a function is not differentiable, the derivative follows TensorFlow's convention,
so that ``tf.GradientTape`` over ``fn`` agrees exactly:

- ``relu'(0) = 0``; ``leaky_relu'(0) = alpha``; ``elu'(0) = alpha`` (1 for TF's own ``tf.nn.elu``);
- ``selu'(0) = lambda`` (as ``tf.nn.selu``); ``hard_sigmoid' = 0`` at ``z = +-3``.

Every forward is written so that its own tape gives those values (``tf.where`` branches never
evaluate an ``exp`` that can overflow, so no ``0 * inf`` NaN appears in the tape either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Tuple

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

__all__ = [
    "Activation",
    "ActivationRecord",
    "ACTIVATIONS",
    "get_activation",
    "activation_names",
    "SELU_LAMBDA",
    "SELU_ALPHA",
]

# The constants of TensorFlow's selu kernel, rounded to float64.
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543774

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_COEFF = 0.044715


@dataclass(frozen=True, eq=False)
class Activation:
    """A named activation with its hand-written derivative.

    Args:
      name: a short name, used in reports and reprs.
      fn: ``fn(z) -> a``, written in TF ops.
      derivative: ``derivative(z, a) -> da/dz`` elementwise, same shape and dtype as ``z``.
        ``None`` for an activation that is not elementwise; then ``vjp`` is required.
      vjp: ``vjp(z, a, g) -> dL/dz`` given ``g = dL/da``. Optional for elementwise activations
        (the default is ``g * derivative(z, a)``); required otherwise.
      params: the activation's parameters (``{"alpha": 0.1}``), for reprs and for rebuilding it.
      output_range: ``(low, high)`` bounds of ``fn``'s output where known; losses on probabilities
        use it to refuse an output layer that cannot produce probabilities.
    """

    name: str
    fn: Callable[[tf.Tensor], tf.Tensor]
    derivative: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]
    vjp: Optional[Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]] = None
    params: Mapping[str, float] = field(default_factory=dict)
    output_range: Optional[tuple] = None
    builtin: bool = field(default=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Activation name must be a non-empty string; got {self.name!r}.")
        if not callable(self.fn):
            raise TypeError(f"Activation {self.name!r}: fn must be callable; got {self.fn!r}.")
        if self.derivative is None and self.vjp is None:
            raise TypeError(
                f"Activation {self.name!r}: give derivative(z, a) for an elementwise activation "
                "or vjp(z, a, g) for one that is not."
            )
        for label, value in (("derivative", self.derivative), ("vjp", self.vjp)):
            if value is not None and not callable(value):
                raise TypeError(
                    f"Activation {self.name!r}: {label} must be callable; got {value!r}."
                )

    @property
    def elementwise(self) -> bool:
        return self.derivative is not None

    @property
    def record(self) -> Optional["ActivationRecord"]:
        """The catalogue record this activation was built from (None for a user's own)."""
        return ACTIVATIONS.get(self.name) if self.builtin else None

    def __call__(self, z: tf.Tensor) -> tf.Tensor:
        return self.fn(z)

    def backward(self, z: tf.Tensor, a: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        """``dL/dz`` from ``g = dL/da``."""
        if self.vjp is not None:
            return self.vjp(z, a, g)
        return g * self.derivative(z, a)

    @property
    def spec(self) -> str:
        """A short, copy-pasteable description: the name alone for a catalogue activation with
        its default parameters, else ``get_activation('elu', alpha=0.5)``."""
        if self.builtin:
            return catalogue_call(
                "get_activation", self.name, self.params, defaults(ACTIVATIONS[self.name])
            )
        return f"<Activation {self.name!r}>"

    def __repr__(self) -> str:
        if self.builtin:
            return catalogue_call("get_activation", self.name, self.params)
        return f"Activation({self.name!r}, fn={self.fn!r}, derivative={self.derivative!r})"


@dataclass(frozen=True)
class ActivationRecord:
    """Everything known about one catalogue activation, in one place.

    Args:
      name: the registry name.
      build: ``build(**params) -> (fn, derivative, vjp)``; ``derivative`` is None for an
        activation that is not elementwise, ``vjp`` None for one that is.
      output_range: ``(low, high)`` bounds of the output.
      kinks: ``kinks(**params) -> {z: da/dz at z}``: where the activation is not differentiable,
        and the value the derivative takes there (TensorFlow's convention, so the tape agrees).
      independent: ``independent(z, **params) -> a``, the same function written from other
        ``tf.nn``/``tf.math`` primitives, exact in float64: what ``reference`` rebuilds a network
        from to check a forward that the backward may mirror.
      params: name -> :class:`Param` (default and the values property tests draw).
      aliases: other names ``get_activation`` accepts.
    """

    name: str
    build: Callable[..., Tuple]
    output_range: Tuple[float, float]
    kinks: Callable[..., Mapping[float, float]]
    independent: Callable[..., tf.Tensor]
    params: Mapping[str, Param] = field(default_factory=dict)
    aliases: Tuple[str, ...] = ()

    def __post_init__(self):
        check_record("activation", self, ("build", "kinks", "independent"))
        low_high = self.output_range
        if not (isinstance(low_high, tuple) and len(low_high) == 2 and low_high[0] < low_high[1]):
            raise TypeError(
                f"activation record {self.name!r}: output_range must be a (low, high) "
                f"tuple with low < high; got {low_high!r}."
            )


def _elementwise(fn, derivative):
    """``build`` for an activation without parameters."""
    return lambda: (fn, derivative, None)


def _no_kinks(**params):
    return {}


# --- the catalogue: forward, then its derivative, then the record ---------------------------


def _linear(z):
    return tf.identity(z)


def _linear_d(z, a):
    """linear'(z) = 1"""
    return tf.ones_like(z)


def _sigmoid(z):
    return tf.math.sigmoid(z)


def _sigmoid_d(z, a):
    """sigmoid'(z) = a (1 - a)"""
    return a * (1.0 - a)


def _tanh(z):
    return tf.math.tanh(z)


def _tanh_d(z, a):
    """tanh'(z) = 1 - a^2"""
    return 1.0 - a * a


def _tanh_independent(z):
    t = tf.math.expm1(-2.0 * tf.abs(z))  # tanh|z| = -t / (t + 2), exact near 0 and inf
    return tf.sign(z) * (-t / (t + 2.0))


def _relu(z):
    return tf.nn.relu(z)


def _relu_d(z, a):
    """relu'(z) = 1[z > 0]; relu'(0) = 0"""
    return tf.cast(z > 0, z.dtype)


def _make_leaky_relu(alpha):
    # Written with tf.where rather than tf.nn.leaky_relu: that op keeps alpha as a float32
    # attribute, so in float64 its slope would be 0.30000001192 instead of 0.3.
    def fn(z):
        return tf.where(z > 0, z, alpha * z)

    def derivative(z, a):
        """leaky_relu'(z) = 1 if z > 0 else alpha; leaky_relu'(0) = alpha"""
        return tf.where(z > 0, tf.ones_like(z), alpha * tf.ones_like(z))

    return fn, derivative, None


def _leaky_relu_independent(z, alpha):
    return tf.maximum(z, alpha * z) if alpha <= 1 else tf.minimum(z, alpha * z)


def _make_elu(alpha):
    def fn(z):
        # expm1 of min(z, 0): the unselected branch never overflows, so its tape has no 0 * inf.
        return tf.where(z > 0, z, alpha * tf.math.expm1(tf.minimum(z, 0.0)))

    def derivative(z, a):
        """elu'(z) = 1 if z > 0 else a + alpha; elu'(0) = alpha"""
        return tf.where(z > 0, tf.ones_like(z), a + alpha)

    return fn, derivative, None


def _selu(z):
    return SELU_LAMBDA * tf.where(z >= 0, z, SELU_ALPHA * tf.math.expm1(tf.minimum(z, 0.0)))


def _selu_d(z, a):
    """selu'(z) = lambda if z >= 0 else a + lambda * alpha; selu'(0) = lambda (TF's kernel)"""
    return tf.where(z >= 0, SELU_LAMBDA * tf.ones_like(z), a + SELU_LAMBDA * SELU_ALPHA)


def _gelu(z):
    return 0.5 * z * (1.0 + tf.math.erf(z * _SQRT_HALF))


def _gelu_d(z, a):
    """gelu'(z) = Phi(z) + z phi(z), Phi the standard normal CDF and phi its density"""
    cdf = 0.5 * (1.0 + tf.math.erf(z * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * tf.math.exp(-0.5 * z * z)
    return cdf + z * pdf


def _gelu_tanh(z):
    u = _SQRT_2_OVER_PI * (z + _GELU_TANH_COEFF * z * z * z)
    return 0.5 * z * (1.0 + tf.math.tanh(u))


def _gelu_tanh_d(z, a):
    """With u = sqrt(2/pi) (z + 0.044715 z^3) and t = tanh(u):
    gelu_tanh'(z) = (1 + t)/2 + z/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 z^2)"""
    t = tf.math.tanh(_SQRT_2_OVER_PI * (z + _GELU_TANH_COEFF * z * z * z))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_COEFF * z * z)
    # Where tanh has saturated, 1 - t^2 is exactly 0 and z du may overflow: take 0 * inf as 0.
    return 0.5 * (1.0 + t) + tf.math.multiply_no_nan(0.5 * z * du, 1.0 - t * t)


def _softplus(z):
    return tf.math.softplus(z)


def _softplus_d(z, a):
    """softplus'(z) = sigmoid(z)"""
    return tf.math.sigmoid(z)


def _swish(z):
    return z * tf.math.sigmoid(z)


def _swish_d(z, a):
    """swish'(z) = s + a (1 - s), s = sigmoid(z)"""
    s = tf.math.sigmoid(z)
    return s + a * (1.0 - s)


def _softsign(z):
    return tf.math.softsign(z)


def _softsign_d(z, a):
    """softsign'(z) = 1 / (1 + |z|)^2"""
    d = 1.0 + tf.math.abs(z)
    return 1.0 / (d * d)


def _hard_sigmoid(z):
    return tf.nn.relu6(z + 3.0) / 6.0


def _hard_sigmoid_d(z, a):
    """hard_sigmoid'(z) = 1/6 inside (-3, 3), else 0; 0 at +-3.
    Tested on u = z + 3 (what relu6 sees), so that rounding of z + 3 cannot move the edge."""
    u = z + 3.0
    inside = tf.logical_and(u > 0, u < 6)
    return tf.cast(inside, z.dtype) / 6.0


def _softmax(z):
    return tf.nn.softmax(z, axis=-1)


def _softmax_vjp(z, a, g):
    """softmax VJP, row-wise: dL/dz = a * (g - sum(g * a))"""
    return a * (g - tf.reduce_sum(g * a, axis=-1, keepdims=True))


_UNIT = (0.0, 1.0)
_REAL = (-math.inf, math.inf)

_RECORDS = [
    ActivationRecord(
        "linear",
        _elementwise(_linear, _linear_d),
        _REAL,
        _no_kinks,
        independent=lambda z: z,
        aliases=("identity",),
    ),
    ActivationRecord(
        "sigmoid",
        _elementwise(_sigmoid, _sigmoid_d),
        _UNIT,
        _no_kinks,
        independent=lambda z: 0.5 * (1.0 + tf.math.tanh(0.5 * z)),
    ),
    ActivationRecord(
        "tanh", _elementwise(_tanh, _tanh_d), (-1.0, 1.0), _no_kinks, independent=_tanh_independent
    ),
    ActivationRecord(
        "relu",
        _elementwise(_relu, _relu_d),
        (0.0, math.inf),
        kinks=lambda: {0.0: 0.0},
        independent=lambda z: tf.maximum(z, 0.0),
    ),
    ActivationRecord(
        "leaky_relu",
        _make_leaky_relu,
        _REAL,
        kinks=lambda alpha: {0.0: alpha},
        independent=_leaky_relu_independent,
        params={"alpha": Param(0.2, examples=(0.01, 0.1, 0.3))},
    ),
    ActivationRecord(
        "elu",
        _make_elu,
        _REAL,
        kinks=lambda alpha: {0.0: alpha},
        independent=lambda z, alpha: tf.where(z > 0, z, alpha * tf.nn.elu(tf.minimum(z, 0.0))),
        params={"alpha": Param(1.0, examples=(0.5, 1.0, 1.7))},
    ),
    ActivationRecord(
        "selu",
        _elementwise(_selu, _selu_d),
        _REAL,
        kinks=lambda: {0.0: SELU_LAMBDA},
        independent=tf.nn.selu,
    ),
    ActivationRecord(
        "gelu",
        _elementwise(_gelu, _gelu_d),
        _REAL,
        _no_kinks,
        independent=lambda z: 0.5 * z * tf.math.erfc(-z / math.sqrt(2.0)),
    ),
    ActivationRecord(
        "gelu_tanh",
        _elementwise(_gelu_tanh, _gelu_tanh_d),
        _REAL,
        _no_kinks,
        independent=lambda z: (
            0.5
            * z
            * (1.0 + tf.math.tanh(math.sqrt(2.0 / math.pi) * z * (1.0 + 0.044715 * tf.square(z))))
        ),
    ),
    ActivationRecord(
        "softplus",
        _elementwise(_softplus, _softplus_d),
        (0.0, math.inf),
        _no_kinks,
        independent=lambda z: tf.maximum(z, 0.0) + tf.math.log1p(tf.exp(-tf.abs(z))),
    ),
    ActivationRecord(
        "swish",
        _elementwise(_swish, _swish_d),
        _REAL,
        _no_kinks,
        independent=tf.nn.silu,
        aliases=("silu",),
    ),
    ActivationRecord(
        "softsign",
        _elementwise(_softsign, _softsign_d),
        (-1.0, 1.0),
        _no_kinks,
        independent=lambda z: z / (1.0 + tf.abs(z)),
    ),
    ActivationRecord(
        "hard_sigmoid",
        _elementwise(_hard_sigmoid, _hard_sigmoid_d),
        _UNIT,
        kinks=lambda: {-3.0: 0.0, 3.0: 0.0},
        independent=lambda z: tf.clip_by_value(z / 6.0 + 0.5, 0.0, 1.0),
    ),
    ActivationRecord(
        "softmax",
        lambda: (_softmax, None, _softmax_vjp),
        _UNIT,
        _no_kinks,
        independent=lambda z: tf.exp(z - tf.reduce_logsumexp(z, axis=-1, keepdims=True)),
    ),
]

# name -> record, in catalogue order; read-only.
ACTIVATIONS: Mapping[str, ActivationRecord] = MappingProxyType({r.name: r for r in _RECORDS})


def activation_names() -> tuple:
    """The registry's names, in catalogue order (aliases: ``silu``, ``identity``)."""
    return tuple(ACTIVATIONS)


def get_activation(name, **params) -> Activation:
    """Build a catalogue activation by name, e.g. ``get_activation("leaky_relu", alpha=0.1)``.

    An :class:`Activation` passed in is returned unchanged (``params`` must then be empty).
    Parameters: ``leaky_relu(alpha=0.2)`` (Keras 3's default), ``elu(alpha=1.0)``.
    """
    if isinstance(name, Activation):
        return passthrough("activation", name, params)
    key = resolve("activation", name, params, cls=Activation, records=ACTIVATIONS)
    record = ACTIVATIONS[key]
    merged = merged_params("activation", record, params)
    fn, derivative, vjp = record.build(**merged)
    return Activation(
        key, fn, derivative, vjp=vjp, params=merged, output_range=record.output_range, builtin=True
    )
