"""Judging one tensor: the three witnesses compared element by element, and the diagnosis.

The tape is the tight witness: the manual gradient must match it to rounding
(``TAPE_RTOL[dtype]`` times the tensor's largest gradient). Where it does not, finite
differences decide whether that is a bug:

- the loss has a kink along that coordinate and the manual value lies between the one-sided
  derivatives: a valid subgradient (a convention other than TensorFlow's), counted, not failed;
- the manual value agrees with finite differences and the tape does not: the tape is not a
  faithful witness there (a ``tf.custom_gradient`` or an op outside TensorFlow in the forward):
  a note, not a failure;
- the loss has a kink and the tape's value is not between the one-sided derivatives either: the
  point sits where several kinks meet (a ReLU network at exactly zero input), where chain-rule
  conventions such as relu'(0) = 0 compose to values that are no subgradient of the whole; no
  value can be judged there, so it is noted, not failed;
- otherwise: a failure.

Where the manual value matches the tape but finite differences disagree with both, that is noted
(finite differences cannot resolve that element); it is not a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

import numpy as np

from .finite_differences import NumericalGradient
from .report import FAIL, NOTES, PASS, Comparison, TensorCheck

__all__ = ["TAPE_RTOL", "SCALE_FLOOR", "LOSS_ULPS", "ElementVerdict", "classify", "judge_elements",
           "assemble", "diagnose_tensor", "diagnose_layers"]

# Relative tolerance (to the tensor's largest gradient) of manual against tape: rounding only.
TAPE_RTOL = {"float64": 1e-10, "float32": 1e-5}
# A tensor is judged on at least this fraction of the largest gradient in the model. A tensor
# whose every gradient is far smaller sits behind saturated units, where textbook formulas such
# as elu's a + alpha cancel down to their last digits; holding it to its own tiny scale would
# cry wolf at rounding, while a bug of 1e-3 or more of its own size is still caught down to
# gradients 1e-9 of the model's largest (float64).
SCALE_FLOOR = 1e-2
# Nor is a gradient judged finer than the loss can resolve: an error that, over a change of the
# parameter by its own magnitude (at least 1), moves the loss by less than this many ulps of the
# loss (of 1 for a loss below 1, since a batch-mean loss near 0 is the cancellation of O(1) terms,
# such as logsumexp(z) - z_y, and is rounded on their scale) cannot show in any value the loss
# takes. It matters only where a whole model is saturated and every gradient is a few ulps.
LOSS_ULPS = 256


@dataclass
class ElementVerdict:
    """Per-element outcome over one tensor (or over the probes of a tensor)."""

    fail: np.ndarray
    kink_used: np.ndarray      # manual != tape, excused as a subgradient at a kink
    kink_unjudged: np.ndarray  # manual != tape at a kink where the tape is no subgradient either
    tape_unfaithful: np.ndarray  # manual == FD != tape
    fd_unresolved: np.ndarray  # manual == tape != FD
    tape_ok: np.ndarray
    fd_ok_manual: Optional[np.ndarray]
    fd_ok_tape: Optional[np.ndarray]
    # failing elements where finite differences accept manual and tape alike: only the tape
    # tells them apart, so a rounding test decides (see check._erratic)
    undecided: Optional[np.ndarray] = None
    rounding: Optional[np.ndarray] = None   # undecided elements excused as rounding

    def excuse_rounding(self, mask: np.ndarray) -> None:
        self.rounding = mask.copy()
        self.fail = self.fail & ~mask


def classify(m: np.ndarray, t: np.ndarray, tape_tol, fd: Optional[NumericalGradient],
             slack=None) -> ElementVerdict:
    """Apply the policy of the module docstring to aligned arrays ``m`` (manual), ``t`` (tape)
    and the finite-difference estimate ``fd`` (or None). ``slack`` widens the FD tolerance for
    the rounding the manual and tape values carry (default ``tape_tol``)."""
    slack = tape_tol if slack is None else slack
    finite = np.isfinite(m)
    with np.errstate(invalid="ignore"):
        tape_ok = finite & (np.abs(m - t) <= tape_tol)
    if fd is None:
        fail = ~tape_ok
        none = np.zeros_like(fail)
        return ElementVerdict(fail, none, none, none, none, tape_ok, None, None)
    fd_ok_m = finite & fd.accepts(m, slack)
    fd_ok_t = np.isfinite(t) & fd.accepts(t, slack)
    kink_used = ~tape_ok & fd_ok_m & fd.kink
    kink_unjudged = ~tape_ok & finite & ~fd_ok_m & fd.kink & ~fd_ok_t
    tape_unfaithful = ~tape_ok & fd_ok_m & ~fd_ok_t & ~fd.kink
    fail = ~finite | (~tape_ok & ~(kink_used | kink_unjudged | tape_unfaithful))
    fd_unresolved = tape_ok & ~fd_ok_m
    undecided = fail & finite & fd_ok_m & fd_ok_t & ~fd.kink
    return ElementVerdict(fail, kink_used, kink_unjudged, tape_unfaithful, fd_unresolved, tape_ok,
                          fd_ok_m, fd_ok_t, undecided)


def _scale(m, t) -> float:
    vals = np.concatenate([np.abs(t[np.isfinite(t)]).ravel(), np.abs(m[np.isfinite(m)]).ravel()])
    return float(vals.max()) if vals.size else 0.0


def _fd_comparison(between, cand, fd, ok, slack, scale) -> Comparison:
    dist = np.where(np.isfinite(cand), fd.distance(cand), np.inf)
    tol = np.where(fd.kink, fd.kink_error, fd.error) + slack
    excess = np.where(ok, 0.0, dist / np.maximum(tol, np.finfo(float).tiny))
    worst = int(np.argmax(excess)) if np.any(~ok) else int(np.argmax(dist))
    denom = scale if scale > 0 else 1.0
    return Comparison(between, float(dist.flat[worst]) / denom, float(tol.flat[worst]) / denom,
                      bool(np.all(ok)))


def judge_elements(m: np.ndarray, t: np.ndarray, rtol: float, fd: Optional[NumericalGradient],
                   floor: float = 0.0):
    """Per-element outcomes and the FD comparisons of one tensor (full mode); ``floor`` is the
    least scale the tensor is judged on (see ``SCALE_FLOOR``)."""
    scale = max(_scale(m, t), floor)
    v = classify(m, t, rtol * scale, fd)
    comparisons = []
    if fd is not None:
        comparisons.append(_fd_comparison("manual vs FD", m, fd, v.fd_ok_manual, rtol * scale, scale))
        comparisons.append(_fd_comparison("tape vs FD", t, fd, v.fd_ok_tape, rtol * scale, scale))
    return v, comparisons


def assemble(name: str, m: np.ndarray, t: np.ndarray, rtol: float, v: ElementVerdict,
             fd_comparisons: List[Comparison], fd: Optional[NumericalGradient],
             kinks: Optional[int] = None, floor: float = 0.0) -> TensorCheck:
    """A TensorCheck from per-element outcomes ``v``; ``fd`` (elementwise, possibly NaN where an
    element was not differenced) supplies the FD values reported at the worst index."""
    scale = max(_scale(m, t), floor)
    denom = scale if scale > 0 else 1.0
    with np.errstate(invalid="ignore"):
        tape_err = np.where(np.isfinite(m), np.abs(m - t), np.inf)
    counted = ~(v.kink_used | v.kink_unjudged | v.tape_unfaithful)
    if v.rounding is not None:
        counted &= ~v.rounding
    comparisons = [Comparison("manual vs tape", float(np.max(tape_err[counted], initial=0.0)) / denom,
                              rtol, bool(np.all(v.tape_ok | ~counted)))] + list(fd_comparisons)
    if kinks is None:
        kinks = 0 if fd is None else fd.n_kinks
    check = TensorCheck(name, tuple(m.shape), PASS, comparisons, tolerance=rtol, kinks=kinks,
                        kinks_accepted=int(np.count_nonzero(v.kink_used)),
                        n_failing=int(np.count_nonzero(v.fail)))
    _fill_worst(check, m, t, fd, v, tape_err, denom)
    _status_and_notes(check, v, kinks, None if fd is None else fd.kink)
    return check


def _fill_worst(check, m, t, fd, v, tape_err, denom):
    if m.size == 0:
        return
    if np.any(v.fail):
        worst = int(np.argmax(np.where(v.fail, tape_err, -1.0)))
    else:
        worst = int(np.argmax(tape_err))
    idx = np.unravel_index(worst, m.shape)
    check.worst_index = tuple(int(i) for i in idx)
    check.manual, check.tape = float(m[idx]), float(t[idx])
    check.abs_error = float(tape_err[idx])
    check.rel_error = check.abs_error / denom
    if fd is not None and np.isfinite(fd.value[idx]):
        check.fd, check.fd_error = float(fd.value[idx]), float(fd.error[idx])
        if fd.kink[idx]:
            check.fd_interval = (float(fd.lower[idx]), float(fd.upper[idx]))


def _status_and_notes(check, v: ElementVerdict, kinks: int, kink_mask=None):
    notes = check.notes
    if np.any(v.kink_used):
        notes.append(f"{int(v.kink_used.sum())} element(s) at a kink: the manual value differs "
                     f"from the tape's but lies between the one-sided derivatives (a valid "
                     f"subgradient)")
    if v.rounding is not None and np.any(v.rounding):
        notes.append(f"{int(v.rounding.sum())} element(s) where manual and tape differ by more "
                     f"than rounding of a well-conditioned formula, by less than finite "
                     f"differences resolve, and the difference changes erratically when the "
                     f"weights move by 1e-6, as rounding does: cancellation in the hand-written "
                     f"formula (such as elu's a + alpha deep in saturation), not a bug")
    if np.any(v.kink_unjudged):
        notes.append(f"{int(v.kink_unjudged.sum())} element(s) where several kinks meet: manual "
                     f"and tape differ and neither lies between the one-sided derivatives "
                     f"(conventions such as relu'(0) = 0 compose to no subgradient there); not "
                     f"judged")
    if np.any(v.tape_unfaithful):
        notes.append(f"{int(v.tape_unfaithful.sum())} element(s) where the tape disagrees with "
                     f"finite differences and the manual value agrees with finite differences "
                     f"(a custom gradient or an op outside TensorFlow in the forward?)")
    at_kink = v.fd_unresolved & kink_mask if kink_mask is not None else np.zeros_like(v.fail)
    if np.any(at_kink):
        notes.append(f"{int(at_kink.sum())} element(s) at a kink where manual and tape agree on a "
                     f"value outside the one-sided derivatives (where several kinks meet, "
                     f"chain-rule conventions compose to no subgradient)")
    if np.any(v.fd_unresolved & ~at_kink):
        notes.append(f"{int((v.fd_unresolved & ~at_kink).sum())} element(s) where finite "
                     f"differences disagree with both manual and tape, which agree (FD cannot "
                     f"resolve them)")
    if kinks and not np.any(v.kink_used):
        notes.append(f"{kinks} kink(s) along this tensor's coordinates; the manual value "
                     f"matches the tape there")
    if np.any(v.fail):
        check.status = FAIL
    elif notes:
        check.status = NOTES


# --- diagnosis ---------------------------------------------------------------------------------

def _candidates(n_rows: Optional[int], n_out: Optional[int]):
    """Named constant factors a wrong backward pass commonly introduces."""
    named = [(2.0, "a factor of 2"), (0.5, "a factor of 1/2"), (-1.0, "the sign flipped (-1)"),
             (-2.0, "a factor of -2"), (-0.5, "a factor of -1/2"), (4.0, "a factor of 4"),
             (0.25, "a factor of 1/4")]
    if n_rows and n_rows > 1:
        named += [(float(n_rows), f"the batch size N = {n_rows}: a missing 1/N"),
                  (1.0 / n_rows, f"1/N = 1/{n_rows}: an extra division by the batch size")]
    if n_out and n_out > 1:
        named += [(float(n_out), f"the output width D = {n_out}: a missing 1/D"),
                  (1.0 / n_out, f"1/D = 1/{n_out}: an extra division by the output width")]
    if n_rows and n_out and n_rows > 1 and n_out > 1:
        named += [(float(n_rows * n_out), f"N*D = {n_rows * n_out}: a missing 1/(N*D)"),
                  (1.0 / (n_rows * n_out), f"1/(N*D) = 1/{n_rows * n_out}")]
    return named


def diagnose_tensor(m: np.ndarray, truth: np.ndarray, rtol: float, *, n_rows=None,
                    n_out=None) -> List[str]:
    """Recognisable patterns of a wrong gradient against the truth (tape or FD)."""
    out = []
    bad = ~np.isfinite(m)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        out.append(f"{int(bad.sum())} non-finite value(s) in the manual gradient (first at "
                   f"{first}): an overflow, a log or division at 0, or 0 * inf")
        return out
    scale = np.max(np.abs(truth)) if truth.size else 0.0
    if scale == 0:
        return out
    if not np.any(m):
        return ["the manual gradient is all zeros where the truth is not"]
    tight = max(100 * rtol, 1e-7)
    ratio = float(np.sum(m * truth) / np.sum(truth * truth))
    if np.max(np.abs(m - ratio * truth)) <= tight * max(scale, np.max(np.abs(m))) and \
            abs(ratio - 1.0) > 10 * tight:
        for value, label in _candidates(n_rows, n_out):
            if abs(ratio - value) <= 10 * tight * abs(value):
                out.append(f"manual = {_ratio_text(ratio)} x truth: {label}")
                break
        else:
            out.append(f"manual = {_ratio_text(ratio)} x truth everywhere: a constant factor")
        return out
    if m.ndim == 2 and m.shape[0] == m.shape[1] and m.shape[0] > 1 and \
            np.max(np.abs(m - truth.T)) <= tight * scale:
        out.append("manual matches the transpose of the true gradient: a W used where W^T "
                   "belongs (or the reverse)")
        return out
    wrong = np.abs(m - truth) > tight * scale
    if m.size > 1 and wrong.sum() <= max(1, m.size // 20):
        where = [tuple(int(i) for i in ix) for ix in np.argwhere(wrong)[:5]]
        out.append(f"only {int(wrong.sum())} of {m.size} elements are wrong, at {where}")
    return out


def _ratio_text(r: float) -> str:
    frac = Fraction(r).limit_denominator(1000)
    if frac.denominator != 1 and abs(float(frac) - r) <= 1e-6 * abs(r):
        return f"{frac.numerator}/{frac.denominator}"
    return f"{r:.6g}"


_LAYER = re.compile(r"^(.*?)(\d+)$")


def diagnose_layers(checks: List[TensorCheck]) -> List[str]:
    """Where in the network the backward pass goes wrong, from the names W1, b1, ... .

    The error flows down: a wrong dz in layer k spoils every tensor of layers 1..k (and dL/dX),
    so the highest wrong layer whose bias is also wrong is where the bug is.
    """
    layers = {}
    for c in checks:
        m = _LAYER.match(c.name)
        if m:
            layers.setdefault(int(m.group(2)), {})[m.group(1)] = c
    failing_input = any(not c.ok for c in checks if c.name == "dL/dX")
    if not layers:
        return []
    depth = max(layers)
    bad = sorted(k for k, cs in layers.items() if any(not c.ok for c in cs.values()))
    if not bad:
        return ["only dL/dX is wrong: the input gradient (dz1 @ W1^T)"] if failing_input else []
    kinds = {kind for k in bad for kind, c in layers[k].items() if not c.ok}
    every_kind = {kind for cs in layers.values() for kind in cs}
    if len(kinds) == 1 and kinds != every_kind:
        kind = next(iter(kinds))
        hint = {"b": "db = sum over the rows of dz (not a mean, not one row)",
                "W": "dW = a_prev^T @ dz, with the previous layer's output"}.get(kind, "")
        where = ", ".join(f"{kind}{k}" for k in bad)
        return [f"only {where} {'is' if len(bad) == 1 else 'are'} wrong while the other tensors "
                f"are right" + (f": {hint}" if hint else "")]
    if bad == list(range(1, bad[-1] + 1)):
        k = bad[-1]
        if k == depth:
            return [f"every layer is wrong, from the output layer ({depth}) down: the bug is at "
                    f"the output, in the loss gradient or the output activation's derivative"]
        return [f"layers {k + 1}..{depth} are right and layers 1..{k} are wrong: the bug is in "
                f"layer {k}'s backward, in the derivative of activation {k} or the propagation "
                f"through W{k + 1} (dz{k + 1} @ W{k + 1}^T)"]
    return [f"only layer(s) {', '.join(map(str, bad))} are wrong while the layers below them "
            f"are right: look at those layers' own dW and db"]
