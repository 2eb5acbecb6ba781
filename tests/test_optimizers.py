"""The hand-written optimizers take the same steps as tf.keras.optimizers on the same gradients."""

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb


def run_steps(make_ours, make_keras, dtype, steps=5):
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(4,)).astype(dtype)]
    grads = [
        [tf.constant(rng.normal(size=v.shape).astype(dtype)) for v in init] for _ in range(steps)
    ]
    ours = [tf.Variable(v) for v in init]
    theirs = [tf.Variable(v) for v in init]
    opt, kopt = make_ours(), make_keras()
    for g in grads:
        opt.step(ours, g)
        kopt.apply_gradients(zip(g, theirs))
    return [v.numpy() for v in ours], [v.numpy() for v in theirs], init


def cases(lr, momentum, beta_1, beta_2, epsilon):
    keras = tf.keras.optimizers
    return [
        ("sgd", lambda: mb.SGD(lr), lambda: keras.SGD(lr)),
        (
            "momentum",
            lambda: mb.Momentum(lr, momentum=momentum),
            lambda: keras.SGD(lr, momentum=momentum),
        ),
        (
            "adam",
            lambda: mb.Adam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon),
            lambda: keras.Adam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon),
        ),
    ]


# Keras keeps its hyperparameters in float32 variables: in float64 its beta_2 = 0.999 is
# 0.99900001287, which moves Adam's first step by 6e-6 relative. So float64 is compared with
# hyperparameters that float32 holds exactly (powers of two), where the two must agree to
# rounding; float32 with the everyday values.
CASES = [("float32", 1e-6, *c) for c in cases(0.01, 0.9, 0.9, 0.999, 1e-7)] + [
    ("float64", 1e-12, *c) for c in cases(2.0**-6, 0.875, 0.875, 1 - 2.0**-10, 2.0**-20)
]


@pytest.mark.parametrize("dtype,rtol,name,ours,keras", CASES, ids=[f"{c[2]}-{c[0]}" for c in CASES])
def test_steps_equal_keras(name, ours, keras, dtype, rtol):
    mine, theirs, init = run_steps(ours, keras, dtype)
    for m, t, v0 in zip(mine, theirs, init):
        assert m.dtype == np.dtype(dtype)
        # Compare the displacement, not the position, so the check cannot pass by not moving.
        np.testing.assert_allclose(m - v0, t - v0, rtol=rtol, atol=rtol * np.abs(t - v0).max())
        assert np.abs(m - v0).max() > 1e-3


def test_step_rejects_misaligned_gradients():
    v = [tf.Variable(np.zeros((2, 2)))]
    with pytest.raises(ValueError, match="aligned"):
        mb.SGD(0.1).step(v, [])
    with pytest.raises(ValueError, match="shape"):
        mb.SGD(0.1).step(v, [tf.zeros((3,), tf.float64)])
    with pytest.raises(ValueError, match="learning_rate"):
        mb.Adam(-1.0)
    with pytest.raises(ValueError, match="momentum"):
        mb.Momentum(0.1, momentum=1.5)


@pytest.mark.parametrize(
    "opt", [mb.SGD(0.5), mb.Momentum(0.1), mb.Adam(0.05)], ids=["sgd", "momentum", "adam"]
)
def test_fit_lowers_the_loss(opt):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    model = mb.MLP([3, 1], ["linear"], "mse", dtype="float64", seed=0)
    history = model.fit(X, y, optimizer=opt, epochs=60, batch_size=8)
    assert len(history) == 60 and all(np.isfinite(history))
    assert history[-1] < 0.05 * history[0]


def test_fit_full_batch_equals_manual_steps():
    """fit with batch_size=None is exactly repeated SGD steps on the hand-written gradients."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    a = mb.MLP([2, 3, 1], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    b = a.astype("float64")
    history = a.fit(X, y, optimizer=mb.SGD(0.1), epochs=3)
    losses = []
    for _ in range(3):
        losses.append(float(b.loss(X, y)))
        for p, g in zip(b.params, b.gradients(X, y)):
            p.assign_sub(0.1 * g)
    np.testing.assert_allclose(history, losses, rtol=1e-12)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12)
