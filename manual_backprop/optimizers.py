"""Optimizers written out by hand, step for step the same updates as ``tf.keras.optimizers``.

Each has one method that matters, ``step(params, grads)``: update the ``tf.Variable`` s in
``params`` in place from the aligned ``grads``. State (velocities, moments, the step count) is
created on the first call, or by ``build(params)``, and is kept per variable.
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

__all__ = ["Optimizer", "SGD", "Momentum", "Adam"]


def _check_rate(name, value, *, upper=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if value < 0 or (upper is not None and value >= upper):
        bound = f"[0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be in {bound}; got {value!r}.")
    return float(value)


class Optimizer:
    """Base class: keeps per-variable slots, checks that params and grads line up."""

    slot_names: tuple = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = _check_rate("learning_rate", learning_rate)
        self._slots = {}
        self.iterations = None

    def build(self, params: Sequence[tf.Variable]) -> None:
        """Create the state for ``params`` (zeros), if not already there."""
        if self.iterations is None:
            self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        for p in params:
            if p.ref() not in self._slots:
                self._slots[p.ref()] = {
                    s: tf.Variable(tf.zeros_like(p), trainable=False) for s in self.slot_names
                }

    def step(self, params: Sequence[tf.Variable], grads: Sequence[tf.Tensor]) -> None:
        """Apply one update to every variable in ``params`` from the aligned ``grads``."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise ValueError(
                f"step: got {len(params)} params and {len(grads)} grads; "
                f"they must be aligned one to one."
            )
        self.build(params)
        for p, g in zip(params, grads):
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(
                    f"step: gradient of shape {tuple(g.shape)} for a parameter of "
                    f"shape {tuple(p.shape)}."
                )
        self.iterations.assign_add(1)
        for p, g in zip(params, grads):
            self._update(p, tf.cast(g, p.dtype), self._slots[p.ref()])

    def _update(self, p, g, slots):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.learning_rate!r})"


class SGD(Optimizer):
    """``p <- p - lr * g``"""

    def _update(self, p, g, slots):
        p.assign_sub(self.learning_rate * g)


class Momentum(Optimizer):
    """Heavy-ball momentum, as Keras's ``SGD(momentum=...)``:
    ``v <- momentum * v - lr * g``; ``p <- p + v``."""

    slot_names = ("velocity",)

    def __init__(self, learning_rate: float, momentum: float = 0.9):
        super().__init__(learning_rate)
        self.momentum = _check_rate("momentum", momentum, upper=1.0)

    def _update(self, p, g, slots):
        v = slots["velocity"]
        v.assign(self.momentum * v - self.learning_rate * g)
        p.assign_add(v)

    def __repr__(self):
        return f"Momentum({self.learning_rate!r}, momentum={self.momentum!r})"


class Adam(Optimizer):
    """Adam as Keras 3 writes it, with t the step count:

    ``m <- m + (g - m)(1 - beta_1)``; ``v <- v + (g^2 - v)(1 - beta_2)``;
    ``p <- p - lr_t * m / (sqrt(v) + epsilon)``, ``lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``.
    """

    slot_names = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ):
        super().__init__(learning_rate)
        self.beta_1 = _check_rate("beta_1", beta_1, upper=1.0)
        self.beta_2 = _check_rate("beta_2", beta_2, upper=1.0)
        self.epsilon = _check_rate("epsilon", epsilon)

    def _update(self, p, g, slots):
        m, v = slots["m"], slots["v"]
        t = tf.cast(self.iterations, p.dtype)
        one = tf.constant(1.0, p.dtype)
        lr_t = (
            self.learning_rate
            * tf.sqrt(one - tf.pow(tf.constant(self.beta_2, p.dtype), t))
            / (one - tf.pow(tf.constant(self.beta_1, p.dtype), t))
        )
        m.assign_add((g - m) * (1.0 - self.beta_1))
        v.assign_add((tf.square(g) - v) * (1.0 - self.beta_2))
        p.assign_sub(m * lr_t / (tf.sqrt(v) + self.epsilon))

    def __repr__(self):
        return (
            f"Adam({self.learning_rate!r}, beta_1={self.beta_1!r}, beta_2={self.beta_2!r}, "
            f"epsilon={self.epsilon!r})"
        )
