"""Activations: each forward ``fn`` sits next to its hand-written derivative.

An :class:`Activation` maps the pre-activation ``z`` to ``a = fn(z)``. Its ``derivative(z, a)``
returns ``da/dz`` elementwise, in ``z``'s float dtype, written in terms of whatever the backward
pass already holds (``a`` where that is cheaper and exact). An activation that is not elementwise
(softmax) supplies ``vjp(z, a, g)`` instead: the vector-Jacobian product ``g @ (da/dz)`` row-wise.

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
from typing import Callable, Mapping, Optional

import tensorflow as tf

from ._catalogue import catalogue_call, number, passthrough, resolve

__all__ = ["Activation", "get_activation", "activation_names", "SELU_LAMBDA", "SELU_ALPHA"]

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
                raise TypeError(f"Activation {self.name!r}: {label} must be callable; got {value!r}.")

    @property
    def elementwise(self) -> bool:
        return self.derivative is not None

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
            return catalogue_call("get_activation", self.name, self.params, _REGISTRY[self.name][1])
        return f"<Activation {self.name!r}>"

    def __repr__(self) -> str:
        if self.builtin:
            return catalogue_call("get_activation", self.name, self.params)
        return f"Activation({self.name!r}, fn={self.fn!r}, derivative={self.derivative!r})"


# --- the catalogue: forward, then its derivative, one pair per activation -------------------

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

    return fn, derivative


def _make_elu(alpha):
    def fn(z):
        # expm1 of min(z, 0): the unselected branch never overflows, so its tape has no 0 * inf.
        return tf.where(z > 0, z, alpha * tf.math.expm1(tf.minimum(z, 0.0)))

    def derivative(z, a):
        """elu'(z) = 1 if z > 0 else a + alpha; elu'(0) = alpha"""
        return tf.where(z > 0, tf.ones_like(z), a + alpha)

    return fn, derivative


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
_REAL = (-math.inf, math.inf)  # bounds only matter for the probability check

# name -> (factory(**params) -> (fn, derivative, vjp), default params, output_range)
_REGISTRY = {
    "linear": (lambda: (_linear, _linear_d, None), {}, _REAL),
    "sigmoid": (lambda: (_sigmoid, _sigmoid_d, None), {}, _UNIT),
    "tanh": (lambda: (_tanh, _tanh_d, None), {}, (-1.0, 1.0)),
    "relu": (lambda: (_relu, _relu_d, None), {}, (0.0, math.inf)),
    "leaky_relu": (lambda alpha: (*_make_leaky_relu(alpha), None), {"alpha": 0.2}, _REAL),
    "elu": (lambda alpha: (*_make_elu(alpha), None), {"alpha": 1.0}, _REAL),
    "selu": (lambda: (_selu, _selu_d, None), {}, _REAL),
    "gelu": (lambda: (_gelu, _gelu_d, None), {}, _REAL),
    "gelu_tanh": (lambda: (_gelu_tanh, _gelu_tanh_d, None), {}, _REAL),
    "softplus": (lambda: (_softplus, _softplus_d, None), {}, (0.0, math.inf)),
    "swish": (lambda: (_swish, _swish_d, None), {}, _REAL),
    "softsign": (lambda: (_softsign, _softsign_d, None), {}, (-1.0, 1.0)),
    "hard_sigmoid": (lambda: (_hard_sigmoid, _hard_sigmoid_d, None), {}, _UNIT),
    "softmax": (lambda: (_softmax, None, _softmax_vjp), {}, _UNIT),
}
_ALIASES = {"silu": "swish", "identity": "linear"}


def activation_names() -> tuple:
    """The registry's names, in catalogue order (aliases: ``silu``, ``identity``)."""
    return tuple(_REGISTRY)


def get_activation(name, **params) -> Activation:
    """Build a catalogue activation by name, e.g. ``get_activation("leaky_relu", alpha=0.1)``.

    An :class:`Activation` passed in is returned unchanged (``params`` must then be empty).
    Parameters: ``leaky_relu(alpha=0.2)`` (Keras 3's default), ``elu(alpha=1.0)``.
    """
    if isinstance(name, Activation):
        return passthrough("activation", name, params)
    key = resolve("activation", name, params, cls=Activation, names=_REGISTRY, aliases=_ALIASES,
                  param_names=lambda k: _REGISTRY[k][1])
    factory, defaults, output_range = _REGISTRY[key]
    merged = {p: number("activation", key, p, v) for p, v in {**defaults, **params}.items()}
    fn, derivative, vjp = factory(**merged)
    return Activation(key, fn, derivative, vjp=vjp, params=merged, output_range=output_range,
                      builtin=True)
