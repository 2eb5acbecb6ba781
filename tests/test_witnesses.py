"""A witness counts only where it witnessed: each finding of the judge review, planted in the
few lines a user would write, with its right twin, in both modes and both dtypes.

- a loss through a ``tf.custom_gradient`` whose ``gradients()`` are the tape's: manual == tape
  proves nothing, and finite differences that resolve the truth fail it;
- ``check_function`` with a NumPy forward: the tape sees nothing, its zeros witness nothing;
- a tie's gradient counted twice fails along the pair (NumPy and ``tf.nn.max_pool2d`` forwards);
- every printed relative error is relative to the tensor's own largest gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb
from reference import (
    MODES,
    NoteCode,
    Status,
    check_derivative,
    check_function,
    check_gradients,
    numerical_gradients,
    tape_gradients,
)
from reference._core import stencils
from reference._core.adapter import Adapter
from reference.strategies import batch_for

DTYPES = ("float64", "float32")


# --- a custom gradient on the tape -------------------------------------------------------------


def _square(factor):
    @tf.custom_gradient
    def square(x):  # the true derivative is 2x
        return x * x, lambda dy: dy * factor * x

    return square


class CustomSquare:
    """How a Keras user checks the layer they wrote a gradient for: ``gradients()`` is the tape."""

    def __init__(self, dtype, factor):
        self.w = tf.Variable([0.5, -1.2, 2.0], dtype=dtype)
        self.params = [self.w]
        self.square = _square(factor)

    def loss(self, X, y):
        return tf.reduce_sum(self.square(self.w * tf.cast(X, self.w.dtype)))

    def gradients(self, X, y):
        with tf.GradientTape() as tape:
            loss = self.loss(X, y)
        return tape.gradient(loss, self.params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_tape_through_a_wrong_custom_gradient_proves_nothing(mode, dtype):
    X, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    right = check_gradients(CustomSquare(dtype, 2.0), X, y, mode=mode)
    assert right.ok and right.tape_dependent is None, str(right)
    wrong = check_gradients(CustomSquare(dtype, 3.0), X, y, mode=mode)
    assert not wrong.ok, str(wrong)
    assert wrong.tape_dependent == "tf.custom_gradient"
    assert "not an independent witness" in str(wrong)
    # Judged against finite differences: 3x against 2x is off by a third of the truth's 1.5x.
    assert wrong.entries[0].rel_error == pytest.approx(0.5, rel=1e-2), str(wrong)


# --- a forward computed in NumPy ---------------------------------------------------------------


def _matmul_numpy(x, w):
    return tf.constant(x.numpy() @ w.numpy())


def _vjp(forgotten):
    def vjp(dy, x, w):
        dx = dy.numpy() @ w.numpy().T
        return dx, (None if forgotten else x.numpy().T @ dy.numpy())

    return vjp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_numpy_forward_leaves_finite_differences_to_judge_alone(mode, dtype):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(3, 2)).astype(dtype)
    right = check_function(_matmul_numpy, x, w, vjp=_vjp(False), mode=mode)
    text = str(right)
    assert right.ok, text
    assert "tape: cannot witness (no gradient on the tape with respect to x, with respect to w" in (
        text
    )
    assert all(e.tape_missing for e in right.entries)
    assert "n/a" in text and "custom gradient" not in text
    wrong = check_function(_matmul_numpy, x, w, vjp=_vjp(True), mode=mode)
    assert not wrong.ok, str(wrong)
    assert [e.name for e in wrong.failing][:1] == ["vjp: w"], str(wrong)


class _NumpyDataLossTfPenalty:
    """A softmax classifier whose data loss is computed in NumPy from ``W.numpy()`` and whose L2
    penalty is in TF: the tape sees the penalty only."""

    param_names = ["W", "b"]

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W = tf.Variable(0.5 * rng.standard_normal((4, 3)))
        self.b = tf.Variable(np.zeros(3))
        self.params = [self.W, self.b]

    def _probabilities(self, X):
        s = X @ self.W.numpy() + self.b.numpy()
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def loss(self, X, y):
        p = self._probabilities(X)
        data = -np.log(p[np.arange(len(y)), y]).mean()
        return tf.constant(data) + 0.1 * tf.reduce_sum(self.W**2)

    def gradients(self, X, y):
        p = self._probabilities(X)
        p[np.arange(len(y)), y] -= 1
        p /= len(y)
        return [X.T @ p + 0.2 * self.W.numpy(), p.sum(0)]


@pytest.mark.parametrize("mode", MODES)
def test_a_tape_overruled_everywhere_still_prints_how_far_it_is_from_manual(mode):
    """Every element of W excused (finite differences overrule a tape that sees the penalty
    only): the right model passes with a note, and its manual~tape column prints the largest
    difference, not the 0 of no element counted."""
    model = _NumpyDataLossTfPenalty()
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((5, 4)), np.array([0, 1, 2, 2, 1])
    apart = np.abs(model.gradients(X, y)[0] - tape_gradients(model, X, y)[0].numpy())
    largest = np.abs(model.gradients(X, y)[0]).max()
    report = check_gradients(model, X, y, mode=mode)
    W = report.entries[0]
    assert report.ok and W.status == Status.NOTES, str(report)
    shown = next(c for c in W.comparisons if c.between.column == "manual~tape")
    assert not shown.agree and shown.relative == pytest.approx(apart.max() / largest, rel=1e-6)
    assert f"{shown.relative:.2g}>" in str(report)


# --- a tie's gradient counted twice ------------------------------------------------------------


def _row_max_numpy(x):
    return tf.constant(np.max(x.numpy(), axis=1))


def _row_max_vjp(every_tied):
    def vjp(dy, x):
        x = x.numpy()
        top = x == np.max(x, axis=1, keepdims=True)
        if not every_tied:  # the first maximum only, as np.argmax routes it
            first = np.zeros_like(top)
            first[np.arange(len(x)), np.argmax(x, axis=1)] = True
            top = first
        return top * dy.numpy()[:, None]

    return vjp


def _tied_rows(dtype):
    x = np.random.default_rng(1).normal(size=(3, 4))
    x[0, 1] = x[0, 3] = np.max(x[0]) + 0.5  # a tie in row 0
    x[2, 0] = x[2, 2] = np.max(x[2]) + 0.5  # and in row 2
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_ties_gradient_counted_twice_fails_along_the_pair_numpy(mode, dtype):
    x = _tied_rows(dtype)
    right = check_function(_row_max_numpy, x, vjp=_row_max_vjp(False), mode=mode)
    assert right.ok, str(right)
    twice = check_function(_row_max_numpy, x, vjp=_row_max_vjp(True), mode=mode)
    assert not twice.ok, str(twice)


def _pool(x):
    return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")


def _pool_vjp(every_tied, last=False):
    def vjp(dy, x):
        x, dy = x.numpy(), dy.numpy()
        dx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for i in range(dy.shape[1]):
                for j in range(dy.shape[2]):
                    for c in range(x.shape[3]):
                        window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
                        top = window == window.max()
                        if not every_tied:  # the first maximum only (or the last)
                            one = np.zeros_like(top)
                            at = np.flatnonzero(top)[-1] if last else np.argmax(window)
                            one.flat[at] = True
                            top = one
                        dx[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c] += top * dy[n, i, j, c]
        return dx

    return vjp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_ties_gradient_counted_twice_fails_along_the_pair_max_pool(mode, dtype):
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 1))
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = 3.0  # a tie in the first window
    x = x.astype(dtype)
    right = check_function(_pool, x, vjp=_pool_vjp(False), mode=mode)
    assert right.ok, str(right)
    twice = check_function(_pool, x, vjp=_pool_vjp(True), mode=mode)
    assert not twice.ok, str(twice)


# --- numbers that mean what they say -----------------------------------------------------------


class TwoLayer:
    """A hand-written two-layer tanh network with an MSE loss; ``db1`` halved when ``bug``."""

    param_names = ["W1", "b1", "W2", "b2"]

    def __init__(self, dtype, bug):
        rng = np.random.default_rng(0)
        self.W1 = tf.Variable(0.5 * rng.normal(size=(4, 5)).astype(dtype))
        self.b1 = tf.Variable(0.1 * rng.normal(size=5).astype(dtype))
        self.W2 = tf.Variable(0.5 * rng.normal(size=(5, 3)).astype(dtype))
        self.b2 = tf.Variable(np.zeros(3, dtype))
        self.params = [self.W1, self.b1, self.W2, self.b2]
        self.bug = bug

    def loss(self, X, y):
        out = tf.tanh(X @ self.W1 + self.b1) @ self.W2 + self.b2
        return tf.reduce_mean((out - y) ** 2)

    def gradients(self, X, y):
        h = tf.tanh(X @ self.W1 + self.b1)
        out = h @ self.W2 + self.b2
        d = 2.0 * (out - y) / tf.cast(tf.size(out), out.dtype)
        dz = (d @ tf.transpose(self.W2)) * (1.0 - h * h)
        db1 = tf.reduce_sum(dz, 0) * (0.5 if self.bug else 1.0)
        return [tf.transpose(X) @ dz, db1, tf.transpose(h) @ d, tf.reduce_sum(d, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_every_printed_relative_error_is_relative_to_the_tensors_own_largest_gradient(mode, dtype):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(6, 3)).astype(dtype)
    report = check_gradients(TwoLayer(dtype, bug=True), X, y, mode=mode)
    b1 = next(e for e in report.entries if e.name == "b1")
    assert b1.rel_error == pytest.approx(0.5, rel=1e-3), str(report)
    for between in ("manual~tape", "manual~FD"):
        c = next(c for c in b1.comparisons if c.between.column == between)
        assert c.relative == pytest.approx(0.5, rel=1e-3), (between, str(report))
    assert "rel err 0.5 >" in str(report)
    assert check_gradients(TwoLayer(dtype, bug=False), X, y, mode=mode).ok


def test_check_derivatives_worst_point_is_the_worst_and_a_constant_factor_is_named():
    report = check_derivative(tf.math.softplus, lambda x: 1.01 * tf.math.sigmoid(x))
    assert not report.ok
    assert report.rel_error == pytest.approx(0.01, rel=1e-6), str(report)
    assert all(abs(f["manual"] / f["tape"] - 1.01) < 1e-9 for f in report.failures)
    assert [d.code.value for d in report.diagnosis] == ["constant-factor"], str(report)
    assert "101/100 x truth" in str(report)
    assert check_derivative(tf.math.softplus, tf.math.sigmoid).ok


# --- every excuse carries its evidence ---------------------------------------------------------


def _undecided_and_failing():
    from reference._core.report import ElementVerdict

    fail = np.array([True, True, False])
    v = ElementVerdict(fail.copy(), undecided=fail.copy(), fd_against=fail.copy())
    return v, fail


@pytest.mark.parametrize(
    "transition,code",
    [
        ("excuse_rounding", "rounding-excused"),
        ("excuse_flat", "loss-flat"),
        ("unresolved", "unresolved"),
        ("hidden_kinks", "kinks-hidden"),
        ("region_unresolved", "kink-region-coarse"),
        ("fd_confounded", "fd-confounded"),
    ],
)
def test_an_excuse_without_its_evidence_is_not_granted(transition, code):
    from reference._core import policy

    excuse = getattr(policy, transition)
    v, fail = _undecided_and_failing()
    excuse(v, fail, {})
    assert np.array_equal(v.fail, fail) and not v.evidence
    excuse(v, fail, {"figure": 0.5})
    assert not np.any(v.fail) and v.evidence[policy.NoteCode(code)] == {"figure": 0.5}


def test_the_region_excuse_needs_its_evidence_too():
    from reference._core import policy

    v, fail = _undecided_and_failing()
    policy.excuse_region(v, fail, {}, policy.NoteCode.KINK_REGION)
    assert np.array_equal(v.fail, fail)
    policy.excuse_region(v, fail, {"displacement": 1e-18}, policy.NoteCode.KINK_REGION)
    assert not np.any(v.fail) and np.array_equal(v.kink_region, fail)


@pytest.mark.parametrize("mode", MODES)
def test_a_subgradient_at_a_tie_prints_its_one_sided_derivatives(mode):
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 1))
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = 3.0
    # The last tied maximum, where TensorFlow routes to the first: as valid, and off the tape.
    report = check_function(_pool, x, vjp=_pool_vjp(False, last=True), mode=mode)
    assert report.ok, str(report)
    note = next(n for e in report.entries for n in e.notes if n.code.value == "kink-subgradient")
    assert {"manual", "tape", "lower", "upper"} <= set(note.values)
    assert note.values["lower"] <= note.values["manual"] <= note.values["upper"]
    assert "one-sided [" in str(note)


def test_a_probe_across_hidden_kinks_is_no_evidence_against_a_right_gradient():
    """Inputs of 1e-3 put every ReLU unit near its kink: finite differences along a probe agree
    at every step and still miss the manual projection, because kinks inside the step bias
    them; the model's own gradient bends within the step by more than the disagreement."""
    import manual_backprop as mb
    from reference._catalogue.strategies import batch_for

    model = mb.MLP(
        [6, 6, 6, 1],
        ["linear", "relu", "linear"],
        "mse",
        dtype="float32",
        seed=1,
        weight_scale=0.1,
    )
    X, y = batch_for(model, n=3, input_scale=0.001, seed=0)
    report = check_gradients(model, X, y, mode="directional")
    assert report.ok, str(report)
    notes = [n for e in report.entries for n in e.notes if n.code.value == "probes-confounded"]
    assert notes and all(n.values["bend"] >= 0.5 for n in notes), str(report)


# --- check_function: a custom gradient on the tape, kinks inside every step ---------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_check_function_names_the_custom_gradient_its_tape_runs_through(mode, dtype):
    """A vjp copied from the custom gradient it checks agrees with the tape, which is that same
    claim: finite differences judge, and the header says the tape is not independent."""
    x = np.array([0.5, -1.2, 2.0], dtype=dtype)
    for factor, ok in ((2.0, True), (3.0, False)):

        def vjp(dy, x, factor=factor):
            return dy * factor * x

        report = check_function(_square(factor), x, vjp=vjp, mode=mode)
        assert report.ok is ok, str(report)
        if ok:
            assert report.tape_dependent is None, str(report)
        else:
            assert report.tape_dependent == "tf.custom_gradient", str(report)
            assert "not an independent witness" in str(report)


def _relu_layer(x, w):
    return tf.nn.relu(x @ w)


def _relu_layer_numpy(x, w):
    return tf.constant(np.maximum(x.numpy() @ w.numpy(), 0.0))


def _relu_vjp(masked):
    def vjp(dy, x, w):
        dy, x, w = dy.numpy(), x.numpy(), w.numpy()
        g = dy * (x @ w > 0) if masked else dy
        return g @ w.T, x.T @ g

    return vjp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", [_relu_layer, _relu_layer_numpy], ids=["tf", "numpy"])
def test_kinks_inside_every_step_do_not_fail_a_right_vjp(fn, mode, dtype):
    """Inputs of 1e-9 put a kink of every unit inside any step along x: finite differences
    resolve a biased value there, and the vjp's own bend along the line shows it (the same bend
    ``check_gradients`` measures). The right vjp is not failed (a note with the tape, and
    unverifiable without one). The mask forgotten is never ok: the tape fails it where it
    witnesses; without a tape, finite differences cannot judge x, and nothing passes it."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 5)) * 1e-9).astype(dtype)
    w = rng.standard_normal((5, 6)).astype(dtype)
    right = check_function(fn, x, w, vjp=_relu_vjp(True), mode=mode)
    assert all(e.status != "fail" for e in right.entries), str(right)
    assert right.ok is (fn is _relu_layer), str(right)
    wrong = check_function(fn, x, w, vjp=_relu_vjp(False), mode=mode)
    assert not wrong.ok, str(wrong)
    if fn is _relu_layer:
        assert any(e.name == "vjp: x" and e.status == "fail" for e in wrong.entries), str(wrong)


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_derivative_names_the_custom_gradient_its_tape_runs_through(dtype):
    """A derivative copied from the custom gradient it checks: finite differences judge, the
    error and the diagnosis are against them, and the header says why."""
    right = check_derivative(_square(2.0), lambda x: 2.0 * x, dtype=dtype)
    assert right.ok and right.tape_dependent is None, str(right)
    wrong = check_derivative(_square(3.0), lambda x: 3.0 * x, dtype=dtype)
    assert not wrong.ok, str(wrong)
    assert wrong.tape_dependent == "tf.custom_gradient"
    assert "not an independent witness" in str(wrong)
    assert wrong.rel_error == pytest.approx(0.5, rel=1e-3), str(wrong)
    assert "3/2 x truth" in str(wrong)


def _square_without_dy():
    @tf.custom_gradient
    def square(x):  # right at dy = 1 only
        return x * x, lambda dy: 2.0 * x

    return square


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_derivative_asks_the_tape_with_an_upstream_gradient_other_than_ones(dtype):
    """Judging fn's own tape gradient: one that ignores its dy is right at dy = 1 only, and
    fails; a wrong one is reported, with its factor, not raised."""
    assert check_derivative(_square(2.0), dtype=dtype).ok
    ignores = check_derivative(_square_without_dy(), dtype=dtype)
    assert not ignores.ok, str(ignores)
    assert "it ignores its upstream gradient dy" in str(ignores.diagnosis[0])
    halved = check_derivative(_square(1.0), dtype=dtype)
    assert not halved.ok and "1/2 x truth" in str(halved), str(halved)
    assert f"(+- {halved.fd_error:.2g})" in str(halved)  # the worst point's error bar
    # Given the right derivative, the tape that ignores dy is a witness unfaithful to finite
    # differences: noted, and the error printed is against finite differences.
    witnessed = check_derivative(_square_without_dy(), lambda x: 2.0 * x, dtype=dtype)
    assert witnessed.ok and witnessed.rel_error < 1e-3, str(witnessed)
    assert any(n.code.value == "tape-unfaithful" for n in witnessed.notes), str(witnessed)


# --- a probe finite differences cannot resolve for rounding --------------------------------------


class _B1Scaled(mb.MLP):
    """An MLP whose db1 is scaled by ``factor`` and then has ``slip`` added at ``b1[1]`` (1 and
    0: right), with a float64 twin of its own type."""

    factor, slip = 1.0, 0.0

    def gradients(self, X, y):
        grads = [np.array(g) for g in super().gradients(X, y)]
        grads[1] = grads[1] * self.factor
        grads[1][1] += self.slip
        return grads

    def astype(self, dtype):
        twin = super().astype(dtype)  # an MLP with the same weights, made this class
        twin.__class__, twin.factor, twin.slip = type(self), self.factor, self.slip
        return twin


def _saturated_softmax(seed, factor=1.0):
    """A softmax layer under binary cross-entropy, weights x3 (``_B1Scaled``)."""
    model = _B1Scaled(
        [2, 3],
        ["softmax"],
        "binary_crossentropy",
        dtype="float32",
        seed=seed,
        initializer="glorot_uniform",
        weight_scale=3.0,
    )
    model.factor = factor
    return model


@pytest.mark.parametrize("factor, ok", [(1.0, True), (1.001, False)])
def test_a_probe_whose_disagreement_is_within_the_losss_rounding_is_no_evidence(factor, ok):
    """A saturated softmax (inputs x10, weights x3): finite differences along a probe of W1
    resolve a projection the right gradient misses, by less than the loss's own rounding
    (measured along lines through every weight) reaches at their step: no evidence against
    it, and said so, with that rounding. A db1 1e-3 off fails."""
    model = _saturated_softmax(8, factor)
    X, y = batch_for(model, n=4, input_scale=10.0, seed=1)
    report = check_gradients(model, X, y, mode="directional")
    assert report.ok is ok, str(report)
    if ok:
        note = report.entries[0].note(NoteCode.PROBES_DISAGREE)
        assert note and note.values["within"] >= 1 and note.values["rounding"] > 0, str(report)
        assert "the loss straying by" in str(report)
    else:
        assert [e.name for e in report.failing] == ["b1"], str(report)


@pytest.mark.parametrize("seed, batch_seed", [(6, 1), (47, 3)])
def test_a_saturated_softmax_bias_that_finite_differences_miss_steadily_passes(seed, batch_seed):
    """Found searching draws for the test above: right models of the same family fail at one
    element of b1, in both modes (seed 6: manual == tape -0.08291277401, finite differences
    -0.08291276291 +- 7.5e-10, the three smaller steps -0.0829127632 +- 1.3e-8 down to
    -0.0829128226 +- 3.3e-6; seed 47: -2.900667e-7 against -2.822635e-7 +- 5.1e-10). The
    derivative of the same loss in 60-digit decimal arithmetic (a central difference with a
    step of 1e-25) is -0.0829127740077 and -2.9006672520e-7: manual and tape are right."""
    model = _saturated_softmax(seed)
    X, y = batch_for(model, n=4, input_scale=10.0, seed=batch_seed)
    report = check_gradients(model, X, y, mode="full")
    assert report.ok, str(report)


class _Slipped(mb.MLP):
    """An MLP whose gradient of ``params[tensor]`` has ``slip`` added at flat index ``at`` (0:
    right), with a float64 twin of its own type."""

    tensor, at, slip = 0, 0, 0.0

    def gradients(self, X, y):
        grads = [np.array(g) for g in super().gradients(X, y)]
        grads[self.tensor].reshape(-1)[self.at] += self.slip
        return grads

    def astype(self, dtype):
        twin = super().astype(dtype)
        twin.__class__ = type(self)
        twin.tensor, twin.at, twin.slip = self.tensor, self.at, self.slip
        return twin


def _clipped_softmax(dtype="float64"):
    """The saturated softmax under a clipped cross-entropy of the test below (``_Slipped``,
    right), and its batch."""
    model = _Slipped(
        [3, 10, 10],
        ["tanh", "softmax"],
        "binary_crossentropy",
        dtype=dtype,
        seed=175,
        initializer="normal",
        weight_scale=3.0,
    )
    return model, *batch_for(model, n=13, input_scale=10.0, seed=226)


@pytest.mark.parametrize(
    "dtype, mode", [("float32", "directional"), ("float32", "full"), ("float64", "full")]
)
def test_a_saturated_softmax_under_a_clipped_cross_entropy_passes(dtype, mode):
    """Found by the thorough profile (its draw: float32, directional). float32: b2[8] manual ==
    tape -0.009679267561, finite differences -0.009679266676 +- 6e-10; float64: W2[2, 8] manual
    == tape -0.009470136279, finite differences -0.009470137264 +- 9e-10, where a central
    difference of the same loss in 70-digit decimal arithmetic (step 1e-25) gives
    -0.00947013627877 (b2[8]: -0.00967926476650)."""
    model, X, y = _clipped_softmax(dtype)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)


@pytest.mark.parametrize("mode", MODES)
def test_a_gradient_on_a_steady_bias_of_finite_differences_fails(mode):
    """On the model of the test above (float64), finite differences miss the right W2[2, 8]
    by 9.9e-10, steadily. A manual W2[2, 8] moved onto their value is 1.1e-8 of the tensor's
    scale off the tape: finite differences accept it and reject the tape, but by less than the
    loss's own rounding reaches at their step, so they cannot show the tape unfaithful, and
    the element fails. (Directional mode passed it, the tape called unfaithful.)"""
    model, X, y = _clipped_softmax()
    fd = numerical_gradients(model, X, y)[2].value[2, 8]
    model.tensor, model.at = 2, 2 * 10 + 8
    model.slip = float(fd - np.asarray(model.gradients(X, y)[2])[2, 8])
    assert 5e-10 < abs(model.slip) < 2e-9
    report = check_gradients(model, X, y, mode=mode)
    assert not report.ok, str(report)
    assert [e.name for e in report.failing] == ["W2"], str(report)
    assert report.entries[2].elements.fail[2, 8], str(report)


def test_the_losss_rounding_is_measured_where_every_weight_moves():
    """The loss of the clipped softmax strays from exact arithmetic by about 1e-12 (2,000 ulps
    of 6.8) along lines through every weight, where a softmax output 3.5e-7 from 1 moves by many
    of its ulps; a few ulps from the point it does not, and the jitter sees a few ulps. On a
    ReLU network at a zero input row with zero biases every such line crosses kinks at the
    point, and samples no noise: the estimate stays at a few ulps, not at the kinks' bend."""
    model, X, y = _clipped_softmax()
    adapter = Adapter(model, X, y)
    f0 = adapter.loss_value()
    ulp = np.spacing(f0)
    assert stencils.loss_rounding(adapter, f0, np.random.default_rng(0)) > 300 * ulp
    assert stencils.jitter_noise(adapter, f0, np.random.default_rng(0)) < 30 * ulp
    relu = mb.MLP([3, 8, 2], ["relu", "linear"], "mse", dtype="float64", seed=1)
    X = np.zeros((4, 3))
    y = np.ones((4, 2))
    adapter = Adapter(relu, X, y)
    f0 = adapter.loss_value()
    assert stencils.loss_rounding(adapter, f0, np.random.default_rng(0)) <= 8 * np.spacing(f0)


@pytest.mark.parametrize("mode", MODES)
def test_a_selu_output_saturated_to_a_constant_passes(mode):
    """A right selu output unit at inputs x100 (z = -40): the manual derivative a + lambda*alpha
    (TensorFlow's own selu kernel) cancels to exactly 0, while the tape of the expm1 forward
    gives the truth, lambda*alpha*exp(z) ~ 7e-18, steadily under every nudge. No weight moved
    by its whole size moves the loss (4.36) by more than a few ulps: the model's whole gradient
    is below what its loss shows. Found by the thorough profile."""
    model = mb.MLP([2, 1], ["selu"], "mse", dtype="float64", seed=0)
    X, y = batch_for(model, n=1, input_scale=100.0, seed=1)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    assert any(e.note(NoteCode.LOSS_FLAT) for e in report.entries), str(report)
    # A manual gradient that is not 0 there, twice the tape's, is still a bug the tape sees.
    report = check_gradients(_TwiceTheTape(model), X, y, mode=mode)
    assert not report.ok and report.entries[0].status == Status.FAIL, str(report)


@pytest.mark.parametrize("mode", MODES)
def test_a_flat_model_whose_tape_is_exactly_0_passes(mode):
    """Tiny weights and inputs, dead ReLUs: TensorFlow's tape gives exactly 0 for every
    gradient, and the hand-written b3 keeps two values of -2.3e-18 (the rounding of softmax
    terms that cancel), steady under every nudge. Nothing the loss shows separates them: the
    other side of the manual-0 excuse. Found by the thorough profile."""
    loss, acts = "binary_crossentropy_from_logits", ["linear", "relu", "softmax"]
    model = mb.MLP([2, 2, 2, 6], acts, loss, dtype="float64", seed=0, weight_scale=0.1)
    X, y = batch_for(model, n=1, input_scale=0.001, seed=3751)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    b3 = next(e for e in report.entries if e.name == "b3")
    assert b3.note(NoteCode.LOSS_FLAT), str(report)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_flat_model_whose_witnesses_both_round_a_zero_gradient_passes(dtype, mode):
    """A dead ReLU, zero biases and ten examples of ten classes, one each: the softmax is
    uniform and every gradient is 0 by symmetry. b3's, the mean of p - y, comes out of both
    witnesses as an ulp or two of the terms that cancel (manual 1.04e-17, tape 6.9e-18 in
    float64), steady under every nudge (they move nothing: the biases are 0 and the ReLU stays
    dead), and within what the tape's own value moves by when its cotangent is scaled. Found
    by the thorough profile (seed 0 of the draw; the float32 model judged through its twin)."""
    model = mb.MLP(
        [1, 1, 1, 10],
        ["sigmoid", "relu", "softmax"],
        "categorical_crossentropy",
        dtype=dtype,
        seed=0,
        weight_scale=0.1,
    )
    X, y = batch_for(model, n=10, input_scale=0.001, seed=0)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    b3 = next(e for e in report.entries if e.name == "b3")
    rounding = b3.note(NoteCode.ROUNDING_EXCUSED)
    assert rounding and "within the tape's own rounding" in str(rounding), str(report)


class _EluRegressor:
    """A tutorial's one-unit ELU regressor, its backward by hand in NumPy (elu' = a + 1)."""

    def __init__(self):
        self.W = tf.Variable(-np.abs(np.random.default_rng(0).normal(size=(3, 1))))
        self.params = [self.W]

    def loss(self, X, y):
        z = tf.matmul(tf.constant(X), self.W)
        return tf.reduce_mean((tf.where(z > 0, z, tf.exp(z) - 1.0) - y) ** 2)

    def gradients(self, X, y):
        z = X @ self.W.numpy()
        a = np.where(z > 0, z, np.exp(z) - 1.0)
        return [X.T @ (2 * (a - y) / len(y) * np.where(z > 0, 1.0, a + 1.0))]


@pytest.mark.parametrize("mode", MODES)
def test_a_users_elu_saturated_everywhere_passes(mode):
    """The same in code written as tutorials write it: every z below -40, a + 1 cancels to 0
    while the tape's exp(z) does not."""
    X = np.abs(np.random.default_rng(1).normal(size=(4, 3))) * 200.0
    report = check_gradients(_EluRegressor(), X, np.zeros((4, 1)), mode=mode)
    assert report.ok and report.entries[0].note(NoteCode.LOSS_FLAT), str(report)


class _TwiceTheTape:
    def __init__(self, model):
        self.model, self.params = model, model.params

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        return [2.0 * g for g in tape_gradients(self.model, X, y)]


@pytest.mark.parametrize(
    "sizes, loss, dtype, seed, init, weight_scale, n, batch_seed, mode",
    [
        ([2, 2, 2], "categorical_crossentropy", "float32", 2, "he_normal", 3.0, 1, 13036, "full"),
        (
            [6, 9, 9],
            "categorical_crossentropy",
            "float64",
            42547,
            "glorot_uniform",
            3.0,
            2,
            2403,
            "directional",
        ),
        ([2, 2, 5], "binary_crossentropy", "float32", 1, "glorot_uniform", 1.0, 1, 138, "full"),
    ],
)
def test_a_confident_softmax_whose_loss_finite_differences_cannot_move_passes(
    sizes, loss, dtype, seed, init, weight_scale, n, batch_seed, mode
):
    """Right softmax models certain of their labels: -log p at p = 1 - 5e-15 (losses 5e-15
    and 5e-8), or log(1 - p) at p near 1 (a loss of 15), is rounded on the scale of p, 1e-16,
    so every loss along a line comes out the same and finite differences read 0 +- 1e-25 (or
    +- 1e-9) where manual and tape agree on 5e-14 (or 8e-9). That is no resolved
    disagreement: the noise of one loss is at least 4 ulps of max(|loss|, 1), the scale of the
    terms it is computed from, with a tape as without; and a line along which the loss did not
    move at all is no evidence against TensorFlow's own derivative. Found by the thorough and
    dev profiles."""
    model = mb.MLP(
        sizes,
        ["linear", "softmax"],
        loss,
        dtype=dtype,
        seed=seed,
        initializer=init,
        weight_scale=weight_scale,
    )
    X, y = batch_for(model, n=n, input_scale=10.0, seed=batch_seed)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)


@tf.custom_gradient
def _round_straight_through(x):
    return tf.round(x), lambda dy: dy


class _Quantized:
    """A quantization-aware layer with a straight-through gradient, checked by its tape: the
    loss is a step function, still along every line, and the gradient is the user's own."""

    def __init__(self):
        self.w = tf.Variable([0.33, -1.17, 2.04], dtype=tf.float64)
        self.params = [self.w]

    def loss(self, X, y):
        return tf.reduce_sum(_round_straight_through(self.w * 10.0) * X)

    def gradients(self, X, y):
        with tf.GradientTape() as tape:
            loss = self.loss(X, y)
        return tape.gradient(loss, self.params)


@pytest.mark.parametrize("mode", MODES)
def test_a_still_loss_excuses_nothing_where_the_gradient_is_the_users_own(mode):
    """A still line is no evidence against TensorFlow's derivative, but through a custom
    gradient manual == tape proves nothing: the straight-through gradient is not ok."""
    report = check_gradients(_Quantized(), np.array([1.0, 2.0, 3.0]), np.zeros(3), mode=mode)
    assert not report.ok and report.tape_dependent, str(report)


class _FakeQuantDense:
    """Quantization-aware training as Keras users write it: the weights fake-quantized to 4 bits
    in the forward, the gradient read from the tape. The op's registered gradient is
    straight-through (1 inside the range); what it computes is a step function."""

    def __init__(self, per_tensor_vars=False):
        self.w = tf.Variable([[0.33, -1.17], [2.04, 0.5]], dtype=tf.float32)
        self.params, self.per_tensor_vars = [self.w], per_tensor_vars

    def loss(self, X, y):
        if self.per_tensor_vars:
            q = tf.quantization.fake_quant_with_min_max_vars(self.w, -4.0, 4.0, num_bits=4)
        else:
            q = tf.quantization.fake_quant_with_min_max_args(self.w, -4.0, 4.0, num_bits=4)
        return tf.reduce_sum((tf.constant(X, tf.float32) @ q - y) ** 2)

    def gradients(self, X, y):
        with tf.GradientTape() as tape:
            loss = self.loss(X, y)
        return tape.gradient(loss, self.params)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_tensor_vars", [False, True])
def test_a_quantization_ops_straight_through_gradient_is_not_passed(per_tensor_vars, mode):
    """TensorFlow's own fake-quantization op has a straight-through gradient: its tape is no
    independent witness, and the loss, still along every line, excuses nothing."""
    X = np.array([[1.0, 2.0], [-0.5, 1.5]], np.float32)
    y = np.zeros((2, 2), np.float32)
    report = check_gradients(_FakeQuantDense(per_tensor_vars), X, y, mode=mode)
    assert not report.ok, str(report)
    assert "fake_quant" in (report.tape_dependent or ""), str(report)


def _straight_through(offset, amp, bug):
    """``ys + tf.stop_gradient(yt - ys)``: computes yt = offset + amp tanh(x), while the tape
    carries ys's gradient, ``bug`` (relative) too steep; the vjp shares the bug."""

    def fn(x):
        yt = offset + amp * tf.tanh(x)
        ys = offset + amp * (1.0 + bug) * tf.tanh(x)
        return ys + tf.stop_gradient(yt - ys)

    def vjp(dy, x):
        t = np.tanh(x.numpy())
        return dy.numpy() * amp * (1.0 + bug) * (1.0 - t**2)

    return fn, vjp


# Per dtype: an offset, an amplitude and a bug that finite differences resolve, but only just
# beyond their error bar in float64 (below the rounding of all ten outputs of 1000 at the step).
_STRAIGHT_THROUGH = {"float64": (1000.0, 1e-3, 1e-4), "float32": (10.0, 0.1, 1e-2)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_straight_through_trick_with_tf_stop_gradient_is_not_passed(mode, dtype):
    """The tape of ``ys + tf.stop_gradient(yt - ys)`` is ys's gradient, not yt's: a vjp that
    shares ys's bug agrees with the tape, so manual == tape proves nothing, and the header says
    the forward runs through tf.stop_gradient. The right twin passes."""
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(dtype)
    offset, amp, bug = _STRAIGHT_THROUGH[dtype]
    fn, vjp = _straight_through(offset, amp, 0.0)
    right = check_function(fn, x, vjp=vjp, mode=mode)
    assert right.ok, str(right)
    fn, vjp = _straight_through(offset, amp, bug)
    report = check_function(fn, x, vjp=vjp, mode=mode)
    assert not report.ok, str(report)
    if dtype == "float64":
        assert "tf.stop_gradient" in (report.tape_dependent or ""), str(report)


def _softmax_loss_with_numpy_l2(reg, y, dtype):
    """A course's softmax loss in TensorFlow, computed in ``dtype``, its L2 term computed in
    NumPy (the tape misses it), and its vjp with the term's gradient or without it (forgotten)."""

    def loss(X, W):
        X, W = tf.cast(X, dtype), tf.cast(W, dtype)
        scores = X @ W
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, scores))
        return ce + 0.5 * reg * np.sum(W.numpy() ** 2)

    def vjp(with_reg):
        def grads(dy, X, W):
            X, W, dy = X.numpy(), W.numpy(), dy.numpy()
            s = X @ W
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(y)), y] -= 1
            ds = dy * p / len(y)
            return ds @ W.T, X.T @ ds + (reg * W * dy if with_reg else 0.0)

        return grads

    return loss, vjp(True), vjp(False)


# Per dtype, a regularisation strength whose gradient the tape misses by more than its
# tolerance while finite differences accept both values at some elements of W.
_NUMPY_L2 = {"float64": 1e-9, "float32": 1e-3}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_tape_shown_unfaithful_in_a_tensor_decides_none_of_its_elements(mode, dtype):
    """The tape misses the NumPy L2 term: at most elements of W finite differences accept the
    manual value and reject the tape's (unfaithful), and at the others they accept both. There
    the tape's word decided, and the right vjp failed; now finite differences judge them, as
    they judge W's other elements. The vjp that forgets the term still fails."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4)).astype(dtype)
    W = rng.normal(size=(4, 3)).astype(dtype)
    loss, right, forgot = _softmax_loss_with_numpy_l2(
        _NUMPY_L2[dtype], rng.integers(0, 3, 5), dtype
    )
    report = check_function(loss, X, W, vjp=right, mode=mode)
    assert report.ok, str(report)
    assert any(c.note(NoteCode.TAPE_DISOWNED) for c in report.entries), str(report)
    report = check_function(loss, X, W, vjp=forgot, mode=mode)
    assert "J[y, W]" in {c.name for c in report.failing}, str(report)


class _ConfidentClassifier:
    """A tutorial's softmax regression, its backward by hand: p - y over the batch."""

    def __init__(self, forget_mean=False):
        rng = np.random.default_rng(0)
        self.W = tf.Variable(rng.normal(size=(3, 4)) * 3.0)
        self.b = tf.Variable(np.zeros(4))
        self.params, self.forget_mean = [self.W, self.b], forget_mean

    def loss(self, X, y):
        p = tf.nn.softmax(tf.constant(X) @ self.W + self.b)
        return -tf.reduce_mean(tf.reduce_sum(y * tf.math.log(p), axis=1))

    def gradients(self, X, y):
        z = X @ self.W.numpy() + self.b.numpy()
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d = (p - y) / (1 if self.forget_mean else len(y))
        return [X.T @ d, d.sum(0)]


@pytest.mark.parametrize("mode", MODES)
def test_a_users_confident_classifier_passes_and_its_bug_fails(mode):
    """The same in code written as tutorials write it, certain of its labels (loss 4.5e-9):
    finite differences found spurious kinks (one rounding step of p against no noise)."""
    rng = np.random.default_rng(1)
    model = _ConfidentClassifier()
    X = rng.normal(size=(5, 3)) * 30.0
    y = np.eye(4)[np.argmax(X @ model.W.numpy(), axis=1)]
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    assert not check_gradients(_ConfidentClassifier(forget_mean=True), X, y, mode=mode).ok


@pytest.mark.parametrize("mode", MODES)
def test_a_straight_through_gradient_at_a_jump_of_the_loss_is_not_passed(mode):
    """Exactly at a jump of the loss (round at 20.5), the noise measured is the jump and
    finite differences accept anything: the elements pass on the tape's word alone, and the
    tape is the user's own gradient. No witness judged them."""
    model = _Quantized()
    model.w.assign([0.33, -1.17, 2.05])  # 10 w = 20.5: round jumps at the point
    report = check_gradients(model, np.array([1.0, 2.0, 3.0]), np.zeros(3), mode=mode)
    assert report.entries[0].status == Status.UNVERIFIABLE and report.tape_dependent, str(report)
    assert report.entries[0].note(NoteCode.UNWITNESSED), str(report)


class _Thresholded:
    """A tutorial's hard-threshold unit: loss = sum(w x) + 10 * sum(w > 0.5), checked exactly at
    the threshold (w[0] = 0.5, the step taken at the point's own value). ``numpy_forward``
    computes the loss in NumPy (the tape is blind); ``slope`` scales the hand-written gradient
    (1 is right: the step's derivative is 0 on either side)."""

    def __init__(self, numpy_forward=False, slope=1.0):
        self.w = tf.Variable([0.5, -1.25, 2.0], dtype=tf.float64)
        self.params, self.numpy_forward, self.slope = [self.w], numpy_forward, slope

    def loss(self, X, y):
        if self.numpy_forward:
            w = self.w.numpy()
            return tf.constant(np.sum(w * X) + 10.0 * np.sum(w >= 0.5))
        step = tf.cast(self.w >= 0.5, tf.float64)
        return tf.reduce_sum(self.w * X) + 10.0 * tf.reduce_sum(step)

    def gradients(self, X, y):
        return [self.slope * np.asarray(X, np.float64)]


@pytest.mark.parametrize("mode", MODES)
def test_a_jump_at_the_point_is_judged_by_the_tape_alone_where_it_is_tensorflows(mode):
    """The loss jumps at the point along w[0]: finite differences accept anything there.
    TensorFlow's own derivative of the forward judges it (right passes, twice as steep
    fails); without a tape (a NumPy forward) no witness judged it: unverifiable, never passed,
    while the elements finite differences did witness are judged by them (full mode: twice as
    steep fails, its error relative to the gradients they witnessed)."""
    X, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    assert check_gradients(_Thresholded(), X, y, mode=mode).ok
    assert not check_gradients(_Thresholded(slope=2.0), X, y, mode=mode).ok
    report = check_gradients(_Thresholded(numpy_forward=True), X, y, mode=mode)
    assert report.entries[0].status == Status.UNVERIFIABLE, str(report)
    # Directional mode differences no element one by one here: every probe crosses the jump.
    unwitnessed = 1 if mode == "full" else 3
    assert report.entries[0].note(NoteCode.UNWITNESSED).count == unwitnessed, str(report)
    report = check_gradients(_Thresholded(numpy_forward=True, slope=2.0), X, y, mode=mode)
    assert not report.ok, str(report)
    if mode == "full":
        assert report.entries[0].status == Status.FAIL, str(report)
        assert report.entries[0].rel_error == pytest.approx(1.0), str(report)


@pytest.mark.parametrize("points", [[0.3, 1.2, -2.2], [2.5, -1.5, 0.5]], ids=["off", "at"])
def test_a_straight_through_derivative_is_unverifiable_in_check_derivative(points):
    """A straight-through round checked with check_derivative, off its jumps (every line
    still) and exactly at them (finite differences accept anything): no witness judged it, so
    the check is unverifiable, never passed. Round's own derivative, 0, passes at the same
    points: there the tape is TensorFlow's."""
    x = np.array(points)
    report = check_derivative(_round_straight_through, lambda x: tf.ones_like(x), points=x)
    assert report.status == Status.UNVERIFIABLE and report.tape_dependent, str(report)
    assert report.unverifiable == points and "UNVERIFIABLE at x" in str(report), str(report)
    assert check_derivative(tf.round, lambda x: tf.zeros_like(x), points=x).ok


class _TinyTerm:
    """float32, no twin: loss = sum(a * x) + 1e-4 * sum(b * x). Finite differences in float32
    (error ~1e-3) accept db = 0 and the tape's 1e-4 x alike; the loss shows a's gradient."""

    def __init__(self, forget_db):
        self.a = tf.Variable([0.5, -1.0, 2.0], dtype=tf.float32)
        self.b = tf.Variable([1.5, 0.25, -0.75], dtype=tf.float32)
        self.params, self.forget_db = [self.a, self.b], forget_db

    def loss(self, X, y):
        X = tf.constant(X, tf.float32)
        return tf.reduce_sum(self.a * X) + 1e-4 * tf.reduce_sum(self.b * X)

    def gradients(self, X, y):
        X = np.asarray(X, np.float32)
        db = np.zeros(3, np.float32) if self.forget_db else np.float32(1e-4) * X
        return [X.copy(), db]


@pytest.mark.parametrize("mode", MODES)
def test_a_steady_zero_where_the_loss_shows_the_gradient_is_a_bug(mode):
    """db forgotten (zeros) below what float32 finite differences resolve: only the tape sees
    it, the difference is steady, and the loss shows the model's gradient (a's): a bug."""
    X, y = np.array([1.0, -2.0, 3.0]), np.zeros(3)
    assert check_gradients(_TinyTerm(False), X, y, mode=mode).ok
    report = check_gradients(_TinyTerm(True), X, y, mode=mode)
    db = report.entries[1]
    assert db.status == Status.FAIL and db.elements.undecided.any(), str(report)
    assert not db.note(NoteCode.LOSS_FLAT), str(report)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_wider_than_the_functions_own_variation_is_no_evidence(dtype):
    """sin at 1e6 and 1e30 (in the default sample): a step there spans many periods, and the
    value finite differences resolve measures no derivative. cos, the right derivative, bends
    within that step (the same bend every check measures): a note, not a failure. A wrong
    derivative still fails where the step is fine."""
    right = check_derivative(tf.math.sin, tf.math.cos, dtype=dtype)
    assert right.ok, str(right)
    assert any(n.code.value == "fd-confounded" for n in right.notes), str(right)
    wrong = check_derivative(tf.math.sin, lambda x: 1.01 * tf.math.cos(x), dtype=dtype)
    assert not wrong.ok, str(wrong)


class _SharedFactorColumn:
    """The course's column-layout network whose W1 enters the loss as ``factor * W1 - (factor -
    1) * stop_gradient(W1)``: the same forward, and a tape ``factor`` times TensorFlow's
    derivative, which the hand-written dW1 shares (manual == tape, both wrong unless factor is
    1). Built like the corpus's right float32 case at seed 3, hidden 3, n 9."""

    def __new__(cls, factor):
        from corpus import CASES, ColumnLayout

        case = next(
            c for c in CASES if c.name == "column_layout" and c.bug is None and c.dtype == "float32"
        )
        model, X, y = case.build(3, 3, 9)

        class Shared(ColumnLayout):
            def forward_propagation(self, X):
                W1 = self.W1
                if factor != 1.0:
                    W1 = factor * W1 - (factor - 1.0) * tf.stop_gradient(W1)
                X = tf.cast(X, self.dtype)
                A1 = tf.nn.relu(tf.matmul(W1, X) + self.b1)
                Z2 = tf.matmul(self.W2, A1) + self.b2
                return tf.sigmoid(Z2), {"Z1": tf.matmul(self.W1, X) + self.b1, "A1": A1}

            def gradients(self, X, y):
                grads = super().gradients(X, y)
                return [factor * grads[0]] + grads[1:]

        model.__class__ = Shared
        return model, X, y


@pytest.mark.parametrize("factor, ok", [(1.0, True), (2.0, False)])
def test_a_float32_loss_rounded_in_stairs_is_no_evidence_against_a_right_gradient(factor, ok):
    """One example's output is 0.9999957 (label 0): float32 rounds 1 - p to a grid of 6e-8, and
    -log(1 - p) is a staircase of steps of 1.4% of itself. Along W1[0, 1] finite differences
    resolve -0.4198 +- 0.0024 against manual == tape -0.3987, and the disagreement is steady
    when every weight moves by 1e-6 (the stairs stay put); moved by 1e-3, the stairs are drawn
    anew and it moves by more than itself, while the gradient moves by 1e-3: confounded. The
    loss's own rounding, measured along lines through every weight (where 1 - p moves by many
    of its steps), says so first: no evidence either way, a note with that rounding. A dW1
    twice too large that the tape shares (a stop_gradient) moves with the gradient under
    either nudge, and fails, at that element too. Found by the thorough profile."""
    model, X, y = _SharedFactorColumn(factor)
    report = check_gradients(model, X, y, mode="full")
    assert report.ok is ok, str(report)
    w1 = report.entries[0]
    if ok:
        # The stairs are the loss's own rounding, measured along lines through every weight
        # (where 1 - p moves by many of its steps): 9e-5, whose reach at the step (0.034)
        # covers the disagreement before any nudge is needed.
        note = w1.note(NoteCode.FD_UNRESOLVED)
        assert note and note.values["floor"] > 0.021 and note.values["rounding"] > 0, str(report)
        assert "from exact arithmetic where every weight moves" in str(report)
    else:
        assert w1.status == Status.FAIL and w1.elements.fail[0, 1], str(report)
        directional = check_gradients(model, X, y, mode="directional")
        assert directional.entries[0].status == Status.FAIL, str(directional)


class _SteepShared:
    """sin(1000 w), its tape ``factor`` times TensorFlow's derivative (a stop_gradient), and
    ``gradients()`` the tape's: manual == tape, wrong unless factor is 1."""

    def __init__(self, factor):
        self.w = tf.Variable([1.0, 1.1, 1.2], dtype=tf.float64)
        self.params, self.factor = [self.w], factor

    def loss(self, X, y):
        w = self.factor * self.w - (self.factor - 1.0) * tf.stop_gradient(self.w)
        return tf.reduce_sum(tf.sin(1000.0 * w * tf.cast(X, tf.float64)))

    def gradients(self, X, y):
        with tf.GradientTape() as tape:
            loss = self.loss(X, y)
        return tape.gradient(loss, self.params)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("factor, ok", [(1.0, True), (1.1, False)])
def test_a_steep_gradient_that_moves_under_1e_3_is_not_taken_for_rounding(factor, ok, mode):
    """The phase 1000 w moves by about 1 when the weights move by 1e-3: the gradient moves by
    half of itself, and so does a disagreement that is part of it (10% too large, shared by the
    tape). Steady under 1e-6, it is nudged again by 1e-3 and moves by more than a quarter of
    itself, but no more than the gradient does: a bug, not rounding, and it fails."""
    report = check_gradients(_SteepShared(factor), np.ones(3), np.zeros(3), mode=mode)
    assert report.ok is ok, str(report)
    if not ok:
        assert not report.entries[0].note(NoteCode.FD_CONFOUNDED), str(report)


# --- a function that computes in float32, given float64 inputs -----------------------------------


def _swish_with(derivative):
    @tf.custom_gradient
    def swish(x):
        s = tf.sigmoid(x)
        return x * s, lambda dy: dy * derivative(x, s)

    return swish


_RIGHT_SWISH = _swish_with(lambda x, s: s + x * s * (1 - s))
_WRONG_SWISH = _swish_with(lambda x, s: s + x * s * (1 - s) * 1.01)


class _SwishLayer(tf.keras.layers.Layer):
    """A Keras layer with a hand-written gradient, as Keras users write one: float32 by default,
    so it casts float64 inputs to float32 and returns float32."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def call(self, x):
        return self.fn(x)


def _in_float32(fn):
    """fn computed in float32 inside, its outputs cast back to float64."""
    return lambda x: tf.cast(fn(tf.cast(x, tf.float32)), tf.float64)


_FLOAT32_INSIDE = {
    "keras_layer": (
        lambda: _SwishLayer(_RIGHT_SWISH),
        lambda: _SwishLayer(_WRONG_SWISH),
        "float32",
    ),
    "cast_back": (lambda: _in_float32(_RIGHT_SWISH), lambda: _in_float32(_WRONG_SWISH), "float64"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(_FLOAT32_INSIDE))
def test_a_function_computing_in_float32_is_judged_to_float32s_precision(kind, mode):
    """float64 inputs, a float32 computation: a step finite differences take for float64 moves
    the float32 output by less than its rounding at x = -1.27 (swish' = 0.0029), every value is
    the same and they read 0 with an error bar of 1e-315. Judged to float32's precision (the
    outputs' dtype, or float32 values where the dtype says float64), the right gradient passes,
    with a note that says why, and one 1% off still fails."""
    right, wrong, returned = _FLOAT32_INSIDE[kind]
    x = np.random.default_rng(0).standard_normal((4, 3))
    report = check_function(right(), x, mode=mode)
    assert report.ok, str(report)
    assert report.fd_dtype == "float32", str(report)
    assert f"returns {returned} outputs" in str(report) and "float32's precision" in str(report)
    assert not check_function(wrong(), x, mode=mode).ok


@pytest.mark.parametrize("kind", sorted(_FLOAT32_INSIDE))
def test_check_derivative_judges_a_float32_computation_to_float32s_precision(kind):
    """The same in check_derivative at dtype float64: every point failed before (steps and
    noise taken for float64)."""
    right, wrong, _ = _FLOAT32_INSIDE[kind]
    report = check_derivative(right(), dtype="float64")
    assert report.ok, str(report)
    assert report.precision and "float32's precision" in report.precision, str(report)
    assert not check_derivative(wrong(), dtype="float64").ok


def test_a_float64_function_is_judged_to_float64s_precision():
    """A float64 computation keeps float64's precision: a derivative 1e-6 off fails."""
    right = check_derivative(tf.math.sin, tf.math.cos, dtype="float64")
    assert right.precision is None, str(right)
    wrong = check_derivative(tf.math.sin, lambda x: tf.math.cos(x) * (1 + 1e-6), dtype="float64")
    assert not wrong.ok, str(wrong)
    x = np.random.default_rng(0).standard_normal((4, 3))
    vjp = lambda dy, x: dy * tf.math.cos(x) * (1 + 1e-6)  # noqa: E731
    report = check_function(tf.math.sin, x, vjp=vjp)
    assert report.fd_dtype == "float64" and not report.ok, str(report)


class _MixedPrecision:
    """float64 variables and a float32 computation, as mixed-precision code casts them: the
    hand-written gradient follows the float32 forward; ``factor`` scales dW (1: right)."""

    def __init__(self, factor=1.0, seed=0):
        rng = np.random.default_rng(seed)
        self.W = tf.Variable(rng.standard_normal((4, 3)), dtype=tf.float64)
        self.b = tf.Variable(rng.standard_normal(3) * 0.1, dtype=tf.float64)
        self.params, self.param_names, self.factor = [self.W, self.b], ["W", "b"], factor

    def _forward(self, X):
        W, b = tf.cast(self.W, tf.float32), tf.cast(self.b, tf.float32)
        X = tf.cast(X, tf.float32)
        return X, tf.tanh(X @ W + b)

    def loss(self, X, y):
        _, z = self._forward(X)
        err = z - tf.cast(y, tf.float32)
        return tf.cast(0.5 * tf.reduce_mean(tf.reduce_sum(err**2, axis=1)), tf.float64)

    def gradients(self, X, y):
        X32, z = self._forward(X)
        dz = (z - tf.cast(y, tf.float32)) / X.shape[0] * (1 - z * z)
        dW = tf.cast(tf.transpose(X32) @ dz, tf.float64) * self.factor
        return [dW, tf.cast(tf.reduce_sum(dz, axis=0), tf.float64)]


class _NumpyInFloat32:
    """A course-style NumPy model whose float64 parameters are cast to float32 inside: a linear
    layer, half the mean squared error, and an L2 term whose gradient ``bug`` forgets."""

    def __init__(self, bug=False, seed=0):
        rng = np.random.default_rng(seed)
        self.params = [rng.standard_normal((4, 3)), rng.standard_normal(3) * 0.1]
        self.param_names, self.bug, self.reg = ["W", "b"], bug, 0.5

    def loss(self, X, y):
        W, b = (p.astype(np.float32) for p in self.params)
        err = X.astype(np.float32) @ W + b - y.astype(np.float32)
        reg = np.float32(0.5 * self.reg) * np.sum(W * W)
        return np.float64(np.float32(0.5) * np.mean(np.sum(err * err, axis=1)) + reg)

    def gradients(self, X, y):
        W, b = (p.astype(np.float32) for p in self.params)
        X32 = X.astype(np.float32)
        d = (X32 @ W + b - y.astype(np.float32)) / np.float32(X.shape[0])
        dW = X32.T @ d + (0 if self.bug else np.float32(self.reg) * W)
        return [dW.astype(np.float64), d.sum(axis=0).astype(np.float64)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["tf", "numpy"])
def test_a_model_computing_in_float32_is_judged_to_float32s_precision(kind, mode):
    """float64 parameters, a float32 loss: steps and noise taken for float64 fail every right
    check (finite differences read 0, or the float32 rounding, with float64's error bars).
    The loss is a float32 value wherever the parameters move off float32's grid: judged to
    float32's precision, the right model passes, with a note that says why, and a wrong one
    still fails (dW 1% off, seen by the tape; an L2 gradient forgotten, by finite
    differences alone)."""
    right, wrong = (
        (_MixedPrecision(), _MixedPrecision(1.01))
        if kind == "tf"
        else (_NumpyInFloat32(), _NumpyInFloat32(bug=True))
    )
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    report = check_gradients(right, X, y, mode=mode)
    assert report.ok and report.fd_dtype == "float32", str(report)
    assert "computed in float32" in str(report), str(report)
    failed = check_gradients(wrong, X, y, mode=mode)
    assert [e.name for e in failed.failing] == ["W"], str(failed)


@pytest.mark.parametrize("mode", MODES)
def test_a_saturated_softmax_probe_below_the_outputs_rounding_is_no_evidence(mode):
    """Outputs 1 and 3.8e-14 (float64): along some probes the change is below one ulp of 1, so
    every evaluation rounds alike and finite differences read 0 with an error bar of 1e-319.
    The probes carry the outputs' rounding at their step, as the elements do; the note says so.
    A bug the rounding does not cover still fails along the same probes."""
    from functions import softmax, softmax_vjp

    x = 10.0 * np.random.default_rng(3571).normal(size=(1, 2))
    report = check_function(softmax, x, vjp=softmax_vjp, mode=mode)
    assert report.ok, str(report)
    assert "by less than the rounding of the values they difference alone reaches" in str(report)

    def off(dy, x):  # 1e-9 of the output's scale added to every element: far above rounding
        return softmax_vjp(dy, x) + 1e-9

    wrong = check_function(softmax, x, vjp=off, mode=mode)
    assert {c.name for c in wrong.failing} == {"vjp: x", "J[y, x]"}, str(wrong)

    # With a NumPy forward no tape witnesses: what the rounding hides, nothing judges.
    def softmax_numpy(x):
        e = np.exp(x.numpy() - np.max(x.numpy(), axis=-1, keepdims=True))
        return tf.constant(e / np.sum(e, axis=-1, keepdims=True))

    alone = check_function(softmax_numpy, x, vjp=softmax_vjp, mode=mode)
    assert [c.status.value for c in alone.entries] == ["unverifiable"] * 2, str(alone)
    assert all(c.note(NoteCode.FD_ROUNDED) for c in alone.entries), str(alone)
    wrong = check_function(softmax_numpy, x, vjp=off, mode=mode)
    assert [c.status.value for c in wrong.entries] == ["fail"] * 2, str(wrong)


# --- models whose every gradient is below what the loss resolves ------------------------------


_SELU_LAMBDA, _SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def _users_selu(factor):
    """A user's selu, its forward from expm1 (so the tape is accurate deep in saturation) and
    its derivative lambda alpha exp(z) there, ``factor`` times too steep."""

    def fn(z):
        return _SELU_LAMBDA * tf.where(z > 0, z, _SELU_ALPHA * tf.math.expm1(tf.minimum(z, 0.0)))

    def derivative(z, a):
        steep = factor * _SELU_LAMBDA * _SELU_ALPHA * tf.exp(tf.minimum(z, 0.0))
        return tf.where(z > 0, _SELU_LAMBDA * tf.ones_like(z), steep)

    return mb.Activation("users_selu", fn, derivative=derivative)


@pytest.mark.parametrize("mode", MODES)
def test_a_float32_model_saturated_below_the_losss_resolution_is_judged_by_its_own_zeros(mode):
    """A float32 selu unit deep in saturation (pre-activation near -35): every gradient is about
    1e-14, below what the loss (5.47) resolves. The hand-written selu' = a + lambda alpha is 0
    in the model's own float32, and keeps one ulp of lambda alpha in its float64 twin (24% of
    the value, steady under every nudge: it sits on one rounding step). The model the user runs
    is right to the loss's precision: passed, with the note. A derivative twice as steep whose
    float32 value is not 0 still fails; one that is 0 in float32 is as invisible as the right
    one, to the model and to the loss. Found by the thorough profile."""
    model = mb.MLP([7, 1], ["selu"], "mse", dtype="float32", seed=1, weight_scale=3.0)
    X, y = batch_for(model, n=1, input_scale=10.0, seed=1)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    flat = report.entries[0].note(NoteCode.LOSS_FLAT)
    assert flat and "in the model's own float32" in str(flat), str(report)
    for factor, ok in ((1.0, True), (2.0, False)):
        model = mb.MLP(
            [7, 1], [_users_selu(factor)], "mse", dtype="float32", seed=1, weight_scale=3.0
        )
        report = check_gradients(model, X, y, mode=mode)
        assert report.ok is ok, str(report)


@pytest.mark.parametrize("mode", MODES)
def test_a_numpy_model_with_no_gradient_but_rounding_passes_and_a_bug_that_shows_fails(mode):
    """A NumPy network (no tape) whose ReLUs are all dead on a batch of three balanced classes:
    its only gradient, db2 = mean(p - y), is 1/3 - 1/3 to rounding (-2.8e-17), every other one
    exactly 0. Finite differences bound every gradient by about 1e-9: at a point where the
    model has no gradient that bound is the witness, as at an exact minimum, and the right
    model passes. A bug that shows at that point (the ReLU's mask applied to its output, not its
    input) still fails. Found by the thorough profile."""
    from numpy_corpus import CASES

    for bug, ok in (("right", True), ("relu_mask_on_dvalues", False)):
        case = next(c for c in CASES if c.id == f"nnfs_layers-{bug}-float32")
        model, X, y = case.build(14100, 2, 3)
        report = check_gradients(model, X, y, mode=mode)
        assert report.ok is ok, str(report)


def _near_kink_half(seed, hidden, n):
    from corpus import CASES

    case = next(
        c
        for c in CASES
        if c.name == "near_kink_relu_half" and c.bug is None and c.dtype == "float64"
    )
    return case.build(seed, hidden, n)


def test_the_near_kink_corpus_draws_no_kink_closer_than_every_step_but_its_own():
    """The draw the thorough profile found (seed 5999, hidden 6, n 5) had a random row's unit
    5.2e-8 above its kink, besides the planted ones: the corpus now redraws such a model, and
    the right twin passes."""
    model, X, y = _near_kink_half(5999, 6, 5)
    z = np.asarray(X[2:]) @ model.W.numpy()
    assert np.min(np.abs(z)) > 1e-6
    report = check_gradients(model, X, y, mode="full")
    assert report.ok, str(report)


def test_a_kink_closer_than_every_step_leaves_the_element_unverifiable():
    """b[0] sits at a kink (row 0, where manual takes relu'(0) = 1/2 and the tape 0) and a
    second kink lies 5e-8 away (row 2 moved there), closer than two finite-difference steps
    reach: the one-sided derivatives cannot be measured, so the manual value is neither
    accepted nor refused. The element is unverifiable, the note says why and what to do."""
    model, X, y = _near_kink_half(0, 6, 5)
    w = model.W.numpy()[:, 0]
    X = np.array(X)
    X[2] -= (X[2] @ w - 5e-8) * w / (w @ w)
    assert abs(X[2] @ w - 5e-8) < 1e-12
    report = check_gradients(model, X, y, mode="full")
    b = next(e for e in report.entries if e.name == "b")
    assert not report.ok
    assert b.status == Status.UNVERIFIABLE, str(report)
    assert "another kink lies within 5e-07 of the point" in str(report)
    assert "check on another batch, or with inputs off the kinks" in str(report)


def test_stops_that_drop_nothing_are_not_named_however_many():
    """tf.nn.moments stops the mean inside the variance, dropping nothing: two layer norms in
    one forward (two stops) name nothing, and one straight-through stop among them is named."""
    from functions import layer_norm

    from reference._core.tape import overrides

    x = tf.constant(50.0 + np.random.default_rng(0).normal(size=(3, 4)))
    assert overrides(lambda: layer_norm(layer_norm(x))) == []
    fn, _ = _straight_through(1000.0, 1e-3, 1e-4)
    assert overrides(lambda: fn(layer_norm(layer_norm(x)))) == ["tf.stop_gradient"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slip, ok", [(0.0, True), (1e-3, False)])
def test_a_balanced_mae_bias_beside_two_kinks_passes(mode, slip, ok):
    """Found by the thorough profile: b1[1]'s gradient is exactly 0 (the signs of |out - y|
    over its active rows cancel), other rows' kinks 3.8e-6 and 1.1e-5 away. The default step
    reads -0.0021 +- 0.0003 (crossing both), the step 16 times smaller 0.0009 +- 0.011
    (crossing one), the two smallest 0 +- 3e-7. The middle step's wide bar agrees with both
    sides; the larger step joins the chain only if it also agrees with the tightest pair of
    smaller steps, and it does not: b1 passes, and a slip of 3% of b1's scale at that element
    fails there."""
    model = _B1Scaled([1, 10], ["relu"], "mae", dtype="float32", seed=21958, weight_scale=0.1)
    model.slip = slip  # kept by its float64 twin, through which it is judged
    X, y = batch_for(model, n=9, input_scale=0.001, seed=269)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok is ok, str(report)
    assert "judged through its float64 twin" in str(report)
    if not ok:
        assert report.entries[1].elements.fail.tolist() == [i == 1 for i in range(10)]
