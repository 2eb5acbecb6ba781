"""Two ReLU hidden layers with a sigmoid output: inside or outside a ring (concentric circles)."""

from _common import mb, np, train_and_report


def circles(n=200, seed=0):
    """Points on a disc of radius 0.5 (label 1) and a ring between 1.0 and 1.5 (label 0)."""
    rng = np.random.default_rng(seed)
    inner = rng.uniform(0.0, 0.5, n // 2)
    outer = rng.uniform(1.0, 1.5, n - n // 2)
    radius = np.concatenate([inner, outer])
    angle = rng.uniform(0.0, 2 * np.pi, n)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    y = np.concatenate([np.ones(n // 2), np.zeros(n - n // 2)]).reshape(-1, 1)
    return X, y


def main(verbose=True):
    X, y = circles()
    model = mb.MLP(
        [2, 16, 16, 1],
        ["relu", "relu", "sigmoid"],
        "binary_crossentropy",
        dtype="float32",
        seed=1,
        initializer="he_normal",
    )
    return train_and_report(
        "Circles: [2, 16, 16, 1], two ReLU hidden layers, sigmoid output",
        model,
        X,
        y,
        mb.Adam(0.01),
        epochs=300,
        batch_size=32,
        verbose=verbose,
    )


if __name__ == "__main__":
    main()
