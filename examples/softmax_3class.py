"""A 3-class softmax classifier with categorical cross-entropy (the fused softmax output)."""

from _common import mb, np, train_and_report


def blobs(n_per_class=50, seed=0):
    """Three Gaussian blobs around the corners of a triangle, with one-hot labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 2.0], [-1.8, -1.0], [1.8, -1.0]])
    X = np.concatenate([c + 0.4 * rng.normal(size=(n_per_class, 2)) for c in centres])
    y = np.repeat(np.eye(3), n_per_class, axis=0)
    return X, y


def main(verbose=True):
    X, y = blobs()
    model = mb.MLP(
        [2, 8, 3], ["tanh", "softmax"], "categorical_crossentropy", dtype="float32", seed=2
    )
    return train_and_report(
        "Three blobs: [2, 8, 3], tanh hidden layer, softmax output, categorical cross-entropy",
        model,
        X,
        y,
        mb.Momentum(0.1, momentum=0.9),
        epochs=200,
        verbose=verbose,
    )


if __name__ == "__main__":
    main()
