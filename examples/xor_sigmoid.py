"""XOR with one sigmoid hidden layer and binary cross-entropy (the fused sigmoid output)."""

from _common import mb, np, train_and_report


def main(verbose=True):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    model = mb.MLP(
        [2, 4, 1], ["sigmoid", "sigmoid"], "binary_crossentropy", dtype="float64", seed=0
    )
    return train_and_report(
        "XOR: [2, 4, 1], sigmoid hidden layer, binary cross-entropy",
        model,
        X,
        y,
        mb.Adam(0.05),
        epochs=1500,
        verbose=verbose,
    )


if __name__ == "__main__":
    main()
