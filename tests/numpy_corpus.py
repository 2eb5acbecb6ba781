"""A corpus of models written in NumPy, the way from-scratch tutorials write them (CS231n's
two-layer net, deeplearning.ai's column layout, nnfs's layer classes, Nielsen's network.py), and
of TensorFlow models whose loss the tape cannot follow (a loss computed in NumPy, a loss returned
as a float). Each has its right twin and planted bugs, under ``if self.bug == ...`` beside the
right line.

The harness judges these with finite differences alone (the tape cannot watch NumPy arrays, nor
differentiate a float). So that the corpus itself is checked by something other than the harness,
every model also carries ``tf_loss(params, X, y)``: the same loss written in TensorFlow ops, whose
tape gradient is the exact gradient the right twin must match (``test_numpy_models.py``).

``CASES`` lists every right twin, planted bug and impure model; ``case.build(seed, hidden, n)``
returns ``(model, X, y)``, deterministic given its arguments, for any ``seed >= 0``,
``hidden >= 2`` and ``n >= 2``. ``case.expect`` is ``"pass"``, ``"fail"`` or ``"impure"``, as in
``corpus.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import corpus
import numpy as np
import tensorflow as tf
from corpus import MIN_HIDDEN, MIN_N, _Spec

__all__ = ["Case", "CASES", "MIN_HIDDEN", "MIN_N"]


def _check_bug(cls, bug):
    if bug is not None and bug not in cls.BUGS:
        raise ValueError(f"{cls.__name__} has no bug {bug!r}; its bugs: {', '.join(cls.BUGS)}.")


# --- 1. CS231n: a two-layer net with a softmax loss and L2 regularisation ------------------------


class CS231nTwoLayerNet:
    """CS231n's ``TwoLayerNet``: rows are examples, ``params`` a dict of arrays, ReLU hidden layer,
    softmax loss on integer labels averaged over the batch, plus ``reg * (sum W1^2 + sum W2^2)``.

    Bugs: ``reg_grad_not_doubled`` (dW1 += reg W1, the 2 forgotten), ``dscores_no_1_over_n``,
    ``relu_mask_missing`` (the ReLU's derivative left out), ``db1_mean``.
    """

    BUGS = ("reg_grad_not_doubled", "dscores_no_1_over_n", "relu_mask_missing", "db1_mean")
    param_names = ["W1", "b1", "W2", "b2"]

    def __init__(
        self, input_size, hidden_size, output_size, std=0.5, reg=0.05, *, dtype, seed, bug
    ):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug, self.reg = bug, reg
        self.weights = {
            "W1": (std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": (0.1 * rng.standard_normal(hidden_size)).astype(dtype),
            "W2": (std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }

    @property
    def params(self):
        return [self.weights[k] for k in self.param_names]

    def _forward(self, X):
        W1, b1, W2, b2 = self.params
        hidden = np.maximum(0, X.dot(W1) + b1)
        scores = hidden.dot(W2) + b2
        scores -= np.max(scores, axis=1, keepdims=True)
        return hidden, np.exp(scores) / np.sum(np.exp(scores), axis=1, keepdims=True)

    def loss(self, X, y):
        W1, _, W2, _ = self.params
        N = X.shape[0]
        _, probs = self._forward(X)
        data_loss = -np.sum(np.log(probs[np.arange(N), y])) / N
        return data_loss + self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    def gradients(self, X, y):
        W1, _, W2, _ = self.params
        N = X.shape[0]
        hidden, probs = self._forward(X)
        dscores = probs
        dscores[np.arange(N), y] -= 1
        if self.bug != "dscores_no_1_over_n":
            dscores /= N
        dW2 = hidden.T.dot(dscores) + 2 * self.reg * W2
        db2 = np.sum(dscores, axis=0)
        dhidden = dscores.dot(W2.T)
        if self.bug != "relu_mask_missing":
            dhidden[hidden <= 0] = 0
        dW1 = X.T.dot(dhidden) + 2 * self.reg * W1
        if self.bug == "reg_grad_not_doubled":
            dW1 = X.T.dot(dhidden) + self.reg * W1
        db1 = np.sum(dhidden, axis=0)
        if self.bug == "db1_mean":
            db1 = np.mean(dhidden, axis=0)
        return [dW1, db1, dW2, db2]

    def tf_loss(self, params, X, y):
        W1, b1, W2, b2 = params
        hidden = tf.nn.relu(tf.matmul(X, W1) + b1)
        scores = tf.matmul(hidden, W2) + b2
        data = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scores)
        )
        return data + self.reg * (tf.reduce_sum(W1 * W1) + tf.reduce_sum(W2 * W2))


def _build_cs231n(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(10_000 + seed)
    X = rng.standard_normal((n, 4)).astype(dtype)
    y = rng.integers(0, 3, size=n)
    return CS231nTwoLayerNet(4, hidden, 3, dtype=dtype, seed=seed, bug=bug), X, y


# --- 2. deeplearning.ai: examples as columns ------------------------------------------------------


class DLAIColumnNet:
    """deeplearning.ai's planar-data network: X is (n_x, m), Y is (1, m), W1 is (n_h, n_x) and
    b1 is (n_h, 1); tanh hidden layer, sigmoid output, binary cross-entropy averaged over the m
    examples. ``parameters`` is a dict; the backward pass is ``backward_propagation`` verbatim.

    Bugs: ``db1_missing_1_over_m``, ``tanh_prime_as_1_minus_a`` (1 - A1 for 1 - A1^2),
    ``dZ2_times_sigmoid_prime`` (the fused A2 - Y multiplied by sigmoid' once more).
    """

    BUGS = ("db1_missing_1_over_m", "tanh_prime_as_1_minus_a", "dZ2_times_sigmoid_prime")
    param_names = ["W1", "b1", "W2", "b2"]
    batch_axis = 1

    def __init__(self, n_x, n_h, n_y, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.parameters = {
            "W1": (rng.standard_normal((n_h, n_x)) * 0.5).astype(dtype),
            "b1": np.zeros((n_h, 1), dtype=dtype),
            "W2": (rng.standard_normal((n_y, n_h)) * 0.5).astype(dtype),
            "b2": np.zeros((n_y, 1), dtype=dtype),
        }

    @property
    def params(self):
        return [self.parameters[k] for k in self.param_names]

    def forward_propagation(self, X):
        W1, b1, W2, b2 = self.params
        Z1 = np.dot(W1, X) + b1
        A1 = np.tanh(Z1)
        Z2 = np.dot(W2, A1) + b2
        A2 = 1 / (1 + np.exp(-Z2))
        return A2, {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}

    def loss(self, X, Y):
        A2, _ = self.forward_propagation(X)
        m = Y.shape[1]
        logprobs = np.multiply(np.log(A2), Y) + np.multiply(np.log(1 - A2), 1 - Y)
        return float(np.squeeze(-np.sum(logprobs) / m))

    def gradients(self, X, Y):
        _, cache = self.forward_propagation(X)
        W2 = self.parameters["W2"]
        A1, A2 = cache["A1"], cache["A2"]
        m = X.shape[1]
        dZ2 = A2 - Y
        if self.bug == "dZ2_times_sigmoid_prime":
            dZ2 = (A2 - Y) * A2 * (1 - A2)
        dW2 = (1 / m) * np.dot(dZ2, A1.T)
        db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)
        dZ1 = np.multiply(np.dot(W2.T, dZ2), 1 - np.power(A1, 2))
        if self.bug == "tanh_prime_as_1_minus_a":
            dZ1 = np.multiply(np.dot(W2.T, dZ2), 1 - A1)
        dW1 = (1 / m) * np.dot(dZ1, X.T)
        db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)
        if self.bug == "db1_missing_1_over_m":
            db1 = np.sum(dZ1, axis=1, keepdims=True)
        return [dW1, db1, dW2, db2]

    def tf_loss(self, params, X, Y):
        W1, b1, W2, b2 = params
        Z2 = tf.matmul(W2, tf.tanh(tf.matmul(W1, X) + b1)) + b2
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=Y, logits=Z2))


def _build_dlai(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(20_000 + seed)
    X = rng.standard_normal((2, n)).astype(dtype)
    Y = (rng.random((1, n)) < 0.5).astype(dtype)
    return DLAIColumnNet(2, hidden, 1, dtype=dtype, seed=seed, bug=bug), X, Y


# --- 3. nnfs: layer classes with forward and backward methods ---------------------------------


class LayerDense:
    def __init__(self, n_inputs, n_neurons, rng, dtype):
        self.weights = (0.5 * rng.standard_normal((n_inputs, n_neurons))).astype(dtype)
        self.biases = np.zeros((1, n_neurons), dtype=dtype)

    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.dot(inputs, self.weights) + self.biases

    def backward(self, dvalues, bug=None):
        self.dweights = np.dot(self.inputs.T, dvalues)
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        if bug == "dbiases_mean":
            self.dbiases = np.mean(dvalues, axis=0, keepdims=True)
        self.dinputs = np.dot(dvalues, self.weights.T)


class ActivationReLU:
    def forward(self, inputs):
        self.inputs = inputs
        self.output = np.maximum(0, inputs)

    def backward(self, dvalues, bug=None):
        self.dinputs = dvalues.copy()
        if bug == "relu_mask_on_dvalues":
            self.dinputs[dvalues <= 0] = 0
        else:
            self.dinputs[self.inputs <= 0] = 0


class ActivationSoftmaxLossCategoricalCrossentropy:
    def forward(self, inputs, y_true):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)
        samples = len(self.output)
        y_pred_clipped = np.clip(self.output, 1e-7, 1 - 1e-7)
        correct_confidences = y_pred_clipped[range(samples), y_true]
        return np.mean(-np.log(correct_confidences))

    def backward(self, dvalues, y_true, bug=None):
        samples = len(dvalues)
        self.dinputs = dvalues.copy()
        self.dinputs[range(samples), y_true] -= 1
        if bug != "combined_grad_not_averaged":
            self.dinputs = self.dinputs / samples


class NnfsNetwork:
    """nnfs ("Neural Networks from Scratch"): Layer_Dense, Activation_ReLU and the combined
    softmax + categorical cross-entropy, each a class with ``forward`` and ``backward``; biases are
    (1, n); ``dinputs`` of the first layer is dL/dX.

    Bugs: ``relu_mask_on_dvalues`` (the mask taken from the upstream gradient, not the inputs),
    ``combined_grad_not_averaged``, ``dbiases_mean`` (in the second layer).
    """

    BUGS = ("relu_mask_on_dvalues", "combined_grad_not_averaged", "dbiases_mean")
    param_names = ["dense1.weights", "dense1.biases", "dense2.weights", "dense2.biases"]

    def __init__(self, n_inputs, hidden, n_classes, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.dense1 = LayerDense(n_inputs, hidden, rng, dtype)
        self.activation1 = ActivationReLU()
        self.dense2 = LayerDense(hidden, n_classes, rng, dtype)
        self.loss_activation = ActivationSoftmaxLossCategoricalCrossentropy()

    @property
    def params(self):
        return [self.dense1.weights, self.dense1.biases, self.dense2.weights, self.dense2.biases]

    def loss(self, X, y):
        self.dense1.forward(X)
        self.activation1.forward(self.dense1.output)
        self.dense2.forward(self.activation1.output)
        return self.loss_activation.forward(self.dense2.output, y)

    def _backward(self, X, y):
        self.loss(X, y)
        self.loss_activation.backward(self.loss_activation.output, y, self.bug)
        self.dense2.backward(self.loss_activation.dinputs, self.bug)
        self.activation1.backward(self.dense2.dinputs, self.bug)
        self.dense1.backward(self.activation1.dinputs)

    def gradients(self, X, y):
        self._backward(X, y)
        return [
            self.dense1.dweights,
            self.dense1.dbiases,
            self.dense2.dweights,
            self.dense2.dbiases,
        ]

    def input_gradient(self, X, y):
        self._backward(X, y)
        return self.dense1.dinputs

    def tf_loss(self, params, X, y):
        W1, b1, W2, b2 = params
        logits = tf.matmul(tf.nn.relu(tf.matmul(X, W1) + b1), W2) + b2
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )


def _build_nnfs(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(30_000 + seed)
    X = rng.standard_normal((n, 2)).astype(dtype)
    y = rng.integers(0, 3, size=n)
    return NnfsNetwork(2, hidden, 3, dtype=dtype, seed=seed, bug=bug), X, y


# --- 4. Nielsen's network.py: per-example backprop, quadratic cost ------------------------------


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1 - sigmoid(z))


class NielsenNetwork:
    """``network.py`` of "Neural Networks and Deep Learning": sigmoid layers, weights (n_out,
    n_in), biases (n_out, 1), each example a column vector, ``backprop(x, y)`` per example; the
    cost is the quadratic C = 1/n sum_x 0.5 ||a(x) - y(x)||^2 and the gradient the mean of the
    examples' (as ``update_mini_batch`` averages them). X is (n, n_in), one example per row.

    Bugs: ``sigmoid_prime_of_activation`` (sigma'(a) for sigma'(z) in the hidden layer),
    ``not_averaged`` (the sum over the examples), ``output_delta_without_sigmoid_prime`` (the
    cross-entropy cost's delta with the quadratic cost).
    """

    BUGS = ("sigmoid_prime_of_activation", "not_averaged", "output_delta_without_sigmoid_prime")

    def __init__(self, sizes, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.num_layers = len(sizes)
        self.biases = [rng.standard_normal((y, 1)).astype(dtype) for y in sizes[1:]]
        self.weights = [
            rng.standard_normal((y, x)).astype(dtype) for x, y in zip(sizes[:-1], sizes[1:])
        ]
        self.param_names = [f"{kind}[{i}]" for i in range(len(self.weights)) for kind in "wb"]

    @property
    def params(self):
        return [p for w, b in zip(self.weights, self.biases) for p in (w, b)]

    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def loss(self, X, Y):
        total = 0.0
        for x, y in zip(X, Y):
            a = self.feedforward(x.reshape(-1, 1))
            total += 0.5 * np.sum((a - y.reshape(-1, 1)) ** 2)
        return total / len(X)

    def backprop(self, x, y):
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        activation = x
        activations = [x]
        zs = []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        if self.bug == "output_delta_without_sigmoid_prime":
            delta = activations[-1] - y
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        for layer in range(2, self.num_layers):
            sp = sigmoid_prime(zs[-layer])
            if self.bug == "sigmoid_prime_of_activation":
                sp = sigmoid_prime(activations[-layer])
            delta = np.dot(self.weights[-layer + 1].transpose(), delta) * sp
            nabla_b[-layer] = delta
            nabla_w[-layer] = np.dot(delta, activations[-layer - 1].transpose())
        dx = np.dot(self.weights[0].transpose(), delta)
        return nabla_b, nabla_w, dx

    def _backward(self, X, Y):
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        dX = np.zeros(X.shape)
        for i, (x, y) in enumerate(zip(X, Y)):
            delta_b, delta_w, dx = self.backprop(x.reshape(-1, 1), y.reshape(-1, 1))
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_w)]
            dX[i] = dx.ravel()
        n = 1 if self.bug == "not_averaged" else len(X)
        grads = [g / n for w, b in zip(nabla_w, nabla_b) for g in (w, b)]
        return grads, dX / len(X)

    def gradients(self, X, Y):
        return self._backward(X, Y)[0]

    def input_gradient(self, X, Y):
        return self._backward(X, Y)[1]

    def tf_loss(self, params, X, Y):
        a = tf.transpose(X)
        for w, b in zip(params[0::2], params[1::2]):
            a = tf.sigmoid(tf.matmul(w, a) + b)
        return tf.reduce_sum(0.5 * (a - tf.transpose(Y)) ** 2) / X.shape[0]


def _build_nielsen(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(40_000 + seed)
    X = rng.standard_normal((n, 3)).astype(dtype)
    Y = rng.random((n, 2)).astype(dtype)
    return NielsenNetwork([3, hidden, 2], dtype=dtype, seed=seed, bug=bug), X, Y


# --- 5. ReLU at its kink: zero biases, all-zero input rows ---------------------------------------


class ZeroRowRelu:
    """A NumPy two-layer ReLU net, rows as examples, mean squared error, with zero biases and
    some all-zero input rows: every unit of the first layer is exactly at its kink on those rows.
    ``relu_grad_at_0`` is the backward's choice at 0: 0 (``z > 0``, TensorFlow's), 1
    (``z >= 0``) or 1/2, all valid subgradients of a one-layer kink.

    Bugs: ``relu_grad_5_at_0`` (not a subgradient), ``dW2_no_1_over_n``.
    """

    BUGS = ("relu_grad_5_at_0", "dW2_no_1_over_n")
    param_names = ["W1", "b1", "W2", "b2"]

    def __init__(self, n_in, hidden, n_out, relu_grad_at_0, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug, self.at_0 = bug, relu_grad_at_0
        self.W1 = rng.standard_normal((n_in, hidden)).astype(dtype)
        self.b1 = np.zeros(hidden, dtype=dtype)
        self.W2 = rng.standard_normal((hidden, n_out)).astype(dtype)
        self.b2 = (0.1 * rng.standard_normal(n_out)).astype(dtype)

    @property
    def params(self):
        return [self.W1, self.b1, self.W2, self.b2]

    def loss(self, X, y):
        out = np.maximum(X @ self.W1 + self.b1, 0) @ self.W2 + self.b2
        return np.mean((out - y) ** 2)

    def gradients(self, X, y):
        z1 = X @ self.W1 + self.b1
        a1 = np.maximum(z1, 0)
        out = a1 @ self.W2 + self.b2
        dout = 2 * (out - y) / out.size
        dW2 = a1.T @ dout
        if self.bug == "dW2_no_1_over_n":
            dW2 = dW2 * len(X)
        db2 = dout.sum(axis=0)
        at_0 = 5.0 if self.bug == "relu_grad_5_at_0" else self.at_0
        relu_prime = np.where(z1 > 0, 1.0, np.where(z1 == 0, at_0, 0.0))
        dz1 = (dout @ self.W2.T) * relu_prime
        return [X.T @ dz1, dz1.sum(axis=0), dW2, db2]

    def tf_loss(self, params, X, y):
        W1, b1, W2, b2 = params
        out = tf.matmul(tf.nn.relu(tf.matmul(X, W1) + b1), W2) + b2
        return tf.reduce_mean((out - y) ** 2)


def _zero_row_builder(at_0):
    def build(bug, dtype, seed, hidden, n):
        rng = np.random.default_rng(50_000 + seed)
        X = np.abs(rng.standard_normal((n, 3)))
        X[: max(1, n // 3)] = 0.0  # the first rows are all zero: layer 1 at its kink there
        y = rng.standard_normal((n, 2))
        model = ZeroRowRelu(3, hidden, 2, at_0, dtype=dtype, seed=seed, bug=bug)
        model.W1[:, 0] = np.abs(model.W1[:, 0])  # unit 0 is alive on the other rows
        return model, X, y

    return build


# --- 6. dropout in NumPy ------------------------------------------------------------------------


class NumpyDropout:
    """CS231n-style inverted dropout on the hidden layer of a tanh net (mean squared error).
    The right twin draws its mask once, at construction, from a seeded generator, and its
    backward uses the same mask: deterministic, and judged.

    Bugs: ``mask_drawn_per_call`` (``np.random.rand`` in every forward: random, impure),
    ``mask_not_in_backward`` (the fixed mask left out of the backward: a wrong gradient).
    """

    BUGS = ("mask_drawn_per_call", "mask_not_in_backward")
    param_names = ["W1", "W2"]
    p = 0.5

    def __init__(self, n_in, hidden, n_out, n, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.W1 = rng.standard_normal((n_in, hidden)).astype(dtype)
        self.W2 = rng.standard_normal((hidden, n_out)).astype(dtype)
        mask = rng.random((n, hidden)) < self.p
        mask[:, 0] = True  # at least one unit kept, so that W2 has a gradient to check
        self.mask = mask / self.p
        self._draws = np.random.default_rng(seed + 1)

    @property
    def params(self):
        return [self.W1, self.W2]

    def _mask(self, shape):
        if self.bug == "mask_drawn_per_call":
            return (self._draws.random(shape) < self.p) / self.p
        return self.mask

    def loss(self, X, y):
        h = np.tanh(X @ self.W1) * self._mask((len(X), self.W1.shape[1]))
        return np.mean((h @ self.W2 - y) ** 2)

    def gradients(self, X, y):
        a = np.tanh(X @ self.W1)
        mask = self._mask(a.shape)
        h = a * mask
        dout = 2 * (h @ self.W2 - y) / y.size
        dh = dout @ self.W2.T
        if self.bug != "mask_not_in_backward":
            dh = dh * mask
        return [X.T @ (dh * (1 - a**2)), h.T @ dout]

    def tf_loss(self, params, X, y):
        W1, W2 = params
        h = tf.tanh(tf.matmul(X, W1)) * tf.constant(self.mask, X.dtype)
        return tf.reduce_mean((tf.matmul(h, W2) - y) ** 2)


def _build_dropout(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(60_000 + seed)
    X = rng.standard_normal((n, 3)).astype(dtype)
    y = rng.standard_normal((n, 1)).astype(dtype)
    return NumpyDropout(3, hidden, 1, n, dtype=dtype, seed=seed, bug=bug), X, y


# --- 7. side effects: an update fused into the backward, a statistic kept in params -------------


class NumpySideEffects:
    """A NumPy linear-tanh regression whose right twin is pure; its impure variants are what
    tutorials do inside a training step.

    Bugs (all impure): ``sgd_in_place`` (``W -= lr * dW`` inside ``gradients``), ``rebinds_W``
    (``self.W = self.W - lr * dW`` inside ``gradients``: a new array, the one in ``params`` is
    no longer the model's), ``running_mean_in_loss`` (the loss updates ``b`` in place with a
    running mean of the residuals).
    """

    BUGS = ("sgd_in_place", "rebinds_W", "running_mean_in_loss")
    param_names = ["W", "b"]
    lr = 0.1

    def __init__(self, n_in, n_out, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.W = rng.standard_normal((n_in, n_out)).astype(dtype)
        self.b = np.zeros(n_out, dtype=dtype)

    @property
    def params(self):
        return [self.W, self.b]

    def loss(self, X, y):
        r = np.tanh(X @ self.W + self.b) - y
        if self.bug == "running_mean_in_loss":
            self.b += 0.01 * r.mean(axis=0)
        return np.mean(r**2)

    def gradients(self, X, y):
        a = np.tanh(X @ self.W + self.b)
        dz = 2 * (a - y) / y.size * (1 - a**2)
        dW, db = X.T @ dz, dz.sum(axis=0)
        if self.bug == "sgd_in_place":
            self.W -= self.lr * dW
        if self.bug == "rebinds_W":
            self.W = self.W - self.lr * dW
        return [dW, db]

    def tf_loss(self, params, X, y):
        W, b = params
        return tf.reduce_mean((tf.tanh(tf.matmul(X, W) + b) - y) ** 2)


def _build_side_effects(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(70_000 + seed)
    X = rng.standard_normal((n, hidden)).astype(dtype)
    y = rng.standard_normal((n, 2)).astype(dtype)
    return NumpySideEffects(hidden, 2, dtype=dtype, seed=seed, bug=bug), X, y


# --- 8. TensorFlow models whose loss the tape cannot follow -------------------------------------


class TFVariablesNumpyLoss:
    """tf.Variable parameters, but the loss computed in NumPy from ``W.numpy()`` and returned as
    ``tf.constant``: the tape sees a constant (no gradient for anything). A sigmoid layer with
    binary cross-entropy, the gradient written with TF ops.

    Bugs: ``db_missing_1_over_n``, ``dW_times_sigmoid_prime``.
    """

    BUGS = ("db_missing_1_over_n", "dW_times_sigmoid_prime")
    param_names = ["W", "b"]

    def __init__(self, n_in, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.W = tf.Variable(rng.standard_normal((n_in, 1)).astype(dtype))
        self.b = tf.Variable(np.zeros(1, dtype=dtype))
        self.params = [self.W, self.b]

    def loss(self, X, y):
        p = 1 / (1 + np.exp(-(np.asarray(X) @ self.W.numpy() + self.b.numpy())))
        return tf.constant(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def gradients(self, X, y):
        X = tf.constant(X, self.W.dtype)
        p = tf.sigmoid(tf.matmul(X, self.W) + self.b)
        dz = (p - y) / len(y)
        if self.bug == "dW_times_sigmoid_prime":
            return [tf.matmul(tf.transpose(X), dz * p * (1 - p)), tf.reduce_sum(dz, axis=0)]
        db = tf.reduce_sum(dz, axis=0) * (len(y) if self.bug == "db_missing_1_over_n" else 1)
        return [tf.matmul(tf.transpose(X), dz), db]

    def tf_loss(self, params, X, y):
        W, b = params
        logits = tf.matmul(X, W) + b
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))


class TFLossAsFloat:
    """A TensorFlow softmax regression written in TF ops whose ``loss`` ends in ``float(...)``
    (as code that logs the loss does): the tape gets a Python float.

    Bugs: ``dW_transposed_input`` (on a square W), ``db_mean_of_mean``.
    """

    BUGS = ("dW_transposed_input", "db_mean_of_mean")
    param_names = ["W", "b"]

    def __init__(self, n, *, dtype, seed, bug):
        _check_bug(type(self), bug)
        rng = np.random.default_rng(seed)
        self.bug = bug
        self.W = tf.Variable(rng.standard_normal((n, n)).astype(dtype))
        self.b = tf.Variable(np.zeros(n, dtype=dtype))
        self.params = [self.W, self.b]

    def loss(self, X, y):
        logits = tf.matmul(tf.cast(X, self.W.dtype), self.W) + self.b
        return float(tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits)))

    def gradients(self, X, y):
        X = tf.cast(X, self.W.dtype)
        p = tf.nn.softmax(tf.matmul(X, self.W) + self.b)
        dz = (p - y) / X.shape[0]
        dW = tf.matmul(tf.transpose(X), dz)
        if self.bug == "dW_transposed_input":
            dW = tf.matmul(tf.transpose(dz), X)
        db = tf.reduce_sum(dz, axis=0)
        if self.bug == "db_mean_of_mean":
            db = tf.reduce_mean(dz, axis=0)
        return [dW, db]

    def tf_loss(self, params, X, y):
        W, b = params
        logits = tf.matmul(X, W) + b
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))


def _build_tf_numpy_loss(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(80_000 + seed)
    X = rng.standard_normal((n, hidden)).astype(dtype)
    y = (rng.random((n, 1)) < 0.5).astype(dtype)
    return TFVariablesNumpyLoss(hidden, dtype=dtype, seed=seed, bug=bug), X, y


def _build_tf_float_loss(bug, dtype, seed, hidden, n):
    rng = np.random.default_rng(90_000 + seed)
    X = rng.standard_normal((n, hidden)).astype(dtype)
    y = np.eye(hidden, dtype=dtype)[rng.integers(0, hidden, size=n)]
    return TFLossAsFloat(hidden, dtype=dtype, seed=seed, bug=bug), X, y


# --- the cases ---------------------------------------------------------------------------------


_SPECS: Dict[str, _Spec] = {
    "cs231n_two_layer": _Spec(
        _build_cs231n,
        6,
        8,
        {b: "fail" for b in CS231nTwoLayerNet.BUGS},
        ("float64", "float32"),
    ),
    "dlai_column": _Spec(_build_dlai, 4, 8, {b: "fail" for b in DLAIColumnNet.BUGS}),
    "nnfs_layers": _Spec(
        _build_nnfs, 5, 8, {b: "fail" for b in NnfsNetwork.BUGS}, ("float64", "float32")
    ),
    "nielsen_quadratic": _Spec(_build_nielsen, 4, 6, {b: "fail" for b in NielsenNetwork.BUGS}),
    "zero_row_relu": _Spec(_zero_row_builder(0.0), 5, 6, {b: "fail" for b in ZeroRowRelu.BUGS}),
    "zero_row_relu_one": _Spec(_zero_row_builder(1.0), 5, 6, {"dW2_no_1_over_n": "fail"}),
    "zero_row_relu_half": _Spec(_zero_row_builder(0.5), 5, 6, {}),
    "numpy_dropout": _Spec(
        _build_dropout,
        4,
        6,
        {"mask_drawn_per_call": "impure", "mask_not_in_backward": "fail"},
    ),
    "numpy_side_effects": _Spec(
        _build_side_effects, 3, 6, {b: "impure" for b in NumpySideEffects.BUGS}
    ),
    "tf_variables_numpy_loss": _Spec(
        _build_tf_numpy_loss, 3, 8, {b: "fail" for b in TFVariablesNumpyLoss.BUGS}
    ),
    "tf_loss_as_float": _Spec(
        _build_tf_float_loss, 3, 8, {b: "fail" for b in TFLossAsFloat.BUGS}, ("float64", "float32")
    ),
}


def _gradients(model, X, y) -> list:
    out = [np.asarray(g, np.float64) for g in model.gradients(X, y)]
    if callable(getattr(model, "input_gradient", None)):
        out.append(np.asarray(model.input_gradient(X, y), np.float64))
    return out


def _differs(right, wrong, X, y) -> bool:
    """The planted bug moves some gradient by more than 1e-3 of the model's largest."""
    a, b = _gradients(right, X, y), _gradients(wrong, X, y)
    largest = max(float(np.max(np.abs(g))) for g in a) or 1.0
    return max(float(np.max(np.abs(g - h))) for g, h in zip(a, b)) > 1e-3 * largest


def _live(build, bugs):
    """``build`` redrawn (the seed moved on) until every planted bug in ``bugs`` is a bug at the
    variant: with a hidden width of 2 every ReLU unit can be dead, and then a wrong db1 is 0 like
    the right one. Deterministic given the arguments; the right twin is drawn alike."""

    def redrawn(bug, dtype, seed, hidden, n):
        for attempt in range(100):
            s = seed + 7919 * attempt
            right, X, y = build(None, dtype, s, hidden, n)
            if all(_differs(right, build(b, dtype, s, hidden, n)[0], X, y) for b in bugs):
                return build(bug, dtype, s, hidden, n)
        raise RuntimeError(f"no variant of {build.__name__} at {seed, hidden, n} shows its bugs")

    redrawn.__name__ = getattr(build, "__name__", "build")
    return redrawn


_SPECS = {
    name: dataclasses.replace(
        spec, builder=_live(spec.builder, [b for b, e in spec.bugs.items() if e == "fail"])
    )
    for name, spec in _SPECS.items()
}


class Case(corpus.Case):
    """One model of the NumPy corpus: its right twin (``bug=None``), a planted bug, or an impure
    variant."""

    @staticmethod
    def specs():
        return _SPECS


CASES: List[Case] = corpus.cases_of(_SPECS, Case)
