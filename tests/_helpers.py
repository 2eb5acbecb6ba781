"""Shared pieces of the manual_backprop tests (tests may use GradientTape; the package may not)."""

import re

import numpy as np
import tensorflow as tf

from reference._core.report import Finding

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


def assert_diagnosis_counts(report) -> None:
    """A few-elements diagnosis counts exactly the elements the verdict fails, never 0, and
    lists only failing ones (asserted on every planted bug's report where it is made)."""
    assert " 0 of " not in str(report), str(report)
    for e in report.entries:
        for d in e.diagnosis:
            if d.code != Finding.FEW_ELEMENTS:
                continue
            count = int(re.match(r"only (\d+) of", d.text).group(1))
            assert count == e.n_failing > 0, str(report)
            listed = re.findall(r"\((\d+(?:, \d+)*)\)", d.text.split(" at ", 1)[1])
            for index in listed:
                ix = tuple(int(i) for i in index.split(", "))
                assert e.elements.fail[ix], (ix, str(report))
