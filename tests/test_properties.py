"""The property suite: random models and batches, judged by every witness."""

import numpy as np
import tensorflow as tf
from corpus import MIN_HIDDEN, MIN_N
from hypothesis import given, note
from hypothesis import strategies as st
from mutants import USER_TWINS

import manual_backprop as mb
from reference import MODES, check_gradients
from reference.strategies import activations, cases, loss_pairings


@given(case=cases())
def test_manual_gradients_agree_with_every_witness(case):
    model, X, y = case
    loss = float(model.loss(X, y))
    assert np.isfinite(loss), f"loss not finite: {loss}"
    report = check_gradients(model, X, y)
    note(str(report))
    assert report.ok, str(report)
    assert report.forward is not None and report.forward.ok


@given(case=cases(max_width=10, max_size=16))
def test_directional_mode_agrees(case):
    model, X, y = case
    report = check_gradients(model, X, y, mode="directional")
    assert report.ok, str(report)


@given(
    case=st.sampled_from(USER_TWINS),
    seed=st.integers(0, 2**16),
    hidden=st.integers(MIN_HIDDEN, 7),
    n=st.integers(MIN_N, 10),
    mode=st.sampled_from(MODES),
)
def test_users_right_models_pass(case, seed, hidden, n, mode):
    """Every right twin of the corpus of user-style models (subclasses and wrappers in float32,
    kinks at zero biases, L1 at initialisation, column layout, ...) passes, at any drawn size."""
    model, X, y = case.build(seed, hidden, n)
    report = check_gradients(model, X, y, mode=mode)
    note(str(report))
    assert report.ok, f"{case.id} (seed={seed}, hidden={hidden}, n={n}, {mode}):\n{report}"


# --- each activation and loss on its own, over extreme inputs ----------------------------------

EXTREME = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, width=32),
    st.sampled_from([0.0, 3.0, -3.0, 1e-30, -1e-30, 700.0, -700.0, 1e3, -1e3]),
)


@given(
    act=activations(names=[n for n in mb.activation_names() if n != "softmax"]),
    x=st.lists(EXTREME, min_size=1, max_size=12),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_activation_derivatives_over_extreme_inputs(act, x, dtype):
    from reference import check_derivative

    report = check_derivative(act, points=np.asarray(x, dtype=dtype), dtype=dtype)
    assert report.ok, str(report)
    z = tf.constant(np.asarray(x, dtype=dtype))
    a = act.fn(z)
    d = act.derivative(z, a).numpy()
    assert d.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(d[np.isfinite(a.numpy())])), "NaN where the function is finite"


@given(
    pairing=loss_pairings(),
    n=st.integers(1, 6),
    d=st.integers(2, 4),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 1000.0]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_loss_gradients_over_extreme_inputs(pairing, n, d, scale, seed, dtype):
    out, loss = pairing
    rng = np.random.default_rng(seed)
    z = tf.constant((rng.normal(size=(n, d)) * scale).astype(dtype))
    if loss.labels == "sparse":
        y = tf.constant(rng.integers(0, d, size=n))
    elif loss.labels == "categorical":
        y = tf.constant(np.eye(d, dtype=dtype)[rng.integers(0, d, size=n)])
    elif loss.labels == "binary":
        y = tf.constant(rng.integers(0, 2, size=(n, d)).astype(dtype))
    else:
        y = tf.constant(rng.normal(size=(n, d)).astype(dtype))
    pred = out.fn(z)
    with tf.GradientTape() as tape:
        tape.watch(pred)
        value = loss.fn(y, pred)
    exact = tape.gradient(value, pred).numpy()
    manual = loss.gradient(y, pred).numpy()
    if np.isfinite(value.numpy()):
        assert np.all(np.isfinite(manual)), "NaN gradient where the loss is finite"
    # Rounding in (a - y)/N or (a - y)/(N*D) is relative to a and y, which are O(1), not to their
    # difference: a saturated softmax leaves 1 - p with no correct digits in float32 in either.
    scale_ = max(np.max(np.abs(exact)), 1.0 / (n * d))
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(manual - exact)) <= 64 * eps * scale_, (out, loss)


# --- optimizers ----------------------------------------------------------------------------------


@given(
    kind=st.sampled_from(["sgd", "momentum", "adam"]),
    lr=st.sampled_from([0.5, 0.1, 0.01, 1e-3]),
    momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    beta_1=st.sampled_from([0.5, 0.9]),
    beta_2=st.sampled_from([0.9, 0.999]),
    shape=st.sampled_from([(1,), (3,), (2, 3)]),
    steps=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_optimizer_steps_equal_keras(kind, lr, momentum, beta_1, beta_2, shape, steps, seed):
    rng = np.random.default_rng(seed)
    init = rng.normal(size=shape).astype("float32")
    grads = [tf.constant(rng.normal(size=shape).astype("float32")) for _ in range(steps)]
    ours, theirs = tf.Variable(init), tf.Variable(init)
    keras = tf.keras.optimizers
    if kind == "sgd":
        opt, kopt = mb.SGD(lr), keras.SGD(lr)
    elif kind == "momentum":
        opt, kopt = mb.Momentum(lr, momentum=momentum), keras.SGD(lr, momentum=momentum)
    else:
        opt = mb.Adam(lr, beta_1=beta_1, beta_2=beta_2)
        kopt = keras.Adam(lr, beta_1=beta_1, beta_2=beta_2)
    for g in grads:
        opt.step([ours], [g])
        kopt.apply_gradients([(g, theirs)])
    moved = np.abs(theirs.numpy() - init)
    np.testing.assert_allclose(
        ours.numpy() - init, theirs.numpy() - init, rtol=1e-5, atol=1e-6 * max(moved.max(), 1e-30)
    )
