"""The cost guard of a full check, and its progress callback."""

import time

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb
from reference import check_gradients


def _pause():
    time.sleep(0.002)
    return np.float64(0.0)


class SlowModel:
    """A user's model whose loss takes a few milliseconds (no batched_loss), eagerly and
    compiled into a graph alike (the pause is a py_function, which the graph runs too)."""

    def __init__(self, n=400):
        self.w = tf.Variable(np.linspace(-1.0, 1.0, n))
        self.params, self.param_names = [self.w], ["w"]

    def loss(self, X, y):
        pause = tf.py_function(_pause, [], tf.float64)
        return tf.reduce_sum(tf.sin(self.w) * X) + pause

    def gradients(self, X, y):
        return [tf.cos(self.w) * X]


def test_a_full_check_estimated_too_long_is_refused_with_advice():
    model = SlowModel()
    X = np.float64(0.5)
    with pytest.raises(
        ValueError, match=r"full check of this model would take about \d+ s"
    ) as info:
        check_gradients(model, X, None, max_seconds=1.0)
    message = str(info.value)
    assert "mode='directional'" in message and "max_seconds=None" in message
    assert "2,000 loss evaluations" in message  # 400 coordinates x 4 points x 1.25
    assert np.array_equal(model.w.numpy(), np.linspace(-1.0, 1.0, 400))


def test_directional_mode_is_not_refused_and_the_limit_can_be_lifted():
    model = SlowModel(n=40)
    X = np.float64(0.5)
    assert check_gradients(model, X, None, mode="directional", max_seconds=1e-6).ok
    assert check_gradients(model, X, None, max_seconds=None).ok


def test_progress_counts_every_evaluation_up_to_done():
    model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    calls = []
    report = check_gradients(model, X, y, progress=lambda done, total: calls.append((done, total)))
    assert report.ok and calls
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and all(d <= t for d, t in calls)
    assert calls[-1][0] == calls[-1][1] >= 4 * sum(p.numpy().size for p in model.params)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_seconds": 0}, ValueError, "max_seconds"),
        ({"max_seconds": "60"}, TypeError, "max_seconds"),
        ({"progress": 3}, TypeError, "progress must be callable"),
    ],
)
def test_bad_cost_arguments_are_refused(kwargs, error, message):
    model = mb.MLP([3, 2], ["linear"], "mse", dtype="float64", seed=0)
    with pytest.raises(error, match=message):
        check_gradients(model, np.ones((2, 3)), np.ones((2, 2)), **kwargs)
