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

from dataclasses import dataclass
from functools import partial
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf

from .._core import fd as fdm
from .._core import stencils, validate
from .._core.function import VectorFunction, changed_scale
from .._core.lines import Lines
from .._core.policy import (
    LOSS_ULPS,
    SCALE_FLOOR,
    TAPE_RTOL,
    ProbeEvidence,
    TensorEvidence,
    classify,
    magnitude,
    probe_failures,
    refine_elements,
    refine_probes,
)
from .._core.report import FunctionReport, GradientMismatch
from .._core.verdict import assemble
from . import problem as pb
from .function_diagnosis import diagnose
from .modes import MODES
from .moves import FunctionMoves, forward_line, jacobian_line, reverse_line
from .passes import fd_against_pass, hidden_kinks_pass, probe_bends_pass, tape_independence
from .trust import TAPE_DEVIATION_FACTOR

__all__ = ["check_function", "assert_function_gradients", "FunctionReport"]

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
_FN_FIX = "fn must return a tensor or a tuple/list of tensors, computed with TF ops."


# --- finite-difference lines -----------------------------------------------------------------


@dataclass
class _Entry:
    """One thing judged: its manual and tape values (tape None where the tape is what is
    judged), and where its elements' finite-difference lines are (``cols``/``rows`` of
    ``lines``, flat, or None for an entry whose elements are not differenced one by one)."""

    name: str
    kind: str  # "vjp", "jvp", "jacobian", "order2"
    manual: np.ndarray
    tape: Optional[np.ndarray]
    lines: Optional[Lines] = None
    cols: Optional[np.ndarray] = None
    rows: Optional[np.ndarray] = None
    probes: Optional[ProbeEvidence] = None
    probe_fail: Optional[np.ndarray] = None
    probe_lines: Optional[Lines] = None
    input_index: Optional[int] = None
    output_scale: float = 0.0  # the magnitude of the projected output (see ``_resolution``)
    reach: float = 1.0  # how far the input moves: its largest magnitude, at least 1
    rounding: float = 0.0  # the rounding of the tape's gradient (``tape_rounding``)
    flat: Optional[np.ndarray] = None  # directional mode: the elements ``lines`` measure
    coords: Optional[np.ndarray] = None  # ... and the input's coordinates they lie along
    evidence: Optional[TensorEvidence] = None
    # For the evidence passes (``moves.FunctionMoves``): the moves of the inputs along the line
    # a direction of the entry stands for (None when it is not one line), and the judged
    # derivative's projection on that direction at moved inputs.
    line: Optional[Callable] = None
    claim: Optional[Callable] = None

    def fd(self) -> fdm.NumericalGradient:
        nd = self.lines.nd
        flat = self.cols * nd.value.shape[1] + self.rows
        return nd.take(flat).reshaped(self.manual.shape)


# --- check_function ----------------------------------------------------------------------------


@validate.short_input_errors
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
    order = validate.order(order)
    p = pb.Problem(fn, inputs, vjp, jvp)
    precision = p.f.precision.name
    coarse = fdm.coarsest_dtype(p.dtype, precision)
    rtol = TAPE_RTOL[coarse] if rtol is None else validate.rtol(rtol)
    name = name or getattr(fn, "__name__", None) or type(fn).__name__
    report = FunctionReport(mode, p.dtype, precision, function=name, order=order)
    note = fdm.precision_note("fn", p.dtype, p.f.out_dtype.name, precision)
    report.notes.extend([note] if note else [])
    report.notes.extend(p.variables_note())
    impure = pb.purity(p)
    if impure:
        report.impure = impure
        return report
    rng = np.random.default_rng(seed)
    check = _Check(p, report, mode, probes, rtol, rng)
    check.run(order)
    report.tape_blind = check.blindness()
    if vjp is None and jvp is None:
        report.notes.extend(p.disconnected_notes())
    report.notes.extend(f.note for f in check.functions if f.note)
    return report


@validate.short_input_errors
def assert_function_gradients(fn, *inputs, **kwargs) -> FunctionReport:
    """``check_function`` that raises :class:`GradientMismatch` unless the verdict is a pass."""
    __tracebackhide__ = True
    report = check_function(fn, *inputs, **kwargs)
    if not report.ok:
        raise GradientMismatch(report)
    return report


class _Check:
    """The pipeline of one check: the witnesses asked, the evidence gathered per entry, judged,
    and the diagnosis."""

    def __init__(self, p: pb.Problem, report: FunctionReport, mode, probes, rtol, rng):
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
        ``LOSS_ULPS`` ulps (of the inputs' dtype or fn's precision, the coarser) cannot show in
        any value the function takes; nor one within the tape's rounding (``e.rounding``)."""
        eps = float(np.finfo(fdm.coarsest_dtype(self.p.dtype, self.p.f.precision)).eps)
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
        own = [pb.tape_vjp(p, c) for c in C]
        manual = [pb.manual_vjp(p, c) for c in C] if p.vjp is not None else own
        tape = own if p.vjp is not None else None
        claimer = pb.manual_vjp if p.vjp is not None else pb.tape_vjp
        self._reverse_entries(p.f, C, manual, tape, "vjp", "vjp", claimer, p.disconnected)
        rounding = pb.tape_rounding(p, pb.tape_vjp, C, own)
        for e in self.entries[-len(p.inputs) :]:
            e.rounding = TAPE_DEVIATION_FACTOR * float(np.max(rounding[e.input_index]))

    def _reverse_entries(self, f: VectorFunction, C, manual, tape, kind, label, claimer, blind):
        """Entries (one per input) of gradients of <c_k, f(x)>: ``manual[k][a]``, ``tape``
        (None for the inputs in ``blind``, which nothing on the tape connects to the output:
        its zeros there witness nothing); ``claimer(problem, c_k)`` gives the judged gradients
        at other inputs."""
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
            entry.output_scale, entry.reach = float(np.max(floor)), pb.reach(f.inputs[a])
            entry.line, entry.claim = reverse_line(C, a, f.in_shapes, claimer)
            measure = self._coordinates(f, a, C.T)
            if self.mode == "full":
                entry.lines = Lines(entry.name, measure, size, f.eps, alone=t is None)
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
                pairs = stencils.pair_directions(
                    coords[kinked], f.inputs[a].reshape(-1), KINK_PAIRS
                )
            entry.probes, entry.probe_lines = self._probes(f, a, C, n_probes, pairs, t is None)
            self.entries.append(entry)

    def _coordinates(self, f: VectorFunction, a: int, projector: np.ndarray):
        def measure(rows, shrink):
            return f.coordinate_lines(a, rows, projector, shrink)

        return measure

    def _probes(self, f: VectorFunction, a: int, C, n_probes: int, extra=None, alone=False):
        """Joint directions over input a (random, and ``extra`` ones), differenced once and
        projected on every cotangent: ProbeEvidence over the stacked (K, size) entry (each
        direction lives in one row)."""
        size = f.in_sizes[a]
        dirs = stencils.probe_directions((size,), n_probes, self.rng)
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

        lines = Lines("probes", measure, n_probes, f.eps, alone=alone)
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

        entry.lines = Lines(entry.name, sub_measure, coords.size, f.eps, alone=entry.tape is None)
        entry.cols = chosen // size
        entry.rows = pos

    def _jvp_entries(self) -> None:
        p, f = self.p, self.p.f
        T = self._cotangents(self.n_in, p.dtype)
        manual = [pb.manual_jvp(p, t) for t in T]
        tape = [pb.tape_jvp(p, t) for t in T]
        rounding = pb.tape_rounding(p, pb.tape_jvp, T, tape)
        tangents = [p.split_in(row) for row in T]

        def measure(rows, shrink):
            s, vals = f.directional_lines([tangents[r] for r in rows], shrink)
            return s, vals, changed_scale(vals, f.f0, None)

        alone = len(p.unreached) == len(p.out_shapes)
        lines = Lines("jvp", measure, COTANGENTS, f.eps, pool="all", alone=alone)
        offset = 0
        for j, shape in enumerate(p.out_shapes):
            size = int(np.prod(shape, dtype=np.int64))
            m = np.stack([manual[k][j] for k in range(COTANGENTS)])
            t = None if j in p.unreached else np.stack([tape[k][j] for k in range(COTANGENTS)])
            self.unreached |= {j} & p.unreached
            entry = _Entry(f"jvp: {p.out_names[j]}", "jvp", m, t, lines)
            entry.line, entry.claim = forward_line(p, T, j)
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
            rows = [_flat(pb.manual_vjp(p, e)) for e in eye_out]
            rows_claimed.append(("vjp", np.stack(rows)))
        if p.jvp is not None:
            cols = [_flat(pb.manual_jvp(p, e)) for e in np.eye(self.n_in)]
            rows_claimed.append(("jvp", np.stack(cols, axis=1)))
        # The tape's Jacobian (the witness, or what is judged when there is no vjp or jvp),
        # by rows (unit cotangents) unless only a jvp is given, and the rounding it carries.
        if by_vjp or p.vjp is not None:
            units, tape_fn, axis = eye_out, pb.tape_vjp, 0
        else:
            units, tape_fn, axis = np.eye(self.n_in), pb.tape_jvp, 1
        own = [tape_fn(p, e) for e in units]
        tape_J = np.stack([_flat(t) for t in own], axis=axis)
        gaps = pb.tape_rounding(p, tape_fn, units, own)
        gap_J = np.concatenate([g.reshape(len(units), -1) for g in gaps], axis=1)
        gap_J = gap_J if axis == 0 else gap_J.T
        witness = tape_J if (p.vjp is not None or p.jvp is not None) else None
        if by_vjp and p.vjp is None:
            rows_claimed.append(("tape", tape_J))
        in_off = np.concatenate([[0], np.cumsum(f.in_sizes)])
        out_off = np.concatenate([[0], np.cumsum(f.out_sizes)])
        for a in range(len(f.in_shapes)):
            blind = witness is None or a in p.disconnected or len(p.unreached) == len(f.out_shapes)
            lines = Lines(
                f"J {p.names[a]}",
                self._coordinates(f, a, eye_out),
                f.in_sizes[a],
                f.eps,
                alone=blind,
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
                    entry.reach = pb.reach(f.inputs[a])
                    entry.rounding = TAPE_DEVIATION_FACTOR * float(
                        np.max(gap_J[osl, isl], initial=0.0)
                    )
                    oo, ii = np.meshgrid(
                        np.arange(out_off[j], out_off[j + 1]),
                        np.arange(f.in_sizes[a]),
                        indexing="ij",
                    )
                    entry.cols, entry.rows = oo.reshape(-1), ii.reshape(-1)
                    entry.line, entry.claim = jacobian_line(p, label, a, j)
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
                grads = pb.tape_first(p, cot, xs)
            items = list(grads) if isinstance(grads, (tuple, list)) else [grads]
            return [
                tf.zeros_like(x) if g is None else tf.convert_to_tensor(g)
                for g, x in zip(items, xs)
            ]

        def witness_first(*xs):
            return pb.tape_first(p, cot, xs)

        g = VectorFunction(first, p.inputs, "the first-order gradient")
        self.functions.append(g)
        W = self._cotangents(self.n_in, p.dtype)
        manual, lost = [], set()
        for w in W:
            u, none = pb.second(p, first, w)
            manual.append(u)
            lost |= none
        tape, unseen = None, set()
        if p.vjp is not None:
            tape = []
            for w in W:
                u, none = pb.second(p, witness_first, w)
                tape.append(u)
                unseen |= none
        self.lost = lost

        def claimer(q, w):
            return pb.second(q, first, w)[0]

        self._reverse_entries(g, W, manual, tape, "order2", "order 2", claimer, unseen)

    # --- judging -----------------------------------------------------------------------------

    def _judge(self) -> None:
        """The evidence of every entry; the policy's first verdict; the evidence passes every
        check runs (``passes``, through ``FunctionMoves``); each entry's verdict assembled."""
        largest = {}
        for e in self.entries:
            largest[e.kind] = max(largest.get(e.kind, 0.0), magnitude(e.manual, e.tape))
        evidence = {}
        for i, e in enumerate(self.entries):
            floor = max(SCALE_FLOOR * largest[e.kind], self._resolution(e) / self.rtol)
            evidence[i] = e.evidence = self._evidence(e, floor)
        verdicts = {i: classify(ev) for i, ev in evidence.items()}
        p = self.p
        dependent = tape_independence(verdicts, evidence, partial(p.call, *p.tensors()))
        self.report.tape_dependent = dependent
        moves = FunctionMoves(p, self.entries)
        fd_against_pass(moves, verdicts, evidence, 0, dependent is None)
        probe_bends_pass(moves, verdicts, evidence, 0)
        hidden_kinks_pass(moves, verdicts, evidence)
        witnessed = p.vjp is not None or p.jvp is not None
        for i, e in enumerate(self.entries):
            ev, v = evidence[i], verdicts[i]
            e.probe_fail = None if e.probes is None else probe_failures(ev, v)
            check = assemble(ev, v)
            check.tape_missing = e.tape is None and witnessed
            self.report.entries.append(check)
        diagnose(self)

    def _evidence(self, e: _Entry, floor: float) -> TensorEvidence:
        """The entry's evidence: its elements' and probes' finite differences, refined."""
        shape = e.manual.shape
        if e.flat is not None:
            nd = fdm.NumericalGradient.unmeasured(e.name, shape, 0.0)
            if e.lines is not None:
                nd.fill(e.flat, e.lines.nd.take(e.cols * e.lines.nd.value.shape[1] + e.rows))
        elif e.lines is not None:
            nd = e.fd()
        else:
            nd = None
        ev = TensorEvidence(e.name, e.manual, e.tape, nd, self.rtol, floor, e.probes)
        rounded = fdm.FLOOR_ULPS * self.p.f.eps * e.output_scale  # one evaluation's rounding
        if e.lines is not None:
            self._refine(e, ev)
            ev.fd_floor = fdm.carried_rounding(rounded, nd.step)
        if e.probes is not None:
            self._refine_probes(e, ev)
            e.probes.fd_floor = fdm.carried_rounding(rounded, e.probes.fd.step)
        return ev

    def _refine(self, e: _Entry, ev: TensorEvidence) -> None:
        """The suspect elements differenced again with smaller steps (the engine's rule)."""
        measured = np.flatnonzero(ev.fd.measured.reshape(-1))
        where = measured if e.flat is None else np.searchsorted(e.flat, measured)
        cols, rows = e.cols[where], e.rows[where]

        def remeasure(idx, shrink):
            pick = np.searchsorted(measured, idx)
            return e.lines.remeasure(cols[pick], rows[pick], shrink)

        refine_elements(ev, measured, remeasure)

    def _refine_probes(self, e: _Entry, ev: TensorEvidence) -> None:
        """The suspect probes differenced again with smaller steps (the engine's rule)."""
        n_probes = e.probe_lines.n_rows

        def remeasure(idx, shrink):
            idx = np.asarray(idx)
            return e.probe_lines.remeasure(idx // n_probes, idx % n_probes, shrink)

        refine_probes(ev, remeasure)


def _flat(parts) -> np.ndarray:
    """Arrays (one per input or output) as one flat vector."""
    return np.concatenate([part.reshape(-1) for part in parts])
