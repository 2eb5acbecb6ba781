"""Speed and accuracy, side by side with the tools people use today, measured in one process.

    python benchmarks/bench.py            (make bench)
    python benchmarks/bench.py --quick    fewer repetitions, for a smoke run
    python benchmarks/bench.py --only plugin functions    some sections (the JSON keeps the rest)

Every timing is the median of several runs, ours and the peer's interleaved, reported with the
ratio against the peer measured in the same process. Four sections:

1. a full check (tape, finite differences of every parameter, independent forward) of the MLP
   [8, 16, 16, 3] (tanh, softmax + categorical cross-entropy, batch 32, float64) against
   ``tf.test.compute_gradient`` on the same loss and parameters, with both finite-difference
   errors against the exact gradient;
2. directional mode on MLPs of about 10k, 100k and 1M parameters, and whether an error of 1e-3
   relative planted in one tensor is caught;
3. the hand-written forward + backward against ``tf.GradientTape`` on the same model, eager and
   under ``tf.function``, small and large;
4. how the full check's cost grows with the parameter count (a table, and a plot when
   matplotlib is installed);
5. ``check_function`` (full mode, a hand-written VJP) against ``tf.test.compute_gradient`` on
   layer norm of 64x128, softmax of 64x128 and a 64x128 @ 128x32 matmul: time, and the
   finite-difference error of each against the exact gradient, projected on random cotangents;
6. what the pytest plugin adds to an unrelated one-test project's run: ``pytest`` with the
   plugin (and pytest-regressions, which it brings) and without them, side by side;
7. the cost guard's estimate of a full check against its measured time, for a hand-written
   model (no ``batched_loss``) and the catalogue MLP at three sizes each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import manual_backprop as mb  # noqa: E402
from reference import (  # noqa: E402
    Between,
    check_function,
    check_gradients,
    numerical_gradients,
    tape_gradients,
)

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, NumPy {np.__version__}"
    )


def interleaved(functions: dict, runs: int, warmup: int = 1, repeat: int = 1) -> dict:
    """Median seconds of each function (per call, over ``repeat`` calls in a row), the runs of
    the functions interleaved so that drift hits all alike."""
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    for _ in range(runs):
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[name].append((time.perf_counter() - start) / repeat)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(headers, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(r) for r in rows]
    )


def batch_for(model, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.layer_sizes[0]))
    d = model.layer_sizes[-1]
    if model.loss_function.labels == "categorical":
        y = np.eye(d)[rng.integers(0, d, size=n)]
    else:
        y = rng.normal(size=(n, d))
    return X, y


# --- 1. a full check against tf.test.compute_gradient -------------------------------------------


def _peer_loss(X, y, sizes):
    """The loss of the [sizes] tanh network with a softmax + cross-entropy output, as a function
    of its parameters' values (what tf.test.compute_gradient differentiates)."""
    Xt, yt = tf.constant(X), tf.constant(y)

    def loss(*params):
        a = Xt
        for i in range(0, len(params) - 2, 2):
            a = tf.tanh(a @ params[i] + params[i + 1])
        z = a @ params[-2] + params[-1]
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=yt, logits=z))

    return loss


FULL_CASES = [
    ("a hand-written model (no batched_loss)", [8, 16, 16, 3]),
    ("catalogue MLP", [8, 16, 16, 3]),
    ("catalogue MLP", [8, 48, 48, 3]),
]


def full_check(runs: int) -> dict:
    out, rows = {}, []
    for kind, sizes in FULL_CASES:
        mlp = mb.MLP(
            sizes, ["tanh", "tanh", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
        )
        hand = kind.startswith("a hand-written")
        model = HandWritten(sizes) if hand else mlp
        X, y = batch_for(mlp, 32)
        loss = _peer_loss(X, y, sizes)
        params = [p.numpy() for p in model.params]
        assert abs(float(loss(*params)) - float(model.loss(X, y))) < 1e-12
        peer_result = {}

        def peer(loss=loss, params=params):
            peer_result["jacobians"] = tf.test.compute_gradient(loss, params)

        timed = {
            "ours": lambda model=model, X=X, y=y: check_gradients(model, X, y, include_input=False),
            "peer": peer,
        }
        if hand:  # a new model each time: the compilation of its loss is in every run
            timed["ours, first check of a new model"] = lambda X=X, y=y, sizes=sizes: (
                check_gradients(HandWritten(sizes), X, y, include_input=False)
            )
        else:
            timed["ours, with dL/dX"] = lambda model=model, X=X, y=y: check_gradients(model, X, y)
        medians = interleaved(timed, runs)
        report = check_gradients(model, X, y, include_input=False)
        exact = [g.numpy() for g in tape_gradients(model, X, y)]
        ours = numerical_gradients(model, X, y)
        _, numeric = peer_result["jacobians"]
        ours_err = max(
            float(np.max(np.abs(a.value - e)) / np.max(np.abs(e))) for a, e in zip(ours, exact)
        )
        peer_err = max(
            float(np.max(np.abs(n.reshape(e.shape) - e)) / np.max(np.abs(e)))
            for n, e in zip(numeric, exact)
        )
        label = f"{kind} {sizes}"
        peer_time = medians["peer"]
        out[label] = {
            "params": sum(p.size for p in params),
            "verdict_ok": report.ok,
            "medians_s": medians,
            "speedup": peer_time / medians["ours"],
            "fd_error_ours": ours_err,
            "fd_error_peer": peer_err,
        }
        for name, t in medians.items():
            if name == "peer":
                continue
            rows.append(
                (
                    label,
                    name,
                    f"{t * 1e3:.1f} ms",
                    f"{peer_time * 1e3:.0f} ms",
                    f"{peer_time / t:.1f}x",
                    f"{ours_err:.1e} / {peer_err:.1e}",
                    "pass" if report.ok else "FAIL",
                )
            )
    headers = (
        "model",
        "check",
        "median",
        "tf.test.compute_gradient",
        "peer time / ours",
        "FD error ours / peer",
        "verdict",
    )
    return {
        "cases": out,
        "text": table(headers, rows)
        + "\n\nFD error: against the exact gradient (the tape), worst tensor, relative to its "
        "largest gradient; every check in float64, batch 32, parameters only unless said.",
    }


# --- 2. directional mode at scale ----------------------------------------------------------------


class Planted:
    """A correct model with one tensor's gradient off by 1e-3 relative."""

    def __init__(self, model, index, factor=1.001):
        self.model, self.index, self.factor = model, index, factor
        self.params, self.param_names = model.params, model.param_names
        self.layer_sizes, self.activations = model.layer_sizes, model.activations
        self.loss_function, self.fused = model.loss_function, model.fused

    def astype(self, dtype):
        return Planted(self.model.astype(dtype), self.index, self.factor)

    def loss(self, X, y):
        return self.model.loss(X, y)

    def gradients(self, X, y):
        grads = self.model.gradients(X, y)
        grads[self.index] = grads[self.index] * self.factor
        return grads

    def input_gradient(self, X, y):
        return self.model.input_gradient(X, y)

    def batched_loss(self, X, y, replacements):
        return self.model.batched_loss(X, y, replacements)


SCALES = [
    ("10k", [50, 100, 50, 1]),
    ("100k", [250, 300, 100, 1]),
    ("1M", [1000, 800, 250, 1]),
    ("10M", [3300, 2800, 300, 1]),
]
# The 10M model is measured once (each check takes seconds and gigabytes).
_ONCE = {"10M"}


def scale(runs: int) -> dict:
    rows, out = [], {}
    for label, sizes in SCALES:
        model = mb.MLP(sizes, ["tanh", "tanh", "linear"], "mse", dtype="float32", seed=0)
        X, y = batch_for(model, 32)
        planted = Planted(model, 2)  # W2, the largest tensor but one
        medians = interleaved(
            {
                "correct": lambda: check_gradients(model, X, y, mode="directional"),
                "planted": lambda: check_gradients(planted, X, y, mode="directional"),
            },
            1 if label in _ONCE else runs,
            warmup=0 if label in _ONCE else 1,
        )
        ok = check_gradients(model, X, y, mode="directional")
        caught = check_gradients(planted, X, y, mode="directional")
        failing = [e.name for e in caught.failing]
        out[label] = {
            "params": model.n_params,
            "seconds": medians["correct"],
            "seconds_planted": medians["planted"],
            "correct_passes": ok.ok,
            "planted_caught": not caught.ok,
            "failing": failing,
        }
        rows.append(
            (
                label,
                f"{model.n_params:,}",
                str(sizes),
                f"{medians['correct']:.2f} s",
                "yes" if ok.ok else "NO",
                "yes" if not caught.ok else "NO",
                ", ".join(failing) or "-",
            )
        )
    return {
        "models": out,
        "text": table(
            (
                "model",
                "parameters",
                "layer sizes",
                "directional check",
                "correct passes",
                "1e-3 error in W2 caught",
                "failing tensors",
            ),
            rows,
        ),
    }


# --- 3. hand-written forward + backward against the tape ---------------------------------------


def backprop_speed(runs: int) -> dict:
    rows, out = [], {}
    for label, sizes, n in [("small", [8, 16, 16, 3], 32), ("large", [1000, 800, 250, 10], 256)]:
        model = mb.MLP(
            sizes, ["tanh", "tanh", "softmax"], "categorical_crossentropy", dtype="float32", seed=0
        )
        X, y = batch_for(model, n)
        Xt, yt = tf.constant(X, tf.float32), tf.constant(y, tf.float32)

        def manual_eager():
            return model.loss_and_gradients(X, y)

        def tape_eager():
            with tf.GradientTape() as tape:
                loss = model.loss(X, y)
            return loss, tape.gradient(loss, model.params)

        @tf.function
        def manual_graph(Xb, yb):
            cache = model._forward_all(Xb)
            return model._loss_from_cache(cache, yb), model._backward(cache, yb)[0]

        @tf.function
        def tape_graph(Xb, yb):
            with tf.GradientTape() as tape:
                loss = model._loss_from_cache(model._forward_all(Xb), yb)
            return loss, tape.gradient(loss, model.params)

        medians = interleaved(
            {
                "manual eager": manual_eager,
                "tape eager": tape_eager,
                "manual tf.function": lambda: manual_graph(Xt, yt),
                "tape tf.function": lambda: tape_graph(Xt, yt),
            },
            runs=3 * runs,
            warmup=3,
            repeat=20 if label == "small" else 3,
        )
        out[label] = medians
        for mode in ("eager", "tf.function"):
            ours, peer = medians[f"manual {mode}"], medians[f"tape {mode}"]
            rows.append(
                (
                    label,
                    f"{model.n_params:,}",
                    f"batch {n}",
                    mode,
                    f"{ours * 1e3:.2f} ms",
                    f"{peer * 1e3:.2f} ms",
                    f"{peer / ours:.2f}x",
                )
            )
    return {
        "medians_s": out,
        "text": table(
            (
                "model",
                "parameters",
                "batch",
                "mode",
                "hand-written",
                "GradientTape",
                "tape time / ours",
            ),
            rows,
        ),
    }


# --- 4. cost growth -------------------------------------------------------------------------------


def growth(runs: int) -> dict:
    rows, points = [], []
    for width in (4, 8, 16, 32, 64, 128):
        model = mb.MLP(
            [8, width, width, 3],
            ["tanh", "tanh", "softmax"],
            "categorical_crossentropy",
            dtype="float64",
            seed=0,
        )
        X, y = batch_for(model, 32)
        medians = interleaved(
            {
                "full": lambda: check_gradients(model, X, y, include_input=False),
                "directional": lambda: check_gradients(
                    model, X, y, mode="directional", include_input=False
                ),
            },
            runs,
        )
        points.append((model.n_params, medians["full"], medians["directional"]))
        rows.append(
            (
                f"[8, {width}, {width}, 3]",
                f"{model.n_params:,}",
                f"{medians['full'] * 1e3:.0f} ms",
                f"{medians['full'] / model.n_params * 1e6:.0f} us",
                f"{medians['directional'] * 1e3:.0f} ms",
            )
        )
    plot = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        p = [pt[0] for pt in points]
        ax.loglog(p, [pt[1] for pt in points], marker="o", label="full")
        ax.loglog(p, [pt[2] for pt in points], marker="s", label="directional")
        ax.set_xlabel("parameters")
        ax.set_ylabel("median seconds per check")
        ax.set_title("Cost of a check against model size")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        plot = HERE / "cost_growth.png"
        fig.savefig(plot, dpi=100)
    except ImportError:
        pass
    per = {n: t / n for n, t, _ in points}
    growth_ratio = per[18051] / per[1443]
    return {
        "points": points,
        "per_parameter_growth_1443_to_18051": growth_ratio,
        "plot": None if plot is None else str(plot.name),
        "text": table(
            ("model", "parameters", "full check", "per parameter", "directional check"), rows
        )
        + f"\n\nfull-check cost per parameter at 18,051 parameters / at 1,443: {growth_ratio:.2f}x",
    }


# --- 5. check_function against tf.test.compute_gradient -----------------------------------------


def _layer_norm(x):
    mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mu) / tf.sqrt(var + 1e-5)


def _layer_norm_vjp(dy, x):
    mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    inv = 1.0 / tf.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    return inv * (
        dy
        - tf.reduce_mean(dy, axis=-1, keepdims=True)
        - xhat * tf.reduce_mean(dy * xhat, axis=-1, keepdims=True)
    )


def _softmax(x):
    return tf.nn.softmax(x, axis=-1)


def _softmax_vjp(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return s * (dy - tf.reduce_sum(dy * s, axis=-1, keepdims=True))


def _matmul(a, b):
    return a @ b


def _matmul_vjp(dy, a, b):
    return dy @ tf.transpose(b), tf.transpose(a) @ dy


def functions(runs: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 128))
    cases = {
        "layer norm 64x128": (_layer_norm, (x,), _layer_norm_vjp),
        "softmax 64x128": (_softmax, (x,), _softmax_vjp),
        "matmul 64x128 @ 128x32": (
            _matmul,
            (rng.normal(size=(64, 128)), rng.normal(size=(128, 32))),
            _matmul_vjp,
        ),
    }
    runs = max(3, runs // 2)  # the peer takes seconds per call here
    rows, out = [], {}
    for name, (fn, inputs, vjp) in cases.items():
        peer_result, ours_result = {}, {}

        def peer(fn=fn, inputs=inputs):
            peer_result["jacobians"] = tf.test.compute_gradient(fn, list(inputs))

        def ours(fn=fn, inputs=inputs, vjp=vjp):
            ours_result["report"] = check_function(fn, *inputs, vjp=vjp)

        medians = interleaved({"ours": ours, "peer": peer}, runs, warmup=1)
        report = ours_result["report"]
        ours_err = max(e.comparison(Between.TAPE_FD).relative for e in report.entries)
        # The peer's Jacobians projected on random cotangents, relative to the largest value,
        # as the tape~FD column of our report is.
        theoretical, numerical = peer_result["jacobians"]
        cot = np.random.default_rng(1).standard_normal((3, theoretical[0].shape[0]))
        peer_err = max(
            float(np.max(np.abs(cot @ (n - t))) / np.max(np.abs(cot @ t)))
            for t, n in zip(theoretical, numerical)
        )
        ratio = medians["peer"] / medians["ours"]
        out[name] = {
            "ours_s": medians["ours"],
            "peer_s": medians["peer"],
            "speedup": ratio,
            "fd_error_ours": ours_err,
            "fd_error_peer": peer_err,
            "verdict_ok": report.ok,
        }
        rows.append(
            (
                name,
                f"{medians['ours']:.2f} s",
                f"{medians['peer']:.2f} s",
                f"{ratio:.1f}x",
                f"{ours_err:.1e}",
                f"{peer_err:.1e}",
                "pass" if report.ok else "FAIL",
            )
        )
    headers = (
        "function",
        "check_function",
        "compute_gradient",
        "peer time / ours",
        "FD error, ours",
        "FD error, peer",
        "verdict",
    )
    return {"cases": out, "runs": runs, "text": table(headers, rows)}


# --- 6. what the plugin costs an unrelated project -----------------------------------------------


WITHOUT_PLUGINS = "with -p no:gradcheck -p no:regressions -p no:pytest-datadir"


def plugin_startup(runs: int) -> dict:
    """Wall time of ``pytest`` on a one-test project that never uses the harness, with the
    plugin loaded (as it is in any environment the package is installed in) and without."""
    runs = max(runs, 9)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}

        def run(extra):
            def call():
                subprocess.run(base + extra, cwd=tmp, env=env, capture_output=True, check=True)

            return call

        # pytest-regressions (and pytest-datadir, which it needs) come with the package, for
        # snapshots: their plugins load too, so they count as the plugin's cost.
        without = ["-p", "no:gradcheck", "-p", "no:regressions", "-p", "no:pytest-datadir"]
        medians = interleaved(
            {"with the plugin": run([]), WITHOUT_PLUGINS: run(without)},
            runs,
        )
    extra = medians["with the plugin"] - medians[WITHOUT_PLUGINS]
    rows = [(name, f"{t:.3f} s") for name, t in medians.items()]
    return {
        "medians_s": medians,
        "extra_s": extra,
        "runs": runs,
        "text": table(("pytest on a one-test project", "median wall time"), rows)
        + f"\n\nthe plugin adds {extra * 1e3:.0f} ms ({runs} interleaved runs)",
    }


# --- 7. the cost guard's estimate against the measured time -----------------------------------


class HandWritten:
    """A user's hand-written tanh / softmax + cross-entropy network (no batched_loss)."""

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.params += [
                tf.Variable(rng.normal(size=(a, b)) / np.sqrt(a)),
                tf.Variable(np.zeros(b)),
            ]

    def _forward(self, X):
        a = tf.constant(X)
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
        d = (tf.nn.softmax(z) - y) / X.shape[0]
        grads = []
        for i in range(len(self.params) - 2, -1, -2):
            grads = [tf.transpose(acts[i // 2]) @ d, tf.reduce_sum(d, 0)] + grads
            if i:
                d = (d @ tf.transpose(self.params[i])) * (1 - acts[i // 2] ** 2)
        return grads


def _estimate_of(model, X, y):
    """The estimate the check itself makes (after it has chosen how to evaluate the loss:
    compiled, coordinate_losses, batched_loss or eagerly), caught as it refuses to run."""
    from reference._checks import cost

    caught, original = {}, cost.estimate

    def spy(*args, **kwargs):
        caught["estimate"] = original(*args, **kwargs)
        return caught["estimate"]

    cost.estimate = spy
    try:
        check_gradients(model, X, y, include_input=False, max_seconds=1e-9)
    except ValueError:
        pass
    finally:
        cost.estimate = original
    return caught["estimate"].seconds


def estimates(runs: int) -> dict:
    rows, out = [], {}
    cases = [("hand-written", s) for s in ([8, 16, 16, 3], [8, 32, 32, 3], [8, 64, 64, 3])]
    cases += [("catalogue MLP", s) for s in ([8, 16, 16, 3], [8, 64, 64, 3], [8, 128, 128, 3])]
    for kind, sizes in cases:
        mlp = mb.MLP(
            sizes, ["tanh", "tanh", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
        )
        model = HandWritten(sizes) if kind == "hand-written" else mlp
        X, y = batch_for(mlp, 32)
        est = _estimate_of(model, X, y)
        start = time.perf_counter()
        check_gradients(model, X, y, include_input=False, max_seconds=None)
        measured = time.perf_counter() - start
        params = sum(int(np.prod(p.shape)) for p in model.params)
        out[f"{kind} {sizes}"] = {"estimate_s": est, "measured_s": measured}
        rows.append(
            (
                kind,
                str(sizes),
                f"{params:,}",
                f"{est:.2f} s",
                f"{measured:.2f} s",
                f"{est / measured:.2f}",
            )
        )
    headers = ("model", "layer sizes", "parameters", "estimate", "measured", "estimate / measured")
    return {"cases": out, "text": table(headers, rows)}


# --- 8. accuracy where finite differences judge alone: numdifftools -------------------------------


class NumpyTwin:
    """The full check's network written in NumPy, as a tutorial would (no tape can witness it):
    tanh layers, softmax + cross-entropy, the backward pass by hand."""

    def __init__(self, weights):
        self.params = [np.array(w, dtype=np.float64, copy=True) for w in weights]
        self.param_names = [f"{k}{l}" for l in range(1, len(weights) // 2 + 1) for k in "Wb"]

    def _forward(self, X):
        acts = [X]
        for i in range(0, len(self.params) - 2, 2):
            acts.append(np.tanh(acts[-1] @ self.params[i] + self.params[i + 1]))
        return acts[-1] @ self.params[-2] + self.params[-1], acts

    def loss(self, X, y):
        z, _ = self._forward(X)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - (y * z).sum(axis=1)))

    def gradients(self, X, y):
        z, acts = self._forward(X)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        d = (p / p.sum(axis=1, keepdims=True) - y) / X.shape[0]
        grads = []
        for i in range(len(self.params) - 2, -1, -2):
            grads = [acts[i // 2].T @ d, d.sum(axis=0)] + grads
            if i:
                d = (d @ self.params[i].T) * (1 - acts[i // 2] ** 2)
        return grads


def accuracy(runs: int) -> dict:
    try:
        import numdifftools as nd
    except ImportError:
        return {"skipped": "numdifftools is not installed (make bench installs it)", "text": ""}
    sizes = [8, 16, 16, 3]
    mlp = mb.MLP(
        sizes, ["tanh", "tanh", "softmax"], "categorical_crossentropy", dtype="float64", seed=0
    )
    X, y = batch_for(mlp, 32)
    model = NumpyTwin([p.numpy() for p in mlp.params])
    exact = [g.numpy() for g in tape_gradients(mlp, X, y)]
    assert abs(model.loss(X, y) - float(mlp.loss(X, y))) < 1e-12
    shapes = [p.shape for p in model.params]
    sizes_flat = [p.size for p in model.params]
    theta = np.concatenate([p.reshape(-1) for p in model.params])

    def flat_loss(t):
        other = NumpyTwin(
            [c.reshape(s) for c, s in zip(np.split(t, np.cumsum(sizes_flat)[:-1]), shapes)]
        )
        return other.loss(X, y)

    result = {}

    def peer():
        result["peer"] = nd.Gradient(flat_loss)(theta)

    def ours():
        result["ours"] = check_gradients(model, X, y)

    medians = interleaved({"ours: check_gradients": ours, "peer: numdifftools": peer}, runs)

    def worst(values):
        return max(
            float(np.max(np.abs(v.reshape(e.shape) - e)) / np.max(np.abs(e)))
            for v, e in zip(values, exact)
        )

    peer_err = worst(np.split(result["peer"], np.cumsum(sizes_flat)[:-1]))
    report = result["ours"]
    # The manual gradient is exact to rounding (1e-16), so its distance from the finite
    # differences is their error.
    manual_err = max(
        float(np.max(np.abs(m - e)) / np.max(np.abs(e)))
        for m, e in zip(model.gradients(X, y), exact)
    )
    ours_err = max(e.comparison(Between.MANUAL_FD).relative for e in report.entries)
    rows = [
        (
            "ours: check_gradients (every element, tape cannot witness)",
            f"{medians['ours: check_gradients'] * 1e3:.0f} ms",
            f"{ours_err:.1e}",
            "pass" if report.ok else "FAIL",
        ),
        (
            "peer: numdifftools.Gradient (adaptive Richardson)",
            f"{medians['peer: numdifftools'] * 1e3:.0f} ms",
            f"{peer_err:.1e}",
            "-",
        ),
    ]
    return {
        "medians_s": medians,
        "fd_error_ours": ours_err,
        "fd_error_peer": peer_err,
        "manual_error": manual_err,
        "verdict_ok": report.ok,
        "text": table(
            ("NumPy twin of [8, 16, 16, 3], float64", "median", "FD error", "verdict"), rows
        )
        + f"\n\nFD error: worst tensor, relative to its largest gradient, against the exact "
        f"gradient (ours: the report's manual~FD column; the hand-written gradient is "
        f"{manual_err:.0e} from the exact one)",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--json",
        default=str(HERE / "results.json"),
        help="where to write the numbers (benchmarks/results.json)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[key for key, _, _ in SECTIONS],
        help="run these sections only; the others keep their numbers in the JSON file",
    )
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 7
    results = {}
    if args.only and os.path.exists(args.json):
        with open(args.json) as fh:
            results = json.load(fh)
    results.update({"machine": machine(), "runs": runs})
    print(f"machine: {results['machine']}\nmedians of {runs} interleaved runs\n")
    for key, title, fn in SECTIONS:
        if args.only and key not in args.only:
            continue
        start = time.perf_counter()
        results[key] = fn(runs)
        print(
            f"## {title}\n\n{results[key]['text']}\n\n({time.perf_counter() - start:.0f} s)\n",
            flush=True,
        )
    with open(args.json, "w") as fh:
        json.dump(
            {
                k: ({kk: vv for kk, vv in v.items() if kk != "text"} if isinstance(v, dict) else v)
                for k, v in results.items()
            },
            fh,
            indent=1,
            default=str,
        )
    return 0


SECTIONS = [
    ("full_check", "1. Full check vs tf.test.compute_gradient", full_check),
    ("scale", "2. Directional mode at scale (float32, batch 32)", scale),
    ("backprop", "3. Hand-written forward+backward vs GradientTape (float32)", backprop_speed),
    ("growth", "4. Cost growth of a check (float64, batch 32)", growth),
    ("functions", "5. check_function vs tf.test.compute_gradient (float64)", functions),
    ("plugin", "6. What the pytest plugin adds to an unrelated project", plugin_startup),
    ("estimate", "7. The cost guard's estimate of a full check (float64, batch 32)", estimates),
    ("accuracy", "8. Finite differences alone: a NumPy twin against numdifftools", accuracy),
]


if __name__ == "__main__":
    sys.exit(main())
