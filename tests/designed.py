"""Models whose loss, gradients, rounding and planted errors are set by hand, for the boundary
tests of the judges' thresholds (tests/test_thresholds.py).

A ``Designed`` model has blocks of parameters ``w`` with loss ``sum(a (w - w0) + b/2 (w - w0)^2)``
(plus an offset: added, so that the loss is large, or added and taken away again, so that the
loss is small but rounded on the offset's scale) and hand-written gradient ``a + b (w - w0)``,
to which ``error(block, w)`` adds a planted error. Every magnitude a threshold is computed from
(the loss, its rounding, each tensor's largest gradient and parameter) is then a number the test
chooses, so that a planted error can sit a known factor inside or outside a threshold.
"""

import numpy as np
import tensorflow as tf

_THIRD = 1000.0 / 3.0  # not dyadic: a power-of-two step times it is no multiple of an ulp


class Block:
    """One parameter tensor of a designed model: the loss's centre ``w0`` and its gradient
    there, ``a`` (``b`` is the curvature, ``power`` makes the gradient ``a (w / w0)^power``
    instead); the parameters start at ``start`` (default ``w0``)."""

    def __init__(self, a, w0, b=1.0, power=None, start=None, wiggle=None, shift=None, kink=0.0):
        self.wiggle = wiggle  # (amplitude, frequency): + amp sin(freq w), curving every line
        # + kink |w - w0|: at w0 the one-sided derivatives are a -+ kink; the hand-written
        # gradient takes the right one there (TensorFlow's tape takes a).
        self.kink = kink
        # w is read as ((1000 w / 3 + shift) - shift) * 3 / 1000: the loss, and the tape's
        # gradient, keep the digits of 1000 w / 3 that survive next to shift (the tape's own
        # rounding, measurable against float64, and rounding noise along every line: 1000 / 3
        # is not dyadic, so power-of-two steps do not slide along the grid of shift's ulps).
        self.shift = shift
        self.a = np.asarray(a, np.float64)
        self.w0 = np.asarray(w0, np.float64)
        self.b = b
        self.power = power
        self.start = self.w0 if start is None else np.asarray(start, np.float64)

    def loss(self, w, module):
        """The block's loss in TF ops (``module`` tf) or NumPy (``module`` np)."""
        if module is tf:
            a, w0 = (tf.constant(v, w.dtype) for v in (self.a, self.w0))
        else:
            a, w0 = (v.astype(w.dtype) for v in (self.a, self.w0))
        if self.power is not None:  # gradient a (w / w0)^p
            p = self.power
            total = a * w0 / (p + 1) * (w / w0) ** (p + 1)
        else:
            if self.shift is not None:
                w = ((_THIRD * w + self.shift) - self.shift) / _THIRD
            d = w - w0
            total = a * d + 0.5 * self.b * d * d
        if self.wiggle is not None:
            amp, freq = self.wiggle
            total = total + amp * module.sin(freq * w)
        if self.kink:
            total = total + self.kink * module.abs(w - w0)
        return tf.reduce_sum(total) if module is tf else np.sum(total)

    def gradient(self, w):
        if self.power is not None:
            g = self.a * (w / self.w0) ** self.power
        else:
            g = self.a + self.b * (w - self.w0)
        if self.wiggle is not None:
            amp, freq = self.wiggle
            g = g + amp * freq * np.cos(freq * w)
        if self.kink:
            g = g + self.kink * np.where(w >= self.w0, 1.0, -1.0)
        return g


class Designed:
    """A model of ``blocks`` in ``dtype``: TF variables and a TF loss (the tape witnesses), or
    with ``numpy=True`` NumPy arrays and a NumPy loss (finite differences judge alone).

    ``offset`` is added to the loss; with ``cancel`` it is added and taken away again, so the
    loss keeps its small value but is rounded on the offset's scale. ``noise`` adds
    ``sum(noise * w) - noise * sum(w)``, zero in exact arithmetic: rounding noise of about
    ulps of ``noise * |w|`` that moves when any weight moves by an ulp (as a real loss's does).
    ``error(i, w)`` returns the error planted in block i's gradient at the weights ``w``
    (float64); ``error32`` one planted in float32 only; ``tape_error(i)`` makes the tape's
    gradient of block i that much too large (a custom gradient in the forward). ``twin`` gives
    the model an ``astype`` (the same code in another dtype)."""

    def __init__(
        self,
        blocks,
        *,
        dtype="float64",
        numpy=False,
        offset=0.0,
        cancel=False,
        error=None,
        error32=None,
        twin=False,
        names=None,
        noise=0.0,
        tape_error=None,
    ):
        self.blocks, self.dtype, self.numpy = blocks, np.dtype(dtype), numpy
        self.offset, self.cancel, self.error, self.error32 = offset, cancel, error, error32
        self.noise = noise
        self.tape_error = tape_error
        values = [b.start.astype(self.dtype) for b in blocks]
        self.params = values if numpy else [tf.Variable(v) for v in values]
        self.param_names = names or [f"w{i}" for i in range(len(blocks))]
        if twin:
            self.astype = self._astype

    def _astype(self, dtype):
        other = Designed(
            self.blocks,
            dtype=dtype,
            numpy=self.numpy,
            offset=self.offset,
            cancel=self.cancel,
            error=self.error,
            error32=self.error32,
            twin=True,
            names=self.param_names,
            noise=self.noise,
            tape_error=self.tape_error,
        )
        for mine, theirs in zip(self.params, other.params):
            value = np.asarray(mine if self.numpy else mine.numpy(), np.float64)
            if self.numpy:
                np.copyto(theirs, value.astype(other.dtype))
            else:
                theirs.assign(value.astype(other.dtype))
        return other

    def _weights(self):
        return [np.asarray(p if self.numpy else p.numpy(), np.float64) for p in self.params]

    def loss(self, X, y):
        module = np if self.numpy else tf
        if self.numpy:
            total = sum(b.loss(p, np) for b, p in zip(self.blocks, self.params))
            if self.noise:  # zero in exact arithmetic, rounding noise of noise * |w| in floats
                n = self.dtype.type(self.noise)
                total = total + sum(np.sum(n * p) - n * np.sum(p) for p in self.params)
            c = self.dtype.type(self.offset)
            total = self.dtype.type(total)
            return float((c + total) - c) if self.cancel else float(total + c)
        c = tf.constant(self.offset, self.dtype)
        params = self.params
        if self.tape_error is not None:
            params = [_skewed(p, self.tape_error(i)) for i, p in enumerate(params)]
        total = tf.add_n([b.loss(p, module) for b, p in zip(self.blocks, params)])
        if self.noise:
            n = tf.constant(self.noise, self.dtype)
            total = total + tf.add_n(
                [tf.reduce_sum(n * p) - n * tf.reduce_sum(p) for p in self.params]
            )
        return (c + total) - c if self.cancel else total + c

    def gradients(self, X, y):
        out = []
        for i, (b, w) in enumerate(zip(self.blocks, self._weights())):
            g = b.gradient(w)
            if self.error is not None:
                g = g + self.error(i, w)
            if self.error32 is not None and self.dtype == np.float32:
                g = g + self.error32(i, w)
            out.append(g.astype(self.dtype) if self.numpy else tf.constant(g, self.dtype))
        return out


NO_DATA = (np.zeros((1, 1)), np.zeros((1, 1)))


def _skewed(w, error):
    """w itself, whose gradient on the tape comes out ``error`` too large: a custom gradient in
    the forward makes the tape an unfaithful witness, by a chosen amount."""

    @tf.custom_gradient
    def skewed(x):
        return tf.identity(x), lambda dy: dy + tf.constant(error, x.dtype)

    return skewed(w)


def erratic(amplitude, frequency=1e9, where=None):
    """An error that looks like rounding: ``amplitude * sin(...)`` of a phase that moves by
    ``frequency`` times the weights' change (1e9: many turns under a 1e-6 nudge), different in
    each element; deterministic at a given point. ``where``: the block it is planted in (every
    block when None)."""

    def error(i, w):
        if where is not None and i != where:
            return np.zeros_like(w)
        flat = w.reshape(-1)
        phase = frequency * float(np.sum(flat * np.arange(1, flat.size + 1)))
        return amplitude * np.sin(phase + np.arange(flat.size)).reshape(w.shape)

    return error


def offset_at(block, index, delta):
    """An error of ``delta`` at one element of one block (a systematic bug)."""

    def error(i, w):
        out = np.zeros_like(w)
        if i == block:
            out[index] = delta
        return out

    return error


# The second block's weights of ``wiggly_float32``, as float32 holds them.
_WIGGLY_START = np.random.default_rng(1).normal(size=4).astype(np.float32).astype(np.float64)


def wiggly_float32(error):
    """float32, judged on its own tape: a large tensor (gradients ~10) and a small one whose
    loss wiggles (sin(50 w)), so that finite differences in float32 cannot resolve 1e-2 of it
    while the loss stays below 1 (what it resolves is far below the rounding bound).
    ``error(largest)`` (the model's largest gradient) returns the error to plant."""
    rng = np.random.default_rng(0)
    blocks = [
        Block(rng.uniform(5.0, 10.0, 4), rng.normal(size=4)),
        Block(rng.uniform(0.5, 1.0, 4), _WIGGLY_START, wiggle=(1e-3, 50.0)),
    ]
    model = Designed(blocks, dtype="float32")
    largest = max(float(np.max(np.abs(g.numpy()))) for g in model.gradients(*NO_DATA))
    model.error = error(largest)
    return model


class NestedKinks:
    """A NumPy net (no tape) where kinks meet: two leaky ReLU layers (slope ``alpha`` below 0),
    a linear output, mean squared error, zero biases and an all-zero input row, so that every
    unit of both layers sits at its kink there, and the hand-written backward takes relu'(0) = 1
    (the gradient of the region where those units are active). Unit 0 of layer 1 sits ``d``
    below its kink at input row 1 and is active at every other row: pushing the biases into the
    region moves it across its kink once the push passes ``d``. ``drop_alpha`` forgets alpha in
    layer 1's backward, which is wrong only where that unit is inactive (at row 1: a bug the
    region past ``d`` does not have). ``offset`` is added to the loss (its rounding grows with
    it)."""

    param_names = ["W1", "b1", "W2", "b2", "W3", "b3"]

    def __init__(self, d, drop_alpha=False, alpha=0.1, offset=0.0):
        rng = np.random.default_rng(0)
        W1 = rng.uniform(0.5, 1.5, (3, 4))
        W1[:, 0] = [1.0, -1.0, 0.0]
        self.params = [
            W1,
            np.zeros(4),
            rng.normal(size=(4, 3)),
            np.zeros(3),
            rng.normal(size=(3, 2)),
            np.zeros(2),
        ]
        self.drop_alpha, self.alpha, self.offset = drop_alpha, alpha, offset
        X = rng.uniform(0.5, 1.5, (6, 3))
        X[0] = 0.0
        X[1] = [1.0, 1.0 + d, 1.0]
        X[2:, 0] = X[2:, 1] + 0.5
        self.X, self.y = X, rng.normal(size=(6, 2))

    def _leaky(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def loss(self, X, y):
        W1, b1, W2, b2, W3, b3 = self.params
        out = self._leaky(self._leaky(X @ W1 + b1) @ W2 + b2) @ W3 + b3
        return self.offset + 0.5 * np.mean(np.sum((out - y) ** 2, axis=1))

    def gradients(self, X, y):
        W1, b1, W2, b2, W3, b3 = self.params
        Z1 = X @ W1 + b1
        A1 = self._leaky(Z1)
        Z2 = A1 @ W2 + b2
        A2 = self._leaky(Z2)
        dout = (A2 @ W3 + b3 - y) / len(X)
        dZ2 = (dout @ W3.T) * np.where(Z2 >= 0, 1.0, self.alpha)
        dZ1 = (dZ2 @ W2.T) * np.where(Z1 >= 0, 1.0, 0.0 if self.drop_alpha else self.alpha)
        return [X.T @ dZ1, dZ1.sum(0), A1.T @ dZ2, dZ2.sum(0), A2.T @ dout, dout.sum(0)]
