"""The fast paths of finite differences: a user's TF loss compiled into a batched graph, and the
catalogue MLP's coordinate_losses. Neither may change a verdict: each is used only once shown to
compute the model's own loss, and a wrong one never becomes the witness that decides."""

import os

import numpy as np
import pytest
import tensorflow as tf

import manual_backprop as mb
from reference import check_gradients
from reference._core.compiled import cached


class Tutorial:
    """A two-hidden-layer tanh / softmax network the way a tutorial writes it (no batched_loss):
    params as tf.Variables, the backward pass by hand."""

    def __init__(self, sizes=(8, 16, 16, 3), seed=0, dtype=np.float64, bug=None):
        rng = np.random.default_rng(seed)
        self.params, self.param_names = [], []
        for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
            self.params += [
                tf.Variable((rng.normal(size=(a, b)) / np.sqrt(a)).astype(dtype)),
                tf.Variable((0.1 * rng.normal(size=b)).astype(dtype)),
            ]
            self.param_names += [f"W{l}", f"b{l}"]
        self.bug = bug

    def _forward(self, X):
        a = tf.convert_to_tensor(X, self.params[0].dtype)
        acts = [a]
        for i in range(0, len(self.params) - 2, 2):
            a = tf.tanh(a @ self.params[i] + self.params[i + 1])
            acts.append(a)
        return a @ self.params[-2] + self.params[-1], acts

    def loss(self, X, y):
        z, _ = self._forward(X)
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, z))

    def gradients(self, X, y):
        z, acts = self._forward(X)
        n = X.shape[0] if self.bug != "no 1/N" else 1.0
        d = (tf.nn.softmax(z) - y) / n
        grads = []
        for i in range(len(self.params) - 2, -1, -2):
            grads = [tf.transpose(acts[i // 2]) @ d, tf.reduce_sum(d, 0)] + grads
            if i:
                da = d @ tf.transpose(self.params[i])
                d = (
                    da * (1 - acts[i // 2] ** 2)
                    if self.bug != "sigmoid derivative"
                    else (da * acts[i // 2] * (1 - acts[i // 2]))
                )
        if self.bug == "W2 off by 1e-6":
            grads[2] = grads[2] * (1 + 1e-6)
        return grads


def batch(n=32, d=8, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.eye(classes)[rng.integers(0, classes, n)]


def statuses(report):
    return [(e.name, e.status) for e in report.entries]


def eager(model, X, y, **kwargs):
    """The check with the compiled path switched off (what every check did before it)."""
    import reference._checks.gradients as g

    original = g._compile
    g._compile = lambda *args: None
    try:
        return check_gradients(model, X, y, **kwargs)
    finally:
        g._compile = original


def test_a_tutorial_model_is_compiled_and_judged_as_eagerly():
    X, y = batch()
    model = Tutorial()
    before = [p.numpy().copy() for p in model.params]
    report = check_gradients(model, X, y)
    assert report.ok, str(report)
    assert cached(model), "a model of 467 parameters is worth compiling"
    assert not any("eagerly" in n for n in report.notes), report.notes
    assert all(np.array_equal(p.numpy(), b) for p, b in zip(model.params, before))
    slow = eager(model, X, y)
    assert slow.ok and statuses(slow) == statuses(report)


SMALL = (8, 4, 4, 3)  # 71 parameters: compiled only where a test says so (``compile_always``)


@pytest.fixture
def compile_always(monkeypatch):
    """The compiled path for a model of any size (small models keep the eager twin cheap)."""
    import reference._checks.gradients as g

    monkeypatch.setattr(g, "worth_compiling", lambda *args: True)


@pytest.mark.parametrize("bug", ["no 1/N", "sigmoid derivative", "W2 off by 1e-6"])
def test_planted_bugs_are_caught_through_the_compiled_path(bug, compile_always):
    X, y = batch(n=8)
    model = Tutorial(sizes=SMALL, bug=bug)
    report = check_gradients(model, X, y)
    assert cached(model)
    assert not report.ok, str(report)
    assert statuses(report) == statuses(eager(model, X, y))


def test_later_checks_reuse_the_compiled_loss_and_new_batches_compile_anew():
    model = Tutorial()
    X, y = batch()
    check_gradients(model, X, y)
    first = cached(model)[0][3]
    check_gradients(model, X, y)
    assert cached(model)[0][3] is first and len(cached(model)) == 1
    X2, y2 = batch(seed=5)
    assert check_gradients(model, X2, y2).ok
    assert len(cached(model)) == 2


class Scaled(Tutorial):
    """A loss scaled by a Python number the graph bakes in when traced; the user changes it
    between checks and forgets to change the backward pass."""

    scale = 1.0

    def loss(self, X, y):
        return self.scale * super().loss(X, y)


def test_a_graph_traced_from_stale_python_state_is_caught_by_the_spot_check(compile_always):
    X, y = batch(n=8)
    model = Scaled(sizes=SMALL)
    assert check_gradients(model, X, y).ok and cached(model)
    model.scale = 2.0  # the loss doubles; gradients() still returns the old ones
    report = check_gradients(model, X, y)
    assert not report.ok, str(report)
    assert any("compiled into a graph disagrees" in n for n in report.notes), report.notes
    assert all(e.status.name == "FAIL" for e in report.entries)


class Branchy(Tutorial):
    """Python control flow on a tensor's value: it runs eagerly only."""

    def loss(self, X, y):
        value = super().loss(X, y)
        if value > 100.0:  # a Python bool of a tensor: no graph can trace this
            return value * 0.0
        return value


class Gathered(Tutorial):
    """A parameter read by a gather from its handle (an embedding lookup), not by value."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ids = np.arange(8)

    def loss(self, X, y):
        W1 = tf.gather(self.params[0], self.ids)  # ResourceGather on the variable itself
        z = tf.tanh(tf.convert_to_tensor(X) @ W1 + self.params[1])
        z = tf.tanh(z @ self.params[2] + self.params[3])
        z = z @ self.params[4] + self.params[5]
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, z))


@pytest.mark.parametrize(
    "cls, reason",
    [(Branchy, "tracing it raised"), (Gathered, "through ResourceGather")],
)
def test_a_loss_that_cannot_be_compiled_runs_eagerly_with_a_note(cls, reason):
    X, y = batch(n=8)  # small: every finite difference runs the loss eagerly
    report = check_gradients(cls(sizes=(8, 4, 4, 3)), X, y)
    assert report.ok, str(report)
    note = [n for n in report.notes if "could not be compiled" in n]
    assert note and reason in note[0], report.notes
    assert not check_gradients(cls(sizes=(8, 4, 4, 3), bug="no 1/N"), X, y).ok


class Decorated(Tutorial):
    """The loss decorated with tf.function, as users do for speed."""

    @tf.function
    def loss(self, X, y):
        return Tutorial.loss(self, X, y)


def test_a_tf_function_loss_is_compiled_from_its_python_function():
    X, y = batch()
    model = Decorated()
    report = check_gradients(model, X, y)
    assert report.ok and cached(model), report.notes
    assert not check_gradients(Decorated(bug="sigmoid derivative"), X, y).ok


class WithInput(Tutorial):
    def input_gradient(self, X, y):
        z, acts = self._forward(X)
        d = (tf.nn.softmax(z) - y) / X.shape[0]
        for i in range(len(self.params) - 2, -1, -2):
            d = d @ tf.transpose(self.params[i])
            if i:
                d = d * (1 - acts[i // 2] ** 2)
        return d


class ConstantX(WithInput):
    """tf.constant(X): fine eagerly, impossible with X a graph input."""

    def _forward(self, X):
        return Tutorial._forward(self, tf.constant(X))


@pytest.mark.parametrize("cls", [WithInput, ConstantX])
def test_dl_dx_through_the_graph_or_eagerly_when_x_cannot_be_an_input(cls):
    X, y = batch()
    model = cls()
    report = check_gradients(model, X, y)
    assert report.ok and cached(model), str(report)
    assert [e.name for e in report.entries][-1] == "dL/dX"
    assert cached(model)[0][3].has_input == (cls is WithInput)


def test_a_float32_model_without_a_twin_is_compiled_in_float32():
    X, y = batch()
    report = check_gradients(Tutorial(dtype=np.float32), X.astype(np.float32), y)
    assert report.ok and report.fd_dtype == "float32", str(report)
    assert not check_gradients(Tutorial(dtype=np.float32, bug="no 1/N"), X.astype(np.float32), y).ok


def test_compiling_is_worth_it_only_when_the_evaluations_it_replaces_take_longer():
    """The rule, on the seconds of one eager loss call (set here: a timing would make the test
    depend on the machine's load): 12 parameters at 1 ms a call are 60 evaluations, 0.06 s,
    less than a compilation; 467 parameters are 2,335 evaluations, 2.3 s."""
    from reference._checks.cost import COMPILE_WORTH_SECONDS, worth_compiling
    from reference._core.adapter import Adapter

    X, y = batch(n=4, d=2, classes=2)
    small = Adapter(Tutorial(sizes=(2, 2, 2)), X, y)
    small.loss_seconds = 1e-3
    assert not worth_compiling(small, small.keys, True, 3)
    X, y = batch()
    large = Adapter(Tutorial(), X, y)
    large.loss_seconds = 1e-3
    assert worth_compiling(large, large.keys, True, 3)
    large.loss_seconds = COMPILE_WORTH_SECONDS / 1e4  # 2,335 evaluations take 0.06 s
    assert not worth_compiling(large, large.keys, True, 3)


# --- the catalogue's coordinate_losses -----------------------------------------------------------

PAIRINGS = [
    ([8, 16, 16, 3], ["tanh", "tanh", "softmax"], "categorical_crossentropy"),
    ([5, 7, 4, 2], ["relu", "softmax", "sigmoid"], "mse"),
    ([5, 6, 1], ["elu", "linear"], "huber"),
    ([4, 3, 3], ["sigmoid", "softmax"], "mae"),
    ([3, 4, 2], ["leaky_relu", "sigmoid"], "binary_crossentropy"),
    ([3, 5, 1], ["swish", "linear"], "mse"),
]


@pytest.mark.parametrize("sizes, acts, loss", PAIRINGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_coordinate_losses_equal_batched_loss(sizes, acts, loss, dtype):
    model = mb.MLP(sizes, acts, loss, dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, sizes[0]))
    y = (
        np.eye(sizes[-1])[rng.integers(0, sizes[-1], 9)]
        if model.loss_function.labels == "categorical"
        else rng.uniform(size=(9, sizes[-1]))
    )
    moves, dense = {}, {}
    for k, p in enumerate(model.params):
        size = int(np.prod(p.shape))
        idx = np.concatenate([np.arange(size), rng.integers(0, size, 5)])
        d = rng.normal(size=idx.size) * 0.1
        moves[k] = (idx, d)
        stack = np.tile(p.numpy().reshape(-1).astype(np.float64), (idx.size, 1))
        stack[np.arange(idx.size), idx] += d
        dense[k] = np.asarray(model.batched_loss(X, y, {k: stack.reshape((-1,) + tuple(p.shape))}))
    got = model.coordinate_losses(X, y, moves)
    tol = 64 * np.finfo(dtype).eps
    for k in moves:
        assert np.allclose(got[k], dense[k], rtol=tol, atol=tol), model.param_names[k]


def test_coordinate_losses_refuses_bad_moves():
    model = mb.MLP([3, 2, 1], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    X, y = np.zeros((2, 3)), np.zeros((2, 1))
    with pytest.raises(ValueError, match="out of range"):
        model.coordinate_losses(X, y, {4: ([0], [0.1])})
    with pytest.raises(ValueError, match="as many deltas"):
        model.coordinate_losses(X, y, {0: ([0, 6], [0.1, 0.1])})
    with pytest.raises(ValueError, match="parameter indices"):
        model.coordinate_losses(X, y, {"X": ([0], [0.1])})


class WrongCoordinates(mb.MLP):
    """coordinate_losses off for the last column of W2 (a rank-1 update on the wrong row)."""

    def coordinate_losses(self, X, y, moves):
        out = super().coordinate_losses(X, y, moves)
        if 2 in out:
            out[2] = out[2] * (1 + 1e-3)
        return out


def test_a_wrong_coordinate_losses_is_caught_by_its_spot_check():
    model = WrongCoordinates(
        [4, 5, 3], ["tanh", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
    )
    X, y = batch(n=6, d=4)
    report = check_gradients(model, X, y)
    assert report.ok, str(report)
    assert any("coordinate_losses disagrees" in n and "W2" in n for n in report.notes)


class Agreeing(mb.MLP):
    """A wrong backward pass (W2's gradient 1% off) and a coordinate_losses that agrees with it:
    the losses it returns are the first-order ones the wrong gradient predicts."""

    def gradients(self, X, y):
        grads = super().gradients(X, y)
        grads[2] = grads[2] * 1.01
        return grads

    def coordinate_losses(self, X, y, moves):
        out = super().coordinate_losses(X, y, moves)
        if 2 in out:
            idx, delta = moves[2]
            g = self.gradients(X, y)[2].numpy().reshape(-1)
            true = super().gradients(X, y)[2].numpy().reshape(-1)
            out[2] = out[2] + (g[idx] - true[idx]) * np.asarray(delta)
        return out


def test_a_coordinate_losses_agreeing_with_a_wrong_gradient_cannot_pass_it(monkeypatch):
    """Even with its spot check defeated, finite differences re-measure through batched_loss
    every line where the manual gradient and the tape disagree."""
    import reference._checks.gradients as g

    monkeypatch.setattr(g, "coordinate_problem", lambda *args: None)
    model = Agreeing(
        [4, 5, 3], ["tanh", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
    )
    X, y = batch(n=6, d=4)
    report = check_gradients(model, X, y)
    assert not report.ok, str(report)
    assert [e.name for e in report.failing] == ["W2"]


def test_the_cache_of_compiled_losses_does_not_keep_a_model_alive():
    import gc
    import weakref

    X, y = batch()
    model = Tutorial()
    assert check_gradients(model, X, y).ok and cached(model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


class Tokens:
    """Token ids in, an embedding matrix as the only parameter (a one-hot product)."""

    def __init__(self, bug=False):
        self.E = tf.Variable(np.random.default_rng(0).normal(size=(10, 3)))
        self.params, self.param_names, self.bug = [self.E], ["E"], bug

    def loss(self, X, y):
        logits = tf.one_hot(X, 10, dtype=tf.float64) @ self.E
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )

    def gradients(self, X, y):
        oh = tf.one_hot(X, 10, dtype=tf.float64)
        d = (tf.nn.softmax(oh @ self.E) - tf.one_hot(y, 3, dtype=tf.float64)) / len(X)
        return [tf.transpose(oh) @ d * (2.0 if self.bug else 1.0)]

    def input_gradient(self, X, y):
        return np.zeros(np.shape(X))


def test_integer_inputs_are_passed_as_they_are_and_have_no_input_gradient():
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 10, 32), rng.integers(0, 3, 32)
    report = check_gradients(Tokens(), X, y)
    assert report.ok and [e.name for e in report.entries] == ["E"], str(report)
    assert not check_gradients(Tokens(bug=True), X, y).ok
    with pytest.raises(ValueError, match="include_input=True needs a float X"):
        check_gradients(Tokens(), X, y, include_input=True)


class NestedFunction(tf.Module):
    """Layers as a tf.function, as the tf.Module tutorials write them."""

    def __init__(self, bug=False):
        super().__init__()
        rng = np.random.default_rng(0)
        self.W1 = tf.Variable(rng.normal(0, 0.35, (8, 64)))
        self.W2 = tf.Variable(rng.normal(0, 0.25, (64, 3)))
        self.params, self.param_names, self.bug = [self.W1, self.W2], ["W1", "W2"], bug
        self.forward = tf.function(lambda X: tf.tanh(X @ self.W1) @ self.W2)

    def loss(self, X, y):
        logits = self.forward(tf.convert_to_tensor(X))
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )

    def gradients(self, X, y):
        h = tf.tanh(X @ self.W1)
        d = (tf.nn.softmax(h @ self.W2) - tf.one_hot(y, 3, dtype=tf.float64)) / len(X)
        dh = d @ tf.transpose(self.W2) * (1 - h**2 if not self.bug else 1 - h)
        return [tf.transpose(X) @ dh, tf.transpose(h) @ d]


def test_a_loss_calling_a_tf_function_is_compiled_with_it_inlined():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(32, 8)), rng.integers(0, 3, 32)
    model = NestedFunction()
    report = check_gradients(model, X, y)
    assert report.ok and cached(model), report.notes
    assert not any("eagerly" in n for n in report.notes), report.notes
    assert not check_gradients(NestedFunction(bug=True), X, y).ok


def test_dl_dx_differenced_eagerly_is_said_so():
    X, y = batch()
    report = check_gradients(ConstantX(), X, y)
    assert report.ok, str(report)
    assert any("evaluated dL/dX eagerly" in n for n in report.notes), report.notes


def test_a_loss_that_cannot_be_compiled_is_not_traced_again():
    X, y = batch()
    model = Branchy()
    first = check_gradients(model, X, y)
    assert isinstance(cached(model)[0][3], str)
    second = check_gradients(model, X, y)
    assert first.notes == second.notes and second.ok
    assert not any(n.endswith("fu)") for n in first.notes)


def test_a_keras_variable_is_refused_with_the_way_to_the_tf_variable():
    keras = pytest.importorskip("keras")
    layer = keras.layers.Dense(2)
    layer.build((None, 3))

    class KerasParams:
        params = [layer.kernel]

        def loss(self, X, y):
            return tf.reduce_sum(X @ self.params[0])

        def gradients(self, X, y):
            return [tf.zeros((3, 2))]

    with pytest.raises(TypeError, match=r"Keras 3 variable.*layer\.kernel\.value"):
        check_gradients(KerasParams(), np.zeros((2, 3), np.float32), None)


# --- a property: the compiled path judges as the eager one does ----------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class Drawn(Tutorial):
    """Tutorial's network with a drawn hidden activation (and its derivative from its output)."""

    ACTS = {
        "tanh": (tf.tanh, lambda a: 1 - a**2),
        "sigmoid": (tf.sigmoid, lambda a: a * (1 - a)),
        "relu": (tf.nn.relu, lambda a: tf.cast(a > 0, a.dtype)),
    }

    def __init__(self, sizes, act, seed, dtype, bug):
        super().__init__(sizes=sizes, seed=seed, dtype=dtype, bug=None)
        self.fn, self.dfn = self.ACTS[act]
        self.drawn_bug = bug

    def _forward(self, X):
        a = tf.convert_to_tensor(X, self.params[0].dtype)
        acts = [a]
        for i in range(0, len(self.params) - 2, 2):
            a = self.fn(a @ self.params[i] + self.params[i + 1])
            acts.append(a)
        return a @ self.params[-2] + self.params[-1], acts

    def gradients(self, X, y):
        z, acts = self._forward(X)
        d = (tf.nn.softmax(z) - y) / X.shape[0]
        grads = []
        for i in range(len(self.params) - 2, -1, -2):
            grads = [tf.transpose(acts[i // 2]) @ d, tf.reduce_sum(d, 0)] + grads
            if i:
                d = (d @ tf.transpose(self.params[i])) * self.dfn(acts[i // 2])
        if self.drawn_bug is not None:
            k, factor = self.drawn_bug
            grads[k % len(grads)] = grads[k % len(grads)] * factor
        return grads


@settings(max_examples=int(os.environ.get("FAST_PATH_EXAMPLES", 15)), deadline=None)
@given(
    hidden=st.lists(st.integers(2, 12), min_size=1, max_size=2),
    act=st.sampled_from(sorted(Drawn.ACTS)),
    n=st.integers(1, 16),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float64, np.float32]),
    bug=st.none() | st.tuples(st.integers(0, 5), st.sampled_from([0.5, 1.01, -1.0])),
)
def test_the_compiled_path_judges_drawn_user_models_as_the_eager_one(
    hidden, act, n, seed, dtype, bug
):
    import reference._checks.gradients as g

    sizes = (4, *hidden, 3)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(dtype)
    y = np.eye(3)[rng.integers(0, 3, n)]
    model = Drawn(sizes, act, seed, dtype, bug)
    original = g.worth_compiling
    g.worth_compiling = lambda *args: True  # compiled whatever the model's size
    try:
        fast = check_gradients(model, X, y)
    finally:
        g.worth_compiling = original
    assert cached(model) is not None
    slow = eager(model, X, y)
    assert statuses(fast) == statuses(slow), f"{fast}\n{slow}"
    assert fast.ok == slow.ok


@pytest.mark.parametrize("batched", [True, False])
def test_the_direct_noise_measurement_is_the_same_in_chunks(monkeypatch, batched):
    """A large model's direct noise measurement evaluates its 16 points a few at a time, in
    reused stacks (memory stays bounded): the same draws and the same losses as in one call,
    with the last, shorter chunk too (3 + 3 + 3 + 3 + 3 + 1)."""
    from reference._core import stencils
    from reference._core.adapter import Adapter

    model = mb.MLP(
        [8, 16, 16, 3],
        ["tanh", "tanh", "softmax"],
        "categorical_crossentropy",
        dtype="float64",
        seed=0,
    )
    X, y = batch()
    adapter = Adapter(model, X, y, include_input=False)
    adapter.use_batched = batched
    f0 = adapter.loss_value()
    calls = []
    if batched:
        real = adapter.evaluate_many
        monkeypatch.setattr(adapter, "evaluate_many", lambda s: calls.append(s) or real(s))
    else:
        real = adapter.evaluate_points
        monkeypatch.setattr(adapter, "evaluate_points", lambda p: calls.append(p) or real(p))
    whole = stencils.jitter_noise(adapter, f0, np.random.default_rng(5))
    assert len(calls) == 1
    calls.clear()
    monkeypatch.setattr(stencils, "_BUDGET", 3 * model.n_params)
    chunked = stencils.jitter_noise(adapter, f0, np.random.default_rng(5))
    counts = [len(next(iter(c.values()))) if batched else len(c) for c in calls]
    assert counts == [3, 3, 3, 3, 3, 1]
    assert chunked == whole > 0
