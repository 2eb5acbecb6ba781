"""A manual_backprop MLP with one planted bug (twice the bias gradient of layer 2), and the report
the judges give on it. The README's example output comes from this script."""

import numpy as np

import manual_backprop as mb
from reference import check_gradients


class TwiceTheBias:
    """Wraps a correct model and doubles one gradient: a bug the judges must point at."""

    def __init__(self, model):
        self.model = model
        self.params, self.param_names = model.params, model.param_names

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        grads = self.model.gradients(X, y)
        grads[3] = 2.0 * grads[3]
        return grads

    def input_gradient(self, X, y):
        return self.model.input_gradient(X, y)


def main():
    rng = np.random.default_rng(0)
    model = mb.MLP(
        [8, 16, 16, 3],
        ["tanh", "tanh", "softmax"],
        "categorical_crossentropy",
        dtype="float64",
        seed=0,
    )
    X = rng.normal(size=(32, 8))
    y = np.eye(3)[rng.integers(0, 3, size=32)]
    report = check_gradients(TwiceTheBias(model), X, y)
    print(report)
    return report


if __name__ == "__main__":
    main()
