"""Every threshold the verdict depends on, pinned from both sides.

For each named tolerance, floor, slack, interval and count of the judges, a wrong case a small
factor (2.5x) beyond it must fail and a right case within it (0.4x) must pass, in the mode and
dtype where it applies; so a threshold widened or narrowed tenfold fails a test here. The
models are designed (tests/designed.py) so that the quantity each threshold is computed from
(a tensor's largest gradient, the loss's rounding, the finest error the loss can show) is a
number chosen here, and the error planted sits a known factor from the threshold.

``make mutants`` plants each named constant x10 and /10 and flips each comparison of the judging
modules (tools/thresholds.py); this file runs first for every such mutant.
"""

import numpy as np
import pytest
from designed import NO_DATA, Block, Designed, erratic, offset_at, wiggly_float32

from reference import NoteCode, Status, check_gradients

EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
INSIDE, OUTSIDE = 0.4, 2.5  # the factors of a threshold at which a right and a wrong case sit
# The thresholds as this file knows them: each test plants its errors from these values, not
# from the code's (which a mutant changes), and what the code then does with them is the test.
PINNED = {
    "TAPE_RTOL": {"float64": 1e-10, "float32": 1e-5},
    "SCALE_FLOOR": 1e-2,
    "LOSS_ULPS": 256,
    "ROUNDING_ULPS": 256,
    "REFINE_WIDE": 1e-3,
    "STOP_EPS_POWER": 0.5,
}


def test_the_threshold_mutants_are_generated_from_the_code():
    """``make mutants`` finds the constants and comparisons it plants by reading the code; the
    constants it leaves out are named with a reason, and every such name still exists."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    try:
        import thresholds
    finally:
        sys.path.pop(0)
    planted = thresholds.generated()
    names = {p.name for p in planted}
    assert any("TAPE_RTOL['float32'] x10" in n for n in names), names
    assert any("ERRATIC /10" in n for n in names), names
    assert sum(p.kind == "flip" for p in planted) >= 30
    assert thresholds.stale() == [] and thresholds.unlisted() == []
    for p in planted:  # each plants a change that still compiles
        text = (thresholds.ROOT / p.site.rel).read_text()
        compile(p.apply(text), p.site.rel, "exec")


@pytest.fixture(autouse=True)
def _eager_losses(monkeypatch):
    """Finite differences evaluate the designed losses eagerly, as on an idle machine: whether a
    check compiles the loss is timed (``cost.worth_compiling``: a small model's 40 evaluations
    are compiled when one eager call takes over 6 ms, as under load), and the compiled graph
    rounds the loss differently (the noise of the test of the measured noise below is 2.5 times
    smaller there). The thresholds are pinned on one path; the compiled one has its tests in
    test_fast_paths."""
    import reference._checks.gradients as g

    monkeypatch.setattr(g, "worth_compiling", lambda *args: False)


def _check(model, **kwargs):
    return check_gradients(model, *NO_DATA, **kwargs)


def _entry(report, name):
    return next(e for e in report.entries if e.name == name)


# --- the tape's tolerance: TAPE_RTOL, per dtype ------------------------------------------------

_A = np.random.default_rng(0).uniform(0.5, 1.0, 6)
_W0 = np.random.default_rng(1).normal(size=6)


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_tape_tolerance_from_both_sides(dtype, mode):
    """One element off the tape by 2.5x TAPE_RTOL of the tensor's largest gradient fails; by
    0.4x it passes (a float32 model without astype is judged on its own float32 tape: held to
    float32 rounding of the gradient, not to what the loss resolves)."""
    rtol, scale = PINNED["TAPE_RTOL"][dtype], float(np.max(_A))
    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        model = Designed([Block(_A, _W0)], dtype=dtype, error=offset_at(0, 2, k * rtol * scale))
        report = _check(model, mode=mode)
        assert report.fd_dtype == dtype, str(report)
        verdicts[k] = report.entries[0].status
    assert verdicts == {INSIDE: Status.PASS, OUTSIDE: Status.FAIL}


def test_a_float32_gradient_1e_4_off_fails_on_its_own_tape():
    """The case that passed when the float32 tape's comparison inherited the loss's resolution
    (256 ulps of a loss of 1.1 against a gradient of 0.2): every element 1e-4 too large."""
    from mutants import HandBackprop

    class Scaled(HandBackprop):
        def weight_grad(self, a_prev, dz, a_this):
            return 1.0001 * super().weight_grad(a_prev, dz, a_this)

    model = Scaled([4, 6, 3], ["tanh", "linear"], "mse", dtype="float32", seed=0)
    model.astype = None  # judged as it is, in float32
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    report = check_gradients(model, X, y)
    assert report.fd_dtype == "float32" and not report.ok, str(report)
    assert {e.name for e in report.failing} == {"W1", "W2"}, str(report)


# --- the scale a tensor is judged on: SCALE_FLOOR ---------------------------------------------


def test_the_scale_floor_from_both_sides():
    """A tensor whose gradients are 1e-6 of the model's largest is judged on SCALE_FLOOR of
    the largest: an error of 2.5x TAPE_RTOL of that fails, 0.4x passes."""
    big, small = np.linspace(5.0, 10.0, 4), np.linspace(1e-6, 1e-5, 4)
    floor = PINNED["SCALE_FLOOR"] * 10.0
    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        delta = k * PINNED["TAPE_RTOL"]["float64"] * floor
        model = Designed([Block(big, _W0[:4]), Block(small, _W0[2:])], error=offset_at(1, 1, delta))
        verdicts[k] = _check(model).entries[1].status
    assert verdicts == {INSIDE: Status.PASS, OUTSIDE: Status.FAIL}


# --- what the rounding test may excuse: LOSS_ULPS, ROUNDING_ULPS, and what is erratic ---------


def test_the_loss_resolution_bounds_what_is_excused_as_rounding():
    """A difference from the tape that looks like rounding (erratic under 1e-6 nudges) and lies
    below what the loss resolves (LOSS_ULPS ulps of a loss of 1e5 per unit parameter, far above
    the gradient's own rounding) is excused at 0.4x that resolution, unverifiable at 2.5x."""
    offset = 1e5
    resolution = PINNED["LOSS_ULPS"] * EPS["float64"] * offset / max(1.0, np.max(np.abs(_W0)))
    out = {}
    for k in (INSIDE, OUTSIDE):
        model = Designed([Block(_A, _W0)], offset=offset, error=erratic(k * resolution))
        out[k] = _check(model).entries[0]
    assert out[INSIDE].status == Status.NOTES, out[INSIDE].detail()
    assert out[INSIDE].note(NoteCode.ROUNDING_EXCUSED), out[INSIDE].detail()
    assert out[OUTSIDE].status == Status.UNVERIFIABLE, out[OUTSIDE].detail()


def test_the_rounding_bound_from_both_sides():
    """float32: an erratic difference from the tape (larger than the tape's tolerance, smaller
    than finite differences resolve) is excused as rounding up to ROUNDING_ULPS ulps of the
    model's largest gradient: 0.4x passes with a note, 2.5x is unverifiable."""
    out = {}
    for k in (INSIDE, OUTSIDE):

        def error(largest, k=k):
            return erratic(k * PINNED["ROUNDING_ULPS"] * EPS["float32"] * largest, where=1)

        report = _check(wiggly_float32(error))
        assert report.fd_dtype == "float32", str(report)
        out[k] = report.entries[1]
    assert out[INSIDE].status == Status.NOTES and out[INSIDE].note(NoteCode.ROUNDING_EXCUSED)
    assert out[OUTSIDE].status == Status.UNVERIFIABLE, out[OUTSIDE].detail()


def _partly_erratic(amplitude, share):
    """A systematic error of ``amplitude`` of which a ``share`` moves erratically."""
    noise = erratic(amplitude * share, where=1)

    def error(i, w):
        return noise(i, w) + (amplitude if i == 1 else 0.0)

    return error


@pytest.mark.parametrize("share,excused", [(1.0 / 9.0, False), (None, True)])
def test_what_is_erratic_from_both_sides(share, excused):
    """A difference that moves by about a tenth of itself under 1e-6 nudges (2.5x below
    _ERRATIC = 0.25) is systematic: it fails, small as it is, and none of its elements is
    excused as rounding (those finite differences cannot resolve are the ones _ERRATIC
    decides). One that moves by about its own size (a sine of a phase that turns many times) is
    erratic: excused."""
    bound = PINNED["ROUNDING_ULPS"] * EPS["float32"]

    def error(largest):
        amplitude = INSIDE * bound * largest
        if share is None:
            return erratic(amplitude, where=1)
        return _partly_erratic(amplitude / (1.0 + share), share)

    entry = _check(wiggly_float32(error)).entries[1]
    if excused:
        assert entry.status == Status.NOTES and entry.note(NoteCode.ROUNDING_EXCUSED)
    else:
        assert entry.status == Status.FAIL, entry.detail()
        assert not entry.note(NoteCode.ROUNDING_EXCUSED), entry.detail()


def test_a_saturated_difference_steady_under_1e_6_is_excused_when_erratic_under_1e_3():
    """Below what the loss resolves, a difference that a 1e-6 nudge leaves in place but a 1e-3
    nudge (_LARGE_NUDGE) draws anew (the rounding of a saturated unit) is excused: its phase
    turns by about 1 rad under 1e-3 (by 0.1 under 1e-4: steady), while the tape's own gradient
    (a w^50) moves by 4%, and the difference by about its size, more than _SMOOTH_FACTOR (8)
    times as much but not 80 times. A difference that moves by half of itself but only 3x as
    much as the gradient does (d ~ w^600 against a w^200) is a bug."""
    rng = np.random.default_rng(0)
    n = 16
    a, w0 = rng.uniform(0.5, 1.0, n), np.ones(n)
    offset = 1e6  # what the loss resolves: 5.7e-8 per unit parameter
    amplitude = 1e-8  # 100x the tape tolerance (1e-10 x 1), below that resolution

    def steady_then_erratic(i, w):
        return erratic(amplitude, frequency=30.0)(i, w)

    def moves_with_the_gradient(i, w):
        return amplitude * (w / w0) ** 600

    out = {}
    for name, error, power in (
        ("erratic", steady_then_erratic, 50),
        ("smooth", moves_with_the_gradient, 200),
    ):
        model = Designed([Block(a, w0, power=power)], offset=offset, error=error)
        out[name] = _check(model).entries[0]
    assert out["erratic"].status == Status.NOTES, out["erratic"].detail()
    assert out["erratic"].note(NoteCode.ROUNDING_EXCUSED)
    assert out["smooth"].status == Status.FAIL, out["smooth"].detail()


# --- the float64 twin: its tolerance, and when it is the same code ---------------------------


def _twin_model(error=None, error32=None, shift=None):
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(0.5, 1.0, 6), rng.normal(size=6)
    start = w0 + 0.5 * rng.normal(size=6)
    block = Block(a, w0, start=start, shift=shift)
    return Designed([block], dtype="float32", twin=True, error=error, error32=error32)


def test_a_float32_model_judged_through_its_twin_is_held_to_float64s_tolerance():
    """The twin is judged at TAPE_RTOL['float64']: a gradient 2.5x that off (in both dtypes;
    float32 cannot even hold it) fails, 0.4x passes."""
    scale = float(np.max(np.abs(_twin_model().gradients(*NO_DATA)[0].numpy())))
    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        delta = k * PINNED["TAPE_RTOL"]["float64"] * scale
        report = _check(_twin_model(error=offset_at(0, 3, delta)))
        assert report.fd_dtype == "float64", str(report)
        verdicts[k] = report.entries[0].status
    assert verdicts == {INSIDE: Status.PASS, OUTSIDE: Status.FAIL}


def _tape_deviation(model):
    """TensorFlow's own float32-vs-float64 tape difference on the model (largest, absolute)."""
    from reference._core.adapter import Adapter
    from reference._core.tape import tape_values

    adapter = Adapter(model, *NO_DATA)
    t32, t64 = tape_values(adapter)[0], tape_values(adapter.twin64())[0]
    return float(np.max(np.abs(t32 - t64)))


def test_the_twin_is_the_same_code_within_the_tapes_own_float32_rounding():
    """The float32 gradients may differ from the float64 twin's by TAPE_DEVIATION_FACTOR (4)
    times what TensorFlow's own tape shows between the two dtypes on this model (1000 w read next
    to 1e6: 3e-5): 0.4x that and the model is judged through its twin (no float32 note), 2.5x
    and it is judged as it is, in float32, and says why."""
    tdev = _tape_deviation(_twin_model(shift=1e6))
    assert tdev > 1e-5  # the tape's own rounding dominates the float32 tolerances
    out = {}
    for k in (INSIDE, OUTSIDE):
        model = _twin_model(error32=offset_at(0, 1, k * 4.0 * tdev), shift=1e6)
        out[k] = _check(model)
    assert out[INSIDE].fd_dtype == "float64" and out[INSIDE].ok, str(out[INSIDE])
    assert not out[INSIDE].entries[0].note(NoteCode.FLOAT32_ROUNDING), str(out[INSIDE])
    assert out[OUTSIDE].fd_dtype == "float32", str(out[OUTSIDE])
    assert "not the same code" in " ".join(out[OUTSIDE].notes), str(out[OUTSIDE])


def test_float32_rounding_beyond_the_tolerance_is_noted():
    """Within the same code, a float32 gradient further from its twin than TAPE_RTOL['float32']
    of its scale (and than 4x the tape's own difference) gets a float32-rounding note: 2.5x
    noted, 0.4x not."""
    scale = float(np.max(np.abs(_twin_model().gradients(*NO_DATA)[0].numpy())))
    noted = {}
    for k in (INSIDE, OUTSIDE):
        delta = k * PINNED["TAPE_RTOL"]["float32"] * scale
        report = _check(_twin_model(error32=offset_at(0, 1, delta)))
        assert report.fd_dtype == "float64" and report.ok, str(report)
        noted[k] = report.entries[0].note(NoteCode.FLOAT32_ROUNDING) is not None
    assert noted == {INSIDE: False, OUTSIDE: True}


def test_the_twin_is_the_same_code_within_256_ulps_of_the_largest_gradient():
    """The float32 gradients may differ from the float64 twin's by the rounding bound,
    ROUNDING_ULPS (256) float32 ulps of the model's largest gradient (here above TAPE_RTOL x the
    tensor's scale, what the loss resolves and 4x the tape's own difference): 0.4x that and the
    model is judged through its twin; 2.5x and it is not the same code: judged as it is, in
    float32, where the difference fails."""
    scale = float(np.max(np.abs(_twin_model().gradients(*NO_DATA)[0].numpy())))
    bound = PINNED["ROUNDING_ULPS"] * EPS["float32"] * scale
    out = {k: _check(_twin_model(error32=offset_at(0, 1, k * bound))) for k in (INSIDE, OUTSIDE)}
    assert out[INSIDE].fd_dtype == "float64" and out[INSIDE].ok, str(out[INSIDE])
    assert out[OUTSIDE].fd_dtype == "float32" and not out[OUTSIDE].ok, str(out[OUTSIDE])
    assert "not the same code" in " ".join(out[OUTSIDE].notes), str(out[OUTSIDE])


# --- the independent forward ---------------------------------------------------------------


def _scaled_loss(factor, dtype="float64", near_zero=False):
    """The catalogue network [3, 4, 2] with its loss and every gradient times ``factor`` (a
    forward bug the backward mirrors: only the independent forward can see it)."""
    import tensorflow as tf
    from mutants import HandBackprop

    class ScaledLoss(HandBackprop):
        def astype(self, dtype):
            other = ScaledLoss(None, None, None, base=self.base.astype(dtype))
            other.factor = self.factor
            return other

        def loss(self, X, y):
            return tf.constant(self.factor, self.base.dtype) * self.base.loss(X, y)

        def gradients(self, X, y):
            f = tf.constant(self.factor, self.base.dtype)
            return [f * g for g in super().gradients(X, y)]

        def input_gradient(self, X, y):
            return tf.constant(self.factor, self.base.dtype) * super().input_gradient(X, y)

    model = ScaledLoss([3, 4, 2], ["tanh", "linear"], "mse", dtype=dtype, seed=0)
    model.factor = factor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3))
    if near_zero:  # outputs near 10, the loss near 1e-8: the ulps of the outputs dominate
        W1, b1, W2, b2 = model.base.get_weights()
        model.base.set_weights([W1, b1, W2, b2 + 10.0])
        return model, X, model.base.forward(X).numpy().astype(np.float64) + 1e-4
    return model, X, rng.normal(size=(5, 2))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_independent_forward_from_both_sides(dtype):
    """The loss must equal the network rebuilt from primitives to FORWARD_RTOL (1e-9): a loss
    2.5e-9 too large fails, 4e-10 passes; a float32 model judged through its float64 twin is
    held to float64's tolerance (its float32 loss could not even show the difference)."""
    ok = {}
    for k in (INSIDE, OUTSIDE):
        model, X, y = _scaled_loss(1.0 + k * 1e-9, dtype)
        report = check_gradients(model, X, y)
        assert report.fd_dtype == "float64" and report.forward is not None, str(report)
        assert all(e.ok for e in report.entries), str(report)
        ok[k] = report.forward.ok
    assert ok == {INSIDE: True, OUTSIDE: False}


def test_the_independent_forward_allows_ulps_of_the_outputs():
    """A loss of 1e-8 computed from outputs near 10 carries rounding of 64 ulps of those
    outputs (_FORWARD_ULPS): 1.5e-5 of itself. 0.4x that passes, 2.5x fails."""
    model, X, y = _scaled_loss(1.0, near_zero=True)
    loss = float(model.loss(X, y))
    outputs = float(np.max(np.abs(model.base.forward(X).numpy())))  # linear: z = a
    allowed = 1e-9 + 64 * EPS["float64"] * (1.0 + outputs) / loss
    assert 1e-6 < allowed < 1e-4  # the ulps of the outputs, not FORWARD_RTOL
    ok = {}
    for k in (INSIDE, OUTSIDE):
        model, X, y = _scaled_loss(1.0 + k * allowed, near_zero=True)
        ok[k] = check_gradients(model, X, y).forward.ok
    assert ok == {INSIDE: True, OUTSIDE: False}


# --- check_derivative: the scale it judges on, and where -------------------------------------


def _cube_with_a_bump(height=3000.0):
    """x^3 plus a bump of ``height`` in its derivative at x = 10 exactly (a Gaussian 0.1 wide):
    the derivative's largest value over |x| <= 10 (_INNER) is 3300, at x = 10 only; over the
    grid [-8, 8] 192; at the large sample points far more (2700 at 30, 3e60 at 1e30)."""
    import tensorflow as tf

    def fn(x):
        width = tf.constant(0.1, x.dtype)
        bump = height * 0.5 * np.sqrt(np.pi) * width * tf.math.erf((x - 10.0) / width)
        return x**3 + bump

    def derivative(x):
        return 3.0 * x**2 + height * tf.exp(-tf.square((x - 10.0) / 0.1))

    return fn, derivative


def _off(derivative, delta, where):
    import tensorflow as tf

    def wrong(x):
        return derivative(x) + tf.where(where(x), tf.constant(delta, x.dtype), tf.zeros_like(x))

    return wrong


def test_check_derivative_judges_on_the_derivatives_scale_over_ordinary_inputs():
    """The claimed derivative is held to TAPE_RTOL of its largest value over |x| <= 10 (3300
    here), not over every sample (3e60 at 1e30), nor only over the grid [-8, 8] (192): an error
    at |x| <= 1 of 2.5x that tolerance fails, 0.4x passes."""
    from reference import check_derivative

    fn, derivative = _cube_with_a_bump()
    tol = PINNED["TAPE_RTOL"]["float64"] * 3300.0
    ok = {}
    for k in (INSIDE, OUTSIDE):
        report = check_derivative(fn, _off(derivative, k * tol, lambda x: abs(x) <= 1.0))
        ok[k] = report.ok
    assert ok == {INSIDE: True, OUTSIDE: False}


def test_check_derivative_fails_a_derivative_wrong_only_far_out():
    """Wrong only past x = 20 (by 2.5x the tolerance there): the failures are the points out
    there. By 0.4x: a pass."""
    from reference import check_derivative

    fn, derivative = _cube_with_a_bump()
    rtol = PINNED["TAPE_RTOL"]["float64"]
    out = {}
    for k in (INSIDE, OUTSIDE):
        import tensorflow as tf

        def wrong(x, k=k):
            far = tf.cast(x > 20.0, x.dtype)
            return derivative(x) * (1.0 + k * rtol * far)

        out[k] = check_derivative(fn, wrong)
    assert out[INSIDE].ok, str(out[INSIDE])
    assert not out[OUTSIDE].ok, str(out[OUTSIDE])
    assert {f["x"] for f in out[OUTSIDE].failures} >= {30.0, 100.0, 1000.0}, str(out[OUTSIDE])


# --- regression snapshots: each tensor to its own scale, the loss to itself --------------------


class _Changed:
    """``model`` with tensor ``index``'s gradient moved by ``delta`` everywhere, or its loss
    times ``1 + loss_delta``."""

    def __init__(self, model, index=None, delta=0.0, loss_delta=0.0):
        self.model, self.index, self.delta, self.loss_delta = model, index, delta, loss_delta
        self.params, self.param_names = model.params, model.param_names

    def loss(self, X, y):
        return self.model.loss(X, y) * (1.0 + self.loss_delta)

    def gradients(self, X, y):
        grads = [g.numpy() for g in self.model.gradients(X, y)]
        if self.index is not None:
            grads[self.index] = grads[self.index] + self.delta
        return grads


def _snapshot_matches(gradcheck, path, monkeypatch, stored, current):
    """Does ``current`` match the snapshot taken of ``stored`` (with the default tolerance)?
    Only a difference of values fails it here (each call takes a snapshot of its own name)."""
    import _pytest.outcomes

    from reference import _snapshots as snapshots

    monkeypatch.setattr(type(gradcheck), "snapshot_path", lambda self, name: path)
    snapshots.write(path, snapshots.take(stored, *NO_DATA))
    try:
        gradcheck.snapshot(path.stem.replace("0.", "0_"), current, *NO_DATA)
    except _pytest.outcomes.Failed as exc:
        assert "differ from snapshot" in str(exc), str(exc)
        return False
    return True


def _small_and_large():
    """A tensor of gradients near 10 and one of gradients near 1e-3; the loss 1e-3."""
    large = Block(np.linspace(5.0, 10.0, 4), np.zeros(4), start=np.full(4, 1e-4))
    small = Block(np.linspace(1e-3, 2e-3, 3), np.zeros(3), start=np.full(3, 1e-4))
    return Designed([large, small])


def test_a_snapshot_holds_each_tensor_to_its_own_largest_gradient(gradcheck, tmp_path, monkeypatch):
    """The tensor of gradients near 1e-3, moved by 2.5x TAPE_RTOL of its own largest (2e-3),
    fails the snapshot; by 0.4x it matches (judged on the model's largest, 10, both would)."""
    model = _small_and_large()
    tol = PINNED["TAPE_RTOL"]["float64"] * 2e-3
    matches = {
        k: _snapshot_matches(
            gradcheck, tmp_path / f"{k}.npz", monkeypatch, model, _Changed(model, 1, k * tol)
        )
        for k in (INSIDE, OUTSIDE)
    }
    assert matches == {INSIDE: True, OUTSIDE: False}


def test_a_snapshot_holds_the_loss_to_itself(gradcheck, tmp_path, monkeypatch):
    """A loss of 1e-3 changed by 2.5x TAPE_RTOL of itself fails the snapshot (the forward
    changed), by 0.4x it matches (held to TAPE_RTOL x 1, both would)."""
    model = _small_and_large()
    loss = float(model.loss(*NO_DATA))
    assert 1e-4 < loss < 1e-2
    rtol = PINNED["TAPE_RTOL"]["float64"]
    matches = {
        k: _snapshot_matches(
            gradcheck,
            tmp_path / f"{k}.npz",
            monkeypatch,
            model,
            _Changed(model, loss_delta=k * rtol),
        )
        for k in (INSIDE, OUTSIDE)
    }
    assert matches == {INSIDE: True, OUTSIDE: False}


# --- the command line: exit 1 on any report that is not ok ------------------------------------

_CLI_MODELS = """
import numpy as np
import tensorflow as tf
import sys
sys.path.insert(0, {tests!r})
from designed import NO_DATA, Block, Designed, erratic, wiggly_float32


class Random(Designed):
    def loss(self, X, y):
        return super().loss(X, y) + tf.random.uniform((), 0.0, 1e-3, dtype=tf.float64)


def impure():
    return (Random([Block(np.ones(3), np.zeros(3))]), *NO_DATA)


def unverifiable():
    bound = 256 * float(np.finfo(np.float32).eps)
    model = wiggly_float32(lambda largest: erratic(2.5 * bound * largest, where=1))
    return (model, *NO_DATA)


def right():
    return (Designed([Block(np.ones(3), np.zeros(3))]), *NO_DATA)
"""


@pytest.mark.parametrize("factory,code", [("right", 0), ("impure", 1), ("unverifiable", 1)])
def test_gradcheck_model_exits_1_on_any_report_that_is_not_ok(
    factory, code, tmp_path, monkeypatch, capsys
):
    """Not only a failed tensor: a loss that is not deterministic (nothing judged) and a tensor
    no witness could judge are not a pass either."""
    from pathlib import Path

    from reference._cli import main

    tests = str(Path(__file__).resolve().parent)
    (tmp_path / "cli_models.py").write_text(_CLI_MODELS.format(tests=tests))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["model", f"cli_models:{factory}"]) == code, capsys.readouterr().out


# --- kinks: the accepted interval, and the region test's match -----------------------------


def _abs_plus_a_cubic_side(c=1e3):
    """|x| + c relu(tanh x)^3: at 0 the one-sided derivatives are -1 and 1, and the right side
    bends like c x^3, so that finite differences' estimate of it (2F(h/2) - F(h)) falls short
    of 1 by c h^2 / 2 (7.5e-6) while their stated error is 3 c h^2 / 4 (1.1e-5)."""
    import tensorflow as tf

    def fn(x):
        return tf.abs(x) + c * tf.nn.relu(tf.tanh(x)) ** 3

    def derivative_with(value_at_0):
        def derivative(x):
            t = tf.tanh(x)
            d = tf.sign(x) + 3.0 * c * tf.nn.relu(t) ** 2 * (1.0 - t * t)
            return tf.where(tf.equal(x, 0.0), tf.constant(value_at_0, x.dtype), d)

        return derivative

    return fn, derivative_with


def test_a_kinks_interval_is_the_one_sided_derivatives_within_their_error():
    """At 0 the subgradients are [-1, 1]. The right end, 1, passes although finite differences
    put it 7.5e-6 outside their estimate (their error: 1.1e-5); 1 + 9.5e-6 (2.5x the margin
    they leave, 3.7e-6) fails, as do 1.5 and -1.5; 0 and 0.5 pass."""
    from reference import check_derivative

    fn, derivative_with = _abs_plus_a_cubic_side()
    h = 2.0**-13
    margin = 0.75e3 * h**2 - 0.5e3 * h**2  # kink error minus the shortfall
    verdicts = {
        v: check_derivative(fn, derivative_with(v)).ok
        for v in (0.0, 0.5, 1.0, 1.0 + OUTSIDE * margin, 1.5, -1.5)
    }
    assert verdicts == {
        0.0: True,
        0.5: True,
        1.0: True,
        1.0 + OUTSIDE * margin: False,
        1.5: False,
        -1.5: False,
    }


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize(
    "value,ok", [(0.0, True), (0.5, True), (1.0, True), (1.5, False), (-0.5, False)]
)
def test_relu_prime_at_0_must_be_a_subgradient(value, ok, mode):
    """A ReLU network with units at their kinks (zero input rows): relu'(0) anywhere in [0, 1]
    is a valid subgradient (TensorFlow's 0 among them); 1.5 and -0.5 are not."""
    import tensorflow as tf
    from mutants import HandBackprop

    class ReluPrimeAtZero(HandBackprop):
        def hidden_delta(self, l, z, a, g):
            one = tf.ones_like(z)
            d = tf.where(z > 0, one, tf.where(tf.equal(z, 0.0), value * one, 0.0 * one))
            return g * d

    model = ReluPrimeAtZero([3, 4, 2], ["relu", "linear"], "mse", dtype="float64", seed=0)
    X = np.zeros((4, 3))
    X[1] = [-1.0, 0.0, 1.0]
    X[3] = 0.5
    report = check_gradients(model, X, np.ones((4, 2)), mode=mode)
    b1 = _entry(report, "b1")
    assert b1.ok == ok, str(report)


def test_the_region_test_matches_to_the_tapes_tolerance():
    """Where several kinks meet and relu'(0) = 1 is the gradient of the region next to the
    point, an element moved off that region's gradient by 2.5x the tape's tolerance fails; by
    0.4x it is still the region's (noted)."""
    from corpus import CASES

    spec = next(
        c for c in CASES if c.name == "zero_bias_relu" and c.bug is None and c.dtype == "float64"
    )
    model, X, y = spec.build()
    report = check_gradients(model, X, y)
    b1 = _entry(report, "b1")
    assert report.ok and b1.note(NoteCode.KINK_REGION), str(report)
    index = model.param_names.index("b1")
    element = tuple(np.argwhere(b1.elements.kink_region)[0])
    scale = float(np.max(np.abs(model.gradients(X, y)[index].numpy())))
    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        delta = k * PINNED["TAPE_RTOL"]["float64"] * scale
        moved = _Changed(model)
        moved.gradients = lambda X, y, d=delta: [
            g.numpy() + (d * _unit(g.shape, element) if i == index else 0.0)
            for i, g in enumerate(model.gradients(X, y))
        ]
        verdicts[k] = _entry(check_gradients(moved, X, y), "b1").status
    assert verdicts == {INSIDE: Status.NOTES, OUTSIDE: Status.FAIL}


def _nested(model):
    report = check_gradients(model, model.X, model.y)
    return report, {e.name: e for e in report.entries}


def test_the_region_without_a_tape_ends_before_another_units_kink():
    """No tape, kinks meeting at a zero row, and a unit of layer 1 2e-5 below its kink at
    another row. The biases are pushed by 2^-14 x 4^-j (_FD_REGION_BASE, _LADDER) and the
    gradient must change 4 times less from one push to the next (to _LADDER_SLACK, a quarter,
    of itself): the pushes past 2e-5 carry the unit across, and the region's finite differences
    are taken at the largest push short of it (1.5e-5), with steps 2^-6 of it
    (_FD_REGION_STEP; steps 2/3 of it would cross the kink). A right backward passes there; one
    that forgets alpha where that unit is inactive (right past the kink, wrong at the point)
    fails at W1, and no element of W1 is called a region's gradient."""
    from designed import NestedKinks

    right, entries = _nested(NestedKinks(2e-5))
    assert right.ok and entries["b1"].note(NoteCode.KINK_REGION_FD), str(right)
    wrong, entries = _nested(NestedKinks(2e-5, drop_alpha=True))
    assert entries["W1"].status == Status.FAIL, str(wrong)
    assert not np.any(entries["W1"].elements.kink_region), str(wrong)


def test_the_regions_finite_differences_must_resolve_a_millionth():
    """Inside the region, finite differences count only where they resolve an element to
    _FD_REGION_RESOLUTION (1e-6) of its tensor's scale. A loss offset by 10 rounds so that they
    resolve b1 to 0.4e-6 there: its kinked elements are the region's gradient (noted); offset by
    64, to 2.4e-6 (2.5x beyond): they agree but cannot tell, and b1 is unverifiable (not failed,
    not passed)."""
    from designed import NestedKinks

    report, entries = _nested(NestedKinks(2e-5, offset=10.0))
    assert report.ok and entries["b1"].note(NoteCode.KINK_REGION_FD), str(report)
    report, entries = _nested(NestedKinks(2e-5, offset=64.0))
    b1 = entries["b1"]
    assert b1.status == Status.UNVERIFIABLE, str(report)
    note = b1.note(NoteCode.KINK_REGION_COARSE)
    assert note is not None and 2e-6 < note.values["resolution"] < 3e-6, str(report)


def _unit(shape, index):
    out = np.zeros(shape)
    out[index] = 1.0
    return out


# --- exact zeros: where a comparison's two sides are equal -----------------------------------


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("numpy", [False, True])
def test_a_model_at_its_minimum_passes_with_finite_numbers(numpy, mode):
    """Every gradient exactly 0 (the loss at its minimum): the tape's tolerance is 0 and the
    manual value equals the tape's exactly, which is a match; every number the report prints is
    finite (relative to a scale of 0, an error of 0 is 0)."""
    import json

    model = Designed([Block(np.zeros(5), np.ones(5)), Block(np.zeros(2), np.ones(2))], numpy=numpy)
    report = _check(model, mode=mode)
    assert report.ok, str(report)
    assert all(e.status == Status.PASS for e in report.entries), str(report)
    text = json.dumps(report.to_dict())
    assert "nan" not in text.lower() and "inf" not in text.lower(), text
    for e in report.entries:
        assert all(np.isfinite(c.relative) and c.relative < 1e-12 for c in e.comparisons)
        assert e.rel_error == 0.0 and (e.tolerance is None or np.isfinite(e.tolerance))


# --- finite differences judging alone (NumPy models): what they accept ------------------------


def test_finite_differences_alone_allow_the_slack_from_both_sides():
    """No tape (NumPy parameters): finite differences accept their error estimate (8e-11 here:
    a quadratic loss of value 0, whose noise is the floor of 4 ulps of 1) plus the slack
    TAPE_RTOL x the tensor's scale (1e-9 here). An element off by 2.5x the slack fails, by 0.4x
    it passes."""
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(5.0, 10.0, 8), rng.normal(size=8)
    slack = PINNED["TAPE_RTOL"]["float64"] * float(np.max(a))
    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        model = Designed([Block(a, w0)], numpy=True, error=offset_at(0, 5, k * slack))
        report = _check(model)
        assert report.tape_blind, str(report)
        verdicts[k] = report.entries[0].status
    assert verdicts == {INSIDE: Status.PASS, OUTSIDE: Status.FAIL}


# CS231n's two-layer network in NumPy (float64, hidden 5, batch 8): what finite differences
# alone accept at W1[1, 1] (its largest gradient, 0.126), relative to that: their error (the
# noise floor, 4 ulps of the loss, over the step) plus the slack, measured on this code as
# 9.47e-10. A tenfold wider estimate or slack accepts 2.5x that.
_CS231N_W1_ALLOWED = 9.47e-10


def test_a_numpy_course_model_fails_an_element_2_5x_beyond_what_finite_differences_resolve():
    from numpy_corpus import _build_cs231n

    verdicts = {}
    for k in (INSIDE, OUTSIDE):
        model, X, y = _build_cs231n(None, "float64", 0, 5, 8)
        scale = float(np.max(np.abs(model.gradients(X, y)[0])))
        right = model.gradients

        def gradients(X, y, right=right, delta=k * _CS231N_W1_ALLOWED * scale):
            grads = right(X, y)
            grads[0] = grads[0].copy()
            grads[0][1, 1] += delta
            return grads

        model.gradients = gradients
        report = check_gradients(model, X, y)
        assert report.tape_blind, str(report)
        verdicts[k] = report.entries[0].status
    assert verdicts == {INSIDE: Status.PASS, OUTSIDE: Status.FAIL}


# A wiggle amp sin(F w) with every weight at a crest of its cosine (F w a multiple of 2 pi):
# Richardson's value errs by O(h^4) there, but its error bar, 4 |D(h/2) - D(h)|, is
# amp F^3 h^2 / 2 along every line (h = 2^-13, |w| <= 1).
_WIGGLE_F, _ALONE_STEP = 1000.0, 2.0**-13


def _wiggle_with_bar(share, delta_share, mode):
    """A NumPy model (finite differences judge alone) whose default step's error bar is
    ``share`` of the tensor's scale along every line, with ``delta_share`` of the bar planted
    at element 5."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, 8)
    w0 = 2.0 * np.pi * np.round(rng.uniform(-1.0, 1.0, 8) * _WIGGLE_F / (2.0 * np.pi)) / _WIGGLE_F
    per_amp = _WIGGLE_F**3 * _ALONE_STEP**2 / 2.0  # the bar per unit of amp
    # bar = share * scale, scale = max(a) + amp F: solved for amp.
    amp = share * float(np.max(a)) / (per_amp - share * _WIGGLE_F)
    bar = amp * per_amp
    block = Block(a, w0, wiggle=(amp, _WIGGLE_F))
    model = Designed([block], numpy=True, error=offset_at(0, 5, delta_share * bar))
    return check_gradients(model, *NO_DATA, mode=mode)


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_finite_differences_alone_refine_a_line_whose_error_bar_exceeds_1e_3_of_the_scale(mode):
    """No tape: an estimate whose error bar (beyond rounding) is more than REFINE_WIDE (1e-3) of
    the tensor's scale is differenced again with smaller steps, which resolve it 256 times more
    finely on a smooth line: an element off by half that bar, at a bar 2.5x REFINE_WIDE, fails
    (a tenfold REFINE_WIDE would let the default step's bar accept it). A right model with bars
    at 0.4x REFINE_WIDE passes unnoted. (REFINE_WIDE / 10 refines more lines, only sharper:
    tools/thresholds.ARGUED.)"""
    wide = PINNED["REFINE_WIDE"]
    wrong = _wiggle_with_bar(OUTSIDE * wide, 0.5, mode)
    assert wrong.tape_blind and wrong.entries[0].status == Status.FAIL, str(wrong)
    right = _wiggle_with_bar(INSIDE * wide, 0.0, mode)
    assert right.entries[0].status == Status.PASS, str(right)


@pytest.mark.parametrize("delta", [0.0, 1e-4])
def test_finite_differences_alone_keep_the_smallest_step_where_it_errs_least(delta):
    """No tape, a wiggle 1e-8 sin(1e5 w) at its crests: the default step spans two turns of it,
    and truncation outweighs rounding down to the smallest step (4096 times smaller), which is
    kept. The right model passes; an element off by 1e-4 of the scale fails."""
    rng = np.random.default_rng(0)
    a, freq = rng.uniform(0.5, 1.0, 8), 1e5
    w0 = 2.0 * np.pi * np.round(rng.uniform(-1.0, 1.0, 8) * freq / (2.0 * np.pi)) / freq
    block = Block(a, w0, wiggle=(1e-8, freq))
    scale = float(np.max(a)) + 1e-3
    report = _check(Designed([block], numpy=True, error=offset_at(0, 5, delta * scale)))
    assert report.tape_blind, str(report)
    assert report.entries[0].status == (Status.FAIL if delta else Status.PASS), str(report)


# --- the tape as a witness: what tf.stop_gradient drops -------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_stop_gradient_matters_where_it_drops_more_than_sqrt_eps_of_the_gradient(dtype):
    """sum(a w + w^2 / 2) + sum(tf.stop_gradient(r a w)): the tape misses r a of a gradient near
    a, and the forward is taken for one that overrides TensorFlow's derivative (the tape is no
    witness there) where r is beyond eps^_STOP_EPS_POWER (sqrt(eps)): at 2.5x it is, at 0.4x it
    is not (tf.nn.moments drops rounding, 1e-12 of the gradient in float64)."""
    import tensorflow as tf

    from reference._core.tape import overrides

    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, 8).astype(dtype)
    w = tf.Variable(rng.normal(size=8).astype(dtype))
    bound = float(np.finfo(dtype).eps) ** PINNED["STOP_EPS_POWER"]

    def stops(r):
        ra = (r * a).astype(dtype)  # a constant of the graph, as a and w^2 / 2 are
        return lambda: tf.reduce_sum(a * w + 0.5 * w * w) + tf.reduce_sum(tf.stop_gradient(ra * w))

    found = {k: "tf.stop_gradient" in overrides(stops(k * bound)) for k in (INSIDE, OUTSIDE)}
    assert found == {INSIDE: False, OUTSIDE: True}


# --- check_derivative: where it samples -----------------------------------------------------


def _relu_at_3_wrong_where(where):
    """relu(x - 3) with a derivative of 5 (no subgradient: those lie in [0, 1]) wherever
    ``where(x)`` holds, and right elsewhere."""
    import tensorflow as tf

    def fn(x):
        return tf.nn.relu(x - 3.0)

    def derivative(x):
        right = tf.cast(x > 3.0, x.dtype)
        return tf.where(where(x), tf.constant(5.0, x.dtype), right)

    return fn, derivative


@pytest.mark.parametrize(
    "window,what",
    [
        ((1e-8, 5e-8), "a kink's near neighbours (1e-8 of it, relative: 3e-8 at 3)"),
        ((2e-5, 5e-4), "a kink's neighbours just outside a step (1e-4)"),
    ],
)
def test_check_derivative_samples_beside_every_common_kink(window, what):
    """A derivative wrong only at distances ``window`` from the kink at 3 (one of the kinks
    every check samples with its neighbours) fails: the check samples {what}."""
    import tensorflow as tf

    from reference import check_derivative

    lo, hi = window

    def where(x):
        d = tf.abs(x - 3.0)
        return tf.logical_and(d > lo, d < hi)

    report = check_derivative(*_relu_at_3_wrong_where(where))
    assert not report.ok, str(report)
    assert all(lo < abs(f["x"] - 3.0) < hi for f in report.failures), str(report)


@pytest.mark.parametrize(
    "centre,half,what",
    [
        (7.5, 0.002, "the ordinary grid (321 points over [-8, 8])"),
        (-6.975127, 0.01, "the 13th of 64 random points of scale 3 (nearest grid point 0.025)"),
    ],
)
def test_check_derivative_samples_the_grid_and_random_points(centre, half, what):
    """A derivative wrong only within ``half`` of ``centre`` fails: there lies {what}."""
    import tensorflow as tf

    from reference import check_derivative

    def fn(x):
        return tf.sin(x)

    def derivative(x):
        bad = tf.abs(x - centre) < half
        return tf.where(bad, 2.0 * tf.cos(x) + 1.0, tf.cos(x))

    report = check_derivative(fn, derivative)
    assert not report.ok, str(report)
    assert all(abs(f["x"] - centre) < half for f in report.failures), str(report)


def test_check_derivative_judges_tail_points_on_the_grids_scale():
    """Checked at tail points only (x = 20, 25), a derivative that peaks at x = 5 (a bump 0.01
    wide: the grid of 161 points over [-8, 8] meets its top) is judged on that peak: an error
    of 0.4x TAPE_RTOL of it passes (rounding of a formula that cancels there), 2.5x fails."""
    import tensorflow as tf

    from reference import check_derivative

    width = 0.01

    def fn(x):
        return 0.5 * np.sqrt(np.pi) * width * tf.math.erf((x - 5.0) / width) + 1e-3 * x

    def derivative_off(delta):
        def derivative(x):
            return tf.exp(-tf.square((x - 5.0) / width)) + 1e-3 + delta

        return derivative

    rtol = PINNED["TAPE_RTOL"]["float64"]
    ok = {
        k: check_derivative(fn, derivative_off(k * rtol), points=[20.0, 25.0]).ok
        for k in (INSIDE, OUTSIDE)
    }
    assert ok == {INSIDE: True, OUTSIDE: False}


def test_check_derivative_alone_from_both_sides():
    """A custom gradient judged by finite differences alone (no claimed derivative): the
    identity's custom gradient 1 + d, where finite differences allow their error (the noise of
    4 ulps of the values on the stencil, over the step: 8.3e-11 at |x| >= 1) plus the slack
    (TAPE_RTOL x 1): d = 2.5x that fails, 0.4x passes."""
    import tensorflow as tf

    from reference import check_derivative

    allowed = 8.3e-11 + PINNED["TAPE_RTOL"]["float64"]

    def identity_with(d):
        @tf.custom_gradient
        def identity(x):
            return tf.identity(x), lambda g: g * (1.0 + d)

        return identity

    ok = {k: check_derivative(identity_with(k * allowed)).ok for k in (INSIDE, OUTSIDE)}
    assert ok == {INSIDE: True, OUTSIDE: False}


# --- finite differences against an unfaithful tape: their error estimate from both sides -----
#
# A custom gradient in the forward makes the tape's gradient of one element wrong by a chosen
# amount while the hand-written one is right. Finite differences overrule the tape only where
# they resolve the difference (beyond their error estimate): at 2.5x their estimate the tape is
# noted unfaithful and the check passes; at 0.4x they cannot tell manual from tape, and the
# element fails. Each scenario makes one part of the estimate dominate.

_R_NOISE = np.sqrt(32.0 / 9.0 + 2.0 / 36.0)  # the noise of a Richardson value, in sigma_f / h


def _step(w, dtype):
    """The harness's power-of-two step at w (eps^(1/4) max(1, |w|), rounded to a power of 2)."""
    eps = EPS[dtype]
    return 2.0 ** np.round(np.log2(eps**0.25 * np.maximum(1.0, np.abs(w))))


def _tape_overruled(model_at, error, element):
    """{k: status} of the element's tensor with the tape wrong by k x ``error``."""
    out = {}
    for k in (INSIDE, OUTSIDE):
        tape_error = np.zeros(8)
        tape_error[element] = k * error
        report = _check(model_at(lambda i, e=tape_error: e))
        out[k] = report.entries[0]
    return out


def test_the_tape_is_overruled_beyond_the_noise_finite_differences_allow():
    """float32, a loss of 2.2: the rounding noise of one evaluation is taken as 4 ulps of it
    (_FLOOR_ULPS), and a Richardson value is allowed 6 sigma of it (ROUNDING_SIGMAS) over the
    step (2^-6)."""
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(0.5, 1.0, 8), 0.5 * rng.normal(size=8)
    start = w0 + 0.3

    def model_at(tape_error):
        return Designed([Block(a, w0, start=start)], dtype="float32", tape_error=tape_error)

    f0 = float(model_at(None).loss(*NO_DATA))
    sigma = 4.0 * EPS["float32"] * f0
    error = 6.0 * _R_NOISE * sigma / _step(start[3], "float32")
    out = _tape_overruled(model_at, error, 3)
    assert out[OUTSIDE].status == Status.NOTES, out[OUTSIDE].detail()
    assert out[OUTSIDE].note(NoteCode.TAPE_UNFAITHFUL), out[OUTSIDE].detail()
    assert out[INSIDE].status == Status.FAIL, out[INSIDE].detail()


def test_the_tape_is_overruled_beyond_the_truncation_finite_differences_allow():
    """float64, a loss that curves (1e-3 sin(50 w)): the estimate's error is
    TRUNCATION_SAFETY (4) times the change of the central difference from h to h/2."""
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(0.5, 1.0, 8), 0.5 * rng.normal(size=8)
    start = w0 + 0.3
    amp, freq = 1e-3, 50.0

    def model_at(tape_error):
        return Designed([Block(a, w0, start=start, wiggle=(amp, freq))], tape_error=tape_error)

    w, h = start[3], _step(start[3], "float64")
    sinc = lambda x: np.sin(x) / x  # noqa: E731
    change = amp * freq * np.cos(freq * w) * (sinc(freq * h / 2) - sinc(freq * h))
    out = _tape_overruled(model_at, 4.0 * abs(change), 3)
    assert out[OUTSIDE].status == Status.NOTES, out[OUTSIDE].detail()
    assert out[INSIDE].status == Status.FAIL, out[INSIDE].detail()


# --- kinks: how large a jump is one --------------------------------------------------------


def _kinked(c, *, numpy):
    """Every element at a kink of c |w - w0| on a line with no curvature (b = 0), the loss near
    1000 (its rounding noise: 4 ulps of 1000); the hand-written gradient takes the right side."""
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(0.5, 1.0, 8), 0.5 * rng.normal(size=8)
    return Designed([Block(a, w0, b=0.0, kink=c)], offset=1e3, numpy=numpy)


def test_finite_differences_alone_see_a_kink_3_sigma_out_of_the_noise():
    """Finite differences alone (NumPy parameters): a jump of 2c between the one-sided
    derivatives standing 2.5x ALONE_KINK_SIGMAS (3) out of their noise is a kink, and the right
    one-sided derivative, further from the central estimate than its error, passes as a valid
    subgradient."""
    sigma = 4.0 * EPS["float64"] * 1e3  # 4 ulps of the loss
    h = 2.0**-13  # |w0| < 1
    threshold = 3.0 * 2.0 * np.sqrt(26.0) * sigma / h  # on the jump 2c
    c = OUTSIDE * threshold / 2.0
    assert c > 6.0 * _R_NOISE * sigma / h  # off the central estimate
    report = _check(_kinked(c, numpy=True))
    assert report.tape_blind and report.entries[0].ok, str(report)


def test_check_derivative_sees_a_kink_10_sigma_out_of_the_noise():
    """c |x| + 1000 at 0 (the noise of one evaluation: 4 ulps of 1000): a jump 2c standing 2.5x
    KINK_SIGMAS (10) out of the one-sided derivatives' noise is a kink, and the right one-sided
    derivative c passes; at 0.4x it is no kink, and c, further from the central estimate (0)
    than its error, fails."""
    import tensorflow as tf

    from reference import check_derivative

    sigma = 4.0 * EPS["float64"] * 1e3
    h = 2.0**-13
    threshold = 10.0 * 2.0 * np.sqrt(26.0) * sigma / h
    ok = {}
    for k in (INSIDE, OUTSIDE):
        c = k * threshold / 2.0
        assert c > 6.0 * _R_NOISE * sigma / h

        def fn(x, c=c):
            return c * tf.abs(x) + 1e3

        def derivative(x, c=c):
            return c * tf.where(x >= 0.0, tf.ones_like(x), -tf.ones_like(x))

        ok[k] = check_derivative(fn, derivative, points=[0.0]).ok
    assert ok == {INSIDE: False, OUTSIDE: True}


def test_check_derivative_sees_a_small_kink_on_a_curved_line():
    """c |x| + K x^2 at 0: each one-sided derivative changes by K h / 2 from step h to h/2 (its
    spread); a jump 2c is a kink when it exceeds KINK_SPREAD (4) times the two spreads. At 2.5x
    that the right one-sided derivative c passes; at 0.4x it fails."""
    import tensorflow as tf

    from reference import check_derivative

    K, h = 1e3, 2.0**-13
    ok = {}
    for k in (INSIDE, OUTSIDE):
        c = k * 4.0 * K * h / 2.0

        def fn(x, c=c):
            return c * tf.abs(x) + K * x * x

        def derivative(x, c=c):
            return c * tf.where(x >= 0.0, tf.ones_like(x), -tf.ones_like(x)) + 2.0 * K * x

        ok[k] = check_derivative(fn, derivative, points=[0.0]).ok
    assert ok == {INSIDE: False, OUTSIDE: True}


# --- check_function: what is checked, and how finely ---------------------------------------


def test_check_function_tries_every_pair_of_kinked_coordinates_up_to_64():
    """sum |x[:30]| at zeros (30 kinked coordinates, 29 pairs) beside the max of x[30:] with a
    tie: the vjp gives the max's gradient to both tied elements (counted twice), which each
    coordinate's own test accepts and only the joint direction along the tied pair, the 31st pair
    of kinked coordinates (KINK_PAIRS = 64 are tried), rejects."""
    import tensorflow as tf

    from reference import check_function

    x = np.zeros((1, 40))
    x[0, 30:] = np.linspace(-1.0, 0.5, 10)
    x[0, 35] = x[0, 38] = 1.0  # the tie

    def fn(x):
        return tf.reduce_sum(tf.abs(x[:, :30])) + tf.reduce_sum(tf.reduce_max(x[:, 30:], axis=1))

    def vjp(dy, x):
        tail = x[:, 30:]
        at_max = tf.cast(tf.equal(tail, tf.reduce_max(tail, axis=1, keepdims=True)), x.dtype)
        head = tf.sign(x[:, :30])  # 0 at the zeros: TensorFlow's own subgradient
        return dy * tf.concat([head, at_max], axis=1)

    report = check_function(fn, x, vjp=vjp)
    assert not report.ok, str(report)
    assert report.entries[0].note(NoteCode.PROBES_DISAGREE), str(report)


@pytest.mark.parametrize(
    "n_out,n_in,judged",
    [
        (64, 64, True),  # 4096 = JACOBIAN_MAX elements
        (22, 22, True),  # 484
        (65, 64, False),  # more than JACOBIAN_MAX
        (256, 16, True),  # 256 = JACOBIAN_CALLS calls of the vjp, 4096 elements
        (257, 15, False),  # more than JACOBIAN_CALLS calls of the vjp
    ],
)
def test_check_function_judges_the_whole_jacobian_up_to_its_caps(n_out, n_in, judged):
    """The whole Jacobian is judged when it has at most JACOBIAN_MAX (4096) elements and needs
    at most JACOBIAN_CALLS (256) calls of the vjp, and not beyond (its cost)."""
    import tensorflow as tf

    from reference import check_function

    rng = np.random.default_rng(0)
    A = tf.constant(rng.normal(size=(n_in, n_out)))

    def fn(x):
        return tf.matmul(x, A)

    def vjp(dy, x):
        return tf.matmul(dy, A, transpose_b=True)

    report = check_function(fn, rng.normal(size=(1, n_in)), vjp=vjp)
    assert report.ok, str(report)
    assert any(e.name.startswith("J[") for e in report.entries) == judged, report.judged


def test_check_function_overrules_the_tape_only_beyond_what_finite_differences_resolve():
    """x + 1000, whose tape is made wrong by a relative e (a custom gradient inside fn), with
    the right vjp: finite differences, whose error is 6 sigma of the rounding of each output
    (the floor: 4 ulps of 1000) over the step, overrule the tape at e 2.5x that error and
    cannot at 0.4x (the element then fails: manual and tape disagree and nothing tells which is
    right)."""
    import tensorflow as tf

    from reference import check_function

    x = np.random.default_rng(0).uniform(0.2, 0.9, size=(1, 6))
    error = 6.0 * _R_NOISE * 4.0 * EPS["float64"] * 1e3 / 2.0**-13

    def fn_with(e):
        @tf.custom_gradient
        def shifted(x):
            return x + 1e3, lambda dy: dy * (1.0 + e)

        return shifted

    def vjp(dy, x):
        return dy

    out = {k: check_function(fn_with(k * error), x, vjp=vjp) for k in (INSIDE, OUTSIDE)}
    vjp_entry = {k: r.entries[0] for k, r in out.items()}
    assert vjp_entry[OUTSIDE].ok and vjp_entry[OUTSIDE].note(NoteCode.TAPE_UNFAITHFUL), str(
        out[OUTSIDE]
    )
    assert vjp_entry[INSIDE].status == Status.FAIL, str(out[INSIDE])


def test_check_function_trusts_its_batched_evaluation_to_64_ulps():
    """A function that computes something else in a graph than eagerly (Python state read at
    trace time), by d: finite differences evaluate it in a vectorized batch only when that
    equals the eager value at the point to _VECTORIZED_ULPS (64) ulps of its largest output; at
    2.5x that they evaluate it one point at a time and say so, at 0.4x they batch it."""
    import tensorflow as tf

    from reference import check_function

    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(3,))
    scale = float(np.max(x**2))
    bound = 64 * EPS["float64"] * scale

    def fn_with(d):
        def fn(x):
            return x * x + (0.0 if tf.executing_eagerly() else d)

        return fn

    def vjp(dy, x):
        return 2.0 * dy * x

    notes = {}
    for k in (INSIDE, OUTSIDE):
        report = check_function(fn_with(k * bound), x, vjp=vjp)
        notes[k] = any("one point at a time" in n for n in report.notes)
    assert notes == {INSIDE: False, OUTSIDE: True}


# --- what is deterministic: LOSS_REPEAT_ULPS ------------------------------------------------


class _Flickering(Designed):
    """A designed model whose loss (or gradients) alternate by +-``loss_by`` (``grads_by``),
    relative, from one call to the next."""

    def __init__(self, *args, loss_by=0.0, grads_by=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_by, self.grads_by, self.calls = loss_by, grads_by, {"loss": 0, "grads": 0}

    def _sign(self, what):
        self.calls[what] += 1
        return 1.0 if self.calls[what] % 2 else -1.0

    def loss(self, X, y):
        return super().loss(X, y) * (1.0 + self.loss_by * self._sign("loss"))

    def gradients(self, X, y):
        sign = self._sign("grads")
        return [g * (1.0 + self.grads_by * sign) for g in super().gradients(X, y)]


@pytest.mark.parametrize("what", ["loss_by", "grads_by"])
def test_a_loss_or_gradient_that_moves_by_16_ulps_is_not_deterministic(what):
    """Evaluated twice at the same parameters, the loss (the gradients) may differ by
    LOSS_REPEAT_ULPS (16) ulps of itself (of the tensor's largest gradient), a reduction split
    differently across threads: at 0.4x that the model is judged, at 2.5x it is refused as not
    deterministic."""
    rng = np.random.default_rng(0)
    block = Block(rng.uniform(0.5, 1.0, 4), rng.normal(size=4), start=rng.normal(size=4))
    judged = {}
    for k in (INSIDE, OUTSIDE):
        half = k * 16 * EPS["float64"] / 2.0  # the two values are 2 x half apart
        model = _Flickering([block], **{what: half})
        report = _check(model)
        judged[k] = report.impure is None
        if judged[k]:
            assert report.ok, str(report)
        else:
            assert "not deterministic" in report.impure, report.impure
    assert judged == {INSIDE: True, OUTSIDE: False}


def test_a_side_effect_is_located_at_its_first_changed_element():
    """A loss that nudges one parameter (element 2) as a side effect is refused, naming it."""

    class Nudging(Designed):
        def loss(self, X, y):
            out = super().loss(X, y)
            self.params[0].assign_add(tf_unit(4, 2) * 1e-3)
            return out

    import tensorflow as tf

    def tf_unit(n, i):
        return tf.constant(np.eye(n)[i])

    model = Nudging([Block(np.ones(4), np.zeros(4))])
    report = _check(model)
    assert report.impure and "first at (2,)" in report.impure, report.impure


# --- what finite differences may evaluate instead of loss: BATCHED_ULPS and its spot checks -----


class _Batched(Designed):
    """A designed model with a ``batched_loss`` of its own: the loss ``off`` too large
    everywhere, and without a term ``quartic * sum((w - w0)^4)`` of the loss (zero, with its
    gradient, at the point)."""

    def __init__(self, *args, off=0.0, quartic=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.off, self.quartic = off, quartic

    def loss(self, X, y):
        import tensorflow as tf

        out = super().loss(X, y)
        for b, p in zip(self.blocks, self.params):
            out = out + self.quartic * tf.reduce_sum((p - tf.constant(b.w0)) ** 4)
        return out

    def batched_loss(self, X, y, replacements):
        K = len(next(iter(replacements.values())))
        rows = []
        for r in range(K):
            ws = [
                replacements[i][r] if i in replacements else self._weights()[i]
                for i in range(len(self.params))
            ]
            rows.append(sum(b.loss(np.asarray(w), np) for b, w in zip(self.blocks, ws)))
        return np.asarray(rows) + self.off


def _batched_note(report):
    return any("batched_loss disagrees" in n for n in report.notes)


def test_batched_loss_is_trusted_to_1024_ulps_of_the_loss():
    """batched_loss must equal loss to BATCHED_ULPS (1024) ulps of max(|loss|, 1): off by 0.4x
    that it is used, by 2.5x it is not (and the report says so)."""
    block = Block(np.linspace(0.5, 1.0, 4), np.zeros(4), start=np.full(4, 0.1))
    noted = {}
    for k in (INSIDE, OUTSIDE):
        report = _check(_Batched([block], off=k * 1024 * EPS["float64"]))
        assert report.ok, str(report)
        noted[k] = _batched_note(report)
    assert noted == {INSIDE: False, OUTSIDE: True}


def test_batched_loss_is_compared_at_points_around_the_point():
    """A batched_loss without a quartic term of the loss agrees with it at the point (where the
    term and its gradient vanish), not 1e-2 away (its value there, 4e-11, is 2e2 x the
    tolerance; 1e-3 away it would be 4e-15, within it): it is compared at the point and at
    _BATCHED_POINTS (2) points moved by _BATCHED_MOVE (1e-2), and not trusted."""
    block = Block(np.linspace(0.5, 1.0, 4), np.zeros(4))
    report = _check(_Batched([block], quartic=1e-3))
    assert report.ok and _batched_note(report), str(report)
    assert _batched_note(_check(_Batched([block], quartic=1e-3), mode="directional"))


def _coordinate_model(off):
    """manual_backprop's MLP (float64) whose coordinate_losses is ``off`` too large."""
    import manual_backprop as mb

    class Off(mb.MLP):
        def coordinate_losses(self, X, y, moves):
            return {k: v + off for k, v in super().coordinate_losses(X, y, moves).items()}

    model = Off([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(6, 3)), rng.normal(size=(6, 2))


def test_coordinate_losses_are_spot_checked_to_1024_ulps():
    """coordinate_losses must equal batched_loss at _COORDINATE_SAMPLES (8) random elements of
    every parameter to 1024 ulps of max(|loss|, 1): off by 0.4x it is used, by 2.5x it is not
    (and the report says so)."""
    noted = {}
    for k in (INSIDE, OUTSIDE):
        model, X, y = _coordinate_model(k * 1024 * EPS["float64"] * 1.0)
        loss = float(model.loss(X, y))
        assert loss < 1.0
        report = check_gradients(model, X, y)
        assert report.ok, str(report)
        noted[k] = any("coordinate_losses disagrees" in n for n in report.notes)
    assert noted == {INSIDE: False, OUTSIDE: True}


@pytest.mark.parametrize("size,noted", [(0.01, True), (5.0, False)])
def test_a_tensor_finite_differences_alone_resolve_coarsely_is_noted(size, noted):
    """float32 NumPy parameters (a model that cannot be copied: no float64 twin): finite
    differences alone resolve a tensor of gradients near ``size`` to 3.2e-3 of it (0.01; noted,
    FD_COARSE being 1e-3) or to 1.6e-4 (5; not noted)."""

    class Uncopyable(Designed):
        def __deepcopy__(self, memo):
            raise TypeError("cannot copy")

    rng = np.random.default_rng(0)
    a, w0 = size * rng.uniform(0.5, 1.0, 6), 0.5 * rng.normal(size=6)
    model = Uncopyable([Block(a, w0, start=w0 + 0.1)], dtype="float32", numpy=True)
    entry = _check(model).entries[0]
    assert entry.ok and (entry.note(NoteCode.FD_COARSE) is not None) == noted, entry.detail()


def test_a_coordinate_losses_wrong_for_one_tensor_is_named():
    """coordinate_losses wrong only when b1 moves (its spot check samples every parameter): the
    report names b1."""
    import manual_backprop as mb

    class OffForB1(mb.MLP):
        def coordinate_losses(self, X, y, moves):
            out = super().coordinate_losses(X, y, moves)
            return {k: v + (1e-6 if k == 1 else 0.0) for k, v in out.items()}

    model = OffForB1([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    report = check_gradients(model, rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))
    note = next(n for n in report.notes if "coordinate_losses disagrees" in n)
    assert report.ok and "with b1[" in note, str(report)


def test_check_function_names_each_judged_part():
    """With a vjp only, the whole Jacobian's entry is J[y, x] (a suffix names the source only
    where a vjp and a jvp are both claimed)."""
    import tensorflow as tf

    from reference import check_function

    A = tf.constant(np.random.default_rng(0).normal(size=(3, 2)))
    report = check_function(
        lambda x: tf.matmul(x, A),
        np.ones((1, 3)),
        vjp=lambda dy, x: tf.matmul(dy, A, transpose_b=True),
        jvp=None,
    )
    assert [e.name for e in report.entries] == ["vjp: x", "J[y, x]"], str(report)


def test_check_derivative_calls_a_two_argument_derivative_with_fn_of_x():
    """derivative(x, a) is called with a = fn(x) (sigmoid' = a (1 - a))."""
    import tensorflow as tf

    from reference import check_derivative

    report = check_derivative(tf.sigmoid, lambda x, a: a * (1.0 - a))
    assert report.ok, str(report)


def test_directional_mode_alone_differences_up_to_256_sampled_elements():
    """NumPy parameters, directional mode: finite differences alone take up to MAX_ELEMENTS
    (256) elements one by one (here all 100) besides the probes. One element off by 20x what
    an element's estimate resolves, far less than what a probe over 100 elements resolves, is
    found."""
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(5.0, 10.0, 100), rng.normal(size=100)
    slack = PINNED["TAPE_RTOL"]["float64"] * float(np.max(a))
    model = Designed([Block(a, w0)], numpy=True, error=offset_at(0, 77, 20 * slack))
    report = _check(model, mode="directional")
    assert report.tape_blind and not report.ok, str(report)
    assert report.entries[0].worst_index == (77,), str(report)


def _corpus_case(name, bug=None, **build):
    from corpus import CASES

    spec = next(c for c in CASES if c.name == name and c.bug == bug and c.dtype == "float64")
    return spec.build(**build)


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize(
    "build",
    [
        {"seed": 0},
        {"seed": 1, "hidden": 2, "n": 2},  # every pooled line crosses a kink
        {"seed": 569},  # every probe line crosses kinks: pooled noise 4e7 x the direct one
    ],
)
def test_steps_that_cross_other_kinks_are_refined_and_the_noise_is_bounded(build, mode):
    """ReLU units at and 0.15 of a step beside their kinks: the estimate at the harness's step is
    bent by the crossing, and steps REFINE_SHRINK (2^4) times smaller, up to REFINE_LEVELS (3)
    times, agree; where every line pooled for the noise crosses a kink, the noise measured
    directly a few ulps from the point (_JITTER_ULPS x _UNIFORM_SPAN, _JITTER_SAMPLES samples,
    doubled by _JITTER_MARGIN) bounds it. relu'(0) = 1/2, a subgradient only finite differences
    can accept (no region's gradient), passes."""
    model, X, y = _corpus_case("near_kink_relu_half", **build)
    report = check_gradients(model, X, y, mode=mode)
    assert report.ok, str(report)


@pytest.mark.parametrize("mode", ["full", "directional"])
@pytest.mark.parametrize("slip", [0.0, 3e-7])
def test_a_steady_difference_within_4x_the_tapes_own_rounding_is_rounding(slip, mode):
    """A steady manual-minus-tape difference within WOBBLE_FACTOR (4) times what the tape's
    gradient moves by when its cotangent is scaled (its own rounding) is excused as rounding:
    here it is 0.5 times that; a slip 10 times it fails. Found by the thorough profile
    (test_properties.test_users_right_models_pass): the deeplearning.ai-style column-layout
    network, float32, seed 254, hidden 2, n 2. One example
    has every ReLU unit off, so its output is exactly 0.5 (label 1); the other's is 0.49981
    (label 0): db2 = mean(A2 - Y) = (0.49981 - 0.5) / 2 = -9.5e-5. The tape's path through log
    and sigmoid rounds the first term one ulp away from A2 - Y (1.5e-8: 1.6e-4 of db2 against a
    tolerance of 1.3e-5), the same ulp at every nudged point, and finite differences in float32
    resolve db2 only to 3.6e-4. The tape's own rounding, sampled by scaling its cotangent,
    moves db2 by as much: the difference is excused as rounding, with that evidence. A slip of
    3e-7 (0.3% of db2, 10 times the rounding) still fails."""
    import tensorflow as tf
    from corpus import CASES

    case = next(
        c for c in CASES if c.name == "column_layout" and c.bug is None and c.dtype == "float32"
    )
    model, X, y = case.build(254, 2, 2)
    right = model.gradients

    def gradients(X, y):
        grads = list(right(X, y))
        grads[3] = grads[3] + tf.constant(slip, grads[3].dtype)
        return grads

    model.gradients = gradients
    report = check_gradients(model, X, y, mode=mode)
    b2 = report.entries[3]
    if slip:
        assert not report.ok and [e.name for e in report.failing] == ["b2"], str(report)
    else:
        assert report.ok and b2.note(NoteCode.ROUNDING_EXCUSED), str(report)
        assert "within the tape's own rounding" in str(b2.note(NoteCode.ROUNDING_EXCUSED))


# --- check_derivative: what it refuses as not elementwise ------------------------------------


@pytest.mark.parametrize("past", ["above 1.5", "below 0.1"])
def test_check_derivative_refuses_a_coupling_that_shows_past_1_5(past):
    """x + relu(max(x) - 1.5), not elementwise once an element passes 1.5 (or x + relu(0.1 -
    min(x)), once one falls below 0.1): the probe draws its inputs in [0.2, 0.9] (_PROBE_RANGE)
    and moves _PROBE_PICKS (4) of them, one at a time, by +-1 (_PROBE_STEPS), past the others:
    the coupling shows, and the function is refused."""
    import tensorflow as tf

    from reference import check_derivative

    def fn(x):
        if past == "above 1.5":
            return x + tf.nn.relu(tf.reduce_max(x) - 1.5)
        return x + tf.nn.relu(0.1 - tf.reduce_min(x))

    with pytest.raises(ValueError, match="not elementwise"):
        check_derivative(fn, lambda x: tf.ones_like(x))


# A loss of 0.06 computed as (1000 + q) - 1000, with a term that is zero in exact arithmetic and
# rounding noise otherwise: its rounding noise, 1.1e-13, is far above 4 ulps of the loss, and
# is what the noise measured a few ulps from the point gives (_JITTER_ULPS x _UNIFORM_SPAN,
# _JITTER_SAMPLES samples, doubled by _JITTER_MARGIN) and what the fourth differences pooled
# over the lines give (scaled by _SQRT70 and _Q25_ABS_NORMAL); the smaller of the two is taken.
# Finite differences' error at element 0, measured on this code: 1.2029e-8.
_MEASURED_NOISE_ERROR = 1.2029e-8


def test_the_tape_is_overruled_beyond_the_measured_noise():
    rng = np.random.default_rng(0)
    a, w0 = rng.uniform(0.5, 1.0, 8), 0.5 * rng.normal(size=8)

    def model_at(tape_error):
        block = Block(a, w0, start=w0 + 0.01)
        return Designed([block], offset=1e3, cancel=True, noise=1e2, tape_error=tape_error)

    out = _tape_overruled(model_at, _MEASURED_NOISE_ERROR, 0)
    assert out[OUTSIDE].status == Status.NOTES, out[OUTSIDE].detail()
    assert out[INSIDE].status == Status.FAIL, out[INSIDE].detail()


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_check_function_judges_a_small_input_on_the_scale_floor(mode):
    """fn(a, b) = 1000 a + 0.001 sin b at b = 0: b's gradients are 1e-6 of a's, and are judged
    on SCALE_FLOOR (1e-2) of the largest, a's: b's vjp off by 2.5x TAPE_RTOL x that (a factor
    1 + 2.5e-6) fails, by 0.4x passes."""
    import tensorflow as tf

    from reference import check_function

    def fn(a, b):
        return 1000.0 * a + 0.001 * tf.sin(b)

    def vjp_off(k):
        factor = 1.0 + k * PINNED["TAPE_RTOL"]["float64"] * PINNED["SCALE_FLOOR"] * 1e6
        return lambda ct, a, b: (1000.0 * ct, 0.001 * tf.cos(b) * ct * factor)

    a, b = np.random.default_rng(0).normal(size=5), np.zeros(5)
    verdicts = {
        k: check_function(fn, a, b, vjp=vjp_off(k), mode=mode).ok for k in (INSIDE, OUTSIDE)
    }
    assert verdicts == {INSIDE: True, OUTSIDE: False}


@pytest.mark.parametrize("n_in,judged", [(256, True), (257, False)])
def test_check_function_judges_a_jvps_whole_jacobian_up_to_256_calls(n_in, judged):
    """With a jvp only, the whole Jacobian takes one call per input element: judged up to
    JACOBIAN_CALLS (256) of them."""
    import tensorflow as tf

    from reference import check_function

    rng = np.random.default_rng(0)
    A = tf.constant(rng.normal(size=(n_in, 4)))
    report = check_function(
        lambda x: tf.matmul(x, A),
        rng.normal(size=(1, n_in)),
        jvp=lambda t, x: tf.matmul(t, A),
    )
    assert report.ok, str(report)
    assert any(e.name.startswith("J[") for e in report.entries) == judged, report.judged


def test_the_region_test_pushes_eight_bias_tensors_by_tiny_steps():
    """Eight ReLU layers, zero biases, an all-zero input row: every unit of every layer sits at
    its kink there, and relu'(0) = 1 is the gradient of the all-active region. The region test
    pushes the nine bias tensors by steps growing _REGION_RATIO (64) times per tensor up to
    _REGION_LARGEST (2^-60) for the last: each unit at its kink is pushed off it further than
    the layer below moves it (its weights, tripled, sum to about 8 into a unit: a ratio of 6.4
    would not do), and no gradient moves measurably, so the region found is the
    point's and the gradient passes (with the smallest push fixed at 2^-70, the last one, 2^-22,
    moved the gradients by 1e-7 and this right network failed)."""
    import tensorflow as tf
    from mutants import HandBackprop

    class ReluPrimeOne(HandBackprop):
        def hidden_delta(self, l, z, a, g):
            return g * tf.cast(z >= 0.0, z.dtype)

    sizes = [4] + [5] * 8 + [2]
    model = ReluPrimeOne(sizes, ["relu"] * 8 + ["linear"], "mse", dtype="float64", seed=3)
    weights = model.base.get_weights()
    model.base.set_weights([3.0 * w if i % 2 == 0 else 0.0 * w for i, w in enumerate(weights)])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4))
    X[0] = 0.0
    report = check_gradients(model, X, rng.normal(size=(6, 2)))
    assert report.ok, str(report)
    assert any(e.note(NoteCode.KINK_REGION) for e in report.entries), str(report)


def test_check_function_directional_alone_differences_up_to_256_sampled_elements():
    """A custom gradient judged by finite differences alone in directional mode: up to
    MAX_ELEMENTS (256) elements of an input are differenced one by one (here all 100) besides
    the joint directions. The gradient of one element off by 1e-6 relative, far below what a
    direction over 100 elements resolves, is found."""
    import tensorflow as tf

    from reference import check_function

    bad = np.zeros(100)
    bad[77] = 1e-6

    @tf.custom_gradient
    def scaled(x):
        return 2.0 * x, lambda dy: dy * (2.0 + tf.constant(bad, dy.dtype))

    x = np.random.default_rng(0).uniform(0.5, 1.5, 100)
    report = check_function(scaled, x, mode="directional")
    assert not report.ok, str(report)
    assert report.entries[0].worst_index[-1] == 77, str(report)
