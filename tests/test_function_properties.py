"""Properties of check_function over random shapes, scales, dtypes and modes: for a few
functions of the catalogue (tests/functions.py), the right derivative passes and the planted
bug fails, whatever the shapes."""

import functions as F
import numpy as np
import tensorflow as tf
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from reference import MODES, check_function

# Each example runs two to five checks; a tenth of the profile's examples (10 under CI, 100 in
# the thorough profile) keeps the suite's time.
EXAMPLES = settings(max_examples=max(10, settings().max_examples // 10))
DTYPES = st.sampled_from(["float64", "float32"])
SEEDS = st.integers(0, 2**16)


def _both(fn, inputs, right, wrong, mode, key="vjp"):
    ok = check_function(fn, *inputs, mode=mode, **{key: right})
    note(str(ok))
    assert ok.ok, str(ok)
    bad = check_function(fn, *inputs, mode=mode, **{key: wrong})
    note(str(bad))
    assert not bad.ok, str(bad)


@EXAMPLES
@given(
    rows=st.integers(1, 6),
    cols=st.integers(2, 9),
    scale=st.sampled_from([0.1, 1.0, 10.0, 40.0]),
    dtype=DTYPES,
    mode=st.sampled_from(MODES),
    seed=SEEDS,
)
def test_softmax(rows, cols, scale, dtype, mode, seed):
    x = (scale * np.random.default_rng(seed).normal(size=(rows, cols))).astype(dtype)
    if scale > 3.0:
        # Saturated logits: the right derivative must pass; the missing cross terms may be far
        # below anything the outputs resolve (s_i s_j = e^-70), so no bug is asked to show.
        report = check_function(F.softmax, x, vjp=F.softmax_vjp, mode=mode)
        assert report.ok, str(report)
        return
    _both(F.softmax, (x,), F.softmax_vjp, F.softmax_vjp_diagonal, mode)


@EXAMPLES
@given(
    rows=st.integers(1, 6),
    cols=st.integers(2, 9),
    offset=st.sampled_from([0.0, 5.0, 50.0]),
    dtype=DTYPES,
    mode=st.sampled_from(MODES),
    seed=SEEDS,
)
# float32 inputs differenced in float64 are judged to float32's resolution (found by the
# thorough profile when the resolution took the precision of finite differences alone).
@example(rows=1, cols=2, offset=50.0, dtype="float32", mode="full", seed=2)
# Found by the thorough profile: a row whose two values are 0.015 apart varies within the step,
# so finite differences witness nothing there, and the tape, through tf.nn.moments's
# tf.stop_gradient of the mean (which drops nothing), is the witness.
@example(rows=4, cols=2, offset=50.0, dtype="float64", mode="full", seed=10)
def test_layer_norm(rows, cols, offset, dtype, mode, seed):
    x = (offset + np.random.default_rng(seed).normal(size=(rows, cols))).astype(dtype)
    _both(F.layer_norm, (x,), F.layer_norm_vjp, F.layer_norm_vjp_no_mean, mode)


@EXAMPLES
@given(
    n=st.integers(1, 5),
    k=st.integers(1, 5),
    m=st.integers(1, 5),
    dtype=DTYPES,
    mode=st.sampled_from(MODES),
    seed=SEEDS,
)
def test_matmul_and_its_jvp(n, k, m, dtype, mode, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, k)).astype(dtype), rng.normal(size=(k, m)).astype(dtype)
    report = check_function(F.matmul, a, b, vjp=F.matmul_vjp, mode=mode)
    assert report.ok, str(report)
    _both(F.matmul, (a, b), F.matmul_jvp, F.matmul_jvp_missing_term, mode, key="jvp")
    square = rng.normal(size=(k + 1, k + 1)).astype(dtype), rng.normal(size=(k + 1, k + 1))
    square = (square[0], square[1].astype(dtype))
    _both(F.matmul, square, F.matmul_vjp, F.matmul_vjp_no_transpose, mode)


@EXAMPLES
@given(
    rows=st.integers(1, 5),
    cols=st.integers(2, 7),
    dtype=DTYPES,
    mode=st.sampled_from(MODES),
    seed=SEEDS,
    data=st.data(),
)
def test_row_max_with_exact_ties(rows, cols, dtype, mode, seed, data):
    x = np.random.default_rng(seed).normal(size=(rows, cols))
    i, j = data.draw(st.lists(st.integers(0, cols - 1), min_size=2, max_size=2, unique=True))
    x[:, i] = x.max(axis=1) + 0.25
    x[:, j] = x[:, i]
    _both(F.row_max, (x.astype(dtype),), F.row_max_vjp, F.row_max_vjp_every_tie, mode)


@tf.custom_gradient
def _logsumexp(x):
    m = tf.reduce_max(x, axis=-1, keepdims=True)
    y = tf.squeeze(m, -1) + tf.math.log(tf.reduce_sum(tf.exp(x - m), axis=-1))
    return y, lambda dy: dy[:, None] * tf.nn.softmax(x, axis=-1)


@EXAMPLES
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 9),
    offset=st.sampled_from([0.0, 300.0, -300.0]),
    dtype=DTYPES,
    mode=st.sampled_from(MODES),
    seed=SEEDS,
)
def test_custom_gradient_logsumexp(rows, cols, offset, dtype, mode, seed):
    x = (offset + 10.0 * np.random.default_rng(seed).normal(size=(rows, cols))).astype(dtype)
    right = check_function(_logsumexp, x, mode=mode)
    assert right.ok, str(right)
    wrong = check_function(F.logsumexp_ignores_dy, x, mode=mode)
    assert not wrong.ok, str(wrong)
