"""check_derivative: right derivatives pass over the whole domain, wrong ones are caught."""

import json

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb
from manual_backprop._catalogue import defaults
from reference import check_derivative
from reference._checks import derivative as derivative_module

ELEMENTWISE = [n for n in mb.activation_names() if n != "softmax"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_catalogue_derivative_passes(name, dtype):
    report = check_derivative(mb.get_activation(name), dtype=dtype)
    assert report.ok, str(report)
    assert report.n_points > 400


WRONG = [
    ("tanh from z", tf.math.tanh, lambda x: 1.0 - x * x),
    ("sigmoid a", tf.math.sigmoid, lambda x, a: a),
    (
        "gelu without z phi",
        mb.get_activation("gelu").fn,
        lambda x: 0.5 * (1.0 + tf.math.erf(x / np.sqrt(2.0))),
    ),
    ("softplus as its own derivative", tf.math.softplus, tf.math.softplus),
    (
        "leaky alpha dropped",
        mb.get_activation("leaky_relu", alpha=0.1).fn,
        lambda x: tf.cast(x > 0, x.dtype),
    ),
    (
        "elu missing alpha",
        mb.get_activation("elu", alpha=0.5).fn,
        lambda x, a: tf.where(x > 0, tf.ones_like(x), a),
    ),
    (
        "hard_sigmoid slope 1/4",
        mb.get_activation("hard_sigmoid").fn,
        lambda x: tf.cast(tf.abs(x) < 3, x.dtype) / 4.0,
    ),
    (
        "swish off by a tiny bit",
        lambda x: x * tf.sigmoid(x),
        lambda x: (1.0 + 1e-6) * (tf.sigmoid(x) + x * tf.sigmoid(x) * (1 - tf.sigmoid(x))),
    ),
]


@pytest.mark.parametrize("label,fn,derivative", WRONG, ids=[w[0] for w in WRONG])
def test_wrong_derivatives_are_caught(label, fn, derivative):
    report = check_derivative(fn, derivative)
    assert not report.ok and report.failures, str(report)
    worst = report.worst_x
    assert any(f["x"] == worst for f in report.failures)
    assert "FAIL at x =" in str(report)


def test_a_different_subgradient_at_the_kink_passes():
    report = check_derivative(tf.nn.relu, lambda x: tf.cast(x >= 0, x.dtype))  # relu'(0) = 1
    assert report.ok and report.kinks_accepted >= 1 and report.n_kinks >= 1, str(report)
    mae_like = check_derivative(
        tf.abs, lambda x: tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))
    )
    assert mae_like.ok and mae_like.kinks_accepted >= 1


def test_custom_gradient_checked_against_finite_differences():
    @tf.custom_gradient
    def good_softplus(x):
        def grad(g):
            return g * tf.sigmoid(x)

        return tf.math.softplus(x), grad

    @tf.custom_gradient
    def bad_softplus(x):
        def grad(g):
            return g * tf.sigmoid(x) * 0.5

        return tf.math.softplus(x), grad

    assert check_derivative(good_softplus).ok
    report = check_derivative(bad_softplus)
    assert not report.ok and abs(report.manual / report.fd - 0.5) < 1e-6, str(report)


def test_outside_the_domain_is_skipped_not_failed():
    report = check_derivative(tf.math.log, lambda x: 1.0 / x)
    assert report.ok and report.skipped > 0, str(report)


def test_given_points_and_a_json_report():
    report = check_derivative(tf.math.sin, tf.math.cos, points=[0.0, 1.0, 2.0])
    assert report.ok and report.n_points == 3
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["status"] == "pass" and data["n_points"] == 3
    assert data["failures"] == [] and data["worst_x"] in (0.0, 1.0, 2.0)
    bad = json.loads(
        json.dumps(check_derivative(tf.math.sin, tf.math.sin, points=[0.0, 1.0]).to_dict())
    )
    assert bad["ok"] is False and bad["status"] == "fail"
    assert [f["x"] for f in bad["failures"]] == [0.0, 1.0]
    assert bad["failures"][0]["manual"] == 0.0 and abs(bad["failures"][0]["fd"] - 1.0) < 1e-9


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be callable"):
        check_derivative(3.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_derivative(tf.sin, tf.cos, dtype="float16")
    with pytest.raises(ValueError, match="elementwise"):
        check_derivative(lambda x: tf.reduce_sum(x) * tf.ones((2,), x.dtype), tf.ones_like)
    with pytest.raises(ValueError, match="'softmax' is not elementwise") as info:
        check_derivative(mb.get_activation("softmax"))
    assert "reference.check_function(fn, x, vjp=...)" in str(info.value)


# --- only elementwise functions are accepted -------------------------------------------------


def _softmax_diagonal(x):
    s = tf.nn.softmax(x)
    return s * (1.0 - s)


def _softmax_jacobian(x):
    """The whole Jacobian of softmax over the last axis: diag(s) - s s^T, per row."""
    s = tf.nn.softmax(x)
    return tf.linalg.diag(s) - s[..., :, None] * s[..., None, :]


def _refusal(fn, derivative, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        check_derivative(fn, derivative, **kwargs)
    message = str(info.value)
    assert "not elementwise" in message, message
    assert "use reference.check_function(fn, x, vjp=...) for functions that are not" in message
    return message


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_with_its_diagonal_derivative_is_refused(dtype):
    """Softmax given s * (1 - s) used to pass: the diagonal agrees with the tape's row sums."""
    message = _refusal(tf.nn.softmax, _softmax_diagonal, dtype=dtype)
    assert message.startswith("fn 'softmax_v2': perturbing x[") and " changed y[" in message
    assert "(x of shape (4, 5))" in message


def test_softmax_with_its_full_jacobian_is_refused_the_same_way():
    message = _refusal(tf.nn.softmax, _softmax_jacobian, name="softmax")
    assert message == _refusal(tf.nn.softmax, _softmax_diagonal, name="softmax")
    assert message.startswith("fn 'softmax': perturbing x[")


NOT_ELEMENTWISE = [
    ("cumulative sum", lambda x: tf.math.cumsum(x, axis=-1), tf.ones_like, "perturbing x["),
    ("cumulative sum down the batch", lambda x: tf.math.cumsum(x, axis=0), None, "perturbing"),
    ("row sums", lambda x: tf.reduce_sum(x, axis=-1), tf.ones_like, "has shape (4,) for x of"),
    ("the total", tf.reduce_sum, None, "fn(x) has shape () for x of shape (4, 5)"),
    ("x times its mean", lambda x: x * tf.reduce_mean(x), lambda x: 2.0 * x, "perturbing x["),
    (
        "x minus the row max",
        lambda x: x - tf.reduce_max(x, -1, keepdims=True),
        None,
        "perturbing x[",
    ),
    (
        "x minus the row min",
        lambda x: x - tf.reduce_min(x, -1, keepdims=True),
        None,
        "perturbing x[",
    ),
    ("log_softmax", tf.nn.log_softmax, None, "perturbing x["),
    ("catalogue softmax", mb.get_activation("softmax").fn, _softmax_diagonal, "perturbing x["),
]


@pytest.mark.parametrize(
    "label,fn,derivative,observed", NOT_ELEMENTWISE, ids=[c[0] for c in NOT_ELEMENTWISE]
)
def test_functions_that_are_not_elementwise_are_refused(label, fn, derivative, observed):
    assert observed in _refusal(fn, derivative, name=label)
    assert f"fn {label!r}: " in _refusal(fn, derivative, name=label, dtype="float32")


def test_the_largest_other_change_is_named():
    y = np.array([1.0, np.nan, 2.0, 3.0])
    assert derivative_module._change_elsewhere(y, y.copy(), (0,)) is None
    moved = np.array([5.0, np.nan, 2.0, 3.5])  # y[0] is the element moved: not counted
    assert derivative_module._change_elsewhere(y, moved, (0,)) == "y[3] by 0.5"
    assert derivative_module._change_elsewhere(y, moved + [0, 0, 0, np.inf], (0,)) == (
        "y[3] from 3 to inf"
    )
    grid = np.zeros((2, 3), np.float32)
    moved = grid.copy()
    moved[1, 2] = 3.2e-05
    assert derivative_module._change_elsewhere(grid, moved, (0, 1)) == "y[1, 2] by 3.2e-05"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", mb.activation_names())
def test_every_catalogue_record_is_accepted_or_refused_by_what_it_is(name, dtype):
    """Built from its record with its default parameters, every elementwise activation (some
    of them TensorFlow's fused kernels: gelu, selu, softplus, elu) still passes; softmax, the
    one with a vector-Jacobian product, is refused."""
    record = mb.ACTIVATIONS[name]
    params = defaults(record)
    fn, derivative, vjp = record.build(**params)
    if derivative is None:
        _refusal(fn, lambda z, a: vjp(z, a, tf.ones_like(a)), dtype=dtype)
        return
    report = check_derivative(fn, derivative, dtype=dtype, kinks=tuple(record.kinks(**params)))
    assert report.ok, str(report)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "fn",
    [
        tf.nn.relu,
        tf.nn.relu6,
        tf.nn.elu,
        tf.nn.selu,
        tf.nn.gelu,
        tf.nn.silu,
        tf.nn.softsign,
        tf.math.softplus,
        tf.math.tanh,
        tf.math.sigmoid,
        tf.math.erf,
        tf.math.log,
        tf.math.sqrt,
        tf.math.atanh,
        tf.math.abs,
        tf.math.expm1,
        tf.math.log1p,
        tf.math.sign,
    ],
    ids=lambda f: f.__name__,
)
def test_tensorflows_own_elementwise_kernels_are_accepted(fn, dtype):
    """Other outputs of an elementwise kernel stay bit for bit, vectorised or not."""
    derivative_module._require_elementwise(fn, fn.__name__, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_users_cube_passes_exactly_as_before(dtype, monkeypatch):
    report = check_derivative(lambda x: x**3, lambda x: 3.0 * x**2, dtype=dtype)
    assert report.ok and report.name == "<lambda>", str(report)
    assert not check_derivative(lambda x: x**3, lambda x: 2.0 * x**2, dtype=dtype).ok
    # The probe neither changes the verdict nor the points: the same report without it.
    monkeypatch.setattr(derivative_module, "_require_elementwise", lambda *args: None)
    unprobed = check_derivative(lambda x: x**3, lambda x: 3.0 * x**2, dtype=dtype)
    assert unprobed.to_dict() == report.to_dict()
