"""What the evidence passes (``passes``) move, per check: a model's weights (``ModelMoves``), a
function's inputs (``FunctionMoves``), an elementwise function's points (``DerivativeMoves``).
Two questions, asked alike of each:

- ``bend(key, d, h, ev)``: how far the checked gradient's own projection on the line through the
  point in direction ``d`` bends within the finite-difference step (``bend_of``, at the points
  finite differences evaluate): about zero on a smooth line, the jump where kinks sit inside the
  step;
- ``moved(key, lines, ev, rng)`` and ``moved_probes(key, probes, ev, rng)``: how far finite
  differences' disagreement with the manual value, along elements or probes, moves, as a
  fraction of itself, when the point moves by a relative 1e-6 (``passes.NUDGE``), or by 1e-3
  where it is steady under 1e-6 (``Nudged``); None where the check cannot ask it. Only a
  model's weights are nudged: a function's outputs (and an elementwise function's) carry their
  own rounding bound instead (``TensorEvidence.fd_floor``, the derivative's tolerance).

``skip(key)``: the tensors these passes leave alone.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from .._core import fd as fdm
from .._core import stencils
from .._core.adapter import INPUT, Adapter
from .._core.policy import ERRATIC
from . import problem as pb
from .passes import _LARGENUDGE, _SMOOTH_FACTOR, NUDGE, NUDGES

__all__ = [
    "ModelMoves",
    "Nudged",
    "FunctionMoves",
    "DerivativeMoves",
    "bend_of",
    "reverse_line",
    "forward_line",
    "jacobian_line",
]


class ModelMoves:
    """What the evidence passes ask of a model: its own gradient at points moved along a line
    (``bend``), and finite differences again at points where every weight moved by a relative
    1e-6 (``moved``). ``dL/dX`` bends along X, and is differenced again at the nudged
    weights."""

    def __init__(self, twin: Adapter):
        self.twin = twin

    def skip(self, key) -> bool:
        return False

    def bend(self, key, direction, step: float, ev) -> float:
        if key == INPUT:
            return _bend_along_input(self.twin, direction, step, ev)
        return _bend_along(self.twin, key, direction, step, ev)

    def moved(self, key, lines, ev, rng) -> "Nudged":
        twin = self.twin
        d0 = ev.fd.value.reshape(-1)[lines] - ev.manual.reshape(-1)[lines]
        return _erratic_lines(
            twin,
            key,
            d0,
            lambda sub: lambda f0: stencils.coordinate_stencil(twin, key, f0, lines[sub]),
            lambda sub: lambda g: g.reshape(-1)[lines[sub]],
            ev,
            ev.fd.noise,
            rng,
        )

    def moved_probes(self, key, probes, ev, rng) -> "Nudged":
        """``moved`` along the probes ``probes`` (indices of ``ev.probes``)."""
        twin = self.twin
        dirs, nd = ev.probes.directions[probes], ev.probes.fd
        with np.errstate(invalid="ignore"):
            d0 = nd.value[probes] - dirs @ ev.manual.reshape(-1)
        return _erratic_lines(
            twin,
            key,
            d0,
            lambda sub: lambda f0: stencils.directional_stencil(twin, key, f0, dirs[sub]),
            lambda sub: lambda g: dirs[sub] @ g.reshape(-1),
            ev,
            nd.noise,
            rng,
        )


class Nudged(NamedTuple):
    """Per line, how far finite differences' disagreement moved, as a fraction of itself
    (``moved``), and under which relative nudge of the weights (``nudge``)."""

    moved: np.ndarray
    nudge: np.ndarray


# Where the bend is measured along a line, in steps: the points finite differences evaluate
# (``stencils._OFFSETS``), each way.
BEND_AT = (0.5, 1.0)


def bend_of(along, direction, ev) -> float:
    """max over t in ``BEND_AT`` of |(g(+t h) + g(-t h) - 2 g(0)) . d|, the bend of a gradient g
    along the line through the point in direction d, where ``along(t)`` is its projection on d
    at t steps: about zero on a smooth line (linear change cancels), the jump of a kink inside
    the step at the point's side of it."""
    here = project(ev.manual, direction)
    return max(abs(along(t) + along(-t) - 2.0 * here) for t in BEND_AT)


def project(values: np.ndarray, direction: np.ndarray) -> float:
    """values . d over the elements d moves (a non-finite value elsewhere is not on the line)."""
    on = np.flatnonzero(direction)
    return float(values.reshape(-1)[on] @ direction[on])


def _bend_along(twin: Adapter, key, direction, step: float, ev) -> float:
    """``bend_of`` the model's own gradient along the line theta + s d (h the step)."""
    original = twin.snapshot()

    def along(t):
        moved = original[key].astype(np.float64) + t * step * direction.reshape(original[key].shape)
        twin.write(key, moved)
        try:
            return project(twin.manual()[key], direction)
        finally:
            twin.restore(original)

    try:
        return bend_of(along, direction, ev)
    finally:
        twin.restore(original)


def _bend_along_input(twin: Adapter, direction, step: float, ev) -> float:
    """``bend_of`` the model's own dL/dX along the line X + s d."""
    X, base = twin.X, twin.value(INPUT)

    def along(t):
        moved = base + t * step * direction.reshape(base.shape)
        if isinstance(X, tf.Tensor):
            twin.X = tf.constant(moved, dtype=X.dtype)
        else:
            twin.X = moved.astype(np.asarray(X).dtype)
        try:
            return project(twin.manual()[INPUT], direction)
        finally:
            twin.X = X

    return bend_of(along, direction, ev)


def _erratic_lines(twin: Adapter, key, d0, measure, project_manual, ev, noise, rng) -> Nudged:
    """Per line, how far finite differences' disagreement ``d0`` with the manual value moves
    when every weight moves by a relative ``NUDGE`` (about 1e-6). Where it is steady there, the
    weights move again by ``_LARGENUDGE`` (about 1e-3): a loss rounded more coarsely than its
    own ulps (-log(1 - p) at a float32 p within 1e-5 of 1 is a staircase of steps of 1% of
    itself) keeps its stairs under 1e-6, and finite differences read the same stairs, while
    under 1e-3 the stairs are drawn anew. There a move counts only when it is ``_SMOOTH_FACTOR``
    times the manual value's own move on the line (a wrong gradient's disagreement moves with
    the gradient). ``measure(sub)`` and ``project_manual(sub)`` are those of the lines ``sub``
    (indices into ``d0``)."""
    every = np.arange(len(d0))
    moved = _moved_under_nudge(twin, key, d0, measure(every), project_manual(every), noise, rng)
    nudge = np.full(len(d0), NUDGE)
    steady = np.flatnonzero(~(moved >= ERRATIC))
    if steady.size:
        again = _moved_under_nudge(
            twin,
            key,
            d0[steady],
            measure(steady),
            project_manual(steady),
            noise,
            rng,
            nudge=_LARGENUDGE,
            own=project_manual(steady)(ev.manual),
        )
        erratic = again >= ERRATIC
        moved[steady[erratic]] = again[erratic]
        nudge[steady[erratic]] = _LARGENUDGE
    return Nudged(moved, nudge)


def _moved_under_nudge(
    twin: Adapter, key, d0, measure, project_manual, noise, rng, nudge=NUDGE, own=None
):
    """Per line, how much finite differences' disagreement ``d0`` with the manual value moves,
    as a fraction of itself, when every weight moves by a relative ``nudge`` (the largest of
    ``NUDGES`` such moves): ``measure(f0)`` differences the lines at the nudged point,
    ``project_manual(g)`` puts the model's gradient of tensor ``key`` there on them. Given the
    manual value's projection at the point (``own``), a move counts only where it is at least
    ``_SMOOTH_FACTOR`` times the manual value's own move (as a fraction of itself)."""
    tiny = np.finfo(float).tiny
    out = np.zeros(len(d0))
    original = twin.snapshot()
    try:
        for _ in range(NUDGES):
            for i, value in enumerate(original):
                twin.write(i, value * (1.0 + nudge * rng.standard_normal(value.shape)))
            st = measure(twin.loss_value())
            m1 = project_manual(twin.manual()[key])
            d1 = fdm.analyse("", st, noise).value - m1
            twin.restore(original)
            with np.errstate(invalid="ignore"):
                moved = np.abs(d1 - d0) / np.maximum(np.abs(d0), tiny)
                if own is not None:
                    shift = np.abs(m1 - own) / np.maximum(np.abs(own), tiny)
                    moved = np.where(moved >= _SMOOTH_FACTOR * shift, moved, 0.0)
            out = np.fmax(out, moved)
    finally:
        twin.restore(original)
    return out


class FunctionMoves:
    """What the evidence passes ask of a function: each entry (keyed by its place in
    ``entries``) knows the line through the inputs its direction stands for (``entry.line``)
    and the hand-written derivative's projection on it at moved inputs (``entry.claim``). No
    nudge (``moved`` is None): the outputs' own rounding at the step bounds what finite
    differences can resolve there (``TensorEvidence.fd_floor``)."""

    def __init__(self, problem, entries: List):
        self.problem, self.entries = problem, entries

    def skip(self, key) -> bool:
        return self.entries[key].line is None

    def bend(self, key, direction, step: float, ev) -> float:
        entry = self.entries[key]
        deltas = entry.line(direction)
        if deltas is None:  # not one line through the inputs: no evidence of a bend
            return 0.0
        problem = self.problem

        def along(t):
            return entry.claim(problem.moved(deltas, t * step), direction)

        return bend_of(along, direction, ev)

    def moved(self, key, lines, ev, rng) -> Optional[np.ndarray]:
        return None

    def moved_probes(self, key, probes, ev, rng) -> Optional[np.ndarray]:
        return None


class DerivativeMoves:
    """What the evidence passes ask of an elementwise function: the claimed derivative at the
    point moved along its own line (``claimed(points)``, elementwise). No nudge: its tolerance
    already carries its rounding."""

    def __init__(self, claimed, x: np.ndarray):
        self.claimed, self.x = claimed, x

    def skip(self, key) -> bool:
        return False

    def bend(self, key, direction, step: float, ev) -> float:
        i = int(np.argmax(np.abs(direction)))
        ts = [t * sign for t in BEND_AT for sign in (1.0, -1.0)]
        at = (float(self.x[i]) + step * np.array(ts)).astype(self.x.dtype)
        with np.errstate(invalid="ignore"):
            values = dict(zip(ts, self.claimed(at) * direction[i]))
        return bend_of(values.get, direction, ev)

    def moved(self, key, lines, ev, rng) -> None:
        return None

    def moved_probes(self, key, probes, ev, rng) -> None:
        return None


# --- the lines behind an entry's directions (for ``moves.FunctionMoves``) ----------------------


def _block(D: np.ndarray, rows: int):
    """The one row of ``D`` (reshaped to ``rows`` rows) that is not zero, and that row; None
    when there is not exactly one."""
    blocks = D.reshape(rows, -1)
    live = np.flatnonzero(np.any(blocks != 0, axis=1))
    return (int(live[0]), blocks[live[0]]) if live.size == 1 else (None, None)


def reverse_line(C, a: int, shapes, claimer):
    """A VJP entry's direction d in row k moves input a along d; the claim is the gradient of
    <c_k, f> there, projected on d."""

    def line(D):
        k, d = _block(D, len(C))
        if k is None:
            return None
        return [d.reshape(s) if b == a else np.zeros(s) for b, s in enumerate(shapes)]

    def claim(q, D):
        k, d = _block(D, len(C))
        return project(claimer(q, C[k])[a], d)

    return line, claim


def forward_line(p: pb.Problem, T, j: int):
    """A JVP entry's element (k, o) lies along the tangent t_k; the claim is output j's
    tangent there, projected."""

    def line(D):
        k, _ = _block(D, len(T))
        return None if k is None else p.split_in(T[k])

    def claim(q, D):
        k, d = _block(D, len(T))
        return project(pb.manual_jvp(q, T[k])[j], d)

    return line, claim


def jacobian_line(p: pb.Problem, label: str, a: int, j: int):
    """A Jacobian entry's element (o, i) lies along input a's coordinate i; the claim is that
    element of the claimed Jacobian there (one unit cotangent, or tangent, at a time)."""
    shapes = [x.shape for x in p.inputs]
    n_out = sum(int(np.prod(s, dtype=np.int64)) for s in p.out_shapes)
    out_off = sum(int(np.prod(s, dtype=np.int64)) for s in p.out_shapes[:j])
    in_off = sum(x.size for x in p.inputs[:a])
    n_in = sum(x.size for x in p.inputs)
    size = p.inputs[a].size

    def unit(D):
        live = np.flatnonzero(D)
        return None if live.size != 1 else divmod(int(live[0]), size)

    def line(D):
        at = unit(D)
        if at is None:
            return None
        return [
            np.eye(1, size, at[1])[0].reshape(s) if b == a else np.zeros(s)
            for b, s in enumerate(shapes)
        ]

    def claim(q, D):
        o, i = unit(D)
        if label == "jvp":
            value = pb.manual_jvp(q, np.eye(1, n_in, in_off + i)[0])[j].reshape(-1)[o]
        else:
            vjp = pb.manual_vjp if label == "vjp" else pb.tape_vjp
            value = vjp(q, np.eye(1, n_out, out_off + o)[0])[a].reshape(-1)[i]
        return float(value) * D[o * size + i]

    return line, claim
