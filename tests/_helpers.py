"""Shared pieces of the manual_backprop tests (tests may use GradientTape; the package may not)."""

import numpy as np
import tensorflow as tf

# Per-tensor relative error bounds of the hand-written gradients against the tape.
TAPE_RTOL = {"float64": 1e-10, "float32": 1e-5}


def rel_err(manual, exact) -> float:
    """max |manual - exact| / max |exact| over one tensor (the absolute error when exact is 0)."""
    manual = np.asarray(manual, np.float64)
    exact = np.asarray(exact, np.float64)
    scale = np.max(np.abs(exact)) if exact.size else 0.0
    err = np.max(np.abs(manual - exact)) if exact.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


def tape_gradients(model, X, y):
    """(dL/dparams, dL/dX) by tf.GradientTape over the model's own loss."""
    Xt = tf.convert_to_tensor(np.asarray(X, model.dtype.as_numpy_dtype))
    with tf.GradientTape() as tape:
        tape.watch(Xt)
        loss = model.loss(Xt, y)
    *grads, dX = tape.gradient(loss, [*model.params, Xt])
    return grads, dX


def labels_for(loss, n, d, rng):
    """Valid labels of the kind ``loss`` takes, both classes present where N allows."""
    kind = loss.labels if hasattr(loss, "labels") else loss
    if kind == "real":
        return rng.normal(size=(n, d))
    if kind == "binary":
        y = rng.integers(0, 2, size=(n, d)).astype(float)
        y[0] = 1.0 - y[-1] if n > 1 else y[0]
        return y
    if kind == "categorical":
        return np.eye(d)[np.arange(n) % d][rng.permutation(n)]
    if kind == "sparse":
        return rng.permutation(np.arange(n) % d)
    raise ValueError(kind)
