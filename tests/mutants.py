"""Deliberately wrong backward passes, written as small protocol models, for testing the judges.

``HandBackprop`` is an MLP backward pass written again here, independently of manual_backprop's,
with one hook per step; each mutant overrides exactly one hook with a bug people really write.
The forward (``loss``) is manual_backprop's, so only the backward is wrong, except in
``MirroredForwardBug``, whose forward and backward are wrong together.
"""

import numpy as np
import tensorflow as tf
from corpus import CASES as _CORPUS

import manual_backprop as mb


class HandBackprop:
    """A correct hand-written backward pass over a manual_backprop forward, with hooks."""

    def __init__(
        self,
        layer_sizes,
        activations,
        loss,
        *,
        dtype="float64",
        seed=0,
        initializer="glorot_uniform",
        base=None,
    ):
        self.base = base or mb.MLP(
            layer_sizes, activations, loss, dtype=dtype, seed=seed, initializer=initializer
        )
        self.params = self.base.params
        self.param_names = self.base.param_names
        # Describing itself lets the independent forward rebuild it.
        self.layer_sizes = self.base.layer_sizes
        self.activations = self.base.activations
        self.loss_function = self.base.loss_function
        self.fused = self.base.fused

    def astype(self, dtype):
        return type(self)(None, None, None, base=self.base.astype(dtype))

    def __repr__(self):
        return f"{type(self).__name__}({self.base!r})"

    def loss(self, X, y):
        return self.base.loss(X, y)

    def forward(self, X):
        return self.base.forward(X)

    # --- hooks -------------------------------------------------------------------------------
    def output_delta(self, y, z, a):
        """dL/dz of the output layer."""
        if self.base._fused is not None:
            return self.base._fused.gradient(y, z)
        return self.activations[-1].backward(z, a, self.loss_function.gradient(y, a))

    def hidden_delta(self, l, z, a, g):
        """dL/dz of hidden layer l from g = dL/da (the output layer goes through output_delta)."""
        return self.activations[l].backward(z, a, g)

    def weight_grad(self, a_prev, dz, a_this):
        return tf.matmul(a_prev, dz, transpose_a=True)

    def bias_grad(self, dz):
        return tf.reduce_sum(dz, axis=0)

    def propagate(self, dz, W):
        return tf.matmul(dz, W, transpose_b=True)

    # --- the backward pass, built from the hooks ---------------------------------------------
    def _backward(self, X, y):
        X, y = self.base._inputs_and_labels(X, y)
        cache = self.base._forward_all(X)
        _, z, a = cache[-1]
        dz = self.output_delta(y, z, a)
        grads = [None] * len(self.params)
        for l in range(len(self.activations) - 1, -1, -1):
            a_prev, _, a_this = cache[l]
            grads[2 * l] = self.weight_grad(a_prev, dz, a_this)
            grads[2 * l + 1] = self.bias_grad(dz)
            da = self.propagate(dz, self.params[2 * l])
            if l > 0:
                _, z_prev, a_prev_out = cache[l - 1]
                dz = self.hidden_delta(l - 1, z_prev, a_prev_out, da)
        return grads, da

    def gradients(self, X, y):
        return self._backward(X, y)[0]

    def input_gradient(self, X, y):
        return self._backward(X, y)[1]


class CustomGradientForward(HandBackprop):
    """Not a mutant: a forward whose tanh carries a wrong tf.custom_gradient (twice the truth),
    so the tape is no longer a faithful witness of the loss while finite differences still are.
    The backward multiplies tanh' by ``factor``: 1 is right, 2 mirrors the wrong custom
    gradient (manual and tape agree, finite differences do not), 3 is wrong every way."""

    config = ([3, 5, 2], ["tanh", "linear"], "mse")

    def __init__(self, *args, factor=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.factor = factor

    def loss(self, X, y):
        @tf.custom_gradient
        def tanh_wrong_grad(z):
            a = tf.tanh(z)
            return a, lambda g: 2.0 * g * (1.0 - a * a)

        X, y = self.base._inputs_and_labels(X, y)
        W1, b1, W2, b2 = self.params
        a1 = tanh_wrong_grad(tf.matmul(X, W1) + b1)
        return tf.reduce_mean(tf.square(tf.matmul(a1, W2) + b2 - y))

    def hidden_delta(self, l, z, a, g):
        return self.factor * super().hidden_delta(l, z, a, g)


def _count(t):
    return tf.cast(tf.size(t), t.dtype)


def _rows(t):
    return tf.cast(tf.shape(t)[0], t.dtype)


class FusedBCETimesSigmoidPrime(HandBackprop):
    """sigmoid + BCE: the fused (a - y) multiplied by a(1 - a) again."""

    config = ([3, 4, 2], ["tanh", "sigmoid"], "binary_crossentropy")

    def output_delta(self, y, z, a):
        return (a - y) / _count(a) * a * (1.0 - a)


class MissingOneOverN(HandBackprop):
    """mse gradient without the 1/N of the batch mean."""

    config = ([3, 4, 2], ["tanh", "linear"], "mse")

    def output_delta(self, y, z, a):
        return 2.0 * (a - y) / tf.cast(tf.shape(a)[1], a.dtype)


class MissingFactorTwo(HandBackprop):
    """mse gradient (a - y)/(N*D): the 2 of the square dropped."""

    config = ([3, 4, 2], ["tanh", "linear"], "mse")

    def output_delta(self, y, z, a):
        return (a - y) / _count(a)


class WNotTransposed(HandBackprop):
    """dz @ W instead of dz @ W^T when propagating (square layers, so the shapes still fit)."""

    config = ([4, 4, 4, 4], ["tanh", "tanh", "linear"], "mse")

    def propagate(self, dz, W):
        return tf.matmul(dz, W)


class SoftmaxAsElementwise(HandBackprop):
    """softmax output with mse, its Jacobian treated as diagonal: a(1 - a) g."""

    config = ([3, 5, 3], ["tanh", "softmax"], "mse")

    def output_delta(self, y, z, a):
        return self.loss_function.gradient(y, a) * a * (1.0 - a)


class TanhFromZ(HandBackprop):
    """tanh's derivative computed from z (1 - z^2) instead of from a (1 - a^2)."""

    config = ([3, 5, 2], ["tanh", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * (1.0 - z * z)


class LeakyAlphaDropped(HandBackprop):
    """leaky_relu's backward without alpha: 0 for z < 0."""

    config = ([3, 6, 2], [mb.get_activation("leaky_relu", alpha=0.1), "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * tf.cast(z > 0, z.dtype)


class SignFlipped(HandBackprop):
    """The output gradient with its sign flipped (y - a): gradient ascent."""

    config = ([3, 4, 1], ["tanh", "sigmoid"], "binary_crossentropy")

    def output_delta(self, y, z, a):
        return -super().output_delta(y, z, a)


class BiasMeanNotSum(HandBackprop):
    """db as the mean over the rows of dz instead of the sum."""

    config = ([3, 4, 2], ["tanh", "linear"], "mse")

    def bias_grad(self, dz):
        return tf.reduce_mean(dz, axis=0)


class BiasFirstRow(HandBackprop):
    """db from the first row of dz only."""

    config = ([3, 4, 2], ["tanh", "linear"], "mse")

    def bias_grad(self, dz):
        return dz[0]


class WeightGradFromOwnActivation(HandBackprop):
    """dW_l = a_l^T dz_l (the layer's own output) instead of a_{l-1}^T dz_l (square layers)."""

    config = ([4, 4, 4], ["tanh", "tanh"], "mse")

    def weight_grad(self, a_prev, dz, a_this):
        return tf.matmul(a_this, dz, transpose_a=True)


class ReluPassesNegatives(HandBackprop):
    """relu' written as 1[a >= 0], which is 1 everywhere since a = relu(z) >= 0."""

    config = ([3, 6, 2], ["relu", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * tf.cast(a >= 0, a.dtype)


class SigmoidDerivativeA(HandBackprop):
    """sigmoid' = a instead of a (1 - a)."""

    config = ([3, 5, 2], ["sigmoid", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * a


class MaeWithoutSign(HandBackprop):
    """mae gradient 1/(N*D) without sign(a - y)."""

    config = ([3, 4, 2], ["tanh", "linear"], "mae")

    def output_delta(self, y, z, a):
        return tf.ones_like(a) / _count(a)


class HuberWithoutClip(HandBackprop):
    """huber gradient r/(N*D) everywhere: delta's clipping forgotten."""

    config = ([3, 4, 2], ["tanh", "linear"], mb.get_loss("huber", delta=0.5))

    def output_delta(self, y, z, a):
        return (a - y) / _count(a)


class CCEExtraOneOverD(HandBackprop):
    """softmax + CCE: (a - y)/(N*D), an extra 1/D as if it were a mean over classes."""

    config = ([3, 5, 3], ["tanh", "softmax"], "categorical_crossentropy")

    def output_delta(self, y, z, a):
        return (a - y) / _count(a)


class HiddenActivationIgnored(HandBackprop):
    """The hidden activation's derivative left out: backward as if it were linear."""

    config = ([3, 5, 2], ["softplus", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g


class EluMissingAlpha(HandBackprop):
    """elu' for z < 0 written as a instead of a + alpha."""

    config = ([3, 6, 2], [mb.get_activation("elu", alpha=0.7), "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * tf.where(z > 0, tf.ones_like(z), a)


class GeluMissingTerm(HandBackprop):
    """gelu' = Phi(z), the z phi(z) term dropped."""

    config = ([3, 5, 2], ["gelu", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * 0.5 * (1.0 + tf.math.erf(z / np.sqrt(2.0)))


class SingleElementOff(HandBackprop):
    """One element of dW1 off by 0.1%: the kind of bug only an elementwise check sees."""

    config = ([3, 5, 2], ["tanh", "linear"], "mse")

    def gradients(self, X, y):
        grads = super().gradients(X, y)
        mask = np.zeros(grads[0].shape)
        mask[1, 2] = 1e-3
        grads[0] = grads[0] * (1.0 + tf.constant(mask, grads[0].dtype))
        return grads


class LabelsSwapped(HandBackprop):
    """sigmoid + BCE fused gradient with the labels swapped: a - (1 - y)."""

    config = ([3, 4, 1], ["tanh", "sigmoid"], "binary_crossentropy")

    def output_delta(self, y, z, a):
        return (a - (1.0 - y)) / _count(a)


class SwishDerivativeWrong(HandBackprop):
    """swish' = s (1 - s) + a: the sigmoid's derivative where sigmoid itself belongs."""

    config = ([3, 5, 2], ["swish", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        s = tf.math.sigmoid(z)
        return g * (s * (1.0 - s) + a)


class InputGradientNotTransposed(HandBackprop):
    """dL/dX = dz1 @ W1 instead of dz1 @ W1^T (only the input gradient is wrong)."""

    config = ([4, 4, 2], ["tanh", "linear"], "mse")

    def input_gradient(self, X, y):
        X, y = self.base._inputs_and_labels(X, y)
        cache = self.base._forward_all(X)
        _, z, a = cache[-1]
        dz = self.output_delta(y, z, a)
        da = self.propagate(dz, self.params[2])
        _, z1, a1 = cache[0]
        dz1 = self.hidden_delta(0, z1, a1, da)
        return tf.matmul(dz1, self.params[0])


class SparseOneHotOffByOne(HandBackprop):
    """sparse CCE from logits: the one-hot of label + 1 (mod classes) subtracted."""

    config = ([3, 5, 3], ["tanh", "linear"], "sparse_categorical_crossentropy_from_logits")

    def output_delta(self, y, z, a):
        d = tf.shape(z)[1]
        onehot = tf.one_hot((y + 1) % tf.cast(d, y.dtype), d, dtype=z.dtype)
        return (tf.nn.softmax(z) - onehot) / _rows(z)


class MirroredForwardBug(HandBackprop):
    """mse written as a sum over output units (mean over rows only), in the forward and in the
    backward alike: tape and finite differences agree with it; only the independent forward
    can see that it is not the mse it claims to be."""

    config = ([3, 4, 3], ["tanh", "linear"], "mse")

    def loss(self, X, y):
        X, y = self.base._inputs_and_labels(X, y)
        a = self.base._forward_all(X)[-1][2]
        return tf.reduce_mean(tf.reduce_sum(tf.square(a - y), axis=1))

    def output_delta(self, y, z, a):
        return 2.0 * (a - y) / _rows(a)


MUTANTS = [
    FusedBCETimesSigmoidPrime,
    MissingOneOverN,
    MissingFactorTwo,
    WNotTransposed,
    SoftmaxAsElementwise,
    TanhFromZ,
    LeakyAlphaDropped,
    SignFlipped,
    BiasMeanNotSum,
    BiasFirstRow,
    WeightGradFromOwnActivation,
    ReluPassesNegatives,
    SigmoidDerivativeA,
    MaeWithoutSign,
    HuberWithoutClip,
    CCEExtraOneOverD,
    HiddenActivationIgnored,
    EluMissingAlpha,
    GeluMissingTerm,
    SingleElementOff,
    LabelsSwapped,
    SwishDerivativeWrong,
    InputGradientNotTransposed,
    SparseOneHotOffByOne,
    MirroredForwardBug,
]


def build(mutant, dtype="float64", seed=0):
    sizes, acts, loss = mutant.config
    return mutant(sizes, acts, loss, dtype=dtype, seed=seed)


def revealing_batch(model, n=8, seed=0):
    """A batch on which no mutant can hide: N > 1, both label values (or every class) present,
    residuals on both sides of zero and of Huber's delta, pre-activations of both signs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.layer_sizes[0])) * 1.5
    d = model.layer_sizes[-1]
    kind = model.loss_function.labels
    if kind == "binary":
        y = (np.arange(n * d).reshape(n, d) % 2).astype(float)
    elif kind == "categorical":
        y = np.eye(d)[np.arange(n) % d]
    elif kind == "sparse":
        y = np.arange(n) % d
    else:
        y = rng.normal(size=(n, d)) * 2.0
    return X, y


# The catalogue extends to models written the way users write them: every planted bug (and every
# random or impure loss) of the corpus in ``corpus.py``, each a ``corpus.Case`` whose ``build``
# gives (model, X, y) for any seed, hidden width and batch size.
USER_MUTANTS = [c for c in _CORPUS if c.expect != "pass"]
USER_TWINS = [c for c in _CORPUS if c.expect == "pass"]
