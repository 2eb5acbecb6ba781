"""check_function on the catalogue of custom derivatives (tests/functions.py): every right one
passes and every planted bug is caught, in both modes and both dtypes; the diagnosis names the
bug; bad input gets a clear error."""

import json

import functions as F
import numpy as np
import pytest
import tensorflow as tf

from reference import (
    Finding,
    GradientMismatch,
    Status,
    assert_function_gradients,
    check_function,
)

MODES = ("full", "directional")
DTYPES = ("float64", "float32")


def _check(case, dtype="float64", mode="full", seed=0):
    return check_function(
        case.fn,
        *case.build(dtype, seed),
        vjp=case.vjp,
        jvp=case.jvp,
        order=case.order,
        mode=mode,
    )


def _case(name):
    return next(c for c in F.CASES if c.name == name)


def test_the_catalogue_is_as_large_as_promised():
    assert len(F.RIGHT) >= 15 and len(F.BUGS) >= 15
    assert len({c.name for c in F.CASES}) == len(F.CASES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", F.RIGHT, ids=lambda c: c.name)
def test_right_derivatives_pass(case, mode, dtype):
    report = _check(case, dtype, mode)
    assert report.ok, str(report)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", F.BUGS, ids=lambda c: c.name)
def test_planted_bugs_fail(case, mode, dtype):
    report = _check(case, dtype, mode)
    assert not report.ok, f"{case.bug} passed:\n{report}"
    assert report.impure is None and report.error is None


def _findings(report):
    found = [d.code for d in report.diagnosis]
    for e in report.entries:
        found += [d.code for d in e.diagnosis]
    return found


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name, finding",
    [
        ("softmax_diagonal_only", Finding.DIAGONAL_ONLY),
        ("logsumexp_ignores_dy", Finding.IGNORES_UPSTREAM),
        ("product_swapped", Finding.SWAPPED),
        ("mse_no_mean", Finding.CONSTANT_FACTOR),
        ("cross_entropy_no_mean", Finding.CONSTANT_FACTOR),
        ("row_max_every_tie", Finding.JOINT_DIRECTIONS),
        ("tanh_numpy_vjp_order2", Finding.NOT_DIFFERENTIABLE),
    ],
)
def test_the_diagnosis_names_the_bug(name, finding, mode):
    report = _check(_case(name), mode=mode)
    assert finding in _findings(report), str(report)


def test_a_missing_batch_mean_is_named_by_the_batch_size():
    text = str(_check(_case("cross_entropy_no_mean")))
    assert "N = 6" in text and "missing 1/N" in text


def test_the_report_names_the_wrong_input_only():
    def vjp(dy, x, w):
        return dy * w, 2.0 * dy * x  # w's gradient doubled, x's right

    x, w = F._square_inputs(np.random.default_rng(0))
    report = check_function(F.product, x, w, vjp=vjp)
    assert not report.ok
    by_name = {e.name: e for e in report.entries}
    assert by_name["vjp: x"].ok and not by_name["vjp: w"].ok
    assert Finding.WHICH_INPUT in _findings(report)
    assert "only the gradient with respect to w is wrong" in str(report)


def test_a_wrong_second_order_leaves_the_first_order_passing():
    report = _check(_case("tanh_stop_gradient_order2"))
    failing = [e.name for e in report.entries if not e.ok]
    assert failing == ["order 2: x"], str(report)


def test_a_jvp_missing_a_term_fails_on_its_output():
    report = _check(_case("matmul_jvp_missing_term"))
    assert not next(e for e in report.entries if e.name == "jvp: y").ok


def test_kinks_pass_as_subgradients_and_say_so():
    report = _check(_case("relu_one_at_zero"))
    assert report.ok
    entry = report.entries[0]
    assert entry.status == Status.NOTES and entry.kinks_accepted > 0


def test_a_wrong_custom_gradient_is_judged_on_finite_differences_alone():
    report = _check(_case("logsumexp_ignores_dy"))
    assert all(e.tape is None for e in report.entries)
    assert "tape -" in str(report)


def test_assert_function_gradients_raises_with_the_report():
    case = _case("softmax_diagonal_only")
    with pytest.raises(GradientMismatch) as info:
        assert_function_gradients(case.fn, *case.build(), vjp=case.vjp)
    assert "Function check of softmax: FAIL" in str(info.value)
    assert not info.value.report.ok
    right = _case("softmax")
    assert assert_function_gradients(right.fn, *right.build(), vjp=right.vjp).ok


def test_the_report_is_data():
    report = _check(_case("matmul_no_transpose"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["function"] == "matmul" and data["order"] == 1
    assert any("cotangents" in j for j in data["judged"])
    assert {e["name"] for e in data["entries"]} >= {"vjp: a", "vjp: b"}


def test_inputs_may_be_tensors_and_the_names_come_from_fn():
    a, b = F._matmul_inputs(np.random.default_rng(1))
    report = check_function(F.matmul, tf.constant(a), tf.Variable(b), vjp=F.matmul_vjp)
    assert report.ok and [e.name for e in report.entries][:2] == ["vjp: a", "vjp: b"]


def test_a_random_function_is_not_judged():
    def noisy(x):
        return tf.nn.dropout(x, rate=0.5)

    report = check_function(noisy, np.ones((4, 4)), vjp=lambda dy, x: dy)
    assert not report.ok and report.impure is not None
    assert "random" in str(report)


def test_large_inputs_are_checked_in_directional_mode():
    x = np.random.default_rng(0).normal(size=(64, 128))
    right = check_function(F.layer_norm, x, vjp=F.layer_norm_vjp, mode="directional")
    wrong = check_function(F.layer_norm, x, vjp=F.layer_norm_vjp_no_mean, mode="directional")
    assert right.ok and not wrong.ok
    assert not any("Jacobian" in j for j in right.judged)


def test_a_scalar_input_and_output():
    def cube(x):
        return x**3

    assert check_function(cube, np.float64(1.5), vjp=lambda dy, x: 3.0 * x * x * dy).ok
    assert not check_function(cube, np.float64(1.5), vjp=lambda dy, x: 3.0 * x * dy).ok


# --- bad input ------------------------------------------------------------------------------------


def test_an_integer_input_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"inputs\[1\] has dtype int64.*close over it"):
        check_function(F.product, np.ones(3), np.arange(3))


def test_mixed_dtypes_are_refused():
    with pytest.raises(ValueError, match="mix dtypes"):
        check_function(F.product, np.ones(3), np.ones(3, np.float32))


def test_non_finite_inputs_are_refused():
    with pytest.raises(ValueError, match=r"inputs\[0\] has non-finite"):
        check_function(F.softmax, np.array([1.0, np.nan]))


def test_no_inputs_is_refused():
    with pytest.raises(ValueError, match="at least one input"):
        check_function(F.softmax)


@pytest.mark.parametrize(
    "result, message",
    [
        (lambda x: 3.0, r"fn is a float, not a tensor"),
        (lambda x: x.numpy(), r"fn is a ndarray, not a tensor"),
        (lambda x: (x, 2), r"fn\[1\] is a int, not a tensor"),
        (lambda x: (), r"fn returned an empty tuple"),
        (lambda x: tf.cast(x, tf.int32), r"int32 tensor"),
    ],
)
def test_fn_returning_a_non_tensor_is_refused(result, message):
    with pytest.raises(TypeError, match=message):
        check_function(result, np.ones(3))


def test_a_vjp_returning_the_wrong_number_of_gradients_is_refused():
    a, b = F._matmul_inputs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"vjp returned 1 gradient\(s\) for 2 input\(s\) \(a, b\)"):
        check_function(F.matmul, a, b, vjp=lambda dy, a, b: dy @ tf.transpose(b))


def test_a_vjp_returning_the_wrong_shape_is_refused():
    a, b = F._matmul_inputs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"vjp returned shape \(4, 2\) for input 'a'"):
        check_function(F.matmul, a, b, vjp=lambda dy, a, b: (tf.transpose(a) @ dy, b))


def test_a_jvp_returning_the_wrong_shape_is_refused():
    a, b = F._matmul_inputs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"jvp returned shape \(3, 4\) for output y"):
        check_function(F.matmul, a, b, jvp=lambda t, a, b: a)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"order": 3}, ValueError, "order must be 1 or 2"),
        ({"mode": "fast"}, ValueError, "mode"),
        ({"vjp": 3}, TypeError, "vjp must be callable"),
        ({"jvp": "f"}, TypeError, "jvp must be callable"),
        ({"rtol": -1.0}, ValueError, "rtol"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        check_function(F.softmax, np.ones((2, 3)), **kwargs)


def test_fn_must_be_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        check_function(np.ones(3), np.ones(3))


def test_a_gradient_that_is_zero_up_to_rounding_passes():
    # Each output sums x - mean(x): its gradient is 0, and the tape rounds 1 - n/n to 2e-16
    # while the manual value is exactly 0; the outputs are rounded on the terms (~1e3) they
    # cancel down from, which is the scale the gradient is judged on.
    def centred_sum(x):
        return tf.reduce_sum(x - tf.reduce_mean(x, axis=-1, keepdims=True), axis=-1)

    x = 1e3 * np.random.default_rng(0).normal(size=(4, 7))
    for dtype in DTYPES:
        report = check_function(centred_sum, x.astype(dtype), vjp=lambda dy, x: 0.0 * x)
        assert report.ok, str(report)
    wrong = check_function(centred_sum, x, vjp=lambda dy, x: 1e-6 * dy[:, None] * x)
    assert not wrong.ok


@pytest.mark.parametrize("mode", MODES)
def test_a_gradient_that_ignores_dy_fails_where_the_jacobian_is_too_large(mode):
    x = 300.0 + 20.0 * np.random.default_rng(0).normal(size=(40, 8))
    report = check_function(F.logsumexp_ignores_dy, x, mode=mode)
    assert not any("Jacobian" in j for j in report.judged)
    assert not report.ok
    assert Finding.IGNORES_UPSTREAM in _findings(report), str(report)


def test_a_function_computed_in_numpy_is_judged_on_finite_differences_and_says_so():
    def numpy_tanh(x):
        return tf.constant(np.tanh(x.numpy()))

    x = np.random.default_rng(0).normal(size=(3, 4))
    right = check_function(numpy_tanh, x, vjp=lambda dy, x: dy * (1.0 - tf.tanh(x) ** 2))
    assert right.ok, str(right)
    text = str(right)
    assert "tape: cannot witness (no gradient on the tape with respect to x" in text
    assert "n/a" in text and "custom gradient" not in text
    assert "fn could not be vectorized" in text
    wrong = check_function(numpy_tanh, x, vjp=lambda dy, x: dy * (1.0 - tf.tanh(x)))
    assert not wrong.ok


def test_float32_inputs_are_differenced_in_float64_when_fn_accepts_it():
    case = _case("layer_norm")
    report = _check(case, "float32")
    assert report.dtype == "float32" and report.fd_dtype == "float64"

    def float32_only(x):
        return tf.nn.softmax(tf.cast(x, tf.float32) * tf.constant(1.0, tf.float32))

    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    report = check_function(float32_only, x, vjp=F.softmax_vjp)
    assert report.fd_dtype == "float32" and report.ok, str(report)


# --- found by trying check_function as a new user would -------------------------------------------


@pytest.mark.parametrize("w0", [0.1, 0.3, 0.7])
def test_relu_one_at_zero_beside_a_weight_that_is_not_a_power_of_two_passes(w0):
    # Once unverifiable: the noise floor was 4 ulps of the change, not of the outputs that
    # change (the sum, ~1), so rounding looked like another kink.
    w = tf.constant([w0, 1.0], tf.float64)

    def weighted_relu(x):
        return tf.reduce_sum(tf.nn.relu(x) * w)

    report = check_function(
        weighted_relu, np.array([0.0, 1.0]), vjp=lambda dy, x: dy * tf.cast(x >= 0, x.dtype) * w
    )
    assert report.ok, str(report)
    assert report.entries[0].kinks_accepted > 0


@pytest.mark.parametrize("seed", [1, 9])
def test_tensorflows_own_logsumexp_passes_at_any_seed(seed):
    # Once failed by 1.5e-10 against an FD error bar of 1.8e-12 (the bar missed the rounding
    # of the output that changes).
    x = np.random.default_rng(0).normal(size=(8, 128))
    report = check_function(lambda x: tf.reduce_logsumexp(x, axis=-1), x, seed=seed)
    assert report.ok, str(report)


@pytest.mark.parametrize("shape", [(3,), (3, 4), (1, 4)])
def test_a_right_vjp_of_a_numpy_forward_passes(shape):
    x = np.random.default_rng(0).normal(size=shape)
    square = check_function(
        lambda x: tf.constant(x.numpy() ** 2), x, vjp=lambda dy, x: 2.0 * dy * x
    )
    sine = check_function(
        lambda x: tf.constant(np.sin(x.numpy())), x, vjp=lambda dy, x: dy * tf.cos(x)
    )
    assert square.ok and sine.ok, f"{square}\n{sine}"


def test_a_smooth_function_shows_no_kinks():
    report = check_function(
        lambda x: tf.reduce_sum(tf.stop_gradient(x) * x),
        np.random.default_rng(0).normal(size=(3, 4)),
    )
    assert not report.ok  # the tape gives x, the derivative is 2x
    assert all(e.kinks == 0 for e in report.entries), str(report)
    assert "factor of 1/2" in str(report)


def test_a_numpy_forward_without_a_vjp_is_not_said_to_ignore_dy():
    report = check_function(lambda x: tf.constant(np.tanh(x.numpy())), np.ones((2, 3)))
    text = str(report)
    assert not report.ok and "ignores the upstream gradient" not in text
    assert "the tape has no gradient of fn with respect to x" in text
    assert Finding.ALL_ZEROS in _findings(report)


@pytest.mark.parametrize("reads", [True, False])
def test_variables_fn_reads_besides_its_inputs_are_named_as_not_judged(reads):
    """A layer's weights read inside fn (a Keras layer checked as fn(x)): only x's gradient is
    judged, and the report says so, naming them; an fn that reads none gets no such note."""
    w = tf.Variable(np.linspace(0.5, 1.5, 3), name="kernel")
    fn = (lambda x: tf.tanh(x * w)) if reads else (lambda x: tf.tanh(x * 0.5))
    report = check_function(fn, np.ones((2, 3)))
    noted = [n for n in report.notes if "trainable variable(s) besides its inputs" in n]
    assert report.ok and len(noted) == int(reads), str(report)
    assert not reads or "kernel" in noted[0]


def test_an_empty_input_is_refused():
    with pytest.raises(ValueError, match=r"inputs\[0\] is empty"):
        check_function(F.softmax, np.zeros((0, 3)))


@pytest.mark.parametrize("dtype, factor", [("float64", 1.0 + 1e-8), ("float32", 1.0 + 2e-4)])
@pytest.mark.parametrize("name", ["layer_norm", "softmax", "attention_scores"])
def test_a_bug_just_above_the_tape_tolerance_is_caught(name, dtype, factor):
    case = _case(name)

    def off(dy, *xs):
        grads = case.vjp(dy, *xs)
        if isinstance(grads, tuple):
            return (grads[0] * factor,) + grads[1:]
        return grads * factor

    inputs = case.build(dtype)
    assert check_function(case.fn, *inputs, vjp=case.vjp).ok
    assert not check_function(case.fn, *inputs, vjp=off).ok
