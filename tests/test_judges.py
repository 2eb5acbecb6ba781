"""Tests of the judges themselves: every planted bug is caught, no correct model is flagged."""

import json

import numpy as np
import pytest
import tensorflow as tf
from _helpers import assert_diagnosis_counts, labels_for, rel_err
from mutants import MUTANTS, CustomGradientForward, HandBackprop, build, revealing_batch

import manual_backprop as mb
from reference import (
    GradientMismatch,
    NoteCode,
    Status,
    assert_gradients_match,
    check_gradients,
    numerical_gradients,
    tape_gradients,
)

MODES = ["full", "directional"]


class Plain:
    """Only the required protocol: no astype, no batched_loss (the generic FD path)."""

    def __init__(self, inner):
        self.inner = inner
        self.params = inner.params
        self.param_names = inner.param_names

    def loss(self, X, y):
        return self.inner.loss(X, y)

    def gradients(self, X, y):
        return self.inner.gradients(X, y)

    def input_gradient(self, X, y):
        return self.inner.input_gradient(X, y)


# --- every mutant is caught ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.__name__ for m in MUTANTS])
def test_mutant_is_caught(mutant, mode):
    model = build(mutant)
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y, mode=mode)
    assert not report.ok, f"{mutant.__name__} passed in {mode} mode:\n{report}"
    assert "FAIL" in str(report)
    assert_diagnosis_counts(report)


GENERIC = [m for m in MUTANTS[::3] if m.__name__ != "MirroredForwardBug"]


@pytest.mark.parametrize("mutant", GENERIC, ids=[m.__name__ for m in GENERIC])
def test_mutant_is_caught_through_the_generic_path(mutant):
    model = build(mutant)
    X, y = revealing_batch(model)
    assert not check_gradients(Plain(model), X, y).ok


def test_a_mirrored_forward_bug_needs_a_model_that_describes_itself():
    """Tape and finite differences differentiate the forward as written; only the independent
    forward sees a forward bug the backward mirrors, and it can rebuild only a model that says
    what it is (layer_sizes, activations, loss_function)."""
    model = build(next(m for m in MUTANTS if m.__name__ == "MirroredForwardBug"))
    X, y = revealing_batch(model)
    hidden = check_gradients(Plain(model), X, y)
    assert hidden.forward is None and all(e.ok for e in hidden.entries)
    assert not check_gradients(model, X, y).forward.ok


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.__name__ for m in MUTANTS])
def test_the_same_models_without_the_bug_pass(mutant, mode):
    """The negative control: the same architecture and batch, the backward written correctly."""
    sizes, acts, loss = mutant.config
    model = HandBackprop(sizes, acts, loss, dtype="float64", seed=0)
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)


DIAGNOSES = [
    ("MissingOneOverN", "the batch size N = 8 (rows of X, inferred from X and y): a missing 1/N"),
    ("MissingFactorTwo", "manual = 1/2 x truth: a factor of 1/2"),
    ("SignFlipped", "the sign flipped (-1)"),
    ("CCEExtraOneOverD", "1/D = 1/3: an extra division by the output width"),
    ("BiasMeanNotSum", "only b1, b2 are wrong"),
    ("WeightGradFromOwnActivation", "only W1, W2 are wrong"),
    ("WNotTransposed", "the bug is in layer 2's backward"),
    ("TanhFromZ", "the bug is in layer 1's backward, in the derivative of activation 1"),
    ("InputGradientNotTransposed", "only dL/dX is wrong"),
    ("SingleElementOff", "only 1 of 15 elements are wrong, at [(1, 2)]"),
    ("MirroredForwardBug", "model loss = 3 x the true loss: the output width D = 3"),
    ("FusedBCETimesSigmoidPrime", "every layer is wrong, from the output layer (2) down"),
]


@pytest.mark.parametrize("name,expected", DIAGNOSES, ids=[d[0] for d in DIAGNOSES])
def test_the_diagnosis_points_at_the_bug(name, expected):
    mutant = next(m for m in MUTANTS if m.__name__ == name)
    model = build(mutant)
    X, y = revealing_batch(model)
    text = str(check_gradients(model, X, y))
    assert expected in text, text


def test_failure_names_witnesses_tensor_index_and_values():
    model = build(next(m for m in MUTANTS if m.__name__ == "SingleElementOff"))
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    entry = next(e for e in report.entries if e.name == "W1")
    assert entry.status == "fail" and entry.worst_index == (1, 2)
    assert entry.disagreements() == ["manual vs tape", "manual vs FD"]
    assert abs(entry.manual / entry.tape - 1.001) < 1e-9
    assert abs(entry.fd - entry.tape) <= entry.fd_error
    assert entry.rel_error > entry.tolerance
    assert all(e.ok for e in report.entries if e.name != "W1")
    text = str(report)
    assert "FAIL W1 (3, 5): manual vs tape, manual vs FD disagree (1 of 15 elements)" in text
    assert "worst at index (1, 2)" in text
    statuses = entry.elements.statuses()
    assert statuses[1, 2] == Status.FAIL and list(statuses.ravel()).count(Status.FAIL) == 1
    assert set(statuses.ravel()) == {Status.PASS, Status.FAIL}


def test_assert_gradients_match_raises_with_the_table():
    model = build(MUTANTS[0])
    X, y = revealing_batch(model)
    with pytest.raises(GradientMismatch) as info:
        assert_gradients_match(model, X, y)
    assert isinstance(info.value, AssertionError)
    assert "Gradient check: FAIL" in str(info.value) and info.value.report.failing
    good = HandBackprop(*MUTANTS[0].config)
    assert assert_gradients_match(good, X, y).ok


# --- correct models that must pass ------------------------------------------------------------


class ReluOneAtZero(HandBackprop):
    """relu'(0) = 1: not TensorFlow's convention, but a valid subgradient."""

    config = ([3, 4, 2], ["relu", "linear"], "mse")

    def hidden_delta(self, l, z, a, g):
        return g * tf.cast(z >= 0, z.dtype)


def exact_kink_batch(n_in, n_out):
    """Rows of zeros (every relu exactly at 0 with zero biases) and ordinary rows."""
    X = np.zeros((4, n_in))
    X[1] = np.linspace(-1.0, 1.0, n_in)
    X[3] = 0.5
    y = np.ones((4, n_out))
    return X, y


@pytest.mark.parametrize("mode", MODES)
def test_relu_on_exact_kinks_passes(mode):
    model = mb.MLP([3, 4, 4, 2], ["relu", "relu", "linear"], "mse", dtype="float64", seed=0)
    X, y = exact_kink_batch(3, 2)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    if mode == "full":
        assert sum(e.kinks for e in report.entries) > 0, "the kinks should have been seen"


@pytest.mark.parametrize("mode", MODES)
def test_non_tf_subgradient_at_a_kink_passes(mode):
    model = ReluOneAtZero(*ReluOneAtZero.config, dtype="float64", seed=0)
    X, y = exact_kink_batch(3, 2)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)
    b1 = next(e for e in report.entries if e.name == "b1")
    assert b1.kinks_accepted > 0 and b1.status == "pass-with-notes"
    assert list(b1.elements.statuses()).count(Status.NOTES) == b1.kinks_accepted
    # Away from the kinks the same convention is held to the tape as usual.
    X2, _ = revealing_batch(model)
    assert check_gradients(model, X2, np.ones((8, 2)), mode=mode).ok


def test_kinks_of_every_kinked_activation_and_loss():
    """z exactly at each activation's kink (zero input, the kink as bias) and mae at r = 0."""
    for act, kink in [
        ("leaky_relu", 0.0),
        ("elu", 0.0),
        ("selu", 0.0),
        ("hard_sigmoid", 3.0),
        ("hard_sigmoid", -3.0),
        ("relu", 0.0),
    ]:
        model = mb.MLP([2, 3, 1], [act, "linear"], "mse", dtype="float64", seed=1)
        W1, b1, W2, b2 = model.get_weights()
        model.set_weights([W1, np.full_like(b1, kink), W2, b2])
        X = np.array([[0.0, 0.0], [0.3, -0.2], [0.0, 0.0]])
        report = check_gradients(model, X, np.array([[1.0], [0.0], [2.0]]))
        assert report.ok, f"{act} at {kink}\n{report}"
    model = mb.MLP([2, 1], ["linear"], "mae", dtype="float64", seed=0)
    X = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = model.forward(X).numpy()  # residuals exactly 0
    y[1] += 1.0
    report = check_gradients(model, X, y)
    assert report.ok and sum(e.kinks for e in report.entries) > 0, str(report)


CORRECT = [
    ("float32 tanh/softmax", [5, 8, 3], ["tanh", "softmax"], "categorical_crossentropy", "float32"),
    (
        "float32 relu/sigmoid",
        [4, 8, 8, 1],
        ["relu", "relu", "sigmoid"],
        "binary_crossentropy",
        "float32",
    ),
    ("float32 gelu/mse", [3, 6, 2], ["gelu", "linear"], "mse", "float32"),
    ("float32 softmax hidden", [3, 4, 2], ["softmax", "tanh"], "huber", "float32"),
    ("width 1", [1, 1, 1, 1], ["tanh", "sigmoid", "linear"], "mse", "float64"),
    (
        "width 1 float32",
        [3, 1, 2],
        ["elu", "linear"],
        "sparse_categorical_crossentropy_from_logits",
        "float32",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label,sizes,acts,loss,dtype", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_models_pass(label, sizes, acts, loss, dtype, mode):
    model = mb.MLP(sizes, acts, loss, dtype=dtype, seed=3)
    rng = np.random.default_rng(3)
    for n in (1, 7):
        X = rng.normal(size=(n, sizes[0]))
        y = labels_for(model.loss_function, n, sizes[-1], rng)
        report = check_gradients(model, X, y, mode=mode)
        assert report.ok, f"{label} N={n}\n{report}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "out,loss,scale",
    [
        ("sigmoid", "binary_crossentropy", 40.0),
        ("softmax", "categorical_crossentropy", 300.0),
        ("linear", "categorical_crossentropy_from_logits", 300.0),
        ("sigmoid", "mse", 30.0),
    ],
)
def test_saturated_outputs_and_large_logits_pass(out, loss, scale, dtype):
    model = mb.MLP([3, 4, 3], ["tanh", out], loss, dtype=dtype, seed=0)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([W1, b1, W2 * scale, b2])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    y = labels_for(model.loss_function, 6, 3, rng)
    for mode in MODES:
        report = check_gradients(model, X, y, mode=mode)
        assert report.ok, str(report)


def test_a_users_tutorial_model_is_judged_the_same_way():
    class Tutorial:
        """A two-layer sigmoid network written as in a tutorial, with its own backward."""

        def __init__(self, bug=False):
            rng = np.random.default_rng(0)
            self.W1 = tf.Variable(rng.normal(size=(2, 3)))
            self.W2 = tf.Variable(rng.normal(size=(3, 1)))
            self.params = [self.W1, self.W2]
            self.bug = bug

        def loss(self, X, y):
            h = tf.sigmoid(tf.matmul(X, self.W1))
            out = tf.matmul(h, self.W2)
            return tf.reduce_mean((out - y) ** 2)

        def gradients(self, X, y):
            X = tf.constant(X)
            h = tf.sigmoid(X @ self.W1)
            out = h @ self.W2
            d_out = 2 * (out - y) / len(X)
            dh = d_out @ tf.transpose(self.W2)
            dz = dh * (h if self.bug else h * (1 - h))
            return [tf.transpose(X) @ dz, tf.transpose(h) @ d_out]

    X = np.array([[0.0, 1.0], [1.0, 0.5], [-1.0, 2.0]])
    y = np.array([[1.0], [0.0], [0.5]])
    good, bad = check_gradients(Tutorial(), X, y), check_gradients(Tutorial(bug=True), X, y)
    assert good.ok, str(good)
    assert good.forward is None and [e.name for e in good.entries] == ["param0", "param1"]
    assert "has no 'layer_sizes'" in good.forward_skipped
    assert "independent forward: not run (the model has no 'layer_sizes'" in str(good)
    assert not bad.ok and bad.entries[0].status == "fail" and bad.entries[1].ok


# --- the witnesses themselves --------------------------------------------------------------------

SMOOTH = [
    ([8, 16, 16, 3], ["tanh", "tanh", "softmax"], "categorical_crossentropy"),
    ([4, 6, 6, 2], ["sigmoid", "softplus", "linear"], "mse"),
    ([3, 5, 1], ["gelu", "sigmoid"], "binary_crossentropy"),
    ([5, 7, 4], ["swish", "linear"], "categorical_crossentropy_from_logits"),
    ([3, 4, 4, 2], ["gelu_tanh", "softsign", "linear"], "huber"),
]


@pytest.mark.parametrize("sizes,acts,loss", SMOOTH, ids=["-".join(s[1]) for s in SMOOTH])
def test_finite_differences_match_the_tape_to_1e_9(sizes, acts, loss, record_error):
    model = mb.MLP(sizes, acts, loss, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, sizes[0]))
    y = labels_for(model.loss_function, 32, sizes[-1], rng)
    fd = numerical_gradients(model, X, y, include_input=True)
    exact = [g.numpy() for g in tape_gradients(model, X, y, include_input=True)]
    for est, t in zip(fd, exact):
        err = rel_err(est.value, t)
        record_error("FD vs tape, smooth float64 (per tensor)", err, f"{acts} {est.name}")
        assert err <= 1e-9, f"{est.name}: {err:.3g}"
        assert np.all(np.abs(est.value - t) <= est.error), "error estimate too small"
        assert est.n_kinks == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wrap", [lambda m: m, Plain], ids=["batched", "generic"])
def test_a_check_leaves_the_model_bit_identical(mode, wrap):
    for model in [
        mb.MLP([3, 5, 2], ["relu", "softmax"], "categorical_crossentropy", seed=0),
        build(MUTANTS[3]),
    ]:
        X, y = revealing_batch(model)
        before = [p.numpy().copy() for p in model.params]
        check_gradients(wrap(model), X, y, mode=mode)
        for a, b in zip(before, model.params):
            assert a.dtype == b.numpy().dtype and np.array_equal(a, b.numpy())


@pytest.mark.parametrize("wrap", [lambda m: m, Plain], ids=["batched", "generic"])
def test_each_witness_leaves_the_model_bit_identical_on_its_own(wrap):
    """The witnesses restore the parameters themselves, not only check_gradients' final
    safety net: finite differences element by element and along probes, and the rounding
    test's nudges."""
    from reference._checks.passes import rounding_pass
    from reference._core import stencils
    from reference._core.adapter import Adapter
    from reference._core.policy import TensorEvidence, classify

    model = mb.MLP(
        [3, 5, 2], ["relu", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
    )
    X, y = revealing_batch(model)
    before = [p.numpy().copy() for p in model.params]

    def unchanged():
        return all(np.array_equal(a, p.numpy()) for a, p in zip(before, model.params))

    numerical_gradients(wrap(model), X, y, include_input=True)
    assert unchanged()
    adapter = Adapter(wrap(model), X, y)
    f0 = adapter.loss_value()
    stencils.directional_stencil(
        adapter, 2, f0, stencils.probe_directions((5, 2), 3, np.random.default_rng(0))
    )
    stencils.coordinate_stencil(adapter, 0, f0, [0, 4])
    assert unchanged()
    manual, tape = adapter.manual(), {k: v.copy() for k, v in adapter.manual().items()}
    evidence = TensorEvidence("W1", manual[0], tape[0], None, 1e-10)
    verdict = classify(evidence)
    verdict.undecided = np.ones_like(verdict.fail)
    rounding_pass(adapter, {0: verdict}, {0: evidence}, seed=0)
    assert unchanged()


def test_the_report_is_json_and_readable():
    model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["mode"] == "full" and data["fd_dtype"] == "float64"
    assert [e["name"] for e in data["entries"]] == ["W1", "b1", "W2", "b2", "dL/dX"]
    assert {c["between"] for c in data["entries"][0]["comparisons"]} == {
        "manual vs tape",
        "manual vs FD",
        "tape vs FD",
    }
    assert data["forward"]["ok"] is True
    text = str(report)
    for name in ["W1", "b1", "W2", "b2", "dL/dX", "forward vs independent forward: ok"]:
        assert name in text


# --- a model that breaks the protocol gets a report, not a traceback ---------------------------


class Broken(HandBackprop):
    config = ([3, 4, 2], ["tanh", "linear"], "mse")

    def __init__(self, how):
        super().__init__(*self.config)
        self.how = how

    def gradients(self, X, y):
        grads = super().gradients(X, y)
        if self.how == "raises":
            raise RuntimeError("shapes are hard")
        if self.how == "short":
            return grads[:-1]
        if self.how == "shape":
            return [grads[0], grads[1], tf.transpose(grads[2]), grads[3]]
        if self.how == "none":
            return [grads[0], None, grads[2], grads[3]]
        if self.how == "nan":
            return [grads[0] * np.nan, *grads[1:]]
        if self.how == "dict":  # as CS231n's loss functions return them
            return dict(zip(["W1", "b1", "W2", "b2"], grads))
        raise AssertionError(self.how)


@pytest.mark.parametrize(
    "how,message",
    [
        ("raises", "model.gradients(X, y) raised RuntimeError: shapes are hard"),
        ("short", "returned 3 tensors for 4 params"),
        ("shape", "the gradient for W2 has shape (2, 4); the tensor has shape (4, 2)"),
        ("none", "the gradient for b1 is None"),
        ("dict", "returned a dict (keys 'W1', 'b1', 'W2', 'b2'); return a list with one gradient"),
    ],
)
def test_protocol_errors_are_reported(how, message):
    model = Broken(how)
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    assert not report.ok and message in report.error, report.error
    assert message in str(report)
    with pytest.raises(GradientMismatch):
        assert_gradients_match(model, X, y)


def test_a_loss_that_is_not_a_scalar_is_reported():
    class RowLosses(Broken):
        def loss(self, X, y):
            X, y = self.base._inputs_and_labels(X, y)
            return tf.reduce_mean(tf.square(self.base._forward_all(X)[-1][2] - y), axis=1)

    model = RowLosses("nan")
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    assert not report.ok and "must return a scalar (the batch mean); got shape (8,)" in report.error


def test_non_finite_gradients_fail_with_a_diagnosis():
    model = Broken("nan")
    X, y = revealing_batch(model)
    report = check_gradients(model, X, y)
    assert not report.ok and "non-finite value(s) in the manual gradient" in str(report)


BAD_ARGUMENTS = [
    ({"mode": "fast"}, ValueError, "mode must be one of 'full', 'directional'; got 'fast'"),
    ({"probes": 0}, ValueError, "probes must be a positive integer, such as 3; got 0"),
    ({"probes": 2.0}, TypeError, "probes must be a positive integer, such as 3; got 2.0"),
    ({"probes": True}, TypeError, "probes must be a positive integer"),
    ({"rtol": -1.0}, ValueError, "rtol must be a positive finite number, such as 1e-6; got -1.0"),
    ({"rtol": 0}, ValueError, "rtol must be a positive finite number"),
    (
        {"rtol": float("inf")},
        ValueError,
        "rtol must be a positive finite number, such as 1e-6; got inf",
    ),
    ({"rtol": float("nan")}, ValueError, "rtol must be a positive finite number"),
    ({"rtol": True}, TypeError, "rtol must be a positive finite number, such as 1e-6; got True"),
    ({"rtol": "1e-6"}, TypeError, "rtol must be a positive finite number"),
    ({"rtol": {"float64": float("inf")}}, ValueError, "rtol\\['float64'\\] must be a positive"),
    ({"rtol": {"float16": 1e-3}}, ValueError, "rtol's keys must be dtype names"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer, such as 0; got -1"),
    ({"seed": 1.5}, TypeError, "seed must be a non-negative integer"),
]


@pytest.mark.parametrize(
    "kwargs,error,match",
    BAD_ARGUMENTS,
    ids=[f"{k}={v!r}" for kw, _, _ in BAD_ARGUMENTS for k, v in kw.items()],
)
def test_arguments_are_checked(kwargs, error, match):
    model = mb.MLP([2, 1], ["linear"], "mse", dtype="float64", seed=0)
    X, y = np.ones((2, 2)), np.ones((2, 1))
    with pytest.raises(error, match=match):
        check_gradients(model, X, y, mode=kwargs.pop("mode", "directional"), **kwargs)


def test_numpy_integers_and_floats_are_accepted_where_python_ones_are():
    model = mb.MLP([2, 1], ["linear"], "mse", dtype="float64", seed=0)
    X, y = np.ones((2, 2)), np.ones((2, 1))
    report = check_gradients(
        model, X, y, mode="directional", probes=np.int64(2), seed=np.uint8(3), rtol=np.float32(1e-9)
    )
    assert report.ok and {e.probes for e in report.entries} == {2}, str(report)


def test_a_model_without_the_protocol_is_a_type_error():
    X, y = np.ones((2, 2)), np.ones((2, 1))
    with pytest.raises(TypeError, match="object has no 'params'"):
        check_gradients(object(), X, y)


@pytest.mark.parametrize("mode", MODES)
def test_an_unfaithful_tape_is_overruled_by_finite_differences(mode):
    right = CustomGradientForward(*CustomGradientForward.config)
    X, y = revealing_batch(right)
    report = check_gradients(right, X, y, mode=mode)
    assert report.ok, str(report)
    assert "the tape disagrees with finite differences" in str(report)
    assert any(e.note(NoteCode.TAPE_UNFAITHFUL) for e in report.entries)
    # A backward that mirrors the wrong custom gradient agrees with the tape, not with the loss:
    # finite differences resolve the truth, so it fails, and the header says why the tape's
    # agreement proves nothing.
    mirrored = CustomGradientForward(*CustomGradientForward.config, factor=2.0)
    report = check_gradients(mirrored, X, y, mode=mode)
    w1 = next(e for e in report.entries if e.name == "W1")
    assert w1.status == Status.FAIL, str(report)
    assert report.tape_dependent == "tf.custom_gradient", str(report)
    assert "not an independent witness" in str(report)
