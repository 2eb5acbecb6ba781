"""Every loss's hand-written gradient against tf.GradientTape over its own batch-mean loss."""

import numpy as np
import pytest
import tensorflow as tf
from _helpers import labels_for, rel_err

import manual_backprop as mb

ULPS = 64
CASES = [
    ("mse", {}),
    ("mae", {}),
    ("huber", {}),
    ("huber", {"delta": 0.25}),
    ("binary_crossentropy", {}),
    ("binary_crossentropy_from_logits", {}),
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy_from_logits", {}),
    ("sparse_categorical_crossentropy_from_logits", {}),
]


def predictions(loss, y, rng, dtype):
    """Predictions that exercise the loss's edges: residuals of 0 and exactly +-delta, the clip
    bounds of the probability losses, logits of +-1000."""
    n, d = (y.shape[0], 3) if loss.labels == "sparse" else y.shape
    if loss.probabilities:
        p = rng.uniform(0, 1, size=(n, d))
        eps = loss.params["epsilon"]
        edges = [0.0, 1.0, eps, 1.0 - eps, 1e-9, 1 - 1e-9, 1e-3, 0.999]
        p.flat[: len(edges)] = edges
        if loss.labels == "categorical":
            p = p / p.sum(axis=1, keepdims=True)
            p[0] = [1.0, 0.0, 0.0]
        return p.astype(dtype)
    if loss.labels == "real":
        p = y + rng.normal(size=y.shape) * 2.0
        delta = loss.params.get("delta", 1.0)
        p.flat[0] = y.flat[0]  # residual 0: mae's kink
        p.flat[1] = y.flat[1] + delta  # |r| = delta: huber's seam
        p.flat[2] = y.flat[2] - delta
        return p.astype(dtype)
    z = rng.normal(size=(n, d)) * 5.0
    z.flat[:4] = [1000.0, -1000.0, 0.0, 500.0]
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_gradient_matches_tape(name, params, dtype, record_error):
    loss = mb.get_loss(name, **params)
    rng = np.random.default_rng(1)
    n, d = 8, 3
    y = labels_for(loss, n, d, rng)
    p = tf.constant(predictions(loss, y, rng, dtype))
    y = tf.constant(y.astype(np.int64 if loss.labels == "sparse" else dtype))
    with tf.GradientTape() as tape:
        tape.watch(p)
        value = loss.fn(y, p)
    exact = tape.gradient(value, p).numpy()
    manual = loss.gradient(y, p)
    assert manual.dtype == p.dtype
    assert value.shape == () and np.isfinite(value.numpy())
    manual = manual.numpy()
    assert np.all(np.isfinite(manual)), f"{name}: gradient not finite"
    err = rel_err(manual, exact)
    record_error(f"{dtype} (loss gradient, per tensor)", err, name)
    assert err <= ULPS * np.finfo(dtype).eps, f"{name}: relative error {err:.3g}"


def test_reductions_follow_keras():
    """The batch-mean conventions, checked against Keras's own losses on ordinary values."""
    rng = np.random.default_rng(2)
    y = rng.normal(size=(5, 3))
    p = rng.normal(size=(5, 3))
    keras = tf.keras.losses
    pairs = [
        ("mse", keras.MeanSquaredError()),
        ("mae", keras.MeanAbsoluteError()),
        ("huber", keras.Huber(delta=1.0)),
    ]
    for name, k in pairs:
        ours = mb.get_loss(name).fn(tf.constant(y), tf.constant(p)).numpy()
        np.testing.assert_allclose(ours, k(y, p).numpy(), rtol=1e-6, err_msg=name)
    yb = rng.integers(0, 2, size=(5, 3)).astype(float)
    pb = rng.uniform(0.05, 0.95, size=(5, 3))
    ours = mb.get_loss("binary_crossentropy").fn(tf.constant(yb), tf.constant(pb)).numpy()
    np.testing.assert_allclose(ours, keras.BinaryCrossentropy()(yb, pb).numpy(), rtol=1e-6)
    yc = np.eye(3)[[0, 1, 2, 1, 0]]
    z = rng.normal(size=(5, 3))
    ours = mb.get_loss("categorical_crossentropy_from_logits").fn(tf.constant(yc), tf.constant(z))
    theirs = keras.CategoricalCrossentropy(from_logits=True)(yc, z)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "name",
    [
        "binary_crossentropy_from_logits",
        "categorical_crossentropy_from_logits",
        "sparse_categorical_crossentropy_from_logits",
    ],
)
def test_logit_losses_finite_at_1000(name, dtype):
    loss = mb.get_loss(name)
    z = tf.constant(np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype))
    y = labels_for(loss, 2, 3, np.random.default_rng(0))
    y = tf.constant(y.astype(np.int64 if loss.labels == "sparse" else dtype))
    assert np.isfinite(loss.fn(y, z).numpy())
    assert np.all(np.isfinite(loss.gradient(y, z).numpy()))


def test_saturated_binary_logit_keeps_its_gradient():
    """sigmoid(40) - 1 rounds to 0; the stable form keeps -sigmoid(-40), as the tape does."""
    loss = mb.get_loss("binary_crossentropy_from_logits")
    z = tf.constant([[40.0]], tf.float64)
    y = tf.constant([[1.0]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss.fn(y, z)
    exact = tape.gradient(value, z).numpy()
    manual = loss.gradient(y, z).numpy()
    assert exact[0, 0] < 0 and abs(manual[0, 0] - exact[0, 0]) <= 1e-15 * abs(exact[0, 0])


def test_registry_errors_name_the_fix():
    with pytest.raises(ValueError, match="Valid names: mse, mae, huber"):
        mb.get_loss("hinge")
    with pytest.raises(ValueError, match="delta must be a positive"):
        mb.get_loss("huber", delta=0)
    with pytest.raises(TypeError, match="takes: delta"):
        mb.get_loss("huber", alpha=1.0)
    with pytest.raises(ValueError, match="labels must be one of"):
        mb.Loss("l", lambda y, p: p, lambda y, p: p, labels="ordinal")


# --- the catalogue records: complete, and each part true of the loss ------------------------

RECORDS = list(mb.LOSSES.values())


def _record_batch(record, loss, rng):
    """A batch (y, p) valid for the loss: predictions in (0, 1) for losses on probabilities."""
    n, d = 6, 3
    y = labels_for(loss, n, d, rng)
    if record.probabilities:
        p = rng.uniform(0.05, 0.95, size=(n, d))
        if record.labels == "categorical":
            p = p / p.sum(axis=1, keepdims=True)
    else:
        p = rng.normal(size=(n, d)) * 3.0
    return tf.constant(y if record.labels == "sparse" else y.astype(float)), tf.constant(p)


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_every_record_is_complete_and_true(record):
    """The independent form computes the same loss, the gradient follows the tape at each kink,
    and every pairing the record names is one the model accepts."""
    rng = np.random.default_rng(3)
    for params in [{}] + [{p: v} for p, spec in record.params.items() for v in spec.examples]:
        loss = mb.get_loss(record.name, **params)
        y, p = _record_batch(record, loss, rng)
        np.testing.assert_allclose(
            record.independent(y, p, **dict(loss.params)).numpy(),
            loss.fn(y, p).numpy(),
            rtol=1e-13,
            err_msg=record.name,
        )
        for y_k, p_k in record.kinks(**dict(loss.params)):
            yk, pk = tf.constant([[y_k]], tf.float64), tf.constant([[p_k]], tf.float64)
            with tf.GradientTape() as tape:
                tape.watch(pk)
                value = loss.fn(yk, pk)
            exact = tape.gradient(value, pk).numpy()[0, 0]
            manual = loss.gradient(yk, pk).numpy()[0, 0]
            # TensorFlow's convention at the kink, to rounding (the same side, the same value)
            assert abs(manual - exact) <= ULPS * np.finfo(float).eps * abs(exact), (
                record.name,
                y_k,
                p_k,
                manual,
                exact,
            )
    for out in set(record.matrix_outputs) | set(record.outputs or ()):
        assert out in mb.ACTIVATIONS, f"{record.name} pairs with unknown activation {out!r}"
        mb.MLP([2, 3], [out], record.name)  # the model accepts the pairing
    if record.fuses is not None:
        activation, logits = record.fuses
        assert mb.LOSSES[logits].fused_gradient is not None and activation in mb.ACTIVATIONS


def test_an_incomplete_record_is_refused():
    good = mb.LOSSES["mse"]
    fields = dict(
        name=good.name,
        build=good.build,
        labels=good.labels,
        kinks=good.kinks,
        independent=good.independent,
        matrix_outputs=good.matrix_outputs,
    )
    mb.LossRecord(**fields)
    for field, bad, match in [
        ("independent", None, "independent must be callable"),
        ("labels", "ordinal", "labels must be one of"),
        ("matrix_outputs", (), "matrix_outputs must be a non-empty"),
    ]:
        with pytest.raises(TypeError, match=match):
            mb.LossRecord(**{**fields, field: bad})
    with pytest.raises(TypeError, match="a loss on probabilities lists the outputs"):
        mb.LossRecord(**fields, probabilities=True)
