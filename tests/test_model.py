"""The MLP's hand-written gradients (parameters and input) against tf.GradientTape."""

import ast
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from _helpers import TAPE_RTOL, labels_for, rel_err, tape_gradients

import manual_backprop as mb

DTYPES = ["float64", "float32"]
ALL_ACTIVATIONS = list(mb.activation_names())

# (output activation, loss, loss parameters, output width)
PAIRINGS = [
    (act, loss, params, 3)
    for loss, params in [("mse", {}), ("mae", {}), ("huber", {}), ("huber", {"delta": 0.3})]
    for act in ALL_ACTIVATIONS
] + [
    ("sigmoid", "binary_crossentropy", {}, 1),
    ("sigmoid", "binary_crossentropy", {}, 3),
    ("hard_sigmoid", "binary_crossentropy", {}, 2),
    ("linear", "binary_crossentropy_from_logits", {}, 1),
    ("tanh", "binary_crossentropy_from_logits", {}, 2),
    ("softmax", "categorical_crossentropy", {}, 3),
    ("softmax", "categorical_crossentropy", {}, 2),
    ("sigmoid", "categorical_crossentropy", {}, 3),
    ("linear", "categorical_crossentropy_from_logits", {}, 4),
    ("elu", "categorical_crossentropy_from_logits", {}, 3),
    ("linear", "sparse_categorical_crossentropy_from_logits", {}, 3),
    ("swish", "sparse_categorical_crossentropy_from_logits", {}, 2),
]


def batch(model, n, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.layer_sizes[0])) * scale
    y = labels_for(model.loss_function, n, model.layer_sizes[-1], rng)
    return X, y


def assert_matches_tape(model, X, y, record_error, label):
    grads, dX = tape_gradients(model, X, y)
    manual = model.gradients(X, y)
    manual_dX = model.input_gradient(X, y)
    rtol = TAPE_RTOL[model.dtype.name]
    names = model.param_names + ["dX"]
    for name, m, t in zip(names, [*manual, manual_dX], [*grads, dX]):
        assert m.dtype == model.dtype, f"{name}: {m.dtype}"
        assert tuple(m.shape) == tuple(t.shape), f"{name}: shape {m.shape} vs tape {t.shape}"
        m, t = m.numpy(), t.numpy()
        assert np.all(np.isfinite(m)), f"{label}: {name} not finite"
        err = rel_err(m, t)
        record_error(f"{model.dtype.name} (MLP, per tensor)", err, f"{label} {name}")
        assert err <= rtol, f"{label}: {name} relative error {err:.3g} > {rtol:g}\n{model!r}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_every_hidden_activation(act, dtype, record_error):
    for arch, n, seed in [([3, 5, 4, 2], 6, 0), ([2, 1, 1, 2], 1, 1), ([4, 4, 4, 2], 5, 2)]:
        model = mb.MLP(
            arch, [act, act, "linear"], "mse", dtype=dtype, seed=seed, initializer="normal"
        )
        X, y = batch(model, n, seed, scale=1.5)
        assert_matches_tape(model, X, y, record_error, f"{act} hidden {arch} N={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "out,loss,params,width", PAIRINGS, ids=[f"{o}-{l}{p or ''}-D{w}" for o, l, p, w in PAIRINGS]
)
def test_every_loss_pairing(out, loss, params, width, dtype, record_error):
    for hidden, n, seed in [([5], 7, 3), ([4, 4], 1, 4), ([1], 3, 5)]:
        arch = [3, *hidden, width]
        acts = ["tanh"] * len(hidden) + [out]
        model = mb.MLP(arch, acts, mb.get_loss(loss, **params), dtype=dtype, seed=seed)
        X, y = batch(model, n, seed)
        assert_matches_tape(model, X, y, record_error, f"{out}+{loss} {arch} N={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "out,loss",
    [
        ("sigmoid", "binary_crossentropy"),
        ("softmax", "categorical_crossentropy"),
        ("linear", "binary_crossentropy_from_logits"),
        ("linear", "categorical_crossentropy_from_logits"),
        ("linear", "sparse_categorical_crossentropy_from_logits"),
    ],
)
def test_logits_of_1000_stay_finite(out, loss, dtype, record_error):
    model = mb.MLP([2, 3, 3], ["tanh", out], loss, dtype=dtype, seed=0)
    X, y = batch(model, 4, 0)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([W1, b1, W2 * 0.0, np.array([1000.0, -1000.0, 999.0])])
    assert model.fused == (
        {
            "sigmoid": "sigmoid+binary_crossentropy",
            "softmax": "softmax+categorical_crossentropy",
        }.get(out)
    )
    assert np.isfinite(model.loss(X, y).numpy())
    assert_matches_tape(model, X, y, record_error, f"{out}+{loss} logits +-1000")


def test_relu_network_on_exact_kinks_agrees_with_tape(record_error):
    """Zero inputs and zero biases put every relu exactly at z = 0: relu'(0) = 0 as in TF."""
    model = mb.MLP([3, 4, 4, 2], ["relu", "relu", "linear"], "mse", dtype="float64", seed=0)
    X = np.zeros((3, 3))
    X[1] = [1.0, -1.0, 0.5]
    y = np.ones((3, 2))
    assert_matches_tape(model, X, y, record_error, "relu at kinks")


def test_gradients_are_aligned_and_named():
    model = mb.MLP([3, 5, 2], ["relu", "softmax"], "categorical_crossentropy", seed=0)
    assert model.param_names == ["W1", "b1", "W2", "b2"]
    assert [tuple(p.shape) for p in model.params] == [(3, 5), (5,), (5, 2), (2,)]
    assert all(isinstance(p, tf.Variable) for p in model.params)
    X, y = batch(model, 4, 0)
    loss, grads = model.loss_and_gradients(X, y)
    assert [tuple(g.shape) for g in grads] == [(3, 5), (5,), (5, 2), (2,)]
    assert loss.shape == () and tuple(model.input_gradient(X, y).shape) == (4, 3)
    for a, b in zip(grads, model.gradients(X, y)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_seeded_weights_are_reproducible_and_biases_start_at_zero():
    a = mb.MLP([3, 5, 2], ["relu", "linear"], "mse", seed=7)
    b = mb.MLP([3, 5, 2], ["relu", "linear"], "mse", seed=7)
    c = mb.MLP([3, 5, 2], ["relu", "linear"], "mse", seed=8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    assert not np.any(a.get_weights()[1]) and not np.any(a.get_weights()[3])


@pytest.mark.parametrize(
    "initializer,expected_std",
    [("glorot_uniform", np.sqrt(2 / 600)), ("he_normal", np.sqrt(2 / 400)), ("normal", 1.0)],
)
def test_initializers_have_their_scale(initializer, expected_std):
    W = mb.MLP([400, 200], ["linear"], "mse", seed=0, initializer=initializer).get_weights()[0]
    assert abs(W.std() / expected_std - 1) < 0.02
    assert abs(W.mean()) < 0.02 * expected_std * 10


def test_astype_keeps_the_same_weights():
    m32 = mb.MLP([3, 4, 2], ["gelu", "softmax"], "categorical_crossentropy", seed=3)
    m64 = m32.astype("float64")
    assert m64.dtype == tf.float64 and m64 is not m32
    for a, b in zip(m32.get_weights(), m64.get_weights()):
        assert b.dtype == np.float64
        np.testing.assert_array_equal(a.astype(np.float64), b)
    X, y = batch(m32, 5, 0)
    np.testing.assert_allclose(m32.loss(X, y).numpy(), m64.loss(X, y).numpy(), rtol=1e-5)
    # Changing the copy leaves the original alone.
    m64.params[0].assign_add(tf.ones_like(m64.params[0]))
    np.testing.assert_array_equal(
        m32.get_weights()[0].astype(np.float64), m64.get_weights()[0] - 1.0
    )


def test_user_defined_activation_and_loss():
    cube = mb.Activation("cube", lambda z: z**3 / 3.0, lambda z, a: z * z)
    quartic = mb.Loss(
        "quartic",
        lambda y, p: tf.reduce_mean((p - y) ** 4),
        lambda y, p: 4.0 * (p - y) ** 3 / tf.cast(tf.size(p), p.dtype),
    )
    model = mb.MLP([2, 3, 2], [cube, "linear"], quartic, dtype="float64", seed=0)
    X, y = batch(model, 4, 0)
    grads, dX = tape_gradients(model, X, y)
    for m, t in zip(model.gradients(X, y), grads):
        assert rel_err(m.numpy(), t.numpy()) <= 1e-12
    assert "<Activation 'cube'>" in repr(model)


def test_repr_rebuilds_the_model():
    model = mb.MLP(
        [2, 3, 1],
        [mb.get_activation("leaky_relu", alpha=0.1), "sigmoid"],
        "binary_crossentropy",
        dtype="float64",
        seed=4,
    )
    namespace = {name: getattr(mb, name) for name in mb.__all__}
    rebuilt = eval(repr(model), namespace)
    assert repr(rebuilt) == repr(model)
    for a, b in zip(model.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)


_AUTODIFF = {
    "GradientTape",
    "custom_gradient",
    "jacobian",
    "batch_jacobian",
    "ForwardAccumulator",
    "autodiff",
    "backprop",
    "gradients_impl",
}


def autodiff_uses(source: str):
    """(line, what) for every use of automatic differentiation or of ``reference`` in
    ``source``: attributes and names such as GradientTape, tf.gradients, and imports of them
    (``from tensorflow import GradientTape``, ``import tensorflow.python.eager.backprop``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in _AUTODIFF:
            found.append((node.lineno, node.attr))
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "gradients"
            and isinstance(node.value, ast.Name)
            and node.value.id in ("tf", "tensorflow")
        ):
            found.append((node.lineno, "tf.gradients"))
        elif isinstance(node, ast.Name) and node.id in _AUTODIFF:
            found.append((node.lineno, node.id))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names = [a.name for a in node.names]
            for dotted in modules + names:
                parts = set(dotted.split("."))
                if parts & (_AUTODIFF | {"reference"}) or (
                    isinstance(node, ast.ImportFrom) and dotted == "gradients"
                ):
                    found.append((node.lineno, dotted))
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from tensorflow import GradientTape",
        "import tensorflow as tf\nwith tf.GradientTape() as t: pass",
        "import tensorflow as tf\ntf.gradients(y, x)",
        "from tensorflow import gradients",
        "import tensorflow.python.eager.backprop",
        "from tensorflow.python.ops import gradients_impl",
        "import tensorflow as tf\nacc = tf.autodiff.ForwardAccumulator(x, v)",
        "from tensorflow import custom_gradient as cg",
        "from reference import check_gradients",
        "import reference",
    ],
)
def test_the_autodiff_guard_sees_every_spelling(source):
    assert autodiff_uses(source), source


def test_package_uses_no_automatic_differentiation():
    """manual_backprop is the thing under test: no tape, no tf.gradients, no custom_gradient,
    however imported, and no import of reference."""
    package = pathlib.Path(mb.__file__).parent
    paths = sorted(package.glob("*.py"))
    assert len(paths) >= 7
    for path in paths:
        uses = autodiff_uses(path.read_text())
        assert not uses, f"{path.name}: {uses}"


@pytest.mark.parametrize(
    "out,loss,width",
    [
        ("tanh", "mse", 3),
        ("sigmoid", "binary_crossentropy", 2),
        ("softmax", "categorical_crossentropy", 3),
        ("linear", "sparse_categorical_crossentropy_from_logits", 3),
        ("softmax", "huber", 3),
        ("linear", "binary_crossentropy_from_logits", 1),
    ],
)
def test_batched_loss_equals_one_model_at_a_time(out, loss, width):
    model = mb.MLP([4, 5, 5, width], ["relu", "tanh", out], loss, dtype="float64", seed=0)
    X, y = batch(model, 6, 0)
    rng = np.random.default_rng(1)
    before = model.get_weights()
    for key in [0, 1, 2, 3, 4, 5, "X"]:
        base = X if key == "X" else before[key]
        stack = np.stack([base + 0.01 * rng.normal(size=base.shape) for _ in range(4)])
        got = model.batched_loss(X, y, {key: stack}).numpy()
        want = []
        for value in stack:
            if key == "X":
                want.append(model.loss(value, y).numpy())
            else:
                model.params[key].assign(value)
                want.append(model.loss(X, y).numpy())
                model.params[key].assign(before[key])
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=f"{key}")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected"):
        model.batched_loss(X, y, {0: np.zeros((2, 3, 3))})


def test_weight_scale_multiplies_the_initial_weights_and_shows_in_the_repr():
    a = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", seed=5, dtype="float64")
    b = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", seed=5, dtype="float64", weight_scale=3.0)
    np.testing.assert_allclose(b.get_weights()[0], 3.0 * a.get_weights()[0], rtol=1e-15)
    assert "weight_scale=3.0" in repr(b) and "weight_scale" not in repr(a)
    assert b.astype("float32").weight_scale == 3.0
    with pytest.raises(ValueError, match="weight_scale must be a positive"):
        mb.MLP([3, 1], ["linear"], "mse", weight_scale=0)
