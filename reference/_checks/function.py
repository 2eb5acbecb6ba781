"""check_function: is a hand-written derivative of any function right?

``fn`` takes one or more tensors and returns a tensor or a tuple/list of them. What is judged:

- ``vjp(cotangents, *inputs)``, a hand-written vector-Jacobian product, through
  ``COTANGENTS`` random cotangents (never ones: a gradient that ignores its upstream ``dy``
  must fail), element by element over every input;
- ``jvp(tangents, *inputs)``, a hand-written Jacobian-vector product, through as many random
  tangents, element by element over every output;
- with neither, ``fn``'s own tape gradient (a ``tf.custom_gradient``, say), as a VJP;
- where the Jacobian is small (``JACOBIAN_MAX`` elements, ``JACOBIAN_CALLS`` calls), the whole
  Jacobian, one unit cotangent (or tangent) at a time;
- with ``order=2``, the derivatives of the first-order gradient (the vjp, or the tape's):
  TensorFlow's gradient of ``<w, g(x)>`` for random ``w`` against finite differences of ``g``.

The witnesses: finite differences of ``fn`` (of ``g`` at order 2) in float64 whenever it accepts
float64 inputs, analysed as ``check_gradients`` analyses a loss (Richardson values with error
estimates, one-sided derivatives at kinks, smaller steps where a line is suspect), projected on
each cotangent; the tape over ``fn`` (``tf.autodiff.ForwardAccumulator`` for tangents) wherever
the tape is not what is judged. The policy is the core's: the manual value must match the tape
to rounding, or finite differences decide; at a kink any value between the one-sided
derivatives passes; what no witness can judge is unverifiable, which is not ok. Random joint
directions over each input are differenced too (``PROBES_FULL`` in full mode, ``probes`` in
directional mode): at a tie, a derivative given in full to several tied elements passes each
coordinate's test and fails along a joint direction.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .._core import fd as fdm
from .._core import validate
from .._core.function import FLOAT_DTYPES, VectorFunction, changed_scale, flat_tensors
from .._core.policy import (
    LOSS_ULPS,
    SCALE_FLOOR,
    TAPE_RTOL,
    ProbeEvidence,
    TensorEvidence,
    assemble,
    classify,
    magnitude,
    probe_failures,
)
from .._core.report import (
    Diagnosis,
    Finding,
    GradientMismatch,
    GradientReport,
    Note,
    NoteCode,
    Status,
    TensorCheck,
)
from .diagnosis import Sizes, diagnose_tensor
from .trust import TAPE_DEVIATION_FACTOR

__all__ = ["check_function", "assert_function_gradients", "FunctionReport"]

MODES = ("full", "directional")
# Random cotangents (VJP) and tangents (JVP) per check, and random w at order 2.
COTANGENTS = 3
# Joint directions per input in full mode (directional mode uses ``probes``), and at most this
# many more along pairs of coordinates with kinks (``_kink_pairs``).
PROBES_FULL = 2
KINK_PAIRS = 64
# The whole Jacobian is checked when it has at most this many elements and needs at most this
# many calls of the vjp (one per output element) or jvp (one per input element).
JACOBIAN_MAX = 4096
JACOBIAN_CALLS = 256
# Directional mode differences at most this many elements per checked tensor one by one (the
# largest manual-vs-tape disagreements first; a random sample where no tape witnesses).
MAX_ELEMENTS = 256
_FLOOR_ULPS = 4.0
_FN_FIX = "fn must return a tensor or a tuple/list of tensors, computed with TF ops."


@dataclass
class FunctionReport(GradientReport):
    """The verdict of ``check_function``: one entry per thing judged (``vjp: x`` for each input,
    ``jvp: y`` for each output, ``J[y, x]`` for the whole Jacobian, ``order 2: x``), with the
    table, the notes and the diagnosis of a :class:`GradientReport`."""

    function: str = ""
    order: int = 1
    judged: List[str] = field(default_factory=list)

    def to_dict(self):
        return {
            **super().to_dict(),
            "function": self.function,
            "order": self.order,
            "judged": list(self.judged),
        }

    def headline(self) -> List[str]:
        verdict = "PASS" if self.ok else "FAIL"
        lines = [
            f"Function check of {self.function}: {verdict} (order {self.order}, mode "
            f"{self.mode}, inputs {self.dtype}, finite differences in {self.fd_dtype})"
        ]
        if self.judged:
            lines.append("judged: " + "; ".join(self.judged))
        if self.tape_blind:
            lines.append(
                f"tape: cannot witness ({self.tape_blind}); finite differences judge alone there"
            )
        lines.extend(self._dependence())
        return lines


# --- the function, its inputs and what is judged ----------------------------------------------


def _input_names(fn, n: int) -> List[str]:
    """The names of fn's first n positional parameters, or x0, x1, ... ."""
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n and len(set(params[:n])) == n:
        return params[:n]
    return [f"x{i}" for i in range(n)] if n > 1 else ["x"]


def _as_input(value, i: int) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"inputs[{i}] is not an array or tensor: {exc}") from exc
    if arr.dtype.name not in FLOAT_DTYPES:
        raise TypeError(
            f"inputs[{i}] has dtype {arr.dtype.name}; check_function differentiates float32 or "
            f"float64 inputs only: pass it as np.float64/np.float32, or close over it in fn "
            f"(lambda x: fn(x, labels)) when it is not differentiated."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"inputs[{i}] has non-finite values; check at a finite point.")
    if arr.size == 0:
        raise ValueError(f"inputs[{i}] is empty (shape {arr.shape}): there is nothing to check.")
    return arr


def _require_arity(what: str, f, n: int, got: str, call: str) -> None:
    """``TypeError`` when ``f`` cannot be called with n positional arguments."""
    if f is None:
        return
    try:
        inspect.signature(f).bind(*range(n))
    except TypeError as exc:
        raise TypeError(
            f"{got}, but {what} {getattr(f, '__name__', f)!r} cannot take them ({exc}); it is "
            f"called as {call}."
        ) from None
    except ValueError:  # no signature to read (a builtin): the call itself will tell
        return


class _Problem:
    """The function under check: fn, its inputs, the structure of its outputs, and the
    hand-written vjp/jvp called with the structures the issue's protocol gives them."""

    def __init__(self, fn, inputs, vjp, jvp):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {fn!r}.")
        for what, f in (("vjp", vjp), ("jvp", jvp)):
            if f is not None and not callable(f):
                raise TypeError(f"{what} must be callable or None; got {f!r}.")
        if not inputs:
            raise ValueError("check_function needs at least one input: check_function(fn, x).")
        self.fn, self.vjp, self.jvp = fn, vjp, jvp
        n = len(inputs)
        _require_arity("fn", fn, n, f"fn(x) got {n} inputs", "fn(*inputs)")
        _require_arity(
            "vjp",
            vjp,
            n + 1,
            f"vjp(cotangents, *inputs) gets {n + 1} arguments",
            "vjp(cotangents, *inputs)",
        )
        _require_arity(
            "jvp",
            jvp,
            n + 1,
            f"jvp(tangents, *inputs) gets {n + 1} arguments",
            "jvp(tangents, *inputs)",
        )
        self.inputs = [_as_input(x, i) for i, x in enumerate(inputs)]
        dtypes = {x.dtype.name for x in self.inputs}
        if len(dtypes) > 1:
            raise ValueError(
                f"the inputs mix dtypes {sorted(dtypes)}; pass them all as float32 or all as "
                f"float64."
            )
        self.dtype = self.inputs[0].dtype.name
        self.names = _input_names(fn, len(self.inputs))
        first = fn(*[tf.constant(x) for x in self.inputs])
        self.structured = isinstance(first, (tuple, list))
        self.container = type(first) if self.structured else None
        outs = flat_tensors(first, "fn", _FN_FIX)
        self.out_shapes = [tuple(t.shape) for t in outs]
        self.out_dtype = outs[0].dtype
        n = len(outs)
        self.out_names = ["y"] if n == 1 and not self.structured else [f"y{j}" for j in range(n)]
        self.f = VectorFunction(self.call, self.inputs, "fn")
        self.disconnected = set()  # inputs the tape gives no gradient for
        self.unreached = set()  # outputs the forward accumulator gives no tangent for

    def call(self, *xs) -> List[tf.Tensor]:
        return flat_tensors(self.fn(*xs), "fn", _FN_FIX)

    def in_dtype(self, dtype) -> "_Problem":
        """The same problem at the inputs cast to ``dtype`` (for the tape's rounding)."""
        other = copy.copy(self)
        other.inputs = [x.astype(dtype) for x in self.inputs]
        other.dtype = np.dtype(dtype).name
        other.disconnected = set()
        other.unreached = set()
        return other

    def tensors(self, dtype=None) -> List[tf.Tensor]:
        return [tf.constant(x if dtype is None else x.astype(dtype)) for x in self.inputs]

    # structures handed to the user's code
    def out_structure(self, flat: Sequence, dtype) -> object:
        parts = [tf.constant(np.asarray(p, dtype.as_numpy_dtype)) for p in flat]
        if not self.structured:
            return parts[0]
        return self.container(parts) if self.container in (tuple, list) else tuple(parts)

    def in_structure(self, flat: Sequence, dtype) -> object:
        parts = [tf.constant(np.asarray(p, dtype)) for p in flat]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def split_out(self, vector: np.ndarray) -> List[np.ndarray]:
        sizes = [int(np.prod(s, dtype=np.int64)) for s in self.out_shapes]
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, self.out_shapes)]

    def split_in(self, vector: np.ndarray) -> List[np.ndarray]:
        sizes = [x.size for x in self.inputs]
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        return [p.reshape(x.shape) for p, x in zip(parts, self.inputs)]


def _gradients(result, shapes, names, what: str) -> List[np.ndarray]:
    """A vjp's (or a gradient's) result as one float64 array per input; None is zeros."""
    return _parts(result, shapes, [f"input {n!r}" for n in names], what, "gradient", "input")


def _outputs(result, shapes, names, what: str) -> List[np.ndarray]:
    """A jvp's result as one float64 array per output."""
    return _parts(result, shapes, [f"output {n}" for n in names], what, "tangent", "output")


def _parts(result, shapes, labels, what: str, part: str, of: str) -> List[np.ndarray]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(items) != len(shapes):
        names = ", ".join(label.split(" ", 1)[1].strip("'") for label in labels)
        raise ValueError(
            f"{what} returned {len(items)} {part}(s) for {len(shapes)} {of}(s) ({names}); "
            f"return one per {of}, in order (a bare tensor when there is one {of})."
        )
    out = []
    for item, shape, label in zip(items, shapes, labels):
        if item is None and part == "gradient":
            out.append(np.zeros(shape))
            continue
        arr = np.asarray(item.numpy() if hasattr(item, "numpy") else item, dtype=np.float64)
        if arr.shape != tuple(shape):
            raise ValueError(
                f"{what} returned shape {arr.shape} for {label} of shape {tuple(shape)}; each "
                f"{part} must have its {of}'s shape."
            )
        out.append(arr)
    return out


# --- the witnesses ---------------------------------------------------------------------------


def _tape_vjp(p: _Problem, cot: np.ndarray) -> List[np.ndarray]:
    xs = p.tensors()
    with tf.GradientTape() as tape:
        tape.watch(xs)
        ys = p.call(*xs)
    cots = [tf.constant(c, y.dtype) for c, y in zip(p.split_out(cot), ys)]
    grads = tape.gradient(ys, xs, output_gradients=cots)
    p.disconnected.update(a for a, g in enumerate(grads) if g is None)
    return [
        np.zeros(x.shape) if g is None else g.numpy().astype(np.float64)
        for g, x in zip(grads, p.inputs)
    ]


def _manual_vjp(p: _Problem, cot: np.ndarray) -> List[np.ndarray]:
    result = p.vjp(p.out_structure(p.split_out(cot), p.out_dtype), *p.tensors())
    return _gradients(result, [x.shape for x in p.inputs], p.names, "vjp")


def _tape_jvp(p: _Problem, tan: np.ndarray) -> List[np.ndarray]:
    xs = p.tensors()
    tans = [tf.constant(t.astype(p.dtype)) for t in p.split_in(tan)]
    with tf.autodiff.ForwardAccumulator(xs, tans) as acc:
        ys = p.call(*xs)
    jvps = [acc.jvp(y) for y in ys]
    p.unreached.update(j for j, t in enumerate(jvps) if t is None)
    return [
        np.zeros(s) if j is None else j.numpy().astype(np.float64)
        for j, s in zip(jvps, p.out_shapes)
    ]


def _manual_jvp(p: _Problem, tan: np.ndarray) -> List[np.ndarray]:
    result = p.jvp(p.in_structure(p.split_in(tan), p.dtype), *p.tensors())
    return _outputs(result, p.out_shapes, p.out_names, "jvp")


# --- finite-difference lines -----------------------------------------------------------------


class _Lines:
    """Stencils along ``n_rows`` lines (coordinates or directions), each evaluation projected on
    ``n_cols`` columns; analysed into one estimate per (column, row). ``measure(rows, shrink)``
    returns, for those rows, s (n, 5), f (n, 5, n_cols) and the rounding scale of each line's
    projected change (n, n_cols): the projection of the magnitudes of the outputs that change
    along the line (``changed_scale``)."""

    def __init__(self, name, measure: Callable, n_rows: int, eps: float, pool: str = "column"):
        self.name, self.measure, self.n_rows = name, measure, n_rows
        self.eps, self.pool = eps, pool
        s, f, scale = measure(np.arange(n_rows), 0)
        self.sigma = self._noise(s, f, scale)
        self.nd = self._analyse(s, f, scale, np.arange(n_rows), None)

    def _floor(self, scale: np.ndarray) -> np.ndarray:
        """The least noise of a line's projected change: 4 ulps of the outputs that change."""
        return _FLOOR_ULPS * self.eps * np.maximum(scale, np.finfo(float).tiny)

    def _noise(self, s, f, scale) -> np.ndarray:
        """The rounding noise of one evaluation of each column, pooled over the rows' fourth
        differences (per column, or over every column); each line's own floor is applied
        where it is analysed."""
        n, _, m = f.shape
        lines = fdm.Stencil(np.repeat(s, m, axis=0), f.transpose(0, 2, 1).reshape(n * m, 5))
        d4 = np.abs(lines.fourth_difference())
        floor = self._floor(scale.reshape(-1))
        usable = lines.live() & ~fdm.local_kinks(lines, floor) & np.isfinite(d4)
        d4 = np.where(usable, d4, np.nan).reshape(n, m)
        unit = fdm._SQRT70 * fdm._Q25_ABS_NORMAL
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no live line
            if self.pool == "column":
                q = np.nanquantile(d4, 0.25, axis=0) / unit if n else np.full(m, np.nan)
            else:
                q = np.full(m, np.nanquantile(d4, 0.25) / unit if np.any(usable) else np.nan)
        return np.nan_to_num(q, nan=0.0)

    def _analyse(self, s, f, scale, rows, cols) -> fdm.NumericalGradient:
        """Estimates of (col, row) pairs: every column of ``rows`` when ``cols`` is None (shape
        (n_cols, len(rows))), else the pairs (cols[i], rows[i]) of measured (s, f) (flat)."""
        n, _, m = f.shape
        if cols is None:
            st = fdm.Stencil(np.tile(s, (m, 1)), f.transpose(2, 0, 1).reshape(m * n, 5))
            sigma = np.maximum(np.repeat(self.sigma, n), self._floor(scale.T.reshape(-1)))
            return fdm.analyse(self.name, st, sigma).reshaped((m, n))
        pos = {int(r): i for i, r in enumerate(np.unique(rows))}
        at = np.array([pos[int(r)] for r in rows], dtype=np.int64)
        st = fdm.Stencil(s[at], f[at, :, cols])
        sigma = np.maximum(self.sigma[cols], self._floor(scale[at, cols]))
        return fdm.analyse(self.name, st, sigma)

    def remeasure(self, cols: np.ndarray, rows: np.ndarray, shrink: int) -> fdm.NumericalGradient:
        s, f, scale = self.measure(np.unique(rows), shrink)
        return self._analyse(s, f, scale, rows, cols)


@dataclass
class _Entry:
    """One thing judged: its manual and tape values (tape None where the tape is what is
    judged), and where its elements' finite-difference lines are (``cols``/``rows`` of
    ``lines``, flat, or None for an entry whose elements are not differenced one by one)."""

    name: str
    kind: str  # "vjp", "jvp", "jacobian", "order2"
    manual: np.ndarray
    tape: Optional[np.ndarray]
    lines: Optional[_Lines] = None
    cols: Optional[np.ndarray] = None
    rows: Optional[np.ndarray] = None
    probes: Optional[ProbeEvidence] = None
    probe_fail: Optional[np.ndarray] = None
    probe_lines: Optional[_Lines] = None
    input_index: Optional[int] = None
    output_scale: float = 0.0  # the magnitude of the projected output (see ``_resolution``)
    reach: float = 1.0  # how far the input moves: its largest magnitude, at least 1
    rounding: float = 0.0  # the rounding of the tape's gradient (``_tape_rounding``)
    flat: Optional[np.ndarray] = None  # directional mode: the elements ``lines`` measure
    coords: Optional[np.ndarray] = None  # ... and the input's coordinates they lie along
    evidence: Optional[TensorEvidence] = None

    def fd(self) -> fdm.NumericalGradient:
        nd = self.lines.nd
        flat = self.cols * nd.value.shape[1] + self.rows
        return nd.take(flat).reshaped(self.manual.shape)


# --- check_function ----------------------------------------------------------------------------


def check_function(
    fn,
    *inputs,
    vjp: Optional[Callable] = None,
    jvp: Optional[Callable] = None,
    order: int = 1,
    mode: str = "full",
    rtol: Optional[float] = None,
    probes: int = 3,
    seed: int = 0,
    name: Optional[str] = None,
) -> FunctionReport:
    """Check a hand-written derivative of ``fn`` at ``inputs``.

    Args:
      fn: TF ops on one or more tensors, returning a tensor or a tuple/list of tensors (any
        shapes, float32 or float64).
      inputs: arrays or tensors at which to check (float32 or float64, one dtype).
      vjp: ``vjp(cotangents, *inputs)``, a hand-written vector-Jacobian product: ``cotangents``
        has fn's output structure; it returns one gradient per input (a bare tensor when there
        is one input; None for zeros).
      jvp: ``jvp(tangents, *inputs)``, a hand-written Jacobian-vector product: one tangent per
        input (a bare tensor when there is one); it returns the output tangent(s) with fn's
        structure.
      order: 1, or 2 to judge the derivatives of the first-order gradient too (the vjp's, or
        fn's tape gradient's when there is no vjp).
      mode: ``"full"`` differences every input element; ``"directional"`` random directions
        per input and elements only where something disagrees (for large inputs).
      rtol: manual-vs-tape tolerance relative to each entry's scale (default ``TAPE_RTOL`` of
        the inputs' dtype).
      probes: joint directions per input in directional mode.
      seed: seeds the cotangents, tangents and directions.

    With neither vjp nor jvp, fn's own tape gradient (a ``tf.custom_gradient``) is judged
    against finite differences alone. Returns a :class:`FunctionReport`.
    """
    mode = validate.choice(mode, MODES, "mode")
    probes = validate.probes(probes)
    seed = validate.seed(seed)
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2; got {order!r}.")
    p = _Problem(fn, inputs, vjp, jvp)
    rtol = TAPE_RTOL[p.dtype] if rtol is None else validate.rtol(rtol)
    name = name or getattr(fn, "__name__", None) or type(fn).__name__
    report = FunctionReport(mode, p.dtype, p.f.fd_dtype.name, function=name, order=order)
    impure = _purity(p)
    if impure:
        report.impure = impure
        return report
    rng = np.random.default_rng(seed)
    check = _Check(p, report, mode, probes, rtol, rng)
    check.run(order)
    report.tape_blind = check.blindness()
    if vjp is None and jvp is None:
        for a in sorted(p.disconnected):
            report.notes.append(
                f"the tape has no gradient of fn with respect to {p.names[a]} (zeros are "
                f"assumed): fn does not depend on it, or computes it outside TensorFlow (NumPy, "
                f".numpy()), where the tape cannot witness and finite differences judge"
            )
    report.notes.extend(f.note for f in check.functions if f.note)
    return report


def assert_function_gradients(fn, *inputs, **kwargs) -> FunctionReport:
    """``check_function`` that raises :class:`GradientMismatch` unless the verdict is a pass."""
    __tracebackhide__ = True
    report = check_function(fn, *inputs, **kwargs)
    if not report.ok:
        raise GradientMismatch(report)
    return report


def _purity(p: _Problem) -> Optional[str]:
    """Why the function cannot be judged (it changes between calls at the same inputs), or
    None."""
    xs = p.tensors()
    a = [t.numpy() for t in p.call(*xs)]
    b = [t.numpy() for t in p.call(*xs)]
    for j, (u, v) in enumerate(zip(a, b)):
        if not np.array_equal(u, v, equal_nan=True):
            return (
                f"fn returned different values for output {p.out_names[j]} at the same inputs "
                f"(by up to {float(np.nanmax(np.abs(u - v))):.3g}): a random function (dropout, "
                f"noise) has no derivative to check; switch the randomness off, or pass the mask "
                f"(or noise) as an input, and check again"
            )
    return None


class _Check:
    """The pipeline of one check: the witnesses asked, the evidence gathered per entry, judged,
    and the diagnosis."""

    def __init__(self, p: _Problem, report: FunctionReport, mode, probes, rtol, rng):
        self.p, self.report, self.mode, self.probes, self.rtol, self.rng = (
            p,
            report,
            mode,
            probes,
            rtol,
            rng,
        )
        self.entries: List[_Entry] = []
        self.blind = set()  # inputs where the tape, as a witness, saw nothing
        self.unreached = set()  # outputs where the forward accumulator saw nothing
        f = p.f
        self.functions = [f]  # what finite differences evaluate (their notes join the report)
        self.n_in = int(sum(f.in_sizes))
        self.n_out = f.n_out
        self.jacobian = (
            self.n_in * self.n_out <= JACOBIAN_MAX
            and (p.vjp is None or self.n_out <= JACOBIAN_CALLS)
            and (p.jvp is None or self.n_in <= JACOBIAN_CALLS)
        )

    def blindness(self) -> Optional[str]:
        """Where the tape, as a witness, saw nothing (its columns print n/a there), or None."""
        p = self.p
        where = [f"with respect to {p.names[a]}" for a in sorted(self.blind)]
        where += [f"for output {p.out_names[j]}" for j in sorted(self.unreached)]
        if not where:
            return None
        return (
            f"no gradient on the tape {', '.join(where)}: fn computes it outside TensorFlow "
            f"(NumPy, .numpy(), tf.constant of a computed value) or behind tf.stop_gradient"
        )

    def _resolution(self, e: _Entry) -> float:
        """The finest absolute error an entry is judged on: one that, over a change of the
        input by its own magnitude (at least 1), moves the projected output by less than
        ``LOSS_ULPS`` ulps of the inputs' dtype cannot show in any value the function takes;
        nor one within the rounding the tape's own gradient carries (``e.rounding``)."""
        eps = float(np.finfo(np.dtype(self.p.dtype)).eps)
        return max(LOSS_ULPS * eps * e.output_scale / e.reach, e.rounding)

    def _cotangents(self, size: int, dtype) -> np.ndarray:
        """COTANGENTS Gaussian vectors, rounded to the dtype the user's code receives."""
        c = self.rng.standard_normal((COTANGENTS, size))
        return c.astype(np.dtype(dtype)).astype(np.float64)

    def run(self, order: int) -> None:
        p = self.p
        judged = self.report.judged
        C = self._cotangents(self.n_out, p.out_dtype.as_numpy_dtype)
        if p.vjp is not None or p.jvp is None:
            what = "vjp" if p.vjp is not None else "fn's tape gradient (as a VJP)"
            judged.append(f"{what}, {COTANGENTS} random cotangents (index: cotangent, input's)")
            self._vjp_entries(C)
        if p.jvp is not None:
            judged.append(f"jvp, {COTANGENTS} random tangents (index: tangent, output's)")
            self._jvp_entries()
        if self.jacobian:
            judged.append(
                f"the whole Jacobian ({self.n_out} x {self.n_in}; index: output's, input's)"
            )
            self._jacobian_entries()
        if order == 2:
            judged.append(
                f"order 2: the derivatives of the first-order gradient, {COTANGENTS} "
                f"random directions"
            )
            self._order2_entries(C[0])
        self._judge()

    # --- entries ----------------------------------------------------------------------------

    def _vjp_entries(self, C: np.ndarray) -> None:
        p = self.p
        own = [_tape_vjp(p, c) for c in C]
        manual = [_manual_vjp(p, c) for c in C] if p.vjp is not None else own
        tape = own if p.vjp is not None else None
        self._reverse_entries(p.f, C, manual, tape, "vjp", "vjp", blind=p.disconnected)
        rounding = _tape_rounding(p, _tape_vjp, C, own)
        for e in self.entries[-len(p.inputs) :]:
            e.rounding = TAPE_DEVIATION_FACTOR * float(np.max(rounding[e.input_index]))

    def _reverse_entries(self, f: VectorFunction, C, manual, tape, kind, label, blind=()):
        """Entries (one per input) of gradients of <c_k, f(x)>: ``manual[k][a]``, ``tape``
        (None for the inputs in ``blind``, which nothing on the tape connects to the output:
        its zeros there witness nothing)."""
        p = self.p
        floor = np.abs(C) @ np.abs(f.f0)
        for a in range(len(f.in_shapes)):
            size = f.in_sizes[a]
            m = np.stack([manual[k][a] for k in range(len(C))])
            t = None
            if tape is not None and a not in blind:
                t = np.stack([tape[k][a] for k in range(len(C))])
            elif tape is not None:
                self.blind.add(a)
            entry = _Entry(f"{label}: {p.names[a]}", kind, m, t, input_index=a)
            entry.output_scale, entry.reach = float(np.max(floor)), _reach(f.inputs[a])
            measure = self._coordinates(f, a, C.T)
            if self.mode == "full":
                entry.lines = _Lines(entry.name, measure, size, f.eps)
                entry.cols = np.repeat(np.arange(len(C)), size)
                entry.rows = np.tile(np.arange(size), len(C))
                n_probes = PROBES_FULL
            else:
                self._directional_elements(entry, f, a, C)
                n_probes = self.probes
            pairs = None
            if entry.lines is not None:
                kinked = np.any(entry.lines.nd.kink, axis=0)
                coords = np.arange(size) if entry.coords is None else entry.coords
                pairs = _kink_pairs(coords[kinked], f.inputs[a].reshape(-1))
            entry.probes, entry.probe_lines = self._probes(f, a, C, n_probes, pairs)
            self.entries.append(entry)

    def _coordinates(self, f: VectorFunction, a: int, projector: np.ndarray):
        def measure(rows, shrink):
            return f.coordinate_lines(a, rows, projector, shrink)

        return measure

    def _probes(self, f: VectorFunction, a: int, C, n_probes: int, extra=None):
        """Joint directions over input a (random, and ``extra`` ones), differenced once and
        projected on every cotangent: ProbeEvidence over the stacked (K, size) entry (each
        direction lives in one row)."""
        size = f.in_sizes[a]
        dirs = fdm.probe_directions((size,), n_probes, self.rng)
        if extra is not None and len(extra):
            dirs = np.concatenate([dirs, extra])
            n_probes = len(dirs)
        joint = [
            [d.reshape(f.in_shapes[a]) if b == a else None for b in range(len(f.in_shapes))]
            for d in dirs
        ]

        def measure(rows, shrink):
            s, vals = f.directional_lines([joint[r] for r in rows], shrink)
            return s, vals @ C.T, changed_scale(vals, f.f0, C.T)

        lines = _Lines("probes", measure, n_probes, f.eps)
        K = len(C)
        stacked = np.zeros((K * n_probes, K * size))
        for k in range(K):
            stacked[k * n_probes : (k + 1) * n_probes, k * size : (k + 1) * size] = dirs
        return ProbeEvidence(stacked, lines.nd.take(np.arange(K * n_probes))), lines

    def _directional_elements(self, entry: _Entry, f: VectorFunction, a: int, C) -> None:
        """Directional mode: the elements off the tape (largest gaps first), or a random sample
        where no tape witnesses, differenced one by one."""
        size = f.in_sizes[a]
        K = len(C)
        if entry.tape is not None:
            with np.errstate(invalid="ignore"):
                gap = np.nan_to_num(np.abs(entry.manual - entry.tape), nan=np.inf).reshape(-1)
            tol = self.rtol * max(magnitude(entry.manual, entry.tape), 1e-300)
            off = np.flatnonzero(gap > tol)
            chosen = off[np.argsort(-gap[off], kind="stable")][:MAX_ELEMENTS]
        else:
            chosen = self.rng.choice(K * size, size=min(K * size, MAX_ELEMENTS), replace=False)
        chosen = np.sort(np.asarray(chosen, dtype=np.int64))
        entry.flat = chosen
        if chosen.size == 0:
            return
        coords = np.unique(chosen % size)
        entry.coords = coords
        measure = self._coordinates(f, a, C.T)
        pos = np.searchsorted(coords, chosen % size)

        def sub_measure(rows, shrink):
            return measure(coords[rows], shrink)

        entry.lines = _Lines(entry.name, sub_measure, coords.size, f.eps)
        entry.cols = chosen // size
        entry.rows = pos

    def _jvp_entries(self) -> None:
        p, f = self.p, self.p.f
        T = self._cotangents(self.n_in, p.dtype)
        manual = [_manual_jvp(p, t) for t in T]
        tape = [_tape_jvp(p, t) for t in T]
        rounding = _tape_rounding(p, _tape_jvp, T, tape)
        tangents = [p.split_in(row) for row in T]

        def measure(rows, shrink):
            s, vals = f.directional_lines([tangents[r] for r in rows], shrink)
            return s, vals, changed_scale(vals, f.f0, None)

        lines = _Lines("jvp", measure, COTANGENTS, f.eps, pool="all")
        offset = 0
        for j, shape in enumerate(p.out_shapes):
            size = int(np.prod(shape, dtype=np.int64))
            m = np.stack([manual[k][j] for k in range(COTANGENTS)])
            t = None if j in p.unreached else np.stack([tape[k][j] for k in range(COTANGENTS)])
            self.unreached |= {j} & p.unreached
            entry = _Entry(f"jvp: {p.out_names[j]}", "jvp", m, t, lines)
            entry.output_scale = float(np.max(np.abs(f.f0), initial=0.0))
            entry.rounding = TAPE_DEVIATION_FACTOR * float(np.max(rounding[j]))
            entry.cols = np.tile(np.arange(offset, offset + size), COTANGENTS)
            entry.rows = np.repeat(np.arange(COTANGENTS), size)
            self.entries.append(entry)
            offset += size

    def _jacobian_entries(self) -> None:
        """The whole Jacobian, per (output, input) pair: finite differences along every input
        coordinate (all outputs at once), the claimed one unit cotangent (or tangent) at a
        time, and the tape's."""
        p, f = self.p, self.p.f
        eye_out = np.eye(self.n_out)
        by_vjp = p.vjp is not None or p.jvp is None
        rows_claimed = []  # J as (n_out, n_in) from each claimed source
        if p.vjp is not None:
            rows_claimed.append(
                (
                    "vjp",
                    np.stack(
                        [
                            np.concatenate([g.reshape(-1) for g in _manual_vjp(p, e)])
                            for e in eye_out
                        ]
                    ),
                )
            )
        if p.jvp is not None:
            cols = [
                np.concatenate([o.reshape(-1) for o in _manual_jvp(p, e)])
                for e in np.eye(self.n_in)
            ]
            rows_claimed.append(("jvp", np.stack(cols, axis=1)))
        # The tape's Jacobian (the witness, or what is judged when there is no vjp or jvp),
        # by rows (unit cotangents) unless only a jvp is given, and the rounding it carries.
        if by_vjp or p.vjp is not None:
            units, tape_fn, axis = eye_out, _tape_vjp, 0
        else:
            units, tape_fn, axis = np.eye(self.n_in), _tape_jvp, 1
        own = [tape_fn(p, e) for e in units]
        tape_J = np.stack([np.concatenate([g.reshape(-1) for g in t]) for t in own], axis=axis)
        gaps = _tape_rounding(p, tape_fn, units, own)
        gap_J = np.concatenate([g.reshape(len(units), -1) for g in gaps], axis=1)
        gap_J = gap_J if axis == 0 else gap_J.T
        witness = tape_J if (p.vjp is not None or p.jvp is not None) else None
        if by_vjp and p.vjp is None:
            rows_claimed.append(("tape", tape_J))
        in_off = np.concatenate([[0], np.cumsum(f.in_sizes)])
        out_off = np.concatenate([[0], np.cumsum(f.out_sizes)])
        for a in range(len(f.in_shapes)):
            lines = _Lines(
                f"J {p.names[a]}",
                self._coordinates(f, a, eye_out),
                f.in_sizes[a],
                f.eps,
            )
            for j in range(len(f.out_shapes)):
                shape = f.out_shapes[j] + f.in_shapes[a]
                osl = slice(out_off[j], out_off[j + 1])
                isl = slice(in_off[a], in_off[a + 1])
                seen = witness is not None and a not in p.disconnected and j not in p.unreached
                if witness is not None and not seen and axis == 0:
                    self.blind.add(a)
                elif witness is not None and not seen:
                    self.unreached.add(j)
                for label, J in rows_claimed:
                    suffix = f" ({label})" if len(rows_claimed) > 1 else ""
                    entry = _Entry(
                        f"J[{p.out_names[j]}, {p.names[a]}]{suffix}",
                        "jacobian",
                        J[osl, isl].reshape(shape),
                        witness[osl, isl].reshape(shape) if seen else None,
                        lines,
                        input_index=a,
                    )
                    entry.output_scale = float(np.max(np.abs(f.f0[osl]), initial=0.0))
                    entry.reach = _reach(f.inputs[a])
                    entry.rounding = TAPE_DEVIATION_FACTOR * float(
                        np.max(gap_J[osl, isl], initial=0.0)
                    )
                    oo, ii = np.meshgrid(
                        np.arange(out_off[j], out_off[j + 1]),
                        np.arange(f.in_sizes[a]),
                        indexing="ij",
                    )
                    entry.cols, entry.rows = oo.reshape(-1), ii.reshape(-1)
                    self.entries.append(entry)

    def _order2_entries(self, c: np.ndarray) -> None:
        """The derivatives of the first-order gradient g(x) (vjp(c, x), or fn's tape gradient
        for the cotangent c): TensorFlow's gradient of <w, g(x)> for random w, against finite
        differences of g."""
        p = self.p
        cot = p.split_out(c)

        def first(*xs):
            if p.vjp is not None:
                structure = p.out_structure(cot, xs[0].dtype)
                grads = p.vjp(structure, *xs)
            else:
                grads = _tape_first(p, cot, xs)
            items = list(grads) if isinstance(grads, (tuple, list)) else [grads]
            return [
                tf.zeros_like(x) if g is None else tf.convert_to_tensor(g)
                for g, x in zip(items, xs)
            ]

        def tape_first(*xs):
            return _tape_first(p, cot, xs)

        g = VectorFunction(first, p.inputs, "the first-order gradient")
        self.functions.append(g)
        W = self._cotangents(self.n_in, p.dtype)
        manual, lost = [], set()
        for w in W:
            u, none = _second(p, first, w)
            manual.append(u)
            lost |= none
        tape, unseen = None, set()
        if p.vjp is not None:
            tape = []
            for w in W:
                u, none = _second(p, tape_first, w)
                tape.append(u)
                unseen |= none
        self.lost = lost
        self._reverse_entries(g, W, manual, tape, "order2", "order 2", blind=unseen)

    # --- judging -----------------------------------------------------------------------------

    def _judge(self) -> None:
        largest = {}
        for e in self.entries:
            largest[e.kind] = max(largest.get(e.kind, 0.0), magnitude(e.manual, e.tape))
        for e in self.entries:
            resolution = self._resolution(e)
            self._judge_entry(e, max(SCALE_FLOOR * largest[e.kind], resolution / self.rtol))
        _diagnose(self)

    def _judge_entry(self, e: _Entry, floor: float) -> None:
        shape = e.manual.shape
        if e.flat is not None:
            nd = fdm.NumericalGradient.unmeasured(e.name, shape, 0.0)
            if e.lines is not None:
                nd.fill(e.flat, e.lines.nd.take(e.cols * e.lines.nd.value.shape[1] + e.rows))
        elif e.lines is not None:
            nd = e.fd()
        else:
            nd = None
        directional = self.mode == "directional" and e.probes is not None
        ev = TensorEvidence(
            e.name, e.manual, e.tape, nd, self.rtol, floor, e.probes if directional else None
        )
        e.evidence = ev
        if e.lines is not None:
            self._refine(e, ev)
        if e.probes is not None:
            self._refine_probes(e, ev)
        v = classify(ev)
        e.probe_fail = None if e.probes is None else _probe_failures(ev, e.probes)
        probes_ok = e.probe_fail is None or not np.any(e.probe_fail)
        if directional and e.tape is None and probes_ok:
            # No tape: the elements not differenced one by one stand with the probes.
            v.unverifiable = v.unverifiable & nd.measured
        check = assemble(ev, v)
        check.tape_missing = e.tape is None and (self.p.vjp is not None or self.p.jvp is not None)
        if not probes_ok:
            n_bad = int(np.count_nonzero(e.probe_fail))
            check.status = Status.FAIL
            if check.note(NoteCode.PROBES_DISAGREE) is None:
                check.notes.append(
                    Note(NoteCode.PROBES_DISAGREE, n_bad, {"probes": len(e.probe_fail)})
                )
        self.report.entries.append(check)

    def _refine(self, e: _Entry, ev: TensorEvidence) -> None:
        nd = ev.fd
        measured = np.flatnonzero(nd.measured.reshape(-1))
        flat = nd.take(measured)
        tape = ev.tape if ev.tape is not None else ev.manual
        bad = fdm.suspect(
            flat, ev.manual.reshape(-1)[measured], tape.reshape(-1)[measured], ev.tape_tol
        )
        if ev.tape is not None:
            # A line whose estimate accepts the tape and not the manual value, with no kink, is
            # clear evidence: smaller steps would not change it.
            clear = (flat.accepts(tape.reshape(-1)[measured], ev.tape_tol) & ~flat.kink)[bad]
            bad = bad[~clear]
        if bad.size == 0:
            return
        lines = measured[bad]
        if e.flat is not None:
            where = np.searchsorted(e.flat, lines)
        else:
            where = lines
        cols, rows = e.cols[where], e.rows[where]

        def remeasure(idx, shrink):
            pick = np.searchsorted(lines, idx)
            return e.lines.remeasure(cols[pick], rows[pick], shrink)

        fdm.refine(nd, lines, remeasure)

    def _refine_probes(self, e: _Entry, ev: TensorEvidence) -> None:
        probes = e.probes
        dirs, nd = probes.directions, probes.fd
        slack = ev.tape_tol * np.sum(np.abs(dirs), axis=1)
        tape = ev.tape if ev.tape is not None else ev.manual
        bad = fdm.suspect(nd, dirs @ ev.manual.reshape(-1), dirs @ tape.reshape(-1), slack)
        if bad.size == 0:
            return
        n_probes = e.probe_lines.n_rows

        def remeasure(idx, shrink):
            idx = np.asarray(idx)
            return e.probe_lines.remeasure(idx // n_probes, idx % n_probes, shrink)

        fdm.refine(nd, bad, remeasure)


def _tape_rounding(p: _Problem, tape_fn, directions, own) -> List[np.ndarray]:
    """The rounding the tape's values ``own[k] = tape_fn(p, directions[k])`` carry in the
    inputs' dtype, per part (input or output) and element, measured by running the tape in the
    other float dtype: the float64 tape's difference from the float32 one scaled by
    eps64/eps32 (for float64 inputs), or the float32 tape's difference from the float64 one
    (for float32 inputs). A gradient that cancels to nearly 0 (1 - n/n) is rounded on the
    terms it cancels from, which neither its value nor the outputs show. Zeros where fn does
    not run in the other dtype, or gives non-finite values there."""
    other = np.float32 if p.dtype == "float64" else np.float64
    zeros = [np.zeros((len(own),) + np.shape(part)) for part in own[0]]
    try:
        theirs = [tape_fn(p.in_dtype(other), d) for d in directions]
    except Exception:  # fn that runs in one dtype only: no measure, no allowance
        return zeros
    scale = min(1.0, float(np.finfo(np.dtype(p.dtype)).eps / np.finfo(other).eps))
    out = []
    for j, zero in enumerate(zeros):
        gap = np.stack([np.abs(t[j] - o[j]) for t, o in zip(theirs, own)])
        out.append(scale * gap if np.all(np.isfinite(gap)) else zero)
    return out


def _reach(x) -> float:
    return max(1.0, float(np.max(np.abs(x), initial=0.0)))


def _kink_pairs(coords: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Directions e_i + e_j over pairs of coordinates with kinks (``coords``, flat, sorted):
    consecutive in flat order (tied maxima of a row, zeros side by side), and each with the
    coordinates whose input ``values`` equal its own (the partners of a tie, wherever they lie,
    and whether or not they were differenced: directional mode differences only some), at most
    ``KINK_PAIRS``: along them a derivative given in full to both (a tie's gradient counted
    twice) is no subgradient."""
    pairs = list(zip(coords[:-1].tolist(), coords[1:].tolist()))
    for i in coords.tolist():
        partners = np.flatnonzero(values == values[i])
        pairs.extend((min(i, j), max(i, j)) for j in partners.tolist() if j != i)
    pairs = list(dict.fromkeys(pairs))[:KINK_PAIRS]  # the consecutive ones first
    dirs = np.zeros((len(pairs), values.size))
    for row, (i, j) in enumerate(pairs):
        dirs[row, i] = dirs[row, j] = 1.0
    return dirs


def _tape_first(p: _Problem, cot, xs) -> List[tf.Tensor]:
    with tf.GradientTape() as tape:
        tape.watch(list(xs))
        ys = p.call(*xs)
    cots = [tf.constant(np.asarray(c), y.dtype) for c, y in zip(cot, ys)]
    grads = tape.gradient(ys, list(xs), output_gradients=cots)
    return [tf.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]


def _second(p: _Problem, first, w: np.ndarray):
    """TensorFlow's gradient of <w, first(x)> at the inputs (zeros where it is None), and the
    inputs for which it was None."""
    xs = p.tensors()
    ws = [tf.constant(part.astype(p.dtype)) for part in p.split_in(w)]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        g = first(*xs)
    grads = tape.gradient(g, xs, output_gradients=ws)
    none = {a for a, u in enumerate(grads) if u is None}
    return [
        np.zeros(x.shape) if u is None else u.numpy().astype(np.float64)
        for u, x in zip(grads, p.inputs)
    ], none


def _probe_failures(ev: TensorEvidence, probes: ProbeEvidence) -> np.ndarray:
    """The probes along which the manual gradient is wrong (the policy's ``probe_failures``),
    in full mode too, where the probes are judged beside the elements."""
    return probe_failures(dataclasses.replace(ev, probes=probes))


# --- diagnosis ---------------------------------------------------------------------------------

_PATTERN = 100  # as in the diagnosis pass: a pattern explains the values to 100x the tolerance


def _diagnose(check: _Check) -> None:
    report, p = check.report, check.p
    for e, entry in zip(check.entries, report.entries):
        if entry.status != Status.FAIL:
            continue
        ev = e.evidence
        truth = _truth(ev, entry)
        if e.kind == "order2" and e.input_index in getattr(check, "lost", set()):
            entry.diagnosis.append(
                Diagnosis(
                    Finding.NOT_DIFFERENTIABLE,
                    f"TensorFlow cannot differentiate the first-order gradient with respect to "
                    f"{p.names[e.input_index]} (the tape returned None): it is computed outside "
                    f"TensorFlow (NumPy, .numpy()) or behind tf.stop_gradient",
                )
            )
            continue
        if truth is None:  # finite differences of some elements only (directional mode)
            truth = np.where(ev.fd.measured, ev.fd.value, np.nan)
        if np.any(e.probe_fail) and not np.any(entry.elements.fail):
            entry.diagnosis.append(_joint_diagnosis())
            continue
        entry.diagnosis.extend(_entry_diagnosis(e, truth, check.rtol))
    report.diagnosis.extend(_across_inputs(check))


def _truth(ev: TensorEvidence, entry: TensorCheck) -> Optional[np.ndarray]:
    """The tape, or finite differences where every element was differenced and the tape is
    absent or found unfaithful."""
    fd = ev.fd
    fd_whole = fd is not None and np.all(fd.measured) and np.all(np.isfinite(fd.value))
    if ev.tape is not None and not (fd_whole and np.any(entry.elements.tape_unfaithful)):
        return ev.tape
    return fd.value if fd_whole else None


def _joint_diagnosis() -> Diagnosis:
    return Diagnosis(
        Finding.JOINT_DIRECTIONS,
        "every element passes on its own, but the gradient is wrong along joint directions: at "
        "a tie or kink, a derivative given in full to several elements at once is no "
        "subgradient (give it to one of them, or split it)",
    )


def _entry_diagnosis(e: _Entry, truth: np.ndarray, rtol: float) -> List[Diagnosis]:
    m = e.manual
    known = np.isfinite(truth)
    scale = float(np.max(np.abs(truth[known]), initial=0.0))
    tight = max(_PATTERN * rtol, 1e-7) * max(scale, float(np.max(np.abs(m), initial=0.0)))
    out = []
    if e.kind in ("vjp", "order2") and m.shape[0] > 1 and scale > 0 and np.any(m):
        same = np.max(np.abs(m - m[:1])) <= tight
        # Elements known for two cotangents at least, compared across them.
        both = known & known[:1]
        differs = np.max(np.abs(np.where(both, truth - truth[:1], 0.0))) > 10 * tight
        if same and differs:
            return [
                Diagnosis(
                    Finding.IGNORES_UPSTREAM,
                    "the gradient is the same for every cotangent: it ignores the upstream "
                    "gradient dy (a custom gradient must multiply by dy)",
                )
            ]
    if e.kind == "jacobian":
        n = int(np.prod(m.shape[: m.ndim // 2], dtype=np.int64)) if m.ndim % 2 == 0 else 0
        if n and m.size == n * n and m.shape[: m.ndim // 2] == m.shape[m.ndim // 2 :]:
            J, T = m.reshape(n, n), truth.reshape(n, n)
            if np.max(np.abs(J - np.diag(np.diag(T)))) <= tight and np.any(T - np.diag(np.diag(T))):
                return [
                    Diagnosis(
                        Finding.DIAGONAL_ONLY,
                        "the manual Jacobian is the diagonal of the true one only: each output's "
                        "derivative with respect to its own input is right, the cross terms (such "
                        "as softmax's -s_i s_j) are missing",
                    )
                ]
    if not np.all(known):
        return out
    wrong_rows = (
        [k for k in range(m.shape[0]) if np.any(np.abs(m[k] - truth[k]) > tight)]
        if e.kind in ("vjp", "jvp", "order2")
        else []
    )
    if wrong_rows:
        k = wrong_rows[0]
        sizes = _sizes(m[k].shape)
        out.extend(diagnose_tensor(m[k], truth[k], rtol, sizes=sizes))
    elif e.kind == "jacobian":
        out.extend(diagnose_tensor(m, truth, rtol))
    return out


def _sizes(shape) -> Sizes:
    if len(shape) >= 2:
        return Sizes(int(shape[0]), int(shape[-1]), "the first axis")
    return Sizes(int(shape[0]) if shape else None, None, "the length")


def _across_inputs(check: _Check) -> List[Diagnosis]:
    """Which inputs' gradients are wrong, and a swapped pair."""
    p = check.p
    out = []
    failing = {}
    for e, entry in zip(check.entries, check.report.entries):
        if e.kind == "vjp":
            failing[e.input_index] = (e, entry.status == Status.FAIL, entry)
    if len(failing) > 1:
        bad = [p.names[a] for a, (_, f, _) in failing.items() if f]
        good = [p.names[a] for a, (_, f, _) in failing.items() if not f]
        if bad and good:
            out.append(
                Diagnosis(
                    Finding.WHICH_INPUT,
                    f"only the gradient with respect to {', '.join(bad)} is wrong "
                    f"({', '.join(good)}: right)",
                )
            )
        for i in range(len(bad)):
            for j in range(i + 1, len(bad)):
                a, b = p.names.index(bad[i]), p.names.index(bad[j])
                ea, eb = failing[a][0], failing[b][0]
                ta = _truth(ea.evidence, failing[a][2])
                tb = _truth(eb.evidence, failing[b][2])
                if ta is None or tb is None or ea.manual.shape != eb.manual.shape:
                    continue
                tight = max(_PATTERN * check.rtol, 1e-7) * max(magnitude(ta, tb), 1e-300)
                if (
                    np.max(np.abs(ea.manual - tb)) <= tight
                    and np.max(np.abs(eb.manual - ta)) <= tight
                ):
                    out.append(
                        Diagnosis(
                            Finding.SWAPPED,
                            f"the gradients of {bad[i]} and {bad[j]} are swapped: each is the "
                            f"other's",
                        )
                    )
    return out
