"""check_derivative: is ``derivative(x)`` really the derivative of an elementwise ``fn(x)``?

The domain is sampled thoroughly (zero, tiny magnitudes on both sides of it, an ordinary grid,
large magnitudes, and points on and beside every kink named or commonly found), and the claimed
derivative is judged by the core's policy against the tape and against finite differences in
float64: at a kink any value between the one-sided derivatives passes. Without a claimed
derivative, fn's own tape gradient (a ``tf.custom_gradient``, say) is judged against finite
differences alone.

Only elementwise functions are accepted: before any of that, fn is evaluated on small random
inputs of the shapes the check itself uses, one element at a time is moved, and fn is refused
when its output changes shape or any other element of its output moves at all.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .._core import render, validate
from .._core.fd import (
    FLOOR_ULPS,
    Stencil,
    analyse,
    coarsest_dtype,
    computes_in_float32,
    power_of_two_step,
    precision_note,
)
from .._core.policy import TAPE_RTOL, TensorEvidence, classify
from .._core.report import Diagnosis, ElementVerdict, Finding, Note, Status
from .._core.validate import InputTypeError, InputValueError, short_input_errors
from .._core.verdict import element_notes
from .diagnosis import diagnose_tensor
from .moves import DerivativeMoves
from .passes import fd_against_pass, tape_independence

__all__ = ["check_derivative", "DerivativeReport", "sample_points"]

# Points every check samples with their neighbours: where the catalogue's functions (and most
# hand-written ones: relu, abs, clipping, hard_sigmoid, relu6) have their kinks.
_COMMON_KINKS = (0.0, 1.0, -1.0, 3.0, -3.0, 6.0)
# A kink's neighbours: 1e-8 relative away (inside a finite-difference step of 2^-13, where the
# stencil straddles the kink) and 1e-4 away (just outside it).
_NEAR, _BESIDE = 1e-8, 1e-4
# The ordinary grid: 321 points over [-8, 8] (a step of 0.05) and 64 normal draws of scale 3.
_GRID = (-8.0, 8.0, 321)
_RANDOM_POINTS, _RANDOM_SCALE = 64, 3.0
# The derivative's own scale is its largest magnitude where |x| <= 10, and at least its largest
# on a 161-point grid over [-8, 8] (a step of 0.1).
_INNER = 10.0
_SCALE_GRID = (-8.0, 8.0, 161)
# A report lists at most this many failing points.
_LISTED = 10
# The seed of the random sample and of the elementwise probe.
_SEED = 0
# The elementwise probe: inputs of the shapes the check uses (the 2-D batch of its finite-difference
# stencils and the 1-D sample), drawn in [0.2, 0.9] (inside the domains of log, sqrt, atanh and
# the like). A few elements, one at a time, are moved by +1 and by -1, each time becoming the
# largest or the smallest element of the input (so that max- and min-based couplings show too),
# which moves their own output clearly; an elementwise fn leaves every other output bit for bit
# as it was.
_PROBE_SHAPES = ((4, 5), (8,))
_PROBE_RANGE = (0.2, 0.9)
_PROBE_PICKS = 4
_PROBE_STEPS = (1.0, -1.0)
_NOT_ELEMENTWISE_HINT = (
    "check_derivative checks the derivative of an elementwise function only; use "
    "reference.check_function(fn, x, vjp=...) for functions that are not elementwise."
)


def sample_points(
    dtype: str = "float64", kinks: Sequence[float] = (), seed: int = _SEED
) -> np.ndarray:
    """The points ``check_derivative`` uses: zero, tiny magnitudes on both sides of it, an
    ordinary grid and random values, large magnitudes, and each kink with its neighbours."""
    np_dtype = np.dtype(dtype)
    tiny = [1e-300, 1e-150, 1e-30, 1e-12, 1e-6] if np_dtype == np.float64 else [1e-30, 1e-12, 1e-6]
    large = [10.0, 30.0, 100.0, 1e3, 1e6] + ([1e30] if np_dtype == np.float64 else [])
    rng = np.random.default_rng(seed)
    pts = [0.0] + tiny + [-t for t in tiny] + large + [-v for v in large]
    pts += list(np.linspace(*_GRID)) + list(rng.normal(0.0, _RANDOM_SCALE, _RANDOM_POINTS))
    every_kink = list(kinks) + list(_COMMON_KINKS)
    for k in every_kink:
        near = _NEAR * max(1.0, abs(k))
        pts += [k, k + near, k - near, k + _BESIDE, k - _BESIDE]
    arr = np.unique(np.asarray(pts, dtype=np.float64).astype(np_dtype))
    ulp = [
        np.nextafter(np.asarray(k, np_dtype), np_dtype.type(s))
        for k in every_kink
        for s in (np.inf, -np.inf)
    ]
    return np.unique(np.concatenate([arr, np.asarray(ulp, np_dtype)]))


@dataclass
class DerivativeReport:
    """The verdict of ``check_derivative``: ``ok``, the worst input, and every failing point."""

    name: str
    dtype: str
    n_points: int
    status: Status
    rtol: float
    worst_x: Optional[float] = None
    manual: Optional[float] = None
    tape: Optional[float] = None
    fd: Optional[float] = None
    fd_interval: Optional[tuple] = None
    fd_error: Optional[float] = None  # finite differences' error bar at the worst point
    rel_error: Optional[float] = None
    failures: List[dict] = field(default_factory=list)
    # The points no witness could judge (where none fails, the verdict is unverifiable).
    unverifiable: List[float] = field(default_factory=list)
    n_kinks: int = 0
    kinks_accepted: int = 0
    skipped: int = 0
    notes: List[Note] = field(default_factory=list)
    diagnosis: List[Diagnosis] = field(default_factory=list)
    # What makes the tape the user's own claim (a tf.custom_gradient in fn), where it
    # disagrees with finite differences; None when nothing does.
    tape_dependent: Optional[str] = None
    # Why fn is judged to a coarser precision than its dtype (it computes in float32), or None.
    precision: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status.ok

    def __bool__(self):
        return self.ok

    def to_dict(self):
        def num(v):
            return None if v is None else (float(v) if math.isfinite(v) else str(v))

        return {
            "name": self.name,
            "dtype": self.dtype,
            "n_points": self.n_points,
            "ok": self.ok,
            "status": self.status.value,
            "rtol": self.rtol,
            "worst_x": num(self.worst_x),
            "manual": num(self.manual),
            "tape": num(self.tape),
            "fd": num(self.fd),
            "fd_interval": None if self.fd_interval is None else list(map(num, self.fd_interval)),
            "fd_error": num(self.fd_error),
            "rel_error": num(self.rel_error),
            "failures": self.failures,
            "unverifiable": self.unverifiable,
            "n_kinks": self.n_kinks,
            "kinks_accepted": self.kinks_accepted,
            "skipped": self.skipped,
            "notes": [n.to_dict() for n in self.notes],
            "diagnosis": [d.to_dict() for d in self.diagnosis],
            "tape_dependent": self.tape_dependent,
            "precision": self.precision,
        }

    def __str__(self):
        lines = [
            f"Derivative check of {self.name}: {self.status.value.upper()} "
            f"({self.n_points} points, {self.dtype}; {self.n_kinks} kink point(s), "
            f"{self.kinks_accepted} accepted as subgradients; {self.skipped} skipped where "
            f"fn is not finite)"
        ]
        lines.extend(render.dependence(self))
        if self.worst_x is not None:
            fd = f"{self.fd:.10g}" if self.fd is not None else "-"
            if self.fd is not None and self.fd_error is not None:
                fd += f" (+- {self.fd_error:.2g})"
            if self.fd_interval is not None:
                fd = f"kink, one-sided [{self.fd_interval[0]:.10g}, {self.fd_interval[1]:.10g}]"
            lines.append(
                f"worst at x = {self.worst_x!r}: derivative {self.manual:.10g}, tape "
                f"{self.tape:.10g}, FD {fd}; rel err {self.rel_error:.3g} "
                f"(tol {self.rtol:g})"
            )
        for f in self.failures[:_LISTED]:
            lines.append(
                f"  FAIL at x = {f['x']!r}: derivative {f['manual']!r}, tape "
                f"{f['tape']!r}, FD {f['fd']!r}"
            )
        if len(self.failures) > _LISTED:
            lines.append(f"  ... and {len(self.failures) - _LISTED} more failing points")
        if self.unverifiable:
            shown = ", ".join(repr(x) for x in self.unverifiable[:_LISTED])
            more = len(self.unverifiable) - _LISTED
            lines.append(
                f"  UNVERIFIABLE at x = {shown}" + (f" and {more} more points" if more > 0 else "")
            )
        lines.extend(f"diagnosis: {d}" for d in self.diagnosis)
        if self.precision:
            lines.append(f"note: {self.precision}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _positional_arity(fn) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        for p in params
    )


def _unwrap(fn, derivative, name):
    """(fn, derivative, name), taking them from an Activation-like object when given one."""
    if hasattr(fn, "fn") and hasattr(fn, "derivative") and derivative is None:
        name = name or getattr(fn, "name", None)
        if fn.derivative is None:
            raise InputValueError(
                f"activation {name!r} is not elementwise (it has a vector-Jacobian "
                f"product, not a derivative); check it inside a model with "
                f"check_gradients, or with reference.check_function(fn, x, vjp=...)."
            )
        derivative, fn = fn.derivative, fn.fn
    if not callable(fn):
        raise InputTypeError(f"fn must be callable; got {fn!r}.")
    if derivative is not None and not callable(derivative):
        raise InputTypeError(f"derivative must be callable or None; got {derivative!r}.")
    return fn, derivative, name or getattr(fn, "__name__", "fn")


@short_input_errors
def check_derivative(
    fn,
    derivative: Optional[Callable] = None,
    *,
    dtype: str = "float64",
    kinks: Sequence[float] = (),
    points=None,
    rtol: Optional[float] = None,
    name: Optional[str] = None,
) -> DerivativeReport:
    """Check a claimed elementwise derivative.

    Raises ``ValueError`` when fn is not elementwise: when its output's shape differs from its
    input's, or moving one element of its input moves any other element of its output.

    Args:
      fn: an elementwise function written in TF ops, or an object with ``fn`` and ``derivative``
        (a ``manual_backprop.Activation``), whose derivative is then checked.
      derivative: ``derivative(x)`` or ``derivative(x, fn(x))`` returning d fn/dx elementwise;
        ``None`` checks fn's own tape gradient (for example a ``tf.custom_gradient``) against
        finite differences alone.
      dtype: ``"float64"`` (default) or ``"float32"`` for fn, derivative and tape; finite
        differences run in float64 whenever fn accepts it.
      kinks: points where fn is known not to be differentiable, sampled with their neighbours
        (0, +-1, +-3 and 6 are always sampled).
      points: the inputs to use instead of the default sample.
      rtol: relative tolerance of derivative against tape (default ``TAPE_RTOL[dtype]``), on
        the scale of ``max(|derivative(x)|, max of |derivative| over [-8, 8])``.
    """
    fn, derivative, name = _unwrap(fn, derivative, name)
    dtype = validate.choice(dtype, tuple(TAPE_RTOL), "dtype")
    _require_elementwise(fn, name, dtype)
    x = sample_points(dtype, kinks) if points is None else np.asarray(points, dtype=dtype).ravel()
    fx, tape_d = _tape(fn, x)
    precision, returned = _precision(fn, x)
    rtol = TAPE_RTOL[coarsest_dtype(dtype, precision)] if rtol is None else validate.rtol(rtol)
    manual = tape_d.copy() if derivative is None else _claimed(derivative, fn, x)
    fd = _finite_differences(fn, x, precision)
    keep = np.isfinite(fx) & (np.isfinite(fd.value) | fd.kink)
    # As for a tensor's gradient, rounding is judged against the derivative's own scale (its
    # largest value over |x| <= 10): a formula such as elu's a + alpha loses every digit of a
    # derivative of 1e-5 to cancellation against alpha, which is rounding, not a bug.
    inner = (np.abs(x) <= _INNER) & np.isfinite(tape_d) & np.isfinite(fx)
    floor = max(float(np.max(np.abs(tape_d[inner]), initial=0.0)), _grid_scale(fn, dtype)) or 1.0
    tol = rtol * np.maximum(np.maximum(np.abs(tape_d), np.abs(manual)), floor)
    ev = TensorEvidence(
        name, manual, None if derivative is None else tape_d, fd, rtol, floor, tolerance=tol
    )
    v = classify(ev)
    dependent = tape_independence({0: v}, {0: ev}, partial(fn, tf.constant(x)))
    moves = DerivativeMoves(lambda at: _claimed(derivative, fn, at), x)
    fd_against_pass(moves, {0: v}, {0: ev}, 0, dependent is None)
    report = DerivativeReport(
        name,
        dtype,
        int(keep.sum()),
        _status(v, keep),
        rtol,
        n_kinks=int(np.count_nonzero(fd.kink & keep)),
        kinks_accepted=int(np.count_nonzero(v.kink_used & keep)),
        skipped=int(np.count_nonzero(~np.isfinite(fx))),
    )
    report.tape_dependent = dependent
    report.precision = precision_note("fn", dtype, returned, precision.name)
    _fill(report, x, ev, v, keep, tape_d)
    if derivative is None and np.any(v.fail & keep):
        _ignores_upstream(report, fn, x, ev, v.fail & keep)
    return report


def _status(v: ElementVerdict, keep) -> Status:
    """FAIL where a point fails; else UNVERIFIABLE where a point no witness could judge (the
    tape the user's own, and finite differences confounded or accepting anything); else PASS."""
    if np.any(v.fail & keep):
        return Status.FAIL
    return Status.UNVERIFIABLE if np.any(v.unverifiable & keep) else Status.PASS


def _ignores_upstream(report: DerivativeReport, fn, x: np.ndarray, ev, failing) -> None:
    """fn's own tape gradient, wrong with the upstream dy drawn, but right at every failing
    point with dy = 1: a custom gradient that forgot to multiply by dy (named first)."""
    _, at_ones = _tape(fn, x, np.ones(x.shape))
    if np.all(ev.fd.accepts(at_ones, ev.tolerance)[failing]):
        text = (
            "fn's gradient is right with dy = 1 and wrong with the upstream gradients drawn "
            "(-1, -1/2, 1/2) at every failing point: it ignores its upstream gradient dy "
            "(multiply by dy)"
        )
        report.diagnosis.insert(0, Diagnosis(Finding.IGNORES_UPSTREAM, text))


def _require_elementwise(fn, name: str, dtype: str) -> None:
    """Refuse fn (``ValueError``) when it is not elementwise: when fn(x) does not keep x's shape,
    or when moving one element of x moves any other element of fn(x) at all."""
    rng = np.random.default_rng(_SEED)
    for shape in _PROBE_SHAPES:
        x = rng.uniform(*_PROBE_RANGE, size=shape).astype(dtype)
        y = _evaluate(fn, x, name)
        for flat in rng.choice(x.size, size=min(_PROBE_PICKS, x.size), replace=False):
            i = np.unravel_index(flat, shape)
            for step in _PROBE_STEPS:
                moved = x.copy()
                moved[i] += step
                change = _change_elsewhere(y, _evaluate(fn, moved, name), i)
                if change is not None:
                    raise InputValueError(
                        f"fn {name!r}: perturbing {_at('x', i)} from {x[i]:.3g} to "
                        f"{moved[i]:.3g} (x of shape {shape}) changed {change}: fn is not "
                        f"elementwise (an elementwise function's other outputs do not move at "
                        f"all). {_NOT_ELEMENTWISE_HINT}"
                    )


def _change_elsewhere(y: np.ndarray, y_moved: np.ndarray, i) -> Optional[str]:
    """The largest change of an output other than ``y[i]`` (``"y[0, 0] by 3.2e-05"``), or None
    when every other output is as it was, bit for bit (NaN staying NaN)."""
    changed = ~((y_moved == y) | (np.isnan(y_moved) & np.isnan(y)))
    changed[i] = False
    if not np.any(changed):
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        size = np.abs(y_moved.astype(np.float64) - y.astype(np.float64))
    size = np.where(changed, np.where(np.isnan(size), np.inf, size), -1.0)
    j = np.unravel_index(int(np.argmax(size)), y.shape)
    if np.isfinite(size[j]):
        return f"{_at('y', j)} by {size[j]:.2g}"
    return f"{_at('y', j)} from {float(y[j]):.3g} to {float(y_moved[j]):.3g}"


def _evaluate(fn, x: np.ndarray, name: str) -> np.ndarray:
    """fn(x) as an array of fn's own dtype; refused unless it has x's shape."""
    y = np.asarray(fn(tf.constant(x)).numpy())
    if y.shape != x.shape:
        raise InputValueError(
            f"fn {name!r}: fn(x) has shape {y.shape} for x of shape {x.shape}: fn is not "
            f"elementwise (an elementwise function keeps its input's shape). "
            f"{_NOT_ELEMENTWISE_HINT}"
        )
    return y


def _at(array: str, index) -> str:
    """``x[0, 1]``: an element's index as written in numpy."""
    return f"{array}[{', '.join(str(int(k)) for k in index)}]"


# The upstream gradients the tape is asked with, one drawn per point: never ones, so that a
# custom gradient that ignores its dy (or its sign) does not pass; powers of two no larger than
# 1, so that dividing them out again is exact and overflows nothing.
_COTANGENTS = (-1.0, -0.5, 0.5)


def _tape(fn, x: np.ndarray, dy: Optional[np.ndarray] = None):
    """fn(x) and its tape derivative (the gradient for an upstream ``dy``, by default drawn from
    ``_COTANGENTS``, divided by it), as float64 arrays; fn must keep x's shape."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        fx = fn(xt)
    if tuple(fx.shape) != x.shape:
        raise InputValueError(
            f"fn must be elementwise: fn(x) has shape {tuple(fx.shape)} for x of shape {x.shape}."
        )
    if dy is None:
        dy = np.random.default_rng(0).choice(_COTANGENTS, size=x.shape)
    tape_d = tape.gradient(fx, xt, output_gradients=tf.constant(dy, fx.dtype))
    tape_d = np.zeros_like(x, np.float64) if tape_d is None else tape_d.numpy().astype(np.float64)
    return np.asarray(fx.numpy(), np.float64), tape_d / dy


def _claimed(derivative, fn, x: np.ndarray) -> np.ndarray:
    """The claimed derivative at x, called as derivative(x) or derivative(x, fn(x))."""
    xt = tf.constant(x)
    if _positional_arity(derivative) >= 2:
        manual = np.asarray(derivative(xt, fn(xt)).numpy(), np.float64)
    else:
        manual = np.asarray(derivative(xt).numpy(), np.float64)
    if manual.shape != x.shape:
        raise InputValueError(
            f"derivative must be elementwise: it returned shape {manual.shape} for x "
            f"of shape {x.shape}."
        )
    return manual


def _fill(report: DerivativeReport, x, ev: TensorEvidence, v: ElementVerdict, keep, tape_d) -> None:
    """The worst point, the failing points and the notes of a derivative check."""
    manual, fd = ev.manual, ev.fd
    fail = v.fail & keep
    with np.errstate(invalid="ignore"):
        # The truth: the tape, except where finite differences judged against it (their value
        # resolved apart from manual and tape alike, or the tape unfaithful to them) or where
        # it has none.
        if ev.tape is None:
            ref = fd.value
        else:
            by_fd = v.fd_against | v.tape_unfaithful | ~np.isfinite(ev.tape)
            ref = np.where(by_fd, fd.value, ev.tape)
        rel = np.abs(manual - ref) / np.maximum(np.abs(ref), ev.floor)
    rel = np.where(keep & ~(fd.kink & v.fd_ok_manual), np.nan_to_num(rel, nan=np.inf), 0.0)
    # The worst point is the largest error among the failing points (among all, when none is).
    worst = int(np.argmax(np.where(fail, rel, -1.0) if np.any(fail) else rel))
    report.worst_x, report.manual, report.tape = (
        float(x[worst]),
        float(manual[worst]),
        float(tape_d[worst]),
    )
    report.fd, report.rel_error = float(fd.value[worst]), float(rel[worst])
    report.fd_error = float(fd.error_bar[worst])
    if fd.kink[worst]:
        report.fd_interval = (float(fd.lower[worst]), float(fd.upper[worst]))
    report.unverifiable = [float(x[i]) for i in np.flatnonzero(v.unverifiable & keep & ~fail)]
    for i in np.flatnonzero(fail):
        report.failures.append(
            {
                "x": float(x[i]),
                "manual": float(manual[i]),
                "tape": float(tape_d[i]),
                "fd": float(fd.value[i]),
            }
        )
    if np.any(fail):
        report.diagnosis.extend(_patterns(manual, ref, keep & ~fd.kink, ev.rtol))
    report.notes.extend(element_notes(ev, v, keep))


# The findings of the tensor diagnosis that speak of the derivative as a whole (a constant
# factor, all zeros, non-finite values), not of element indices, which mean nothing here.
_WHOLE = (Finding.CONSTANT_FACTOR, Finding.ALL_ZEROS, Finding.NON_FINITE)


def _patterns(manual, truth, smooth, rtol: float) -> List[Diagnosis]:
    """A pattern of the claimed derivative against the truth over the smooth points checked."""
    pick = smooth & np.isfinite(truth)
    if not np.any(pick):
        return []
    found = diagnose_tensor(manual[pick], truth[pick], rtol)
    return [d for d in found if d.code in _WHOLE]


def _grid_scale(fn, dtype) -> float:
    """The largest |d fn/dx| on an ordinary grid: the derivative's own scale, even when the
    points checked are all in a tail where it is tiny."""
    grid = tf.constant(np.linspace(*_SCALE_GRID).astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(grid)
        out = fn(grid)
    d = tape.gradient(out, grid)
    if d is None:
        return 0.0
    d = np.abs(d.numpy().astype(np.float64))
    return float(np.max(d[np.isfinite(d)], initial=0.0))


def _precision(fn, x: np.ndarray):
    """The dtype fn's finite differences are taken in and resolve, and the dtype fn returns
    for float64: float64 where fn accepts float64 and computes in it; float32 where it computes
    in float32 (``computes_in_float32``: a Keras layer, whatever dtype it returns); x's own
    dtype where fn refuses float64."""
    try:
        returned = fn(tf.constant(x.astype(np.float64))).dtype.name
    except (TypeError, ValueError, tf.errors.OpError):
        return np.dtype(x.dtype), x.dtype.name
    if computes_in_float32(lambda xs: fn(tf.constant(xs[0])).numpy(), [x]):
        return np.dtype(np.float32), returned
    return np.dtype(np.float64), returned


def _finite_differences(fn, x: np.ndarray, precision: np.dtype):
    """Five-point stencils of an elementwise fn around every x, in float64 when fn accepts it,
    with steps and a rounding floor for the ``precision`` fn computes in."""
    offsets = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    x64 = x.astype(np.float64)
    eps = float(np.finfo(precision).eps)
    h = power_of_two_step(x64, eps)
    pts = x64[:, None] + h[:, None] * offsets[None, :]
    try:
        f = np.asarray(fn(tf.constant(pts)).numpy(), np.float64)
    except (TypeError, ValueError, tf.errors.OpError):
        pts = pts.astype(x.dtype)
        f = np.asarray(fn(tf.constant(pts)).numpy(), np.float64)
    s = pts.astype(np.float64) - x64[:, None]
    with np.errstate(invalid="ignore"):
        sigma = FLOOR_ULPS * eps * np.max(np.abs(np.where(np.isfinite(f), f, 0.0)), axis=1)
    sigma = np.maximum(sigma, np.finfo(np.float64).tiny)
    return analyse("fn", Stencil(s, f), sigma)
