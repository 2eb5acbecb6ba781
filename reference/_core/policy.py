"""The policy: evidence about one tensor in, a verdict per element and per tensor out.

The evidence (:class:`TensorEvidence`) is the hand-written values, the tape's values (or None
when the tape cannot witness) and the finite-difference estimate (values, error estimates,
one-sided derivatives at kinks; in directional mode also the estimates along random probes).

The tape is the tight witness: the manual gradient must match it to rounding (``TAPE_RTOL``
times the scale the tensor is judged on). Where it does not, finite differences decide:

- the loss has a kink along that coordinate and the manual value lies between the one-sided
  derivatives: a valid subgradient (a convention other than TensorFlow's), noted, not failed;
- the manual value agrees with finite differences and the tape does not: the tape is not a
  faithful witness there (a ``tf.custom_gradient`` or an op outside TensorFlow in the forward):
  noted, not failed;
- finite differences accept the manual and the tape values alike: undecided, failing unless the
  rounding test (a pass of the pipeline) finds the difference erratic and within the rounding
  the values can carry (``ROUNDING_ULPS``), or unverifiable when it is erratic but larger;
- otherwise: a failure, unless the region test (a pass of the pipeline) shows the whole manual
  gradient to be the gradient of a differentiable region next to the point, where several kinks
  meet (a ReLU network at a zero input row with zero biases, and relu'(0) = 1).

Where the manual value matches the tape but finite differences disagree with both without
resolving the line, or by less than the rounding of what they difference carries into a
derivative at their step (``fd_floor``: a function's outputs', or the loss's own, measured
where every weight moves), that is noted; where they resolve it, the element fails unless a
pass shows them confounded. Nor do they show the tape unfaithful within a measured floor. An
element finite differences accept anything at (``vacuous``: the loss jumps within their step)
passes on the tape's word alone (``unwitnessed``), and is unverifiable where the tape is not an
independent witness (``tape_alone``). Without a tape, finite differences
judge alone, and an element they cannot measure, or accept anything at, is unverifiable (not
ok).

The verdict is data: a :class:`Status` and :class:`Note` codes; no decision reads any text.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .codes import NoteCode
from .evidence import (
    ProbeEvidence,
    ProbeVerdict,
    TensorEvidence,
    judge_probes,
    magnitude,
    vacuous,
)
from .refinement import refine_suspects
from .report import ElementVerdict

__all__ = [
    "TAPE_RTOL",
    "SCALE_FLOOR",
    "LOSS_ULPS",
    "ROUNDING_ULPS",
    "rounding_bound",
    "floors",
    "resolutions",
    "TensorEvidence",
    "ProbeEvidence",
    "ProbeVerdict",
    "classify",
    "within_tape",
    "judge_probes",
    "excuse_rounding",
    "tape_alone",
    "vacuous",
    "unresolved",
    "excuse_region",
    "hidden_kinks",
    "region_unresolved",
    "fd_confounded",
    "magnitude",
    "probes_fail",
    "probe_failures",
    "tolerance_at",
]

# Relative tolerance (to the scale a tensor is judged on) of manual against tape: rounding only.
# float64: 1e-10 is about 5e5 ulps, room for cancellation in a deep backward pass (the worst
# measured on the catalogue is 1.3e-15); float32: 1e-5 is about 80 ulps (worst measured 1.8e-6).
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
# takes. It is finite differences' resolution (their slack), and the most rounding the rounding
# test may excuse; never the tape's tolerance, which is rounding of the gradient itself (a float32
# tape held to 256 ulps of the loss passed a gradient 1e-4 off). It matters only where a whole
# model is saturated and every gradient is a few ulps.
LOSS_ULPS = 256
# The most rounding a hand-written value can carry, in ulps of the model's largest gradient: a
# formula that cancels (elu's a + alpha deep in saturation) loses digits of its own value, not
# of the values it is computed from, so its error stays within a few ulps of the largest
# gradient in the model (measured: 0.28 ulps on saturated elu and selu in float32); 256 leaves
# room for sums over a batch and a width. A disagreement with the tape larger than this is not
# rounding, however erratic it looks.
ROUNDING_ULPS = 256


def rounding_bound(eps: float, largest: float) -> float:
    """The largest disagreement (absolute) that may be excused as rounding: ``ROUNDING_ULPS``
    ulps (``eps``) of the model's largest gradient ``largest``."""
    return ROUNDING_ULPS * eps * largest


def floors(keys, manual, tape) -> dict:
    """The least scale each tensor is judged on: ``SCALE_FLOOR`` of the model's largest
    gradient."""
    largest = max(magnitude(manual[k], tape[k]) for k in keys)
    return {k: SCALE_FLOOR * largest for k in keys}


def resolutions(adapter, keys, f0: float) -> dict:
    """Per tensor, the finest absolute error the loss can show (``LOSS_ULPS`` ulps of
    max(|loss|, 1) over a change of the parameter by its largest magnitude, at least 1)."""
    loss = LOSS_ULPS * adapter.eps * max(abs(f0), 1.0)
    return {k: loss / max(1.0, float(np.max(np.abs(adapter.value(k)), initial=0.0))) for k in keys}


# A gradient whose own second difference along a line, over the finite-difference step, is at
# least this fraction of its distance from finite differences jumps within the step: kinks (or
# a step wider than the function's scale of variation) bias the estimate by about half the
# jumps while every step agrees.
BEND_FRACTION = 0.5


def confounded(gap, bend, moved=None) -> np.ndarray:
    """Elementwise: is finite differences' disagreement ``gap`` with a gradient explained by
    the gradient's own ``bend`` within the step (``BEND_FRACTION``), or, when ``moved`` is
    given, by the disagreement moving erratically under a nudge of the point (by
    ``ERRATIC`` of itself or more: a wrong gradient's moves with the gradient)?"""
    out = np.asarray(bend) >= BEND_FRACTION * np.asarray(gap)
    if moved is not None:
        out = out | (np.asarray(moved) >= ERRATIC)
    return out


# A difference that changes by at least this fraction of itself under a relative nudge of 1e-6
# is erratic: a bug's moves by about 1e-6 of itself, 250000 times less.
ERRATIC = 0.25


def tolerance_at(tol, lines):
    """A tolerance (a number, or an array of the tensor's shape) at the flat indices ``lines``."""
    return tol if np.ndim(tol) == 0 else np.asarray(tol).reshape(-1)[lines]


def refine_elements(ev: TensorEvidence, lines, remeasure) -> np.ndarray:
    """The engine's refinement of a tensor's elements ``lines`` (flat indices), for every
    check: those whose estimate is suspect, for the manual value or the tape (the manual value
    again where no tape witnesses), are differenced again with smaller steps
    (``refinement.refine_suspects``; ``remeasure(flat_lines, shrink)``). Returns the others."""
    lines = np.asarray(lines, dtype=np.int64)
    return refine_suspects(
        ev.fd,
        lines,
        ev.manual.reshape(-1)[lines],
        _witness(ev).reshape(-1)[lines],
        tolerance_at(ev.slack, lines),
        tolerance_at(ev.tape_tol, lines),
        remeasure,
        alone=ev.tape is None,
        wide=_wide(ev, 1.0),
    )


def refine_probes(ev: TensorEvidence, remeasure) -> None:
    """The same refinement of a tensor's probes (``remeasure(probes, shrink)``), their
    tolerances summed along each direction."""
    dirs, nd = ev.probes.directions, ev.probes.fd
    spans = np.sum(np.abs(dirs), axis=1)
    refine_suspects(
        nd,
        np.arange(len(dirs)),
        dirs @ ev.manual.reshape(-1),
        dirs @ _witness(ev).reshape(-1),
        ev.slack * spans,
        ev.tape_tol * spans,
        remeasure,
        alone=ev.tape is None,
        wide=_wide(ev, spans),
    )


# Where finite differences judge alone, an estimate whose error bar, beyond the rounding at its
# step, exceeds this fraction of the tensor's scale is differenced again with smaller steps: a
# step that crosses a kink just beside the point (a ReLU unit 1e-4 from its kink, common at a
# tutorial's 0.01 * randn weights) widens its own error bar until it accepts anything, a wrong
# value included, where a smaller step resolves the line to 1e-10. With a tape there is a
# witness, and an estimate that accepts both is no evidence either way.
REFINE_WIDE = 1e-3


def _wide(ev: TensorEvidence, spans):
    """The error bar above which a line is refined (``REFINE_WIDE``), or None with a tape."""
    if ev.tape is not None:
        return None
    return REFINE_WIDE * (ev.scale if ev.scale > 0 else 1.0) * spans


def _witness(ev: TensorEvidence) -> np.ndarray:
    """The tape's values, or the manual ones where no tape witnesses (a line is then suspect
    for what it says of the manual value alone)."""
    return ev.manual if ev.tape is None else ev.tape


def within_tape(ev: TensorEvidence) -> np.ndarray:
    """Elements whose manual value is finite and matches the tape within the tolerance."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(ev.manual) & (np.abs(ev.manual - ev.tape) <= ev.tape_tol)


def classify(ev: TensorEvidence) -> ElementVerdict:
    """Apply the policy of the module docstring to every element."""
    if ev.tape is None:
        return _classify_without_tape(ev)
    m, t, fd, tol = ev.manual, ev.tape, ev.fd, ev.slack
    finite = np.isfinite(m)
    tape_ok = within_tape(ev)
    if fd is None:
        return ElementVerdict(~tape_ok, tape_ok=tape_ok)
    resolved = ~fd.unresolved
    fd_ok_m = finite & fd.accepts(m, tol) & resolved
    fd_ok_t = np.isfinite(t) & fd.accepts(t, tol) & resolved
    kink = fd.kink & fd.measured & resolved
    kink_used = ~tape_ok & fd_ok_m & kink
    # Manual and tape agree and finite differences reject both: where they resolve the line
    # (no kink, every smaller step agreeing), they are the witness that saw the loss, and the
    # element fails unless the evidence pass shows them confounded (``fd_against_pass``).
    against = tape_ok & finite & fd.measured & ~fd_ok_m
    fd_against = against & resolved & ~fd.kink & _beyond_floor(ev, m)
    # Nor do they show the tape wrong where they reject it by less than the loss's measured
    # rounding (``loss_rounding``): the element stays undecided between the two
    # (``rounding_pass``). An assumed floor (a function's outputs') excuses, never accuses.
    beyond_t = True if ev.loss_rounding is None else _beyond_floor(ev, t)
    tape_unfaithful = ~tape_ok & fd_ok_m & ~fd_ok_t & ~kink & beyond_t
    # Where they show the tape unfaithful in this tensor (a term computed outside TensorFlow, a
    # custom gradient), its word decides none of the tensor's other elements either: where they
    # accept manual and tape alike, finite differences judge alone, and they accept the manual.
    disowned = ~tape_ok & finite & fd_ok_m & fd_ok_t & ~kink & np.any(tape_unfaithful)
    # Off the tape where finite differences resolve nothing (another kink closer than their
    # smallest step): no witness can judge the element.
    unverifiable = finite & ~tape_ok & fd.unresolved & fd.measured
    # Passing on the tape's word alone: finite differences accept anything there, or do not
    # resolve the line (``tape_alone`` where the tape is not an independent witness).
    unwitnessed = tape_ok & finite & (vacuous(ev) | (against & ~fd_against))
    excused = kink_used | tape_unfaithful | disowned | unverifiable
    fail = ~finite | (~tape_ok & ~excused) | fd_against
    if ev.probes is not None:
        # Elements off the tape that were not differenced one by one (more than directional
        # mode differences) stand or fall with those that were, and with the probes, which see
        # every element: they pass as the tape's error only when no differenced element fails,
        # every probe agrees with the manual gradient and some probe disagrees with the tape.
        probes = judge_probes(ev)
        unchecked = finite & ~tape_ok & ~fd.measured
        tape_at_fault = not (
            np.any(fail & fd.measured)
            or not np.all(probes.fd_ok_manual)
            or np.all(probes.fd_ok_tape)
        )
        if tape_at_fault:
            tape_unfaithful = tape_unfaithful | unchecked
            fail = fail & ~unchecked
    return ElementVerdict(
        fail,
        tape_ok=tape_ok,
        unverifiable=unverifiable & ~fail,
        kink_used=kink_used,
        tape_unfaithful=tape_unfaithful,
        tape_disowned=disowned,
        fd_unresolved=against & ~fd_against,
        fd_against=fd_against,
        unwitnessed=unwitnessed & ~fail,
        undecided=fail & finite & fd_ok_m & ~kink,
        fd_kink=kink,
        fd_ok_manual=fd_ok_m,
        fd_ok_tape=fd_ok_t,
    )


def _beyond_floor(ev: TensorEvidence, values: np.ndarray) -> np.ndarray:
    """Where finite differences reject ``values`` by more than the rounding of what they
    difference carries into a derivative at their step (``fd_floor``; everywhere without
    one): only there are they evidence against them."""
    if ev.fd_floor is None:
        return np.ones(np.shape(values), bool)
    with np.errstate(invalid="ignore"):
        return ~ev.fd.accepts(values, ev.slack + ev.fd_floor)


def _classify_without_tape(ev: TensorEvidence) -> ElementVerdict:
    """Finite differences judge alone: agree (a value between the one-sided derivatives at a
    kink), fail, or, where they have no value or reject the manual one by less than the
    outputs' rounding at their step (``fd_floor``), unverifiable. In directional mode the elements
    not differenced one by one stand with the probes, which see every element: they are judged
    when every probe accepts the manual gradient, unverifiable when a probe that cannot judge
    (``_probes_against``) rejects it, and the tensor fails when a probe that can judge rejects it
    (``assemble``)."""
    m, fd = ev.manual, ev.fd
    finite = np.isfinite(m)
    if fd is None:
        return ElementVerdict(~finite, unverifiable=finite)
    has_value = fd.measured & (np.isfinite(fd.value) | fd.kink) & ~fd.unresolved
    ok = finite & fd.accepts(m, ev.slack)
    # Rejected by less than the outputs' rounding reaches at the step: not resolved either way.
    rounded = has_value & finite & ~ok & ~fd.kink
    if ev.fd_floor is None:
        rounded = np.zeros_like(rounded)
    else:
        rounded &= fd.accepts(m, ev.slack + ev.fd_floor)
    unverifiable = finite & ~has_value
    if ev.probes is not None and np.all(judge_probes(ev).fd_ok_manual):
        unverifiable = unverifiable & fd.measured
    # Accepted by finite differences that accept anything there: no witness judged them.
    unwitnessed = finite & vacuous(ev)
    return ElementVerdict(
        ~finite | (has_value & ~ok & ~rounded),
        unverifiable=unverifiable | unwitnessed | rounded,
        fd_unresolved=rounded,
        unwitnessed=unwitnessed,
        fd_kink=fd.kink & fd.measured,
        fd_ok_manual=ok,
    )


# Where every element was differenced one by one and judged on its own, a probe overrules them
# only when it rejects the manual projection by this many times its error bar: the elements are
# the finer evidence (a float32 probe's longer step crosses kinks too close to flag, and its error
# estimate is then a little overconfident), while a tie's gradient counted twice is off along
# the pair by thousands of error bars.
PROBE_OVERRULE = 4.0


def probe_failures(ev: TensorEvidence, v: Optional[ElementVerdict] = None) -> np.ndarray:
    """The probes whose rejection of the manual gradient is evidence against it: finite
    differences resolve them (a smooth line, every smaller step agreeing) and reject the manual
    projection, whatever the tape says (a tape that agrees with the manual gradient there is
    not the witness that saw the loss). A probe whose line crosses a kink judges nothing:
    several kinks along one line, some convex and some concave, have one-sided derivatives that
    need not bracket a valid gradient's projection. Along a pair of tied maxima (``e_i + e_j``)
    the loss is smooth, and a tie's gradient counted twice is off by the whole of it."""
    nd = ev.probes.fd
    probes = judge_probes(ev)
    bad = ~probes.fd_ok_manual & nd.measured & ~nd.kink & ~nd.unresolved
    bad &= ~within_rounding(ev)
    if ev.probes.confounded is not None:
        bad &= ~ev.probes.confounded
    if v is not None and np.any(v.kink_region):
        # Several kinks meet at the point and the manual gradient is shown to be a region's
        # there: a line through the point has one-sided derivatives that need not bracket it.
        return np.zeros_like(bad)
    if ev.fd is not None and np.all(ev.fd.measured):
        with np.errstate(invalid="ignore"):
            far = np.abs(probes.manual - nd.value) > PROBE_OVERRULE * (nd.error + probes.slack)
        bad &= far
    return bad


def within_rounding(ev: TensorEvidence) -> np.ndarray:
    """The probes whose disagreement with the manual gradient is within the outputs' rounding
    at their step (``ProbeEvidence.fd_floor``): no evidence either way, as for elements."""
    floor = ev.probes.fd_floor
    if floor is None:
        return np.zeros(len(ev.probes.directions), bool)
    probes = judge_probes(ev)
    return ~probes.fd_ok_manual & ev.probes.fd.accepts(probes.manual, probes.slack + floor)


def probes_fail(ev: TensorEvidence, v: Optional[ElementVerdict] = None) -> bool:
    """A probe that can judge and disagrees with the manual gradient fails the tensor."""
    return ev.probes is not None and bool(np.any(probe_failures(ev, v)))


# --- the transitions of a verdict: what the passes decide, each with its evidence ------------


def excuse_rounding(v: ElementVerdict, mask: np.ndarray, evidence: dict) -> None:
    """The rounding test's decision: these undecided elements are rounding, not bugs
    (``evidence``: the largest difference, the bound it is within, how far it moved)."""
    if _granted(v, NoteCode.ROUNDING_EXCUSED, evidence):
        _settle(v, mask, "rounding")


def excuse_flat(v: ElementVerdict, mask: np.ndarray, evidence: dict) -> None:
    """The rounding test's other decision: these undecided elements, 0 where the tape is not,
    lie in a model whose loss shows no gradient at all (``evidence``: how far below what the
    loss resolves the model's gradient is)."""
    if _granted(v, NoteCode.LOSS_FLAT, evidence):
        _settle(v, mask, "flat")


def unresolved(v: ElementVerdict, mask: np.ndarray, evidence: dict) -> None:
    """These undecided elements cannot be judged (erratic beyond rounding): unverifiable."""
    if _granted(v, NoteCode.UNRESOLVED, evidence):
        _settle(v, mask, "unverifiable")


def _settle(v: ElementVerdict, mask: np.ndarray, into: str) -> None:
    """The undecided elements of ``mask`` leave the failing ones for the mask ``into``."""
    mask = mask & v.undecided
    setattr(v, into, getattr(v, into) | mask)
    v.fail = v.fail & ~mask
    v.undecided = v.undecided & ~mask


def excuse_region(v: ElementVerdict, mask: np.ndarray, evidence: dict, code: NoteCode) -> None:
    """The region test's decision: these failing (or unverifiable) elements are a region's
    gradient (``evidence``: how far from the point the region was witnessed)."""
    if not _granted(v, code, evidence):
        return
    v.kink_region = v.kink_region | (mask & (v.fail | v.unverifiable))
    v.fail = v.fail & ~v.kink_region
    v.unverifiable = v.unverifiable & ~v.kink_region
    v.undecided = v.undecided & ~v.kink_region


def hidden_kinks(v: ElementVerdict, mask: np.ndarray, evidence: dict) -> None:
    """These failing elements lie on lines with kinks hidden inside the step: unverifiable
    (``evidence``: how far the gradient bends within the step, against the disagreement)."""
    if _granted(v, NoteCode.KINKS_HIDDEN, evidence):
        v.kinks_hidden = v.kinks_hidden | _failed_to_unverifiable(v, mask)


def region_unresolved(v: ElementVerdict, mask: np.ndarray, evidence: dict) -> None:
    """These failing elements are accepted by finite differences inside a region that do not
    resolve them: unverifiable, not failed (``evidence``: what they resolve, how far the region
    reaches)."""
    if _granted(v, NoteCode.KINK_REGION_COARSE, evidence):
        v.region_coarse = v.region_coarse | _failed_to_unverifiable(v, mask)


def fd_confounded(v: ElementVerdict, mask: np.ndarray, evidence: dict, independent=True) -> None:
    """These elements, where finite differences resolved a value manual and tape both miss,
    are shown confounded (``evidence``: the gradient's bend within the step, or how far the
    disagreement moved under a nudge): a note where the tape is an independent witness,
    unverifiable where it is not."""
    if not _granted(v, NoteCode.FD_CONFOUNDED, evidence):
        return
    mask = mask & v.fd_against & v.fail
    v.fail = v.fail & ~mask
    v.fd_against = v.fd_against & ~mask
    v.confounded = v.confounded | mask
    if not independent:
        v.unverifiable = v.unverifiable | mask


def _granted(v: ElementVerdict, code: NoteCode, evidence: dict) -> bool:
    """An excuse is granted only with its evidence, which the verdict keeps for its note."""
    if not evidence:
        return False
    v.evidence[code] = dict(evidence)
    return True


def tape_alone(v: ElementVerdict) -> None:
    """Where the tape is not an independent witness (the forward runs through a custom or
    straight-through gradient, or an op outside TensorFlow), the elements that passed on its
    word alone (``unwitnessed``) are unverifiable: manual == tape proves nothing there."""
    mask = v.unwitnessed & ~v.fail
    v.unverifiable = v.unverifiable | mask


def _failed_to_unverifiable(v: ElementVerdict, mask: np.ndarray) -> np.ndarray:
    mask = mask & v.fail
    v.unverifiable = v.unverifiable | mask
    v.fail = v.fail & ~mask
    return mask
