"""The course-assignment corpus (``course_corpus.py``) is what it says, checked without the
harness: every kind has a right case and a bug, the ids are unique, every right backward
matches float64 central differences (or, at a kink, lies between the one-sided differences),
and every planted bug moves its right twin's gradient by more than 1e-3 of that tensor's
largest. The harness's verdicts on the corpus are measured by ``tools/course_rates.py``.
"""

import numpy as np
import pytest
from course_corpus import CASES, KINDS

H = 1e-6  # central differences, float64
H_WIDE = 1e-4  # ... and again this wide: no kink lies this close to a smooth case's inputs
RIGHT_RTOL = 1e-6
WIDE_RTOL = 1e-5
BUG_MIN_REL = 1e-3
MAX_INPUT_ELEMENTS = 150

BY_ID = {c.id: c for c in CASES}
NUMPY = [c for c in CASES if c.is_numpy]


def cases(expect=None, kink=None, numpy=True):
    chosen = [
        c
        for c in (NUMPY if numpy else CASES)
        if (expect is None or c.expect == expect) and (kink is None or c.numpy().kink == kink)
    ]
    return pytest.mark.parametrize("case", chosen, ids=[c.id for c in chosen])


def float64(problem):
    return [np.asarray(x, np.float64) for x in problem.inputs]


def cotangent(problem, inputs, seed=0):
    """A random dout of the forward's output shape (a scalar for a loss)."""
    out = np.asarray(problem.forward(*inputs)[0])
    return np.random.default_rng(seed).standard_normal(out.shape)


def projected(problem, dout, inputs) -> float:
    return float(np.sum(dout * np.asarray(problem.forward(*inputs)[0])))


def moved(inputs, k, direction, t):
    out = [x.copy() for x in inputs]
    out[k] = out[k] + t * direction
    return out


def central(problem, dout, inputs, h):
    """<dout, f(x)> differenced along every coordinate of every input."""
    grads = []
    for k, x in enumerate(inputs):
        g = np.zeros_like(x)
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = 1.0
            e = e.reshape(x.shape)
            up = projected(problem, dout, moved(inputs, k, e, h))
            down = projected(problem, dout, moved(inputs, k, e, -h))
            g.flat[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def one_sided(problem, dout, inputs, k, direction, h=H):
    """The left and right differences of <dout, f> along ``direction`` of input k."""
    at = projected(problem, dout, inputs)
    right = (projected(problem, dout, moved(inputs, k, direction, h)) - at) / h
    left = (at - projected(problem, dout, moved(inputs, k, direction, -h))) / h
    return left, right


def filled(grads, inputs):
    return [
        np.zeros_like(x) if g is None else np.asarray(g, np.float64) for g, x in zip(grads, inputs)
    ]


def tie_directions(problem):
    """For each tied group of input 0: the joint direction (all tied together) and the pairs'
    differences."""
    x = problem.inputs[0]
    for group in problem.ties:
        joint = np.zeros(x.size)
        joint[list(group)] = 1.0
        pairs = []
        for a, b in zip(group, group[1:]):
            d = np.zeros(x.size)
            d[a], d[b] = 1.0, -1.0
            pairs.append(d.reshape(x.shape))
        yield joint.reshape(x.shape), pairs


# --- the corpus is what it says -------------------------------------------------------------


def test_every_kind_has_a_right_case_and_a_bug():
    assert {c.kind for c in CASES} == set(KINDS)
    for kind in KINDS:
        of_kind = [c for c in CASES if c.kind == kind]
        assert any(c.flag is None and c.expect == "pass" for c in of_kind), kind
        assert any(c.expect == "fail" for c in of_kind), kind


def test_ids_are_unique_and_every_flag_has_its_right_twin():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    for c in CASES:
        assert c.expect in ("pass", "fail")
        assert (c.flag is None) <= (c.expect == "pass")
        twin = BY_ID[c.twin_id]
        assert twin.flag is None and twin.dtype == c.dtype and twin.expect == "pass"


def test_float32_variants_of_affine_batchnorm_and_softmax():
    for kind in ("affine", "batchnorm", "softmax"):
        f32 = [c for c in CASES if c.kind == kind and c.dtype == "float32"]
        assert any(c.expect == "pass" for c in f32) and any(c.expect == "fail" for c in f32)


@cases()
def test_inputs_are_small_seeded_and_of_the_case_dtype(case):
    p, again = case.numpy(), case.numpy()
    assert sum(x.size for x in p.inputs) <= MAX_INPUT_ELEMENTS
    assert all(x.dtype == np.dtype(case.dtype) for x in p.inputs)
    assert all(np.array_equal(a, b) for a, b in zip(p.inputs, again.inputs))
    dout = cotangent(p, p.inputs)
    grads = p.gradients(dout.astype(case.dtype))
    assert len(grads) == len(p.inputs)
    for g, x in zip(grads, p.inputs):
        assert g is None or np.shape(g) == x.shape  # every bug keeps the shapes right


# --- the labels: right twins against central differences, bugs against their twins ---------


@cases(expect="pass", kink=False)
def test_right_backward_matches_central_differences(case):
    p = case.numpy()
    inputs = float64(p)
    dout = cotangent(p, inputs)
    grads = filled(p.gradients(dout, *inputs), inputs)
    for h, rtol in ((H, RIGHT_RTOL), (H_WIDE, WIDE_RTOL)):
        for k, (g, fd) in enumerate(zip(grads, central(p, dout, inputs, h))):
            scale = max(float(np.max(np.abs(fd))), 1e-8)
            assert np.max(np.abs(g - fd)) <= rtol * scale, (case.id, k, h)


@cases(expect="pass", kink=True)
def test_right_backward_at_a_kink_is_a_valid_subgradient(case):
    """Along every coordinate the backward lies between the one-sided differences; along the
    joint direction of a tied group (where the maximum moves as one) it matches them."""
    p = case.numpy()
    inputs = float64(p)
    dout = cotangent(p, inputs)
    grads = filled(p.gradients(dout, *inputs), inputs)
    scale = max(float(np.max(np.abs(g))) for g in grads)
    tol = RIGHT_RTOL * scale
    at_kink = 0
    for k, (x, g) in enumerate(zip(inputs, grads)):
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = 1.0
            left, right = one_sided(p, dout, inputs, k, e.reshape(x.shape))
            assert min(left, right) - tol <= g.flat[i] <= max(left, right) + tol, (k, i)
            at_kink += abs(left - right) > tol
    assert at_kink, "a kink case must sit at a kink"
    for joint, pairs in tie_directions(p):
        left, right = one_sided(p, dout, inputs, 0, joint)
        assert abs(left - right) <= tol and abs(np.sum(grads[0] * joint) - right) <= tol
        for d in pairs:
            left, right = one_sided(p, dout, inputs, 0, d)
            assert min(left, right) - tol <= np.sum(grads[0] * d) <= max(left, right) + tol


@cases(expect="fail")
def test_bug_differs_from_its_right_twin(case):
    p, twin = case.numpy(), BY_ID[case.twin_id].numpy()
    inputs = float64(p)
    dout = cotangent(p, inputs)
    right = filled(twin.gradients(dout, *inputs), inputs)
    wrong = filled(p.gradients(dout, *inputs), inputs)
    moved_by = [
        float(np.max(np.abs(w - r))) / max(float(np.max(np.abs(r))), 1e-12)
        for r, w in zip(right, wrong)
    ]
    assert max(moved_by) > BUG_MIN_REL, moved_by


def test_tie_bug_differs_along_the_tied_groups():
    """Giving every tied maximum the whole gradient passes each coordinate's one-sided test
    (each value lies in [0, dout]) but not the joint direction of the tie."""
    case = BY_ID["maxpool/overlap_ties/every_tied_max"]
    p = case.numpy()
    inputs = float64(p)
    dout = cotangent(p, inputs)
    wrong = filled(p.gradients(dout, *inputs), inputs)[0]
    right = filled(BY_ID[case.twin_id].numpy().gradients(dout, *inputs), inputs)[0]
    scale = float(np.max(np.abs(right)))
    for joint, _ in tie_directions(p):
        left, slope = one_sided(p, dout, inputs, 0, joint)
        assert abs(np.sum(right * joint) - slope) <= RIGHT_RTOL * scale
        assert abs(np.sum(wrong * joint) - slope) > BUG_MIN_REL * scale


def test_keras_custom_gradient_labels():
    """The Keras cases' custom gradient: the right one is the tape's of the same activation
    written without it (float64), each bug moves it."""
    import tensorflow as tf
    from course_corpus import make_swish

    rng = np.random.default_rng(0)
    z = tf.constant(rng.standard_normal((5, 4)))
    beta = tf.constant(1.5, tf.float64)
    dy = tf.constant(rng.standard_normal((5, 4)))

    def tape(f):
        with tf.GradientTape() as t:
            t.watch([z, beta])
            out = f(z, beta)
        return [g.numpy() for g in t.gradient(out, [z, beta], output_gradients=dy)]

    exact = tape(lambda z, beta: z * tf.sigmoid(beta * z))
    right = tape(make_swish(None))
    for e, r in zip(exact, right):
        assert np.max(np.abs(e - r)) <= 1e-12 * max(1.0, float(np.max(np.abs(e))))
    for bug, index in (("beta_factor_missing", 0), ("dbeta_wrt_z", 1)):
        wrong = tape(make_swish(bug))
        scale = float(np.max(np.abs(right[index])))
        assert np.max(np.abs(wrong[index] - right[index])) > BUG_MIN_REL * scale, bug
        other = 1 - index
        assert np.array_equal(wrong[other], right[other]), bug  # only the one it corrupts
