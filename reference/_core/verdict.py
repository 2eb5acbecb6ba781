"""A tensor's verdict assembled from its elements' verdicts: the status, the comparisons
between witnesses (each relative to the tensor's own largest gradient), the values of every
witness at the worst element, and the notes, each with the figures that granted it."""

from __future__ import annotations

from typing import List

import numpy as np

from .codes import Between, Note, NoteCode, Status
from .fd import REFINE_SHRINK, NumericalGradient
from .policy import TensorEvidence, judge_probes, probes_fail, tolerance_at, within_rounding
from .report import Comparison, ElementVerdict, TensorCheck

__all__ = ["assemble", "fd_comparison", "element_notes"]


def fd_comparison(
    between: Between, candidate, fd: NumericalGradient, ok, slack, scale: float
) -> Comparison:
    """The worst disagreement of ``candidate`` with the FD estimate, relative to ``scale``."""
    dist = np.where(np.isfinite(candidate), fd.distance(candidate), np.inf)
    dist = np.nan_to_num(np.where(fd.measured, dist, 0.0), nan=0.0)
    tol = np.broadcast_to(fd.error_bar + slack, dist.shape)
    judged_wrong = ~(ok | ~fd.measured)
    # The largest disagreement among the elements judged wrong (or among all, when none is).
    worst = int(np.argmax(np.where(judged_wrong, dist, -1.0) if np.any(judged_wrong) else dist))
    denom = scale if scale > 0 else 1.0
    return Comparison(
        between,
        float(dist.flat[worst]) / denom,
        float(tol.flat[worst]) / denom,
        bool(np.all(ok | ~fd.measured)),
    )


def _comparisons(ev: TensorEvidence, v: ElementVerdict) -> List[Comparison]:
    scale = denom = ev.shown
    out = []
    if ev.tape is not None:
        with np.errstate(invalid="ignore"):
            err = np.where(np.isfinite(ev.manual), np.abs(ev.manual - ev.tape), np.inf)
        # The largest difference among the elements it fails (or, when none does, among all:
        # an excused difference is printed as it is, its note says why it passes).
        counted = ~v.excused() & ~v.tape_ok
        shown = counted if np.any(counted) else np.ones_like(counted)
        out.append(
            Comparison(
                Between.MANUAL_TAPE,
                float(np.max(err[shown], initial=0.0)) / denom,
                float(np.max(ev.tape_tol)) / denom,
                bool(np.all(v.tape_ok)),
            )
        )
    # Elements differenced one by one that fail are what the column shows (the probes may all
    # agree while one element is off), each relative to the tensor's own largest gradient.
    elements_fail = ev.fd is not None and bool(np.any(v.fail & ev.fd.measured))
    # Where every element was differenced, they are what the column shows (the probes beside
    # them, as check_function's pairs of tied elements are, count in the verdict and the notes).
    every = ev.fd is not None and bool(np.all(ev.fd.measured))
    if ev.probes is not None and not elements_fail and not every:
        probes = judge_probes(ev)
        span = scale * float(np.max(np.sum(np.abs(ev.probes.directions), axis=1)))
        out.append(
            fd_comparison(
                Between.MANUAL_FD,
                probes.manual,
                ev.probes.fd,
                probes.fd_ok_manual,
                probes.slack,
                span,
            )
        )
        if probes.tape is not None:
            out.append(
                fd_comparison(
                    Between.TAPE_FD,
                    probes.tape,
                    ev.probes.fd,
                    probes.fd_ok_tape,
                    probes.slack,
                    span,
                )
            )
    elif ev.fd is not None:
        tol = ev.slack
        out.append(fd_comparison(Between.MANUAL_FD, ev.manual, ev.fd, v.fd_ok_manual, tol, scale))
        if ev.tape is not None:
            out.append(fd_comparison(Between.TAPE_FD, ev.tape, ev.fd, v.fd_ok_tape, tol, scale))
    return out


def assemble(ev: TensorEvidence, v: ElementVerdict) -> TensorCheck:
    """The verdict on the tensor from its elements' verdicts ``v``: status, comparisons, notes
    and the values of every witness at the worst element."""
    kinks = 0 if ev.fd is None else ev.fd.n_kinks
    if ev.probes is not None:
        kinks += ev.probes.fd.n_kinks
    check = TensorCheck(
        ev.name,
        tuple(ev.manual.shape),
        Status.PASS,
        _comparisons(ev, v),
        tolerance=ev.rtol,
        kinks=kinks,
        kinks_accepted=int(np.count_nonzero(v.kink_used)),
        n_failing=int(np.count_nonzero(v.fail)),
        elements=v,
        probes=None if ev.probes is None else len(ev.probes.directions),
    )
    _fill_worst(check, ev, v)
    check.notes.extend(_notes(ev, v, kinks))
    if np.any(v.fail) or probes_fail(ev, v):
        check.status = Status.FAIL
    elif np.any(v.unverifiable):
        check.status = Status.UNVERIFIABLE
    elif check.notes:
        check.status = Status.NOTES
    return check


def _fill_worst(check: TensorCheck, ev: TensorEvidence, v: ElementVerdict) -> None:
    """The worst element (the largest error among the failing ones, else among all), each
    witness's value there, and its error and tolerance relative to ``ev.shown``: against the
    tape where the tape judged it, against finite differences where they did (no tape, or
    finite differences resolving a value that manual and tape both miss)."""
    m, t, fd = ev.manual, ev.tape, ev.fd
    if m.size == 0:
        return
    by_fd = np.ones(m.shape, bool) if t is None else np.asarray(v.fd_against, bool)
    if fd is None:
        by_fd = np.zeros(m.shape, bool)
    with np.errstate(invalid="ignore"):
        err = np.abs(m - t) if t is not None else np.zeros(m.shape)
        if fd is not None:
            err = np.where(by_fd, np.where(fd.measured, fd.distance(m), 0.0), err)
        err = np.where(np.isfinite(m), np.nan_to_num(err, nan=0.0), np.inf)
    worst = int(np.argmax(np.where(v.fail, err, -1.0) if np.any(v.fail) else err))
    idx = np.unravel_index(worst, m.shape)
    shown = ev.shown
    check.worst_index = tuple(int(i) for i in idx)
    check.manual = float(m[idx])
    check.tape = None if t is None else float(t[idx])
    check.abs_error = float(err[idx])
    check.rel_error = check.abs_error / shown
    check.tolerance = (
        float(tolerance_at(ev.tape_tol, [worst])[0] if np.ndim(ev.tape_tol) else ev.tape_tol)
        / shown
    )
    if fd is not None and fd.measured[idx] and np.isfinite(fd.value[idx]):
        check.fd, check.fd_error = float(fd.value[idx]), float(fd.error[idx])
        if fd.kink[idx]:
            check.fd_interval = (float(fd.lower[idx]), float(fd.upper[idx]))
        if by_fd[idx]:
            # Judged by finite differences: the tolerance is theirs at that element.
            allowed = fd.error_bar[idx]
            tol = ev.slack if np.ndim(ev.slack) == 0 else np.asarray(ev.slack)[idx]
            check.tolerance = float(allowed + tol) / shown


def element_notes(ev: TensorEvidence, v: ElementVerdict, within=True) -> List[Note]:
    """The notes of the excuses the policy grants from finite differences' own values (a
    subgradient at a kink, an unfaithful tape, a line they do not resolve), each quoting the
    values at its largest case, of the elements no witness judged (``unwitnessed``), and of
    those the passes granted, each quoting the evidence the pass kept (``v.evidence``); over
    the elements ``within`` (all by default)."""
    fd = ev.fd
    at_kink = v.fd_unresolved & v.fd_kink
    notes = []
    for code, mask in (
        (NoteCode.KINK_SUBGRADIENT, v.kink_used),
        (NoteCode.TAPE_UNFAITHFUL, v.tape_unfaithful),
        (NoteCode.TAPE_DISOWNED, v.tape_disowned),
        (NoteCode.KINK_COMPOSED, at_kink),
        (
            NoteCode.FD_UNRESOLVED if ev.tape is not None else NoteCode.FD_ROUNDED,
            v.fd_unresolved & ~at_kink,
        ),
    ):
        mask = mask & within
        if np.any(mask) and fd is not None:
            notes.append(Note(code, int(mask.sum()), _largest(ev, mask)))
    if fd is not None:
        # Unverifiable for want of any witness (not for a kink closer than their steps).
        mask = v.unwitnessed & v.unverifiable & ~v.fd_unresolved & ~fd.unresolved & within
        if np.any(mask):
            notes.append(Note(NoteCode.UNWITNESSED, int(mask.sum()), _spread(ev, mask)))
    for code, mask in (
        (NoteCode.ROUNDING_EXCUSED, v.rounding),
        (NoteCode.LOSS_FLAT, v.flat),
        (NoteCode.FD_CONFOUNDED, v.confounded),
        (NoteCode.KINK_REGION, v.kink_region),
        (NoteCode.KINK_REGION_FD, v.kink_region),
        (NoteCode.KINKS_HIDDEN, v.kinks_hidden),
        (NoteCode.KINK_REGION_COARSE, v.region_coarse),
    ):
        mask = mask & within
        if np.any(mask) and code in v.evidence:
            notes.append(Note(code, int(mask.sum()), dict(v.evidence[code])))
    return notes


def _largest(ev: TensorEvidence, mask) -> dict:
    """The witnesses' values at the element of ``mask`` where manual and finite differences
    are farthest apart."""
    fd = ev.fd
    with np.errstate(invalid="ignore"):
        dist = np.where(mask & fd.measured, np.nan_to_num(fd.distance(ev.manual), nan=0.0), -1.0)
    i = np.unravel_index(int(np.argmax(dist)), dist.shape)
    tape = ev.manual if ev.tape is None else ev.tape
    rounding = {} if ev.loss_rounding is None else {"rounding": ev.loss_rounding}
    return {
        **rounding,
        "manual": float(ev.manual[i]),
        "tape": float(tape[i]),
        "fd": float(fd.value[i]),
        "error": float(fd.error_bar[i]),
        "lower": float(fd.lower[i]),
        "upper": float(fd.upper[i]),
        "step": float(fd.step[i]),
        "floor": 0.0 if ev.fd_floor is None else float(np.asarray(ev.fd_floor)[i]),
    }


def _spread(ev: TensorEvidence, mask) -> dict:
    """How much finite differences accept around the manual value where they witness nothing
    (``policy.vacuous``), relative to the tensor's scale: the widest of the elements of
    ``mask`` they measured, else of the probes."""
    fd, scale = ev.fd, ev.scale if ev.scale > 0 else 1.0
    measured = mask & fd.measured
    if np.any(measured):
        width = fd.error_bar
        i = np.unravel_index(int(np.argmax(np.where(measured, width, -1.0))), width.shape)
        spread, step = float(width[i] + np.broadcast_to(ev.slack, width.shape)[i]), fd.step[i]
    else:
        nd, dirs = ev.probes.fd, ev.probes.directions
        width = (nd.error_bar + judge_probes(ev).slack) / np.sum(np.abs(dirs), axis=1)
        i = int(np.argmin(width))
        spread, step = float(width[i]), nd.step[i]
    values = {"spread": spread / scale, "step": float(step)}
    if ev.tape is not None:
        values["tape"] = 1
    return values


def _notes(ev: TensorEvidence, v: ElementVerdict, kinks: int) -> List[Note]:
    notes = element_notes(ev, v)
    crowded = v.unverifiable & (ev.fd.unresolved if ev.fd is not None else False)
    if np.any(crowded):
        step = float(np.nanmin(np.where(crowded, np.abs(ev.fd.step), np.nan)))
        code = NoteCode.KINK_CROWDED if ev.tape is not None else NoteCode.KINK_CROWDED_FD
        # The smallest step must agree with the next larger one: a kink within that one's
        # reach leaves the value unconfirmed.
        values = {"step": step, "reach": step * 2.0**REFINE_SHRINK}
        notes.append(Note(code, int(np.count_nonzero(crowded)), values))
    if np.any(v.unverifiable) and NoteCode.UNRESOLVED in v.evidence:
        values = dict(v.evidence[NoteCode.UNRESOLVED])
        notes.append(Note(NoteCode.UNRESOLVED, int(v.unverifiable.sum()), values))
    if kinks and ev.tape is not None and not np.any(v.kink_used):
        notes.append(Note(NoteCode.KINKS_MATCH_TAPE, kinks))
    confounded = v.evidence.get(NoteCode.PROBES_CONFOUNDED)
    if confounded:
        values = {k: value for k, value in confounded.items() if k != "count"}
        notes.append(Note(NoteCode.PROBES_CONFOUNDED, int(confounded["count"]), values))
    if ev.probes is not None and not np.any(v.fail):
        probes = judge_probes(ev)
        if not np.all(probes.fd_ok_manual):
            values = {"probes": len(probes.manual)}
            within = within_rounding(ev)
            if np.any(within):
                values["within"] = int(within.sum())
                values["floor"] = float(np.max(ev.probes.fd_floor[within]))
                if ev.loss_rounding is not None:
                    values["rounding"] = ev.loss_rounding
            notes.append(Note(NoteCode.PROBES_DISAGREE, int((~probes.fd_ok_manual).sum()), values))
    return notes
