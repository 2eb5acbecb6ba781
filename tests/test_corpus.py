"""The corpus (``corpus.py``) checked on its own, by tf.GradientTape and without the harness: every
right twin's gradients are its loss's, every planted bug is wrong, every impure case is impure.
Then the harness's verdict on every case, in both modes, and which tensors it blames for a bug."""

import numpy as np
import pytest
import tensorflow as tf
from _helpers import assert_diagnosis_counts
from corpus import CASES, MIN_HIDDEN, MIN_N, Case

from reference import check_gradients

# (seed, hidden, n): the defaults, the least sizes, and a spread of others.
VARIANTS = [
    (0, None, None),
    (1, MIN_HIDDEN, MIN_N),
    (2, 8, 12),
    (3, 3, 5),
    (4, MIN_HIDDEN, 12),
    (5, 8, MIN_N),
    (6, 6, 3),
    (7, 4, 9),
    (54069, 3, 2),  # column_layout's first draw is dead here (every ReLU unit off): redrawn
]

# How close a right twin's gradients must be to the tape's, per tensor: max |manual - tape| over
# max |tape| of the tensor, floored at FLOOR times the largest |tape| of the model (a bias gradient
# that is a sum of cancelling terms keeps only the absolute accuracy of the arithmetic; in float32
# every tensor is judged on the model's largest gradient).
RIGHT_RTOL = {"float64": 1e-10, "float32": 1e-5}
FLOOR = {"float64": 1e-4, "float32": 1.0}
# How far a planted bug must be from the tape's gradient in its worst tensor (floored as float64's
# right twins): far beyond any rounding, in float32 too.
BUG_MIN_REL = 1e-3


@tf.custom_gradient
def _relu_grad_1_at_0(z):
    """relu with relu'(0) = 1: the convention of ``zero_bias_relu``'s right twin."""

    def grad(g):
        return g * tf.cast(z >= 0, z.dtype)

    return tf.maximum(z, tf.zeros_like(z)), grad


# Cases whose right twin takes relu'(0) = 1 where the tape takes 0: their gradients are checked
# against the tape of the same loss with that relu.
@tf.custom_gradient
def _relu_grad_half_at_0(z):
    """relu with relu'(0) = 1/2: the convention of ``near_kink_relu_half``'s right twin."""

    def grad(g):
        return g * (tf.cast(z > 0, z.dtype) + 0.5 * tf.cast(z == 0, z.dtype))

    return tf.maximum(z, tf.zeros_like(z)), grad


KINK_CONVENTION = {
    "zero_bias_relu": _relu_grad_1_at_0,
    "near_kink_relu": _relu_grad_1_at_0,
    "near_kink_relu_half": _relu_grad_half_at_0,
}


def by_expect(*expects):
    cases = [c for c in CASES if c.expect in expects]
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def tape(model, X, y):
    """dL/dparams and dL/dX by the tape over the model's own loss."""
    params = list(model.params)
    Xt = (
        X
        if isinstance(X, tf.Tensor)
        else tf.convert_to_tensor(np.asarray(X, params[0].dtype.as_numpy_dtype))
    )
    with tf.GradientTape(watch_accessed_variables=False) as t:
        t.watch(params + [Xt])
        loss = model.loss(Xt, y)
    *grads, dX = t.gradient(loss, params + [Xt], unconnected_gradients="zero")
    return grads, dX


def witnesses(case, model, X, y, monkeypatch):
    """The tape's gradients, and for a kink-convention case the tape's under that convention."""
    out = {"tape": tape(model, X, y)}
    if case.name in KINK_CONVENTION:
        with monkeypatch.context() as m:
            m.setattr(tf.nn, "relu", KINK_CONVENTION[case.name])
            out["tape with the model's relu'(0)"] = tape(model, X, y)
    return out


def errors(model, X, y, exact, floor=FLOOR["float64"]):
    """Per tensor name: max |hand-written - exact| over the larger of max |exact| of that tensor
    and ``floor`` times the largest |exact| of all the tensors."""
    names = list(getattr(model, "param_names", None) or range(len(model.params)))
    grads, dX = exact
    pairs = dict(zip(names, zip(model.gradients(X, y), grads)))
    if callable(getattr(model, "input_gradient", None)):
        pairs["dL/dX"] = (model.input_gradient(X, y), dX)
    pairs = {
        k: (np.asarray(g, np.float64), np.asarray(e, np.float64)) for k, (g, e) in pairs.items()
    }
    largest = max(float(np.max(np.abs(e))) for _, e in pairs.values())
    return {
        k: float(np.max(np.abs(g - e))) / (max(float(np.max(np.abs(e))), floor * largest) or 1.0)
        for k, (g, e) in pairs.items()
    }


def snapshot(model):
    return [p.numpy().copy() for p in model.params]


def unchanged(model, before):
    return all(np.array_equal(p.numpy(), b) for p, b in zip(model.params, before))


def test_the_corpus_is_what_it_says():
    names = {c.name for c in CASES}
    assert len(names) >= 10
    assert len({(c.name, c.bug, c.dtype) for c in CASES}) == len(CASES)
    for c in CASES:
        assert (c.bug is None) == (c.expect == "pass"), c
        assert c.dtype in ("float32", "float64") and c.expect in ("pass", "fail", "impure"), c
    for name in names:
        dtypes = {c.dtype for c in CASES if c.name == name}
        assert "float64" in dtypes
        for dtype in dtypes:
            assert any(c.name == name and c.dtype == dtype and c.bug is None for c in CASES)
    with_input = {c.name for c in CASES if hasattr(c.build()[0], "input_gradient")}
    assert len(with_input) >= 2


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_build_is_deterministic(case):
    for seed, hidden, n in VARIANTS[:3]:
        (m1, X1, y1), (m2, X2, y2) = case.build(seed, hidden, n), case.build(seed, hidden, n)
        np.testing.assert_array_equal(np.asarray(X1), np.asarray(X2))
        np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
        for p, q in zip(m1.params, m2.params):
            np.testing.assert_array_equal(p.numpy(), q.numpy())
            assert p.dtype.name == case.dtype


def test_build_rejects_sizes_that_could_hide_a_bug():
    case = CASES[0]
    for kwargs in ({"n": MIN_N - 1}, {"hidden": MIN_HIDDEN - 1}, {"seed": -1}, {"n": 2.5}):
        with pytest.raises(ValueError):
            case.build(**kwargs)


@by_expect("pass")
def test_right_twins_match_the_tape(case, monkeypatch):
    """Every right twin's gradients are the tape's over its own loss (at a kink, the tape's under
    the twin's own relu'(0)), and its loss and gradients are deterministic and pure."""
    rtol = RIGHT_RTOL[case.dtype]
    for seed, hidden, n in VARIANTS:
        model, X, y = case.build(seed, hidden, n)
        before = snapshot(model)
        exact = witnesses(case, model, X, y, monkeypatch)
        exact = exact.get("tape with the model's relu'(0)", exact["tape"])
        errs = errors(model, X, y, exact, FLOOR[case.dtype])
        worst = max(errs, key=errs.get)
        assert errs[worst] <= rtol, f"{case.id} at {(seed, hidden, n)}: {errs}"
        losses = {float(model.loss(X, y)) for _ in range(3)}
        model.gradients(X, y)
        assert len(losses) == 1 and unchanged(model, before), f"{case.id} is not pure"


def test_the_kink_convention_matters():
    """zero_bias_relu's right twin differs from the plain tape, at the kinks only (db1, db2, dX):
    the corpus does hold a case where a valid relu'(0) is not the tape's."""
    (case,) = [c for c in CASES if c.name == "zero_bias_relu" and c.bug is None]
    model, X, y = case.build()
    errs = errors(model, X, y, tape(model, X, y))
    assert {k for k, e in errs.items() if e > 1e-3} == {"b1", "b2", "dL/dX"}, errs


@by_expect("fail")
def test_bugs_differ_from_the_tape(case, monkeypatch):
    """Every planted bug is far from the true gradient in some tensor, for every variant: from
    the tape's, and from the tape's under the right twin's relu'(0) where that differs."""
    for seed, hidden, n in VARIANTS:
        model, X, y = case.build(seed, hidden, n)
        for witness, exact in witnesses(case, model, X, y, monkeypatch).items():
            errs = errors(model, X, y, exact)
            assert max(errs.values()) > BUG_MIN_REL, (
                f"{case.id} at {(seed, hidden, n)} is within {BUG_MIN_REL} of the {witness}: {errs}"
            )


@by_expect("impure")
def test_impure_cases_are_impure(case):
    """Each impure case's loss is random or a call moves its parameters."""
    for seed, hidden, n in VARIANTS:
        model, X, y = case.build(seed, hidden, n)
        before = snapshot(model)
        losses = {float(model.loss(X, y)) for _ in range(10)}
        model.gradients(X, y)
        assert len(losses) > 1 or not unchanged(model, before), f"{case.id} looks pure"


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_harness_verdict_on_the_corpus(case, mode):
    """The harness passes every right twin and fails every planted bug and impure model."""
    model, X, y = case.build()
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok == (case.expect == "pass"), (
        f"{case.id} (expected {case.expect}), mode={mode}:\n{report}"
    )
    if case.expect == "fail":
        assert_diagnosis_counts(report)


@by_expect("fail")
def test_harness_blames_only_the_wrong_tensors(case):
    """In full mode the harness fails the tensors the bug changed, and only those: a tensor whose
    hand-written gradient is bit for bit the right twin's is not blamed."""
    model, X, y = case.build()
    twin, _, _ = Case(case.name, None, case.dtype, "pass").build()
    names = list(getattr(model, "param_names", None) or range(len(model.params)))
    ours = dict(zip(names, model.gradients(X, y)))
    right = dict(zip(names, twin.gradients(X, y)))
    if callable(getattr(model, "input_gradient", None)):
        ours["dL/dX"], right["dL/dX"] = model.input_gradient(X, y), twin.input_gradient(X, y)
    changed = {k for k in ours if not np.array_equal(np.asarray(ours[k]), np.asarray(right[k]))}
    report = check_gradients(model, X, y, mode="full")
    blamed = {e.name for e in report.entries if not e.ok}
    assert blamed == changed, (
        f"{case.id}: changed {sorted(changed)}, blamed {sorted(blamed)}\n{report}"
    )
