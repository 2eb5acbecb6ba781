"""The evidence passes that run after the policy's first verdict.

- ``tape_independence``: is the tape the user's own claim (a custom gradient in the forward)?
- ``region_pass``, ``hidden_kinks_pass``: failing elements next to several kinks, or with kinks
  hidden inside the step;
- ``fd_against_pass``, ``probe_bends_pass``: finite differences against manual and tape alike,
  or against a probe, unless shown confounded;
- ``rounding_pass``: decides the undecided elements (only the tape separates manual from truth).

Every check runs ``tape_independence`` and ``fd_against_pass``; ``check_gradients`` and
``check_function`` the probe and hidden-kink passes too, each through what it can move
(``moves``). The region and rounding passes move a model's weights and run for models only: a
function's tolerance already carries the rounding of its tape, measured by running it in the
other float dtype (``problem.tape_rounding``), and its inputs have no biases to push. Each pass
reads the evidence and the verdict as data and changes the verdict only through the policy's
transitions (an element excused, with its evidence).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .._core import fd as fdm
from .._core import stencils
from .._core.adapter import Adapter
from .._core.policy import (
    ERRATIC,
    LOSS_ULPS,
    TensorEvidence,
    confounded,
    excuse_flat,
    excuse_region,
    excuse_rounding,
    fd_confounded,
    hidden_kinks,
    judge_probes,
    magnitude,
    probe_failures,
    region_unresolved,
    rounding_bound,
    tape_alone,
    tolerance_at,
    unresolved,
)
from .._core.report import (
    ElementVerdict,
    NoteCode,
)
from .._core.tape import overrides, tape_values, within_wobble

__all__ = [
    "tape_independence",
    "fd_against_pass",
    "probe_bends_pass",
    "rounding_pass",
    "region_pass",
    "hidden_kinks_pass",
]

# --- is the tape an independent witness? ------------------------------------------------------


def tape_independence(verdicts, evidence, call) -> Optional[str]:
    """What makes the tape the user's own claim rather than TensorFlow's derivative of the
    forward, or None. Asked only where the tape and finite differences disagree somewhere, or
    where an element passes on the tape's word alone (``unwitnessed``: finite differences accept
    anything there, or do not resolve the line); elsewhere finite differences confirm what the
    tape says, whatever computed it. ``call`` (the forward, no arguments) is traced, and a
    ``tf.custom_gradient``, ``tf.py_function``, ``tf.numpy_function`` or a quantization op with
    a straight-through gradient in it is named (``tape.overrides``)."""
    if not any(ev.tape is not None for ev in evidence.values()):
        return None
    suspicious = any(
        np.any(v.fd_against | v.tape_unfaithful | v.unwitnessed) for v in verdicts.values()
    ) or any(
        ev.probes is not None and ev.tape is not None and not np.all(judge_probes(ev).fd_ok_tape)
        for ev in evidence.values()
    )
    if not suspicious:
        return None
    found = overrides(call)
    return ", ".join(found) if found else None


# --- the rounding test -----------------------------------------------------------------------

# The weights move by this relative amount (about 1e-6), this many times...
NUDGE = 2.0**-20
NUDGES = 4
# ... and a manual-minus-tape difference that changes by at least ERRATIC (a quarter) of itself
# under one nudge is erratic (a bug moves it by about 1e-6 of itself, 250000 times less), and by
# at least this many times the fraction by which the tape's gradient itself moves (a
# bug's difference moves with the gradient it is part of; rounding's does not).
_SMOOTH_FACTOR = 8.0
# Where the difference is steady under those nudges but below what the loss can resolve, the
# weights move again by this larger amount (about 1e-3): a saturated unit's output moves by a
# few ulps under 1e-6 and keeps its rounding, while under 1e-3 its rounding is drawn anew.
_LARGENUDGE = 2.0**-10


def rounding_pass(
    twin: Adapter,
    verdicts: Dict[object, ElementVerdict],
    evidence: Dict[object, TensorEvidence],
    seed: int,
    own: Optional[Dict] = None,
) -> None:
    """Decide the undecided elements (FD accepts manual and tape; only the tape separates them).

    A bug is systematic: moving every weight by a relative 1e-6 moves the manual-minus-tape
    difference by about 1e-6 of itself, as much as the gradient moves. Rounding amplified by
    cancellation (elu's a + alpha deep in saturation) depends on the low bits of the values and
    changes erratically. Where the difference changes by at least a quarter of itself under one
    of a few such nudges (``_erratic``) and is no larger than the rounding the values can carry
    (``rounding_bound``), the elements are excused as rounding (and noted). A difference below
    the finest error the loss can show (the tensor's ``resolution``: a saturated model whose
    every gradient is a few ulps of the terms it cancels from) may be steady under 1e-6 and is
    nudged again by 1e-3; erratic there, it is excused too. Erratic but larger, the elements are
    unverifiable (finite differences cannot resolve them, and rounding cannot explain them).
    Steady: where the loss shows no gradient of the model at all (``_flatness``) and the manual
    value or the tape's is 0, excused (noted, ``excuse_flat``): a formula that cancels to
    exactly 0 (selu's a + lambda * alpha deep in saturation, hand-written or in TensorFlow's
    kernel) has no low bits left to move, and either side is right to the loss's precision. A
    float32 model judged through its float64 twin (``own``: its own float32 gradients) is the
    code the user runs: where its own value is 0, the twin's one or two ulps of the cancelled
    terms (steady: the value sits on one rounding step) are excused as the twin's 0 would be.
    The other steady elements, within the bound and within the tape's own rounding
    (``tape.within_wobble``: a bias's float32 sum of terms that cancel; two ulps of a gradient
    that is 0 by symmetry, where the nudges move nothing), are excused; otherwise systematic,
    they fail: a factor on a value that is not 0 (twice the tape's) is no rounding of it.
    """
    suspects = {k: v.undecided for k, v in verdicts.items() if np.any(v.undecided)}
    if not suspects:
        return
    manual = {k: ev.manual for k, ev in evidence.items()}
    tape = {k: ev.tape for k, ev in evidence.items()}
    largest = max(magnitude(manual[k], tape[k]) for k in manual)
    gaps, bounds = {}, {}
    with np.errstate(invalid="ignore"):
        for k in suspects:
            gaps[k] = np.abs(manual[k] - tape[k])
            # Rounding of the gradient, or below anything the loss can show (LOSS_ULPS).
            bounds[k] = max(rounding_bound(twin.eps, largest), evidence[k].resolution)
    rng = np.random.default_rng(seed + 1)
    erratic = _erratic(twin, suspects, manual, tape, NUDGE, rng)
    steady = {
        k: mask
        for k, mask in suspects.items()
        if k not in erratic and np.any(mask & (gaps[k] <= evidence[k].resolution))
    }
    if steady:
        erratic.update(_erratic(twin, steady, manual, tape, _LARGENUDGE, rng))
    flat = _flatness(evidence)  # where the loss shows no gradient at all, excuse_flat decides
    rest = {k: m for k, m in suspects.items() if k not in erratic}
    if flat <= 1.0:
        for k, mask in rest.items():
            zeros = mask & ((manual[k] == 0) | (tape[k] == 0))
            figures = {"fraction": flat, "ulps": LOSS_ULPS}
            owned = mask & (own[k] == 0) & ~zeros if own is not None else None
            if owned is not None and np.any(owned):
                zeros = zeros | owned
                figures["own"] = float(np.max(np.abs(manual[k][owned])))
            if np.any(zeros):
                excuse_flat(verdicts[k], zeros, figures)
                rest[k] = mask & ~zeros
    rest = {k: m for k, m in rest.items() if np.any(m)}
    wobbly = within_wobble(twin, tape, rest, gaps, bounds) if rest else {}  # its own rounding
    for k, mask in {**{k: suspects[k] for k in erratic}, **{k: rest[k] for k in wobbly}}.items():
        verdict, ev = verdicts[k], evidence[k]
        scale = ev.scale if ev.scale > 0 else 1.0
        small = mask & (gaps[k] <= bounds[k])
        for part, decide in ((small, excuse_rounding), (mask & ~small, unresolved)):
            if not np.any(part):
                continue
            figures = {"difference": float(np.max(gaps[k][part])) / scale}
            figures["bound"] = bounds[k] / scale
            figures.update({"moved": erratic[k]} if k in erratic else {"wobble": wobbly[k]})
            error = np.empty(0) if ev.fd is None else ev.fd.error[part]
            figures["resolution"] = float(np.max(error[np.isfinite(error)], initial=0.0)) / scale
            decide(verdict, part, figures)


def _flatness(evidence: Dict[object, TensorEvidence]) -> float:
    """The largest of every tensor's largest gradient (manual or tape) as a fraction of its
    ``resolution``, the finest the loss can show: at most 1, no witness's gradient moves the
    loss by more than its rounding, and a steady difference there is one no loss can show.
    (A systematic difference where any tensor's gradient is larger is a bug the tape sees.)"""
    tiny = np.finfo(float).tiny
    return max(magnitude(ev.manual, ev.tape) / max(ev.resolution, tiny) for ev in evidence.values())


def _erratic(twin: Adapter, suspects: Dict, manual: Dict, tape: Dict, nudge: float, rng) -> Dict:
    """The tensors (with how far it moved, as a fraction of itself) whose manual-minus-tape
    difference (over the ``suspects`` masks) moves
    erratically when every weight moves by a relative ``nudge``, ``NUDGES`` times: by at least
    ``_ERRATIC`` of itself, and ``_SMOOTH_FACTOR`` times more than the tape's gradient there."""
    d0 = {k: (manual[k] - tape[k])[mask] for k, mask in suspects.items()}
    tiny = np.finfo(float).tiny
    out: Dict[object, float] = {}
    original = twin.snapshot()
    try:
        for _ in range(NUDGES):
            for i, value in enumerate(original):
                twin.write(i, value * (1.0 + nudge * rng.standard_normal(value.shape)))
            m, t = twin.manual(), tape_values(twin)
            for k, mask in suspects.items():
                moved = np.sum(np.abs((m[k] - t[k])[mask] - d0[k])) / max(
                    np.sum(np.abs(d0[k])), tiny
                )
                own = np.sum(np.abs(t[k][mask] - tape[k][mask])) / max(
                    np.sum(np.abs(tape[k][mask])), tiny
                )
                if moved >= ERRATIC and moved >= _SMOOTH_FACTOR * own:
                    out[k] = max(out.get(k, 0.0), float(moved))
    finally:
        twin.restore(original)
    return out


# --- where several kinks meet ------------------------------------------------------------------

# The region test moves the bias-like tensors (vectors, and (n, 1) or (1, n) matrices) by tiny
# steps that grow by _REGION_RATIO from one such tensor to the next (a unit at a kink in layer
# l + 1 is then pushed off it further than layer l's units move its input), up to
# _REGION_LARGEST for the last: far too small to move any gradient by a measurable amount (a
# push moves a gradient by about itself times the curvature: 1e-18 of it; with a fixed
# smallest step of 2^-70, nine such tensors pushed the last by 2^-22, and a right ReLU network
# of eight layers at a zero row failed), and it moves a bias that is not zero by nothing at all
# unless the bias is below 2^-8. The steps are powers of two, exactly representable next to a
# zero bias in float64, and in float32 down to 2^-149 (fifteen such tensors).
_REGION_LARGEST = 2.0**-60
_REGION_RATIO = 64.0


def _region_base(n: int) -> float:
    """The smallest push of ``n`` bias-like tensors (the last is pushed by _REGION_LARGEST)."""
    return _REGION_LARGEST / _REGION_RATIO ** max(n - 1, 0)


def region_pass(twin: Adapter, verdicts: Dict[object, ElementVerdict], evidence: Dict) -> None:
    """Excuse the failing elements that are the gradient of a differentiable region next to
    the point.

    Where several kinks meet (a zero input row with zero biases in a ReLU network), the chain
    rule with a consistent one-sided convention (relu'(0) = 1 everywhere) gives the gradient of
    the region where every unit at its kink is active, a valid (Clarke) generalized gradient,
    which need not lie between the one-sided partial derivatives of each coordinate. Only when
    finite differences saw a kink somewhere: the biases are pushed by tiny steps, each way and
    in both orders of the tensors, and TensorFlow's tape is asked at each pushed point (the
    gradient of the region the push lands in). The push whose gradient matches the most failing
    (or, off the tape, unverifiable) elements to the tape tolerance is the region; the elements
    it matches are that region's gradient (noted); the others keep their verdict, so a wrong
    tensor is blamed alone. Without a tape, finite differences witness the region instead
    (``_fd_region``).
    """
    # Not the elements where manual and tape agree (finite differences against both): a region
    # next to the point explains a manual value apart from the tape's, not one equal to it.
    failing = {
        k: ((v.fail & ~v.fd_against) | (v.unverifiable & ~v.tape_ok))
        & np.isfinite(evidence[k].manual)
        for k, v in verdicts.items()
    }
    if not any(np.any(m) for m in failing.values()) or not _kinks_seen(evidence):
        return
    pushed = [
        i
        for i in range(len(twin.params))
        if len(twin.shape(i)) >= 1 and int(np.prod(twin.shape(i))) == max(twin.shape(i))
    ]
    without_tape = any(ev.tape is None for ev in evidence.values())
    if without_tape:
        # Only the bias-like tensors whose units sit at kinks: a push of the others would move
        # every gradient by more than finite differences resolve.
        pushed = [i for i in pushed if i in evidence and _kinks_seen({i: evidence[i]})]
    if not pushed:
        return
    best, best_count, best_region, coarse_regions = None, 0, {}, []
    original = twin.snapshot()
    try:
        for sign in (1.0, -1.0):
            for order in (pushed, pushed[::-1]):
                coarse = None
                if without_tape:
                    matched, region, coarse = _fd_region(
                        twin, original, sign, order, failing, evidence
                    )
                else:
                    steps = _push(twin, original, sign, order, _region_base(len(order)))
                    tape = tape_values(twin)
                    twin.restore(original)
                    matched = _matches(tape, failing, evidence)
                    region = {"displacement": max(abs(x) for x in steps.values())}
                count = sum(int(m.sum()) for m in matched.values())
                if count > best_count:
                    best, best_count, best_region = matched, count, region
                if coarse is not None:
                    coarse_regions.append(coarse)
    finally:
        twin.restore(original)
    if best is not None:
        code = NoteCode.KINK_REGION_FD if "fd_push" in best_region else NoteCode.KINK_REGION
        shown = {"displacement": best_region["displacement"]}
        for k, v in verdicts.items():
            if np.any(best[k]):
                excuse_region(v, best[k], shown, code)
    _coarse_regions(verdicts, coarse_regions)


def _coarse_regions(verdicts: Dict[object, ElementVerdict], coarse) -> None:
    """The elements that still fail where finite differences inside some region accept them
    without resolving them (_FD_REGION_RESOLUTION): no witness can tell, so unverifiable."""
    for k, v in verdicts.items():
        found = [(c["mask"][k], c) for c in coarse if np.any(c["mask"][k] & v.fail)]
        if not found:
            continue
        region_unresolved(
            v,
            np.logical_or.reduce([m for m, _ in found]),
            {
                "resolution": max(c["resolution"][k] for _, c in found),
                "reach": min(c["reach"] for _, c in found),
            },
        )


def _push(twin: Adapter, original, sign: float, order, base: float) -> Dict:
    """Move the tensors ``order`` off ``original`` by ``sign * base * _REGION_RATIO**n`` (n their
    place in the order); returns the steps."""
    steps = {i: sign * base * _REGION_RATIO**n for n, i in enumerate(order)}
    for i, step in steps.items():
        twin.write(i, original[i] + np.asarray(step, original[i].dtype))
    return steps


# Without a tape, the region is witnessed by finite differences inside it: the kinked biases are
# pushed by _FD_REGION_BASE (growing by _REGION_RATIO per tensor), into the region's interior,
# and each coordinate is differenced there with a step 2^_FD_REGION_STEP times the smallest push,
# so that the stencil stays in the region (a line that still shows a kink is no evidence).
_FD_REGION_BASE = 2.0**-14
_FD_REGION_STEP = -6


def _fd_region(twin: Adapter, original, sign: float, order, failing: Dict, evidence: Dict):
    """The failing elements shown to be the gradient of the region a push lands in, without a
    tape: (1) the manual gradient at a tiny push (the region's formula, evaluated at the point)
    equals the manual value at the point; (2) the manual gradient moves linearly with the push
    from there up to a push ``p`` (no unit crosses a kink on the way: the region at ``p`` is the
    point's; the largest such push of a ladder, ``_region_reach``); (3) at ``p`` the manual
    gradient agrees with finite differences of those elements, taken with steps 2^-10 of ``p``,
    which resolve them (``_FD_REGION_RESOLUTION``). Then the manual value is the region's
    gradient at the point (the formula is right in the region, and it is what the model gave).
    Returns (matched elements, the values the note quotes, and None or the elements finite
    differences there accept without resolving them, with what they resolve and the push)."""
    _push(twin, original, sign, order, _region_base(len(order)))
    tiny = twin.manual()
    twin.restore(original)
    same = {}
    for k, mask in failing.items():
        ev = evidence[k]
        with np.errstate(invalid="ignore"):
            same[k] = mask & (np.abs(ev.manual - tiny[k]) <= ev.tape_tol)
    matched = {k: np.zeros_like(m) for k, m in failing.items()}
    if not any(np.any(m) for m in same.values()):
        return matched, {}, None
    reach = _region_reach(twin, original, sign, order, tiny, evidence)
    if reach is None:
        return matched, {}, None
    steps = _push(twin, original, sign, order, reach)
    coarse = {k: np.zeros_like(m) for k, m in failing.items()}
    resolution: Dict[object, float] = {}
    try:
        inside = twin.manual()
        f0 = twin.loss_value()
        exponent = int(round(np.log2(reach))) + _FD_REGION_STEP
        for k, mask in same.items():
            if not np.any(mask):
                continue
            ev = evidence[k]
            idx = np.flatnonzero(mask.reshape(-1))
            st = stencils.coordinate_stencil(twin, k, f0, idx, exponent=exponent)
            nd = fdm.analyse(ev.name, st, ev.fd.noise if ev.fd is not None else 0.0)
            scale = max(ev.scale, np.finfo(float).tiny)
            resolved = nd.error <= _FD_REGION_RESOLUTION * scale
            ok = nd.accepts(inside[k].reshape(-1)[idx], tolerance_at(ev.slack, idx)) & ~nd.kink
            matched[k].reshape(-1)[idx[ok & resolved]] = True
            if np.any(ok & ~resolved):
                coarse[k].reshape(-1)[idx[ok & ~resolved]] = True
                resolution[k] = float(np.max(nd.error[ok & ~resolved])) / scale
    finally:
        twin.restore(original)
    displacement = max(abs(x) for x in steps.values())
    region = {"displacement": displacement, "fd_push": displacement}
    unresolved = {"mask": coarse, "resolution": resolution, "reach": displacement}
    return matched, region, unresolved if resolution else None


# The pushes at which the model's gradient is asked between the tiny one and _FD_REGION_BASE:
# _FD_REGION_BASE * 4^-j for j below this (down to 2^-40).
_LADDER = 14
# From one push to the next (4 times smaller), the gradient's change from the tiny push's must
# shrink 4 times, to this fraction of itself (plus the tape tolerance): a change that does not
# (a unit crossing its kink on the way) is larger by the jump.
_LADDER_SLACK = 0.25
# Finite differences inside the region must resolve an element to this fraction of the scale
# it is judged on: an estimate that resolves less (a push too small to difference within) is no
# evidence that the region's formula is right.
_FD_REGION_RESOLUTION = 1e-6


def _region_reach(twin: Adapter, original, sign: float, order, tiny, evidence):
    """The largest push of the ladder up to which the model's gradient moves linearly with the
    push (None when even the smallest two disagree). A unit whose pre-activation sits closer to
    its kink than a push (tiny inputs, small weights) is pushed across it, and the region there
    is not the point's: the gradient jumps between two pushes of the ladder."""
    changes = []
    try:
        for j in range(_LADDER):
            _push(twin, original, sign, order, _FD_REGION_BASE * 4.0**-j)
            grads = twin.manual()
            twin.restore(original)
            changes.append({k: grads[k] - tiny[k] for k in tiny})
    finally:
        twin.restore(original)
    reach = None
    for j in range(_LADDER - 2, -1, -1):  # from the smallest pushes up
        larger, smaller = changes[j], changes[j + 1]
        for k, d in larger.items():
            with np.errstate(invalid="ignore"):
                off = np.abs(d / 4.0 - smaller[k])
            if np.any(~(off <= evidence[k].tape_tol + _LADDER_SLACK * np.abs(d) / 4.0)):
                return reach
        reach = _FD_REGION_BASE * 4.0**-j
    return reach


def _kinks_seen(evidence: Dict) -> bool:
    for ev in evidence.values():
        if ev.fd is not None and np.any(ev.fd.kink & ev.fd.measured):
            return True
        if ev.probes is not None and np.any(ev.probes.fd.kink):
            return True
    return False


def _matches(tape: Dict, failing: Dict, evidence: Dict) -> Dict:
    """The failing elements whose manual value equals ``tape`` to the tape tolerance."""
    out = {}
    for k, mask in failing.items():
        ev = evidence[k]
        with np.errstate(invalid="ignore"):
            out[k] = mask & (np.abs(ev.manual - tape[k]) <= ev.tape_tol)
    return out


# --- kinks hidden inside the step, without a tape ---------------------------------------------

# At most this many failing elements per tensor are looked at along their lines (the model's own
# gradient jumps within the step when its bend along the line is at least BEND_FRACTION of the
# manual value's distance from finite differences: kinks closer together than any step bias the
# estimate by half their jumps while agreeing at every step).
_HIDDEN_KINKS_MAX = 64


def hidden_kinks_pass(subject, verdicts: Dict[object, ElementVerdict], evidence) -> None:
    """Without a tape: a failing element whose line the model's own gradient shows to cross
    kinks within the finite-difference step (its value at theta +- h differs from a straight
    line through theta by about the disagreement) is unverifiable, not failed. Inputs and
    weights so small that every pre-activation sits within 1e-8 of its kink put dozens of kinks
    inside any step; each crossing moves every step's estimate alike, so the refinement's chain
    of agreement cannot see them. The manual gradient can: its formula follows the regions."""
    for k, v in verdicts.items():
        ev = evidence[k]
        if ev.tape is not None or ev.fd is None or subject.skip(k) or not np.any(v.fail):
            continue
        # A kink finite differences saw is judged by its one-sided derivatives; only the lines
        # they found smooth can hide kinks.
        smooth = ev.fd.measured & ~ev.fd.kink & np.isfinite(ev.fd.value)
        finite = np.isfinite(ev.manual) & smooth
        lines = np.flatnonzero((v.fail & finite).reshape(-1))[:_HIDDEN_KINKS_MAX]
        gap = np.abs(ev.manual.reshape(-1)[lines] - ev.fd.value.reshape(-1)[lines])
        bend = _bends_along(subject, k, lines, ev)
        hidden = confounded(gap, bend)
        if np.any(hidden):
            mask = np.zeros(ev.manual.size, bool)
            mask[lines[hidden]] = True
            ratio = float(np.min(bend[hidden] / np.maximum(gap[hidden], np.finfo(float).tiny)))
            hidden_kinks(v, mask.reshape(ev.manual.shape), {"bend": ratio})


# --- finite differences against manual and tape alike -----------------------------------------

# At most this many elements per tensor are looked at along their lines.
_AGAINST_MAX = 64


def fd_against_pass(
    subject, verdicts: Dict[object, ElementVerdict], evidence, seed: int, independent: bool
) -> None:
    """Where manual and tape agree and finite differences resolve a different value (a smooth
    line, every smaller step agreeing), the element fails unless the evidence shows finite
    differences confounded there: the gradient checked bends within their step (kinks hidden
    inside it, ``subject.bend``), or their disagreement with the manual value moves by a
    quarter of itself or more when every weight moves by a relative 1e-6 (``ERRATIC``: a
    wrong gradient's disagreement moves with the gradient, by about 1e-6 of itself), or, steady
    there, by 1e-3 and by eight times more than the gradient itself moves (a float32 loss
    rounded in stairs coarser than its ulps keeps them under 1e-6: ``moves._erratic_lines``),
    or the loss did not move at all along the line (``NumericalGradient.still``: every evaluation
    equal, so the 0 they read is the loss's rounding, coarser than the change, where TensorFlow's
    own derivative of the forward is not 0). Excused,
    the element is a note carrying that evidence; but where the tape is not an independent
    witness (``independent`` False: the forward runs through a custom or straight-through
    gradient, or an op outside TensorFlow), manual == tape proves nothing and the element is
    unverifiable, as is every element that passed on the tape's word alone
    (``policy.tape_alone``)."""
    rng = np.random.default_rng(seed + 2)
    for k, v in verdicts.items():
        if not independent:
            tape_alone(v)
        ev = evidence[k]
        suspects = v.fd_against & v.fail
        if subject.skip(k) or not np.any(suspects):
            continue
        lines = np.flatnonzero(suspects.reshape(-1))[:_AGAINST_MAX]
        flat_m, flat_fd = ev.manual.reshape(-1), ev.fd.value.reshape(-1)
        gap = np.abs(flat_m[lines] - flat_fd[lines])
        bend = _bends_along(subject, k, lines, ev)
        still = ev.fd.still.reshape(-1)[lines]
        nudged = subject.moved(k, lines, ev, rng)
        moved = None if nudged is None else nudged.moved
        excused = confounded(gap, bend, moved) | still
        if not np.any(excused):
            continue
        mask = np.zeros(ev.manual.size, bool)
        mask[lines[excused]] = True
        tiny = np.finfo(float).tiny
        shown = {"bend": float(np.max(bend[excused] / np.maximum(gap[excused], tiny)))}
        if moved is not None:
            shown.update(_nudge_shown(nudged, excused))
        if np.any(still):
            shown["still"] = int(np.count_nonzero(still))
        fd_confounded(v, mask.reshape(ev.manual.shape), shown, independent)


def _nudge_shown(nudged, excused) -> dict:
    """The note's figures for a nudge: the largest move among the excused lines, and the
    largest nudge it took (1e-6, or 1e-3 where the lines were steady under 1e-6)."""
    return {
        "moved": float(np.max(nudged.moved[excused])),
        "nudge": float(np.max(nudged.nudge[excused])),
    }


def _bends_along(subject, key, lines, ev) -> np.ndarray:
    """Per coordinate line (flat indices ``lines``), the gradient's own bend within the
    finite-difference step (``subject.bend`` along the unit direction)."""
    size, steps = ev.manual.size, ev.fd.step.reshape(-1)
    return np.array([subject.bend(key, np.eye(1, size, i)[0], steps[i], ev) for i in lines])


# At most this many failing probes per tensor are looked at along their lines.
_PROBE_BENDS_MAX = 8


def probe_bends_pass(subject, verdicts: Dict[object, ElementVerdict], evidence, seed: int) -> None:
    """A probe along which finite differences resolve a projection the manual gradient misses
    is evidence against it, unless the evidence shows them confounded there, as for an element
    (``fd_against_pass``, the same rule): the gradient checked, projected on the probe, bends
    within the step by half the disagreement or more (kinks inside the step: inputs so small
    that every pre-activation sits near its kink bias the estimate by half their jumps while
    every step agrees), or the disagreement moves by a quarter of itself or more under a nudge
    of the weights (rounding: a saturated softmax's loss)."""
    rng = np.random.default_rng(seed + 3)
    for k, v in verdicts.items():
        ev = evidence[k]
        if subject.skip(k) or ev.probes is None:
            continue
        failing = np.flatnonzero(probe_failures(ev, v))[:_PROBE_BENDS_MAX]
        if failing.size == 0:
            continue
        dirs, nd = ev.probes.directions, ev.probes.fd
        gap = np.abs(dirs[failing] @ ev.manual.reshape(-1) - nd.value[failing])
        bend = np.array([subject.bend(k, dirs[p], nd.step[p], ev) for p in failing])
        nudged = subject.moved_probes(k, failing, ev, rng)
        moved = None if nudged is None else nudged.moved
        excused = confounded(gap, bend, moved)
        if not np.any(excused):
            continue
        ev.probes.confounded = np.zeros(len(dirs), bool)
        ev.probes.confounded[failing[excused]] = True
        ev._probe_verdict = None
        tiny = np.finfo(float).tiny
        shown = {
            "bend": float(np.max(bend[excused] / np.maximum(gap[excused], tiny))),
            "count": int(excused.sum()),
        }
        if moved is not None:
            shown.update(_nudge_shown(nudged, excused))
        v.evidence[NoteCode.PROBES_CONFOUNDED] = shown
