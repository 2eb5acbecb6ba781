"""Every activation's hand-written derivative against tf.GradientTape over its own forward."""

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb

# Elementwise tolerance: a few ulps of the larger of the value and 1 (derivatives are O(1)).
ULPS = 16
PARAMS = {"leaky_relu": [{}, {"alpha": 0.3}, {"alpha": 0.01}], "elu": [{}, {"alpha": 0.5}]}
ELEMENTWISE = [n for n in mb.activation_names() if n != "softmax"]
CASES = [(n, p) for n in ELEMENTWISE for p in PARAMS.get(n, [{}])]


def probe_points(dtype):
    """Zero, tiny magnitudes both sides of it, ordinary values, the kinks at 0 and +-3 with their
    float neighbours, and large magnitudes up to 1e3 (and 1e30 where the dtype has it)."""
    np_dtype = np.dtype(dtype)
    base = [
        0.0,
        1e-30,
        1e-8,
        1e-4,
        0.1,
        0.5,
        0.75,
        1.0,
        2.0,
        2.5,
        3.0,
        5.0,
        10.0,
        20.0,
        40.0,
        88.0,
        100.0,
        700.0,
        1000.0,
        1e6,
        1e30,
    ]
    pts = np.array(base + [-b for b in base], dtype=np_dtype)
    kinks = np.array([0.0, 3.0, -3.0], dtype=np_dtype)
    near = np.concatenate(
        [
            np.nextafter(kinks, np.array(np.inf, np_dtype)),
            np.nextafter(kinks, np.array(-np.inf, np_dtype)),
        ]
    )
    grid = np.linspace(-6, 6, 241).astype(np_dtype)
    return np.concatenate([pts, near, grid])


def tape_derivative(fn, z):
    with tf.GradientTape() as tape:
        tape.watch(z)
        a = fn(z)
    return a, tape.gradient(a, z)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_derivative_matches_tape(name, params, dtype, record_error):
    act = mb.get_activation(name, **params)
    z = tf.constant(probe_points(dtype))
    a, exact = tape_derivative(act.fn, z)
    manual = act.derivative(z, a)
    assert manual.dtype == z.dtype, f"{name} derivative returned {manual.dtype} for {z.dtype} input"
    a, exact, manual = a.numpy(), exact.numpy(), manual.numpy()
    finite = np.isfinite(a)
    assert np.all(np.isfinite(manual[finite])), (
        f"{name}: derivative not finite at z={z.numpy()[finite & ~np.isfinite(manual)]}"
    )
    # The tape of a finite forward can still be NaN (0 * inf where an intermediate overflows,
    # as gelu_tanh's z^3 at 1e30 in float32); compare wherever the tape is a number.
    comparable = finite & np.isfinite(exact)
    assert comparable.sum() >= 0.9 * finite.sum(), f"{name}: the tape is not finite on most points"
    eps = np.finfo(dtype).eps
    err = np.where(comparable, np.abs(manual - exact) / np.maximum(1.0, np.abs(exact)), 0.0)
    worst = int(np.argmax(err))
    record_error(
        f"{dtype} (activation derivative, elementwise)",
        err[worst],
        f"{name} at z={z.numpy()[worst]!r}",
    )
    assert err[worst] <= ULPS * eps, (
        f"{name}{params}: at z={z.numpy()[worst]!r} manual {manual[worst]!r} vs tape "
        f"{exact[worst]!r} ({err[worst] / eps:.1f} ulps)"
    )


def test_tf_conventions_at_kinks():
    z = tf.constant([0.0, 3.0, -3.0], tf.float64)
    d = {
        n: mb.get_activation(n, **p).derivative(z, mb.get_activation(n, **p).fn(z)).numpy()
        for n, p in [
            ("relu", {}),
            ("leaky_relu", {"alpha": 0.3}),
            ("elu", {"alpha": 0.5}),
            ("selu", {}),
            ("hard_sigmoid", {}),
        ]
    }
    assert d["relu"][0] == 0.0
    assert d["leaky_relu"][0] == 0.3  # exactly, not leaky_relu's float32-rounded alpha
    assert d["elu"][0] == 0.5
    assert d["selu"][0] == mb.activations.SELU_LAMBDA
    assert list(d["hard_sigmoid"][1:]) == [0.0, 0.0]
    assert d["hard_sigmoid"][0] == 1.0 / 6.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_vjp_matches_tape(dtype):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4)) * np.array([[1.0], [10.0], [100.0], [1000.0], [1e-3], [0.0]])
    z[5] = [1000.0, -1000.0, 0.0, 1000.0]
    z = tf.constant(z.astype(dtype))
    g = tf.constant(rng.normal(size=(6, 4)).astype(dtype))
    act = mb.get_activation("softmax")
    with tf.GradientTape() as tape:
        tape.watch(z)
        a = act.fn(z)
        s = tf.reduce_sum(a * g)
    exact = tape.gradient(s, z).numpy()
    manual = act.backward(z, a, g).numpy()
    assert np.all(np.isfinite(manual))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(manual, exact, rtol=ULPS * eps, atol=ULPS * eps)


def test_user_defined_activation_backward():
    cube = mb.Activation("cube", lambda z: z**3, lambda z, a: 3.0 * z**2)
    z = tf.constant([-2.0, 0.0, 1.5], tf.float64)
    g = tf.constant([1.0, 2.0, 3.0], tf.float64)
    np.testing.assert_array_equal(cube.backward(z, cube(z), g).numpy(), [12.0, 0.0, 20.25])
    assert cube.elementwise and not mb.get_activation("softmax").elementwise


def test_registry_errors_name_the_fix():
    with pytest.raises(ValueError, match="Valid names: linear, sigmoid"):
        mb.get_activation("relu7")
    with pytest.raises(TypeError, match="takes: alpha"):
        mb.get_activation("leaky_relu", slope=0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        mb.get_activation("elu", alpha=float("nan"))
    with pytest.raises(TypeError, match="derivative"):
        mb.Activation("bad", tf.nn.relu, None)
    assert mb.get_activation("silu").name == "swish"


# --- the catalogue records: complete, and each part true of the activation ------------------

RECORDS = list(mb.ACTIVATIONS.values())


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_every_record_is_complete_and_true(record):
    """Each record's parts agree with each other: the kinks and TensorFlow's convention there,
    the independent primitive form, the output range, the parameters' examples."""
    for params in [{}] + [{p: v} for p, spec in record.params.items() for v in spec.examples]:
        act = mb.get_activation(record.name, **params)
        merged = dict(act.params)
        z = tf.constant(
            np.linspace(-40.0, 40.0, 801).reshape(-1, 3)[:-1]
            if record.name == "softmax"
            else np.linspace(-40.0, 40.0, 801)
        )
        a = act.fn(z).numpy()
        independent = record.independent(z, **merged).numpy()
        # Two float64 forms agree to rounding on the function's own scale.
        np.testing.assert_allclose(
            independent,
            a,
            rtol=1e-13,
            atol=1e-13 * np.max(np.abs(a)),
            err_msg=f"{record.name}{params}: independent form",
        )
        low, high = record.output_range
        assert np.all((a >= low) & (a <= high)), f"{record.name}: outside {record.output_range}"
        for kink, value in record.kinks(**merged).items():
            zk = tf.constant([kink], tf.float64)
            _, exact = tape_derivative(act.fn, zk)
            manual = act.derivative(zk, act.fn(zk)).numpy()[0]
            assert manual == value == exact.numpy()[0], (
                f"{record.name}{params} at {kink}: derivative {manual}, record {value}, "
                f"tape {exact}"
            )


def test_an_incomplete_record_is_refused():
    good = mb.ACTIVATIONS["relu"]
    fields = dict(
        name=good.name,
        build=good.build,
        output_range=good.output_range,
        kinks=good.kinks,
        independent=good.independent,
    )
    mb.ActivationRecord(**fields)
    for field, bad, match in [
        ("independent", None, "independent must be callable"),
        ("kinks", {0.0: 0.0}, "kinks must be callable"),
        ("output_range", (1.0, 0.0), "output_range"),
        ("name", "ReLU", "lower-case"),
    ]:
        with pytest.raises(TypeError, match=match):
            mb.ActivationRecord(**{**fields, field: bad})
    with pytest.raises(TypeError, match="params must map names to Param"):
        mb.ActivationRecord(**fields, params={"alpha": 0.1})


def test_records_drive_the_registry():
    assert mb.activation_names() == tuple(mb.ACTIVATIONS)
    assert mb.get_activation("identity").name == "linear"
    assert mb.get_activation("leaky_relu").params == {"alpha": 0.2}
    with pytest.raises(TypeError):
        mb.ACTIVATIONS["cube"] = mb.ACTIVATIONS["relu"]  # read-only
