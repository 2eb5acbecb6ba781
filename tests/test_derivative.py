"""check_derivative: right derivatives pass over the whole domain, wrong ones are caught."""

import json

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb
from reference import check_derivative

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
    with pytest.raises(ValueError, match="'softmax' is not elementwise"):
        check_derivative(mb.get_activation("softmax"))
