"""What the three examples share: training, accuracy and the printed summary."""

import numpy as np

import manual_backprop as mb

REPORT_EPOCHS = (1, 10, 100, 500, 1000, 1500, 2000, 3000)


def accuracy(model, X, y) -> float:
    """Fraction of rows classified right: argmax for several outputs, a 0.5 threshold for one."""
    out = model.forward(X).numpy()
    y = np.asarray(y)
    if out.shape[1] == 1:
        return float(np.mean((out[:, 0] > 0.5) == (y.reshape(-1) > 0.5)))
    truth = y if y.ndim == 1 else np.argmax(y, axis=1)
    return float(np.mean(np.argmax(out, axis=1) == truth))


def train_and_report(title, model, X, y, optimizer, epochs, *, batch_size=None, verbose=True):
    history = model.fit(X, y, optimizer=optimizer, epochs=epochs, batch_size=batch_size)
    acc = accuracy(model, X, y)
    if verbose:
        print(f"{title}")
        print(f"  {model!r}")
        print(
            f"  {model.n_params} parameters, {len(X)} examples, optimizer {optimizer!r}"
            + (f", fused {model.fused}" if model.fused else "")
        )
        for e in sorted({e for e in REPORT_EPOCHS if e < epochs} | {epochs}):
            print(f"  epoch {e:>5}  loss {history[e - 1]:.6f}")
        print(f"  final training accuracy {acc:.1%}\n")
    return {"title": title, "history": history, "accuracy": acc, "model": model}


__all__ = ["accuracy", "train_and_report", "mb", "np"]
