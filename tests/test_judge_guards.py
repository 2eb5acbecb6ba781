"""Tests that guard the judges: each fails when a specific part of the harness is weakened.

Every test here kills at least one planted harness bug of ``make mutants`` (tools/mutation.py):
a tolerance loosened, a kink that accepts anything, bisection switched off, the float32
comparison or the matrix's exit code made to pass, the finite-difference error estimate
inflated, fewer probes, the rounding test excusing everything.
"""

import numpy as np
import pytest
import tensorflow as tf
from mutants import CustomGradientForward, HandBackprop, revealing_batch

import manual_backprop as mb
from reference import (
    NoteCode,
    Status,
    assert_gradients_match,
    check_derivative,
    check_gradients,
    numerical_gradients,
    tape_gradients,
)
from reference.strategies import batch_for

MODES = ["full", "directional"]


class Planted:
    """A catalogue model whose gradient ``index`` is multiplied by ``factor`` at ``element``
    (every element when None, the largest gradient's when "largest"). ``twin`` keeps astype
    (judged through float64); without it the model is judged on its own dtype."""

    def __init__(self, model, index, factor, element=None, twin=True):
        self.model, self.index, self.factor, self.element = model, index, factor, element
        self.params, self.param_names = model.params, model.param_names
        if twin:
            self.astype = lambda d: Planted(model.astype(d), index, factor, element)

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        grads = list(self.model.gradients(X, y))
        g = grads[self.index]
        scale = np.ones(g.shape)
        if self.element is None:
            scale[...] = self.factor
        elif self.element == "largest":
            scale[np.unravel_index(np.argmax(np.abs(g.numpy())), g.shape)] = self.factor
        else:
            scale[self.element] = self.factor
        grads[self.index] = g * tf.constant(scale, g.dtype)
        return grads


def smooth_model(dtype="float64", sizes=(4, 6, 3)):
    model = mb.MLP(list(sizes), ["tanh", "linear"], "mse", dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(8, sizes[0])), rng.normal(size=(8, sizes[-1]))


# --- the tape's tolerance: a bug just above it is caught ------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,factor", [("float64", 1 + 1e-8), ("float32", 1 + 2e-4)])
def test_a_bug_just_above_the_tape_tolerance_is_caught(dtype, factor, mode):
    """One element off by 1e-8 (float64; tolerance 1e-10) or 2e-4 (float32, judged on its own
    float32 code; tolerance 1e-5): caught. The same model without the bug passes."""
    model, X, y = smooth_model(dtype)
    good = Planted(model, 0, 1.0, element="largest", twin=False)
    bad = Planted(model, 0, factor, element="largest", twin=False)
    assert check_gradients(good, X, y, mode=mode).ok
    report = check_gradients(bad, X, y, mode=mode)
    w1 = report.entries[0]
    largest = np.unravel_index(np.argmax(np.abs(model.gradients(X, y)[0].numpy())), (4, 6))
    assert report.fd_dtype == dtype and w1.status == Status.FAIL, str(report)
    assert w1.worst_index == tuple(largest) and w1.n_failing == 1, str(report)


def test_a_bug_below_what_finite_differences_resolve_is_caught_by_the_rounding_test():
    """W1 off by 1e-9 relative everywhere: the tape sees it, finite differences (error ~1e-8)
    accept manual and tape alike, and the rounding test finds the difference smooth: a bug."""
    model, X, y = smooth_model()
    report = check_gradients(Planted(model, 0, 1 + 1e-9), X, y)
    w1 = report.entries[0]
    assert w1.status == Status.FAIL and w1.elements.undecided.any(), str(report)
    assert not w1.note(NoteCode.ROUNDING_EXCUSED)


# --- kinks accept a subgradient, not any value ----------------------------------------------


class ReluFiveAtZero(HandBackprop):
    """relu'(0) = 5: no subgradient of relu at 0 (those lie in [0, 1])."""

    config = ([3, 4, 2], ["relu", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * tf.where(
            z > 0, tf.ones_like(z), tf.where(z == 0, 5.0 * tf.ones_like(z), tf.zeros_like(z))
        )


@pytest.mark.parametrize("mode", MODES)
def test_a_value_outside_the_one_sided_derivatives_fails_at_a_kink(mode):
    model = ReluFiveAtZero(*ReluFiveAtZero.config, dtype="float64", seed=0)
    X = np.zeros((4, 3))
    X[1] = [-1.0, 0.0, 1.0]
    X[3] = 0.5
    report = check_gradients(model, X, np.ones((4, 2)), mode=mode)
    b1 = next(e for e in report.entries if e.name == "b1")
    assert b1.status == Status.FAIL and b1.fd_interval is not None, str(report)
    assert not (b1.fd_interval[0] <= b1.manual <= b1.fd_interval[1])


def test_check_derivative_refuses_a_non_subgradient_at_a_kink():
    five = check_derivative(
        tf.nn.relu,
        lambda x: tf.where(
            x > 0, tf.ones_like(x), tf.where(x == 0, 5.0 * tf.ones_like(x), tf.zeros_like(x))
        ),
    )
    # 0 and its float64 neighbours, which TensorFlow flushes to 0 on the CPU
    assert not five.ok and 0.0 in [f["x"] for f in five.failures], str(five)
    assert all(abs(f["x"]) < 1e-300 for f in five.failures), str(five)

    @tf.custom_gradient
    def relu_five(x):
        one = tf.ones_like(x)
        return tf.nn.relu(
            x
        ), lambda g: g * tf.where(x > 0, one, tf.where(x == 0, 5.0 * one, 0.0 * one))

    custom = check_derivative(relu_five)
    assert not custom.ok and 0.0 in [f["x"] for f in custom.failures], str(custom)
    assert all(abs(f["x"]) < 1e-300 for f in custom.failures), str(custom)


# --- directional mode finds the elements ----------------------------------------------------


def test_directional_mode_finds_each_element_finite_differences_disagree_with():
    """Where manual and tape agree and finite differences do not, bisection narrows the probes
    down to the elements: the same elements as a full check."""
    model = CustomGradientForward(*CustomGradientForward.config, factor=2.0)
    X, y = revealing_batch(model)
    full = check_gradients(model, X, y)
    directional = check_gradients(model, X, y, mode="directional")
    for f, d in zip(full.entries[:2], directional.entries[:2]):
        assert f.elements.fd_against.any(), f.name
        np.testing.assert_array_equal(d.elements.fd_against, f.elements.fd_against)


def test_directional_mode_counts_every_wrong_element_past_the_cap():
    """A 20x20 tensor wrong everywhere: more elements than directional mode differences one by
    one (256); the rest fail with them."""
    model = mb.MLP([20, 20, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = np.random.default_rng(0).normal(size=(8, 20)), np.zeros((8, 2))
    report = check_gradients(Planted(model, 0, 1.5), X, y, mode="directional")
    assert report.entries[0].n_failing == 400, str(report)


def test_directional_mode_uses_the_probes_it_is_given():
    model, X, y = smooth_model()
    assert {e.probes for e in check_gradients(model, X, y, mode="directional").entries} == {3}
    assert {
        e.probes for e in check_gradients(model, X, y, mode="directional", probes=5).entries
    } == {5}
    assert {e.probes for e in check_gradients(model, X, y).entries} == {None}


# --- float32: overflow in float32 only fails --------------------------------------------------


class SoftplusOverflows(HandBackprop):
    """softplus' written exp(z) / (1 + exp(z)): exp overflows past z = 88 in float32 (NaN),
    not in float64 (up to 709)."""

    config = ([3, 4, 2], ["softplus", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        e = tf.exp(z)
        return g * e / (1.0 + e)


def test_a_float32_overflow_fails_where_float64_is_right():
    model = SoftplusOverflows(*SoftplusOverflows.config, dtype="float32")
    X = np.zeros((4, 3))
    X[0] = [100.0, 0.0, 0.0]
    X[1:] = np.random.default_rng(0).normal(size=(3, 3))
    W1 = model.base.get_weights()[0]
    W1[0] = 1.0  # z = 100 in every unit of row 0
    model.base.set_weights([W1, *model.base.get_weights()[1:]])
    report = check_gradients(model, X, np.zeros((4, 2)))
    assert report.fd_dtype == "float64" and not report.ok, str(report)
    w1 = report.entries[0]
    assert w1.status == Status.FAIL and "not finite in float32 but finite in float64" in str(
        w1.diagnosis[-1]
    )
    assert not w1.comparison("float32 vs float64").agree


# --- finite differences: accurate, and their error estimate tight ----------------------------


def test_the_finite_difference_error_estimate_is_tight():
    """The estimate bounds the true error (tested elsewhere) without being far above it: at
    most 1e-6 of each tensor's largest gradient on a smooth network (measured: 1.7e-7)."""
    model = mb.MLP(
        [4, 6, 6, 2], ["gelu_tanh", "softsign", "linear"], "huber", dtype="float64", seed=0
    )
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 2))
    exact = tape_gradients(model, X, y)
    for est, t in zip(numerical_gradients(model, X, y), exact):
        assert np.max(est.error) <= 1e-6 * np.max(np.abs(t.numpy())), est.name


@pytest.mark.parametrize("rel", [1e-8, -1e-8])
def test_a_custom_gradient_off_by_1e_8_is_caught(rel):
    @tf.custom_gradient
    def softplus(x):
        return tf.math.softplus(x), lambda g: g * tf.sigmoid(x) * (1.0 + rel)

    report = check_derivative(softplus)
    assert not report.ok and len(report.failures) > 100, str(report)


# --- the tape is overruled only by finite differences that agree with the manual value -------


@pytest.mark.parametrize("mode", MODES)
def test_an_unfaithful_tape_does_not_excuse_a_wrong_manual_value(mode):
    """A wrong custom gradient in the forward and a backward wrong another way (3x tanh'):
    manual, tape and finite differences all disagree."""
    model = CustomGradientForward(*CustomGradientForward.config, factor=3.0)
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y, mode=mode)
    w1 = report.entries[0]
    assert w1.status == Status.FAIL and not w1.elements.tape_unfaithful.any(), str(report)


# --- the float64 twin --------------------------------------------------------------------------


def test_a_float32_model_with_astype_is_judged_through_its_float64_twin():
    model, X, y = smooth_model("float32")
    report = assert_gradients_match(model, X, y)
    assert report.dtype == "float32" and report.fd_dtype == "float64"
    assert "judged through its float64 twin" in str(report)
    assert all(e.comparison("float32 vs float64") is not None for e in report.entries)


def test_the_planted_harness_bugs_still_fit_the_code():
    """``make mutants`` plants each bug by replacing a piece of the code: every piece must still
    be found exactly once, or the mutation run would test nothing."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    try:
        import mutation
    finally:
        sys.path.pop(0)
    assert len(mutation.BUGS) >= 20
    assert mutation.stale() == []


@pytest.mark.parametrize("activation", ["elu", "selu"])
def test_float32_rounding_of_a_cancelling_formula_is_noted_not_failed(activation):
    """Every hidden unit deep in elu's (selu's) saturation: the hand-written a + alpha cancels
    to a few digits in float32 while TensorFlow's tape (alpha exp(z)) does not. The math is
    right in float64: a pass, with a float32-rounding note on the tensors behind that layer."""
    model = mb.MLP([2, 3, 1], [activation, "linear"], "mse", dtype="float32", seed=0)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([0.1 * W1, np.full_like(b1, -10.0), W2, b2])
    rng = np.random.default_rng(0)
    report = check_gradients(model, rng.normal(size=(5, 2)), rng.normal(size=(5, 1)))
    assert report.ok, str(report)
    noted = [e.name for e in report.entries if e.note(NoteCode.FLOAT32_ROUNDING)]
    assert noted == ["W1", "b1", "dL/dX"], str(report)
    note = report.entries[1].note(NoteCode.FLOAT32_ROUNDING)
    assert note.values["deviation"] > 100 * note.values["tape_deviation"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_finer_than_the_loss_resolves_are_not_judged_finer(dtype):
    """A selu output deep in saturation (found by hypothesis): every gradient is below 1e-9,
    and the hand-written a + lambda alpha keeps only 3 or 4 digits of it (2e-4 off the tape).
    An error that small moves the loss (6.65) by less than an ulp of it, and finite differences
    cannot resolve it: not a failure (LOSS_ULPS)."""
    model = mb.MLP([1, 1], ["selu"], "mse", dtype=dtype, seed=2)
    X, y = batch_for(model, n=1, input_scale=100.0, seed=1)
    report = check_gradients(model, X, y)
    assert report.ok, str(report)
    assert max(abs(e.tape) for e in report.entries) < 1e-9
    assert all(abs(e.manual - e.tape) > 1e-5 * abs(e.tape) for e in report.entries)


def test_the_loss_resolution_floor_still_fails_a_real_bug_on_a_saturated_model():
    """The same saturated model with its output gradient doubled is still caught."""
    model = mb.MLP([1, 1], ["selu"], "mse", dtype="float64", seed=2)
    X, _ = batch_for(model, n=1, input_scale=100.0, seed=1)
    y = model.forward(X).numpy() + 1.0
    assert not check_gradients(Planted(model, 1, 2.0), X, y).ok


def test_a_bug_in_a_tensor_far_below_the_models_largest_gradient_is_caught():
    """SCALE_FLOOR's promise: W1 behind saturated tanh units has gradients ~1e-8 of the
    model's largest; an error of 1e-3 of W1's own size is still caught, and the right W1
    still passes."""
    model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([0.1 * W1, np.full_like(b1, 10.0), W2, b2])
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    grads = [np.max(np.abs(g.numpy())) for g in model.gradients(X, y)]
    assert grads[0] < 1e-7 * max(grads)
    assert check_gradients(model, X, y).ok
    report = check_gradients(Planted(model, 0, 1.001), X, y)
    assert [e.name for e in report.failing] == ["W1"], str(report)
