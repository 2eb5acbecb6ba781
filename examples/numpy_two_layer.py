"""A CS231n-style two-layer net written in NumPy (ReLU, softmax loss, L2 regularisation), checked
as it is, and with the classic slip of its regularisation gradient (``reg * W`` for
``2 * reg * W``). The README's NumPy example comes from this script."""

import numpy as np

from reference import check_gradients


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, std=0.5, reg=0.05, slip=False):
        rng = np.random.default_rng(0)
        self.weights = {
            "W1": std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }
        self.reg, self.slip = reg, slip
        self.param_names = list(self.weights)

    @property
    def params(self):  # the arrays themselves: the harness perturbs them in place
        return list(self.weights.values())

    def _scores(self, X):
        W1, b1, W2, b2 = self.params
        hidden = np.maximum(0, X.dot(W1) + b1)
        return hidden, hidden.dot(W2) + b2

    def loss(self, X, y):
        W1, _, W2, _ = self.params
        _, scores = self._scores(X)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        data_loss = -np.log(probs[np.arange(len(X)), y]).mean()
        return data_loss + self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    def gradients(self, X, y):
        W1, _, W2, _ = self.params
        hidden, scores = self._scores(X)
        scores -= scores.max(axis=1, keepdims=True)
        dscores = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        dscores[np.arange(len(X)), y] -= 1
        dscores /= len(X)
        dW2 = hidden.T.dot(dscores) + 2 * self.reg * W2
        dhidden = dscores.dot(W2.T)
        dhidden[hidden <= 0] = 0
        dW1 = X.T.dot(dhidden) + (1 if self.slip else 2) * self.reg * W1
        return [dW1, dhidden.sum(axis=0), dW2, dscores.sum(axis=0)]


def main(verbose=True):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 4))
    y = np.array([0, 1, 2, 2, 1])
    reports = [check_gradients(TwoLayerNet(4, 10, 3, slip=slip), X, y) for slip in (False, True)]
    if verbose:
        print("\n\n".join(str(r) for r in reports))
    return reports


if __name__ == "__main__":
    main()
