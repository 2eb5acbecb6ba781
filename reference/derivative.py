"""check_derivative: is ``derivative(x)`` really the derivative of an elementwise ``fn(x)``?

The domain is sampled thoroughly (zero, tiny magnitudes on both sides of it, an ordinary grid,
large magnitudes, and points on and beside every kink named or commonly found), and the claimed
derivative is judged against the tape and against finite differences in float64 with the same
policy as ``check_gradients``: at a kink any value between the one-sided derivatives passes.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .compare import TAPE_RTOL, classify
from .finite_differences import STEP_EXPONENT, Stencil, analyse

__all__ = ["check_derivative", "DerivativeReport", "sample_points"]

_COMMON_KINKS = (0.0, 1.0, -1.0, 3.0, -3.0, 6.0)
_NOISE_ULPS = 4.0  # rounding of one elementwise evaluation, in ulps of the largest value


def sample_points(dtype: str = "float64", kinks: Sequence[float] = (), seed: int = 0) -> np.ndarray:
    """The points ``check_derivative`` uses: zero, tiny magnitudes on both sides of it, an
    ordinary grid and random values, large magnitudes, and each kink with its neighbours."""
    np_dtype = np.dtype(dtype)
    tiny = [1e-300, 1e-150, 1e-30, 1e-12, 1e-6] if np_dtype == np.float64 else [1e-30, 1e-12, 1e-6]
    large = [10.0, 30.0, 100.0, 1e3, 1e6] + ([1e30] if np_dtype == np.float64 else [])
    rng = np.random.default_rng(seed)
    pts = [0.0] + tiny + [-t for t in tiny] + large + [-v for v in large]
    pts += list(np.linspace(-8.0, 8.0, 321)) + list(rng.normal(0.0, 3.0, 64))
    for k in list(kinks) + list(_COMMON_KINKS):
        pts += [k, k + 1e-8 * max(1.0, abs(k)), k - 1e-8 * max(1.0, abs(k)), k + 1e-4, k - 1e-4]
    arr = np.unique(np.asarray(pts, dtype=np.float64).astype(np_dtype))
    ulp = [np.nextafter(np.asarray(k, np_dtype), np_dtype.type(s)) for k in
           list(kinks) + list(_COMMON_KINKS) for s in (np.inf, -np.inf)]
    return np.unique(np.concatenate([arr, np.asarray(ulp, np_dtype)]))


@dataclass
class DerivativeReport:
    """The verdict of ``check_derivative``: ``ok``, the worst input, and every failing point."""

    name: str
    dtype: str
    n_points: int
    ok: bool
    rtol: float
    worst_x: Optional[float] = None
    manual: Optional[float] = None
    tape: Optional[float] = None
    fd: Optional[float] = None
    fd_interval: Optional[tuple] = None
    rel_error: Optional[float] = None
    failures: List[dict] = field(default_factory=list)
    n_kinks: int = 0
    kinks_accepted: int = 0
    skipped: int = 0
    notes: List[str] = field(default_factory=list)

    def __bool__(self):
        return self.ok

    def to_dict(self):
        def num(v):
            return None if v is None else (float(v) if math.isfinite(v) else str(v))
        return {"name": self.name, "dtype": self.dtype, "n_points": self.n_points, "ok": self.ok,
                "rtol": self.rtol, "worst_x": num(self.worst_x), "manual": num(self.manual),
                "tape": num(self.tape), "fd": num(self.fd),
                "fd_interval": None if self.fd_interval is None else list(map(num, self.fd_interval)),
                "rel_error": num(self.rel_error), "failures": self.failures,
                "n_kinks": self.n_kinks, "kinks_accepted": self.kinks_accepted,
                "skipped": self.skipped, "notes": list(self.notes)}

    def __str__(self):
        lines = [f"Derivative check of {self.name}: {'PASS' if self.ok else 'FAIL'} "
                 f"({self.n_points} points, {self.dtype}; {self.n_kinks} kink point(s), "
                 f"{self.kinks_accepted} accepted as subgradients; {self.skipped} skipped where "
                 f"fn is not finite)"]
        if self.worst_x is not None:
            fd = f"{self.fd:.10g}" if self.fd is not None else "-"
            if self.fd_interval is not None:
                fd = f"kink, one-sided [{self.fd_interval[0]:.10g}, {self.fd_interval[1]:.10g}]"
            lines.append(f"worst at x = {self.worst_x!r}: derivative {self.manual:.10g}, tape "
                         f"{self.tape:.10g}, FD {fd}; rel err {self.rel_error:.3g} "
                         f"(tol {self.rtol:g})")
        for f in self.failures[:10]:
            lines.append(f"  FAIL at x = {f['x']!r}: derivative {f['manual']!r}, tape "
                         f"{f['tape']!r}, FD {f['fd']!r}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failing points")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _positional_arity(fn) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in params)


def check_derivative(fn, derivative: Optional[Callable] = None, *, dtype: str = "float64",
                     kinks: Sequence[float] = (), points=None, rtol: Optional[float] = None,
                     name: Optional[str] = None) -> DerivativeReport:
    """Check a claimed elementwise derivative.

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
    if hasattr(fn, "fn") and hasattr(fn, "derivative") and derivative is None:
        name = name or getattr(fn, "name", None)
        if fn.derivative is None:
            raise ValueError(f"activation {name!r} is not elementwise (it has a vector-Jacobian "
                             f"product, not a derivative); check it inside a model with "
                             f"check_gradients.")
        derivative = fn.derivative
        fn = fn.fn
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {fn!r}.")
    if derivative is not None and not callable(derivative):
        raise TypeError(f"derivative must be callable or None; got {derivative!r}.")
    if dtype not in TAPE_RTOL:
        raise ValueError(f"dtype must be one of {sorted(TAPE_RTOL)}; got {dtype!r}.")
    name = name or getattr(fn, "__name__", "fn")
    rtol = TAPE_RTOL[dtype] if rtol is None else float(rtol)
    x = sample_points(dtype, kinks) if points is None else np.asarray(points, dtype=dtype).ravel()

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        fx = fn(xt)
    tape_d = tape.gradient(fx, xt)
    tape_d = np.zeros_like(x, np.float64) if tape_d is None else tape_d.numpy().astype(np.float64)
    fx = np.asarray(fx.numpy(), np.float64)
    if fx.shape != x.shape:
        raise ValueError(f"fn must be elementwise: fn(x) has shape {fx.shape} for x of shape "
                         f"{x.shape}.")
    if derivative is None:
        manual = tape_d.copy()
    elif _positional_arity(derivative) >= 2:
        manual = np.asarray(derivative(xt, fn(xt)).numpy(), np.float64)
    else:
        manual = np.asarray(derivative(xt).numpy(), np.float64)
    if manual.shape != x.shape:
        raise ValueError(f"derivative must be elementwise: it returned shape {manual.shape} for x "
                         f"of shape {x.shape}.")

    fd = _finite_differences(fn, x)
    keep = np.isfinite(fx) & np.isfinite(fd.value) | (np.isfinite(fx) & fd.kink)
    skipped = int(np.count_nonzero(~np.isfinite(fx)))
    # As for a tensor's gradient, rounding is judged against the derivative's own scale (its
    # largest value over |x| <= 10): a formula such as elu's a + alpha loses every digit of a
    # derivative of 1e-5 to cancellation against alpha, which is rounding, not a bug.
    inner = (np.abs(x) <= 10) & np.isfinite(tape_d) & np.isfinite(fx)
    floor = max(float(np.max(np.abs(tape_d[inner]), initial=0.0)), _grid_scale(fn, dtype)) or 1.0
    tol = rtol * np.maximum(np.maximum(np.abs(tape_d), np.abs(manual)), floor)
    tape_ref = np.full_like(tape_d, np.nan) if derivative is None else tape_d
    v = classify(manual, tape_ref, tol, fd)
    fail = v.fail & keep
    report = DerivativeReport(name, dtype, int(keep.sum()), not np.any(fail), rtol,
                              n_kinks=int(np.count_nonzero(fd.kink & keep)),
                              kinks_accepted=int(np.count_nonzero(v.kink_used & keep)),
                              skipped=skipped)
    with np.errstate(invalid="ignore"):
        ref = np.where(np.isfinite(tape_ref), tape_ref, fd.value)
        rel = np.abs(manual - ref) / np.maximum(np.abs(ref), floor)
    rel = np.where(keep & ~(fd.kink & v.fd_ok_manual), np.nan_to_num(rel, nan=np.inf), 0.0)
    worst = int(np.argmax(np.where(fail, np.inf, rel))) if np.any(fail) else int(np.argmax(rel))
    report.worst_x, report.manual, report.tape = float(x[worst]), float(manual[worst]), \
        float(tape_d[worst])
    report.fd, report.rel_error = float(fd.value[worst]), float(rel[worst])
    if fd.kink[worst]:
        report.fd_interval = (float(fd.lower[worst]), float(fd.upper[worst]))
    for i in np.flatnonzero(fail):
        report.failures.append({"x": float(x[i]), "manual": float(manual[i]),
                                "tape": float(tape_d[i]), "fd": float(fd.value[i])})
    if derivative is not None and np.any(v.tape_unfaithful & keep):
        report.notes.append(f"{int((v.tape_unfaithful & keep).sum())} point(s) where fn's tape "
                            f"gradient disagrees with finite differences and the derivative "
                            f"agrees with finite differences")
    if np.any(v.fd_unresolved & keep):
        report.notes.append(f"{int((v.fd_unresolved & keep).sum())} point(s) where finite "
                            f"differences could not resolve the derivative")
    return report


def _grid_scale(fn, dtype) -> float:
    """The largest |d fn/dx| on an ordinary grid over [-8, 8]: the derivative's own scale, even
    when the points checked are all in a tail where it is tiny."""
    grid = tf.constant(np.linspace(-8.0, 8.0, 161).astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(grid)
        out = fn(grid)
    d = tape.gradient(out, grid)
    if d is None:
        return 0.0
    d = np.abs(d.numpy().astype(np.float64))
    return float(np.max(d[np.isfinite(d)], initial=0.0))


def _finite_differences(fn, x: np.ndarray):
    """Five-point stencils of an elementwise fn around every x, in float64 when fn accepts it."""
    eps64 = np.finfo(np.float64).eps
    offsets = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    x64 = x.astype(np.float64)
    h = np.exp2(np.round(np.log2(eps64 ** STEP_EXPONENT * np.maximum(1.0, np.abs(x64)))))
    pts = x64[:, None] + h[:, None] * offsets[None, :]
    try:
        f = np.asarray(fn(tf.constant(pts)).numpy(), np.float64)
        eps = eps64
    except (TypeError, ValueError, tf.errors.OpError):
        pts = pts.astype(x.dtype)
        f = np.asarray(fn(tf.constant(pts)).numpy(), np.float64)
        eps = float(np.finfo(x.dtype).eps)
    s = pts.astype(np.float64) - x64[:, None]
    with np.errstate(invalid="ignore"):
        sigma = _NOISE_ULPS * eps * np.max(np.abs(np.where(np.isfinite(f), f, 0.0)), axis=1)
    sigma = np.maximum(sigma, np.finfo(np.float64).tiny)
    return analyse("fn", Stencil(s, f), sigma)
