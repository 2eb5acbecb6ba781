"""Property tests of a model class of your own: hypothesis draws its architectures, activations,
dtypes and batches through your class's constructor, and every drawn model must pass.

``Net`` is written the way a tutorial writes it: the forward pass in TensorFlow (the loss the
tape and finite differences see), the backward pass by hand in NumPy. Its constructor takes
``layer_sizes``, ``activations``, ``dtype`` and ``seed``, so those are drawn; its loss is mean
squared error, named with ``losses=["mse"]``. In pytest the same draw is the marker's::

    @pytest.mark.gradcheck_models(build=Net, losses=["mse"], hidden=["tanh", "sigmoid"],
                                  outputs=["linear"])
    def test_every_drawn_net(gradcheck_case, gradcheck):
        gradcheck(*gradcheck_case)

Run directly, this file runs the property and then its wrong twin (``BuggyNet``, whose first
bias gradient is 1.5 times too large), whose failure hypothesis shrinks to a call you can paste.
"""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings

from reference import assert_gradients_match
from reference.strategies import cases

_FORWARD = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "linear": tf.identity}
# The derivative of each activation from its output a.
_SLOPE = {"tanh": lambda a: 1 - a * a, "sigmoid": lambda a: a * (1 - a), "linear": np.ones_like}


class Net:
    """A fully connected network with mean squared error and a hand-written backward pass."""

    def __init__(self, layer_sizes, activations, dtype="float64", seed=0):
        rng = np.random.default_rng(seed)
        shapes = list(zip(layer_sizes[:-1], layer_sizes[1:]))
        self.W = [tf.Variable(rng.normal(size=s) / np.sqrt(s[0]), dtype=dtype) for s in shapes]
        self.b = [tf.Variable(np.zeros(s[1]), dtype=dtype) for s in shapes]
        self.params = [p for layer in zip(self.W, self.b) for p in layer]
        self.param_names = [f"{p}{i + 1}" for i in range(len(shapes)) for p in ("W", "b")]
        self.activations = activations

    def _outputs(self, X):
        """Every layer's output, the input first (NumPy)."""
        a = [np.asarray(X, self.W[0].dtype.as_numpy_dtype)]
        for W, b, act in zip(self.W, self.b, self.activations):
            a.append(_FORWARD[act](a[-1] @ W.numpy() + b.numpy()).numpy())
        return a

    def loss(self, X, y):
        out = tf.constant(X, self.W[0].dtype)
        for W, b, act in zip(self.W, self.b, self.activations):
            out = _FORWARD[act](out @ W + b)
        return tf.reduce_mean((out - y) ** 2)

    def gradients(self, X, y):
        a = self._outputs(X)
        delta = 2 * (a[-1] - y) / np.size(a[-1]) * _SLOPE[self.activations[-1]](a[-1])
        grads = []
        for i in reversed(range(len(self.W))):
            grads = [a[i].T @ delta, self._db(i, delta)] + grads
            if i:
                delta = (delta @ self.W[i].numpy().T) * _SLOPE[self.activations[i - 1]](a[i])
        return grads

    def _db(self, i, delta):
        return delta.sum(axis=0)


class BuggyNet(Net):
    """The same network with the first layer's bias gradient 1.5 times too large."""

    def _db(self, i, delta):
        return delta.sum(axis=0) * (1.5 if i == 0 else 1.0)


def drawn(build):
    """The cases of ``build``: up to three layers of tanh or sigmoid units and a linear output,
    float32 and float64, batches of 1 to 8 rows."""
    return cases(build=build, losses=["mse"], hidden=["tanh", "sigmoid"], outputs=["linear"])


@settings(max_examples=25, deadline=None, database=None)
@given(drawn(Net))
def test_every_drawn_net(case):
    assert_gradients_match(*case)


@settings(max_examples=25, deadline=None, database=None)
@given(drawn(BuggyNet))
def test_every_drawn_buggy_net(case):
    assert_gradients_match(*case)


def main():
    test_every_drawn_net()
    print("Net: 25 drawn models, every gradient right")
    try:
        test_every_drawn_buggy_net()
    except AssertionError as exc:
        print(f"BuggyNet: {str(exc).splitlines()[0]}")
        print("\n".join(getattr(exc, "__notes__", [])))  # hypothesis's falsifying example
        return exc
    raise SystemExit("BuggyNet passed: the planted bug was not found")


if __name__ == "__main__":
    main()
