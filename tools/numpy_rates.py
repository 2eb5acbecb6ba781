"""How finite differences judge alone: false alarms on right NumPy models, and the smallest
planted error they catch, by dtype.

Every right twin of ``tests/numpy_corpus.py`` is checked at drawn seeds, hidden widths, batch
sizes and input scales (1 and 10), in both modes: every failure is a false alarm. Then each right
twin has one tensor's gradient multiplied by (1 + eps), for eps from 1e-1 down to 1e-7: the rate
at which the harness catches each size of error, per dtype.

    python tools/numpy_rates.py [--markdown FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from numpy_corpus import CASES  # noqa: E402

from reference import check_gradients  # noqa: E402

SEEDS = range(4)
HIDDEN = (3, 16)
ROWS = (2, 7, 64)
SCALES = (1.0, 10.0)
MODES = ("full", "directional")
EPSILONS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def _scaled(model, index, eps):
    """The model with gradient ``index`` multiplied by (1 + eps)."""
    gradients = model.gradients

    def wrong(X, y):
        grads = [np.array(g) for g in gradients(X, y)]
        grads[index] = grads[index] * (1 + eps)
        return grads

    model.gradients = wrong
    return model


def _own_gradient(model, X, y) -> bool:
    """Is the model right at this X, y: its loss finite and equal to its ``tf_loss`` (the same
    loss in TF ops), its gradients the tape's of it? Not always at inputs of scale 10: a float32
    softmax underflows to log(0), nnfs's clipped probabilities make its loss flat where its
    fused backward is not."""
    import tensorflow as tf

    values = [np.array(p.numpy() if hasattr(p, "numpy") else p, np.float64) for p in model.params]
    loss = float(model.loss(X, y))
    params = [tf.constant(v) for v in values]
    yt = y if np.issubdtype(np.asarray(y).dtype, np.integer) else tf.constant(y, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(params)
        exact = model.tf_loss(params, tf.constant(np.asarray(X, np.float64)), yt)
    truth = [g.numpy() for g in tape.gradient(exact, params)]
    rtol = 1e-8 if values[0].dtype == np.asarray(X).dtype == np.float64 else 1e-3
    largest = max(float(np.max(np.abs(t))) for t in truth) or 1.0
    grads = [np.asarray(g, np.float64) for g in model.gradients(X, y)]
    return (
        np.isfinite(loss)
        and abs(loss - float(exact)) <= rtol * max(1.0, abs(loss))
        and all(np.max(np.abs(g - t)) <= rtol * largest for g, t in zip(grads, truth))
    )


def false_alarms():
    rows, alarms = defaultdict(lambda: [0, 0, 0]), []
    for case in [c for c in CASES if c.expect == "pass"]:
        for seed, hidden, n, scale, mode in itertools.product(SEEDS, HIDDEN, ROWS, SCALES, MODES):
            model, X, y = case.build(seed, hidden, n)
            X = (np.asarray(X) * scale).astype(np.asarray(X).dtype)
            if not _own_gradient(model, X, y):
                rows[case.dtype][2] += 1  # not right at these inputs: not counted
                continue
            report = check_gradients(model, X, y, mode=mode)
            rows[case.dtype][0] += 1
            if not report.ok:
                rows[case.dtype][1] += 1
                worst = (
                    "fail"
                    if any(e.status.value == "fail" for e in report.entries)
                    else ("unverifiable")
                )
                alarms.append(
                    f"{case.id} seed={seed} hidden={hidden} n={n} x{scale} {mode}: {worst}"
                )
    return rows, alarms


def catch_rates():
    caught = defaultdict(lambda: [0, 0])
    for case in [c for c in CASES if c.expect == "pass"]:
        for seed, eps in itertools.product(range(3), EPSILONS):
            model, X, y = case.build(seed)
            for index in range(len(model.params)):
                model, X, y = case.build(seed)
                report = check_gradients(_scaled(model, index, eps), X, y)
                caught[(case.dtype, eps)][0] += 1
                caught[(case.dtype, eps)][1] += not report.ok
    return caught


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, alarms = false_alarms()
    lines = [
        "| dtype | right-model checks | false alarms | left out (not right at those inputs) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {d} | {n} | {bad} | {out} |" for d, (n, bad, out) in sorted(rows.items())]
    lines += [""] + [f"- {a}" for a in alarms] + [""]
    caught = catch_rates()
    lines += ["| dtype | " + " | ".join(f"eps {e:g}" for e in EPSILONS) + " |"]
    lines += ["|---|" + "---|" * len(EPSILONS)]
    for dtype in sorted({d for d, _ in caught}):
        cells = [f"{caught[(dtype, e)][1]}/{caught[(dtype, e)][0]}" for e in EPSILONS]
        lines.append(f"| {dtype} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"({time.perf_counter() - start:.0f} s; python tools/numpy_rates.py)")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(
            "# Finite differences alone: the NumPy corpus\n\nFalse alarms on right twins (seeds "
            f"{list(SEEDS)}, hidden {HIDDEN}, rows {ROWS}, input scales {SCALES}, both modes), "
            "then planted errors caught (one tensor's gradient times 1 + eps, full mode, seeds "
            "0-2, every tensor of every right twin):\n\n" + text + "\n"
        )
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
