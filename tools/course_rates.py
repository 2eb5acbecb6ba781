"""The harness side by side with the checker a course ships, on the course-assignment corpus
(``tests/course_corpus.py``).

Every case is checked by the harness in both modes (``check_function``, or ``check_gradients``
for the model cases) and by the course's own check: central differences with h = 1e-5 as
``eval_numerical_gradient_array`` computes them (each input element nudged in place by +-h, the
change of the output projected on a random dout, or on 1 for a scalar loss), judged by the
maximum relative error ``max(|a - b| / max(1e-8, |a| + |b|))`` against the threshold a notebook
would state for that layer. For each checker: bugs caught, false alarms on right cases, time.
A check that raises counts as flagged (the notebook cell fails), and is listed.

    python tools/course_rates.py [--markdown FILE]

Always exits 0: it is a measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from course_corpus import CASES, KINDS  # noqa: E402

from reference import MODES, check_function, check_gradients  # noqa: E402

COURSE_H = 1e-5
# The threshold a course notebook would state beside each check ("your relative error should
# be less than ..."): our own table, of the order such notebooks print (1e-7 for a layer's
# backward, 1e-8 for a loss's gradient), not quoted from any one notebook. The Keras layer has
# no notebook; 1e-7 is what a user copying the layer checks would pick.
COURSE_THRESHOLD = {
    "affine": 1e-7,
    "relu": 1e-7,
    "batchnorm": 1e-7,
    "layernorm": 1e-7,
    "dropout": 1e-7,
    "conv": 1e-7,
    "maxpool": 1e-7,
    "softmax": 1e-8,
    "svm": 1e-8,
    "rnn": 1e-7,
    "keras_custom_gradient": 1e-7,
}
CHECKERS = tuple(f"harness {m}" for m in MODES) + ("course",)


# --- the course's checker -------------------------------------------------------------------


def rel_error(x, y) -> float:
    """The courses' relative error: the largest over the elements."""
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient_array(f, x, df, h=COURSE_H):
    """The numerical gradient of <df, f(x)> with respect to x, nudging x in place (in x's own
    dtype), as the course's helper does."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix].copy()
        x[ix] = old + h
        pos = np.array(f(x), copy=True)
        x[ix] = old - h
        neg = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def _course_function(fn, inputs, vjp, rng):
    """The largest relative error over the inputs of a ``(fn, inputs, vjp)`` case."""
    xs = [np.array(x, copy=True) for x in inputs]

    def call(*arrays):
        return fn(*[tf.constant(a) for a in arrays]).numpy()

    out = call(*xs)
    dout = (np.ones(()) if out.ndim == 0 else rng.standard_normal(out.shape)).astype(out.dtype)
    if vjp is None:  # the layer's own gradient: the tape's, through its custom gradient
        ts = [tf.constant(x) for x in xs]
        with tf.GradientTape() as tape:
            tape.watch(ts)
            y = fn(*ts)
        analytic = tape.gradient(y, ts, output_gradients=tf.constant(dout))
    else:
        analytic = vjp(tf.constant(dout), *[tf.constant(x) for x in xs])
    analytic = list(analytic) if isinstance(analytic, (tuple, list)) else [analytic]
    errors = []
    for k, a in enumerate(analytic):
        if a is None:
            raise TypeError(f"the gradient of input {k} is None (unfilled)")

        def f(xk, k=k):
            return call(*xs[:k], xk, *xs[k + 1 :])

        num = eval_numerical_gradient_array(f, xs[k], dout)
        errors.append(rel_error(num, np.asarray(a)))
    return max(errors)


def _course_model(model, X, y):
    """The largest relative error over the parameters of a ``(model, X, y)`` case, each
    parameter nudged in place (``assign`` for a tf.Variable)."""
    analytic = [np.asarray(g) for g in model.gradients(X, y)]
    errors = []
    for p, a in zip(model.params, analytic):
        value = np.array(p.numpy(), copy=True)

        def f(v, p=p):
            p.assign(v)
            return float(model.loss(X, y))

        num = eval_numerical_gradient_array(f, value, 1.0)
        p.assign(value)
        errors.append(rel_error(num, a))
    return max(errors)


def course_check(case, seed=0):
    """(passed, detail) of the course's check."""
    built = case.build()
    rng = np.random.default_rng(seed)
    if case.harness == "model":
        err = _course_model(*built)
    else:
        err = _course_function(*built, rng)
    threshold = COURSE_THRESHOLD[case.kind]
    return err <= threshold, f"rel error {err:.2g} vs {threshold:g}"


# --- the harness ----------------------------------------------------------------------------


def harness_check(case, mode):
    built = case.build()
    if case.harness == "model":
        report = check_gradients(*built, mode=mode)
    else:
        fn, inputs, vjp = built
        report = check_function(fn, *inputs, vjp=vjp, mode=mode, name=case.id)
    why = [f"{e.name}: {e.status.value}" for e in report.failing]
    why += [
        f"{what}: {text}"
        for what, text in (("error", report.error), ("impure", report.impure))
        if text
    ]
    return report.ok, "; ".join(why) if why else "every entry passed"


# --- the measurement ------------------------------------------------------------------------


def run():
    # (kind, checker) -> [right passed, right total, bugs caught, bugs total, seconds]
    table = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    wrong = []
    for case in CASES:
        for checker in CHECKERS:
            start = time.perf_counter()
            try:
                if checker == "course":
                    ok, detail = course_check(case)
                else:
                    ok, detail = harness_check(case, checker.split()[1])
            except Exception as exc:  # a check that raises: the user is told something is off
                ok, detail = False, f"raised {type(exc).__name__}: {exc}".splitlines()[0]
            row = table[(case.kind, checker)]
            row[4] += time.perf_counter() - start
            if case.expect == "pass":
                row[0] += ok
                row[1] += 1
            else:
                row[2] += not ok
                row[3] += 1
            if ok != (case.expect == "pass"):
                what = "bug passed" if ok else "right flagged"
                wrong.append((checker, case.id, what, detail))
            elif detail.startswith("raised"):
                wrong.append((checker, case.id, "flagged by raising", detail))
    return table, wrong


def _pct(a, b):
    return f"{100.0 * a / b:.0f}%" if b else "-"


def tables(table):
    lines = [
        "| kind | checker | right cases passed | false alarms | bugs caught | catch rate | time |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = {c: [0, 0, 0, 0, 0.0] for c in CHECKERS}
    for kind in KINDS:
        for checker in CHECKERS:
            rp, rt, bc, bt, sec = table[(kind, checker)]
            lines.append(
                f"| {kind} | {checker} | {rp}/{rt} | {rt - rp} | {bc}/{bt} | {_pct(bc, bt)} | "
                f"{sec:.1f} s |"
            )
            totals[checker] = [a + b for a, b in zip(totals[checker], table[(kind, checker)])]
    total_lines = [
        "| checker | right cases passed | false alarms | bugs caught | catch rate | time |",
        "|---|---|---|---|---|---|",
    ]
    for checker, (rp, rt, bc, bt, sec) in totals.items():
        total_lines.append(
            f"| {checker} | {rp}/{rt} | {rt - rp} | {bc}/{bt} | {_pct(bc, bt)} | {sec:.0f} s |"
        )
    return "\n".join(lines), "\n".join(total_lines)


def _shown(path: Path) -> str:
    """The path as written in the results: relative to the repository, never a machine path."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, wrong = run()
    per_kind, totals = tables(table)
    listed = [f"- {checker}: `{cid}`: {what} ({detail})" for checker, cid, what, detail in wrong]
    text = "\n\n".join(
        [
            "## Per kind",
            per_kind,
            "## Totals",
            totals,
            "## Wrong verdicts (and checks that raised)",
            "\n".join(listed) or "none",
        ]
    )
    print(text)
    n_right = sum(c.expect == "pass" for c in CASES)
    print(
        f"\n{len(CASES)} cases ({n_right} right, {len(CASES) - n_right} bugs) x "
        f"{len(CHECKERS)} checkers in {time.perf_counter() - start:.0f} s"
    )
    if args.markdown:
        args.markdown.write_text(
            "# The harness and a course's own checker on course-assignment code\n\n"
            "Measured with `python tools/course_rates.py --markdown "
            f"{_shown(args.markdown)}`: every case of `tests/course_corpus.py` "
            f"({len(CASES)}: {n_right} right, {len(CASES) - n_right} planted bugs) checked by "
            "the harness in both modes and by the course's checker (central differences, "
            f"h = {COURSE_H:g}, max relative error against a per-kind threshold: "
            + ", ".join(f"{k} {v:g}" for k, v in COURSE_THRESHOLD.items())
            + ").\n\n"
            + _WHY
            + "\n\n"
            + text
            + "\n"
        )
    return 0


# What the course checker's false alarms are, whatever the run: the reading of its rule, not a
# figure of this run.
_WHY = (
    "The course checker flags right code of two kinds. Float32 cases: central differences with "
    "h = 1e-5 on float32 outputs carry rounding errors of order 1e-7 / 1e-5 = 1e-2 per element, "
    "which the largest relative error over the elements turns into tenths. Right code at a kink "
    "(ReLU at exact zeros, an SVM margin of exactly 0, tied maxima): the central difference is "
    "the mean of the one-sided derivatives, which a valid subgradient (relu'(0) of 0 or 1, the "
    "argmax's one-hot) need not equal. An unfilled (None) gradient makes its cell raise a "
    "TypeError, counted as caught and listed below."
)


if __name__ == "__main__":
    sys.exit(main())
