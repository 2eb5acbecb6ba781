"""One test per way the verdict went wrong on models written the way users write them (the
corpus in ``corpus.py``): the wrong version fails, the right version passes, in both modes, and
the report says what a user needs to hear."""

import numpy as np
import pytest
import tensorflow as tf
from corpus import CASES
from mutants import MUTANTS, build, revealing_batch

import manual_backprop as mb
from reference import MODES, NoteCode, Status, check_gradients


def case(name, bug=None, dtype="float64"):
    return next(c for c in CASES if c.name == name and c.bug == bug and c.dtype == dtype)


def judged(name, bug=None, dtype="float64", mode="full", **build):
    model, X, y = case(name, bug, dtype).build(**build)
    before = [p.numpy().copy() for p in model.params]
    report = check_gradients(model, X, y, mode=mode)
    assert all(np.array_equal(b, p.numpy()) for b, p in zip(before, model.params))
    return report


def entry(report, name):
    return next(e for e in report.entries if e.name == name)


# --- 1. float32 subclasses and wrappers: judged as they are ------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["subclass_plain", "subclass_l2", "wrapper"])
def test_a_float32_subclass_or_wrapper_with_a_wrong_gradient_fails(name, mode):
    """astype gives a plain MLP, which is not the user's code: the model is judged as it is, in
    float32, and its doubled db1 fails; its right twin passes."""
    right = judged(name, None, "float32", mode)
    assert right.ok and right.fd_dtype == "float32", str(right)
    assert any("not the same code" in n for n in right.notes), right.notes
    wrong = judged(name, "db1_doubled", "float32", mode)
    assert not wrong.ok and entry(wrong, "b1").status == Status.FAIL, str(wrong)
    assert "manual = 2 x truth" in str(wrong)


@pytest.mark.parametrize("mode", MODES)
def test_a_twin_of_the_models_own_type_that_agrees_is_used(mode):
    """An astype that keeps the class: the twin is the same code and judges in float64; a bug in
    every dtype fails there; a slip in float32 only makes the twin disagree, so the model is
    judged as it is and fails."""
    right = judged("subclass_with_astype", None, "float32", mode)
    assert right.ok and right.fd_dtype == "float64" and not right.notes, str(right)
    both = judged("subclass_with_astype", "db1_doubled", "float32", mode)
    assert not both.ok and both.fd_dtype == "float64", str(both)
    slip = judged("subclass_with_astype", "float32_only_slip", "float32", mode)
    assert not slip.ok and slip.fd_dtype == "float32", str(slip)
    assert any("float64 twin's gradient for b1 differs" in n for n in slip.notes), slip.notes
    assert [e.name for e in slip.failing] == ["b1"], str(slip)


def test_a_subclass_that_overrides_the_loss_is_not_judged_by_the_parents_batched_loss():
    """The inherited batched_loss computes the parent's loss: it is caught by the spot check and
    not used, so a forgotten regulariser gradient fails instead of agreeing with it; the
    independent forward (the parent's network) is not run either."""
    right = judged("subclass_l2")
    assert right.ok, str(right)
    assert any("batched_loss disagrees with model.loss" in n for n in right.notes), right.notes
    assert right.forward is None and "overrides MLP.loss" in right.forward_skipped
    wrong = judged("subclass_l2", "no_reg_grad")
    assert {e.name for e in wrong.failing} == {"W1", "W2"}, str(wrong)


# --- 2. a random or state-mutating loss is never judged -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name,bug,says",
    [
        ("dropout_loss", "random_dropout", "model.loss(X, y) is not deterministic"),
        ("dropout_loss", "db1_mean_with_random_dropout", "model.loss(X, y) is not deterministic"),
        ("side_effect_loss", "b1_nudged_in_loss", "model.loss(X, y) changed the parameters: b1"),
        ("fused_update", "updates_in_gradients", "model.gradients(X, y) changed the parameters"),
    ],
)
def test_a_random_or_impure_model_is_never_passed(name, bug, says, mode):
    report = judged(name, bug, mode=mode)
    assert not report.ok and report.impure and says in report.impure, str(report)
    assert not report.entries and "NOT JUDGED" in str(report)
    assert str(report).startswith("Gradient check: NOT CHECKED") and "FAIL" not in str(report)
    assert report.to_dict()["impure"] == report.impure
    assert report.to_dict()["verdict"] == "NOT CHECKED" and not report.to_dict()["ok"]
    fix = "switch dropout off" if "deterministic" in says else "unchanged"
    if "gradients" in says:
        fix = "without updating the parameters"
    assert fix in report.impure
    assert judged(name, mode=mode).ok


# --- 3. nested kinks: a consistent convention is a region's gradient -----------------------------


@pytest.mark.parametrize("mode", MODES)
def test_relu_prime_one_where_several_kinks_meet_passes_with_a_note(mode):
    """Zero biases and all-zero input rows: every unit of two layers sits at its kink. The chain
    rule with relu'(0) = 1 is the gradient of the all-active region next to the point."""
    report = judged("zero_bias_relu", mode=mode)
    assert report.ok, str(report)
    noted = [e.name for e in report.entries if e.note(NoteCode.KINK_REGION)]
    assert "b1" in noted, str(report)
    assert judged("zero_bias_relu_strict", mode=mode).ok
    for bug in ("db1_divided_by_n_twice", "dW2_no_1_over_n"):
        assert not judged("zero_bias_relu", bug, mode=mode).ok


@pytest.mark.parametrize("mode", MODES)
def test_a_wrong_tensor_beside_nested_kinks_is_blamed_alone(mode):
    """dW2 missing its 1/N: W2 fails; b1 and dL/dX, right under relu'(0) = 1, still pass."""
    report = judged("zero_bias_relu", "dW2_no_1_over_n", mode=mode)
    assert [e.name for e in report.failing] == ["W2"], str(report)


# --- 4. near kinks: the step shrinks until the estimates agree -----------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_step_that_crosses_another_kink_does_not_fail_a_right_gradient(mode):
    """One unit of row 1 sits 0.15 of a step below its kink while row 0 sits at its kinks: the
    one-sided derivatives at the harness's step are bent by the crossing; smaller steps agree."""
    for seed in range(4):
        assert judged("near_kink_relu", mode=mode, seed=seed).ok
        # relu'(0) = 1/2 is no region's gradient: only finite differences can accept it.
        report = judged("near_kink_relu_half", mode=mode, seed=seed)
        assert report.ok and entry(report, "b").note(NoteCode.KINK_SUBGRADIENT), str(report)
    # Found by the thorough property run: two rows, each at or beside its kinks, so every line
    # pooled for the noise estimate crosses a kink (the noise measured directly bounds it).
    assert judged("near_kink_relu", mode=mode, seed=1, hidden=2, n=2).ok
    # Every probe line of this one crosses kinks: they pool a noise 4e7 times the one measured
    # directly, which must bound it (directional mode fails the right gradient without).
    assert judged("near_kink_relu", mode=mode, seed=569).ok
    # Also found there: a unit of another row 3e-8 from its kink, closer than finite
    # differences resolve; the element is the all-active region's gradient all the same.
    assert judged("near_kink_relu", mode=mode, seed=128, hidden=7, n=4).ok
    wrong = judged("near_kink_relu", "relu_prime_5_at_0", mode=mode)
    assert [e.name for e in wrong.failing] == ["b"], str(wrong)
    assert not judged("near_kink_relu_half", "db_mean", mode=mode).ok


# --- 5. diagnoses that are true ------------------------------------------------------------------


class Scaled:
    """An MLP whose hand-written gradients for some tensors are scaled."""

    def __init__(self, model, factors):
        self.model, self.factors = model, factors
        self.params, self.param_names = model.params, model.param_names

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        return [g * self.factors.get(i, 1.0) for i, g in enumerate(self.model.gradients(X, y))]


@pytest.mark.parametrize("mode", MODES)
def test_the_layer_diagnosis_agrees_with_the_verdicts(mode):
    """Only dW2 and db1 wrong in a three-layer net: no error flowing down from one layer
    explains that, and the diagnosis names the tensors, not layers 1..2."""
    model = mb.MLP([3, 4, 4, 2], ["tanh", "tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = revealing_batch(model)
    report = check_gradients(Scaled(model, {1: 1.5, 2: 1.5}), X, y, mode=mode)
    assert [e.name for e in report.failing] == ["b1", "W2"], str(report)
    text = str(report)
    assert "only b1, W2 are wrong while W1, b2, W3, b3 are right" in text, text
    assert "layer 3 is right" not in text and "layers 1..2 are wrong" not in text


def test_the_layer_diagnosis_still_names_where_an_error_flows_down():
    model = build(next(m for m in MUTANTS if m.__name__ == "TanhFromZ"))
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    assert "the bug is in layer 1's backward" in str(report)


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_1_over_m_in_column_layout_names_the_batch_size(mode):
    """X is features x examples: N is the number of columns (8), not the output width."""
    report = judged("column_layout", "missing_1_over_m", mode=mode)
    text = str(report)
    assert "the batch size N = 8 (columns of X, inferred from X and y): a missing 1/N" in text
    assert "output width" not in text


def test_a_declared_batch_axis_is_used_and_said():
    model, X, y = case("column_layout", "missing_1_over_m").build()
    model.batch_axis = 1
    text = str(check_gradients(model, X, y))
    assert "the batch size N = 8 (axis 1 of X, declared by the model)" in text, text


def test_one_wrong_element_of_a_large_tensor_is_counted_once_in_directional_mode():
    model = mb.MLP([200, 50, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = revealing_batch(model)

    class OneOff(Scaled):
        def gradients(self, X, y):
            grads = [g.numpy() for g in self.model.gradients(X, y)]
            grads[0][7, 3] *= 1.01
            return grads

    report = check_gradients(OneOff(model, {}), X, y, mode="directional")
    w1 = entry(report, "W1")
    assert w1.n_failing == 1 and w1.worst_index == (7, 3), str(report)
    assert "only 1 of 10000 elements are wrong, at [(7, 3)]" in str(report)

    class ManySmall(Scaled):
        """One element off by 1% and 30 more by 1e-8 of the largest gradient: all wrong."""

        def gradients(self, X, y):
            grads = [g.numpy() for g in self.model.gradients(X, y)]
            largest = np.max(np.abs(grads[0]))
            grads[0][7, 3] *= 1.01
            grads[0][20:50, 0] += 1e-8 * largest
            return grads

    report = check_gradients(ManySmall(model, {}), X, y, mode="directional")
    w1 = entry(report, "W1")
    assert w1.n_failing == 31, str(report)
    assert "only 31 of 10000 elements are wrong, at [(7, 3), (20, 0)," in str(report)


# --- no excuse without evidence ------------------------------------------------------------------


class Erratic:
    """Right gradients plus a difference that jumps with the low bits of the weights (so it looks
    like rounding to the nudges) but is far larger than rounding: 3e-10 of the largest gradient,
    below what finite differences resolve."""

    def __init__(self, model, size=3e-10):
        self.model, self.size = model, size
        self.params, self.param_names = model.params, model.param_names

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        grads = [g.numpy() for g in self.model.gradients(X, y)]
        largest = max(float(np.max(np.abs(g))) for g in grads)
        phase = np.sin(1e15 * self.params[0].numpy())
        grads[0] = grads[0] + self.size * largest * phase
        return grads


def test_an_erratic_difference_beyond_rounding_is_unverifiable_not_excused():
    model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = revealing_batch(model)
    report = check_gradients(Erratic(model), X, y)
    w1 = entry(report, "W1")
    assert not report.ok and w1.status == Status.UNVERIFIABLE, str(report)
    note = w1.note(NoteCode.UNRESOLVED)
    assert note and "float64, on smaller inputs or on another batch" in note.text
    assert not w1.note(NoteCode.ROUNDING_EXCUSED)


def test_float32_rounding_of_a_saturated_elu_is_still_excused():
    """The documented bound is wide enough for the cancellation it was made for."""
    model = mb.MLP([2, 3, 1], ["elu", "linear"], "mse", dtype="float32", seed=0)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([0.1 * W1, np.full_like(b1, -10.0), W2, b2])
    rng = np.random.default_rng(0)
    assert check_gradients(model, rng.normal(size=(5, 2)), rng.normal(size=(5, 1))).ok


def test_the_protocol_violations_are_reported_with_the_model_left_as_it_was():
    """A gradients() that assigns to a parameter: named, and the parameter restored."""
    model = mb.MLP([2, 3, 1], ["tanh", "linear"], "mse", dtype="float64", seed=0)

    class Stepper(Scaled):
        def gradients(self, X, y):
            grads = self.model.gradients(X, y)
            self.params[2].assign_sub(0.1 * grads[2])
            return grads

    before = model.get_weights()
    X, y = revealing_batch(model)
    report = check_gradients(Stepper(model, {}), X, y)
    assert "model.gradients(X, y) changed the parameters: W2" in report.impure
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert tf.is_tensor(model.params[2])


@pytest.mark.parametrize("mode", MODES)
def test_a_kink_closer_than_any_step_leaves_the_element_unverifiable(mode):
    """Unit 0 of row 1 a mere 1e-9 below its kink, closer than the smallest step (2^-25): finite
    differences cannot tell relu'(0) = 1/2 at row 0 from a bug. Not a pass, not a failure."""
    from corpus import NearKinkRelu

    model = NearKinkRelu(3, 4, at_zero=0.5, seed=3)
    W = model.W.numpy()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    X[0] = 0.0
    X[1] = -1e-9 * W[:, 0] / (W[:, 0] @ W[:, 0])
    out = np.maximum(X @ W, 0.0) @ model.v.numpy()
    y = out + rng.standard_normal((6, 1))
    y[0], y[1] = out[0] - 1.0, out[1] + 3.0
    report = check_gradients(model, X, y, mode=mode)
    b = entry(report, "b")
    assert not report.ok and b.status == Status.UNVERIFIABLE, str(report)
    assert b.note(NoteCode.KINK_CROWDED) and b.elements.unverifiable[0], str(report)


class _Float32Affine:
    """A user's float32 model with no astype: y = X w, mse."""

    def __init__(self, bug=1.0):
        self.w = tf.Variable(np.array([[0.5], [-1.0], [2.0]], dtype=np.float32))
        self.params, self.bug = [self.w], bug

    def loss(self, X, y):
        return tf.reduce_mean((tf.matmul(X, self.w) - y) ** 2)

    def gradients(self, X, y):
        return [self.bug * 2.0 * tf.matmul(X, tf.matmul(X, self.w) - y, transpose_a=True) / len(X)]


@pytest.mark.parametrize("bug", [1.0, 1.01])
def test_a_float32_model_without_astype_is_told_why_it_is_judged_in_float32(bug):
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    y = np.ones((6, 1), np.float32)
    report = check_gradients(_Float32Affine(bug), X, y)
    assert report.ok is (bug == 1.0), str(report)
    header = str(report).split("\ntensor ")[0]
    assert (
        "\nnote: judged as it is, in float32 (its own tape; finite differences in float32, "
        "which resolve less): the model has no astype('float64'); give it one" in header
    ), str(report)
