"""The evidence about one tensor, as the policy reads it: the witnesses' values
(:class:`TensorEvidence`, with :class:`ProbeEvidence` in directional mode), the probes judged one
by one (``judge_probes``) and the elements finite differences accept without witnessing them
(``vacuous``). Deciding what it means is the policy's business."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fd import NumericalGradient

__all__ = [
    "magnitude",
    "ProbeEvidence",
    "TensorEvidence",
    "ProbeVerdict",
    "judge_probes",
    "vacuous",
]


def magnitude(*arrays) -> float:
    """The largest finite magnitude among the arrays (0 when there is none)."""
    vals = [np.abs(a[np.isfinite(a)]).ravel() for a in arrays if a is not None]
    vals = np.concatenate(vals) if vals else np.empty(0)
    return float(vals.max()) if vals.size else 0.0


@dataclass
class ProbeEvidence:
    """Directional mode: finite differences along random probe directions of one tensor.

    ``directions`` has shape (P, size); ``fd`` holds the P directional-derivative estimates.
    """

    directions: np.ndarray
    fd: NumericalGradient
    # Probes along which the model's own gradient was shown to bend within the step (kinks
    # inside it, ``passes.probe_bends_pass``): no evidence against the manual gradient.
    confounded: Optional[np.ndarray] = None
    # The rounding of the function's outputs carried into each probe's derivative at its step
    # (``TensorEvidence.fd_floor`` along the probes): a probe rejects the manual gradient only
    # beyond it (a saturated softmax output near 1 rounds every evaluation alike, so finite
    # differences read a change below its ulp as exactly 0 with no error bar).
    fd_floor: Optional[np.ndarray] = None


@dataclass
class TensorEvidence:
    """What the witnesses say about one tensor, and the tolerance it is judged with.

    ``manual`` and ``tape`` (None when the tape cannot witness) are float64 arrays of the
    tensor's shape; ``fd`` is elementwise (``measured`` marks the differenced elements) or None.
    The tensor is judged on ``scale`` = max(its largest gradient, ``floor``); the manual value
    must match the tape within ``tape_tol`` = ``rtol * scale``, or within ``tolerance``
    (elementwise, absolute) when that is given: rounding only. Finite differences accept a
    value within their error estimate plus ``slack`` = max(``tape_tol``, ``resolution``), the
    finest absolute error the loss can show (``resolutions``).
    """

    name: str
    manual: np.ndarray
    tape: Optional[np.ndarray]
    fd: Optional[NumericalGradient]
    rtol: float
    floor: float = 0.0
    probes: Optional[ProbeEvidence] = None
    tolerance: Optional[np.ndarray] = None
    resolution: float = 0.0
    # The rounding of what finite differences difference, carried into a derivative at each
    # element's step (absolute): they resolve a value against manual or tape only beyond it.
    # check_function: the outputs' rounding (an output near 1 that moves by less than its ulp
    # rounds every evaluation, while the outputs that visibly change are tiny); a model: the
    # loss's own, measured where every weight moves (``loss_rounding``, the standard deviation
    # of one evaluation; ``modes.with_rounding_floor``).
    fd_floor: Optional[np.ndarray] = None
    loss_rounding: Optional[float] = None

    def __post_init__(self):
        # Computed once: the values judged do not change after the evidence is gathered.
        self.scale = max(magnitude(self.manual, self.tape), self.floor)
        self.tape_tol = self.rtol * self.scale if self.tolerance is None else self.tolerance
        self.slack = np.maximum(self.tape_tol, self.resolution)
        self._probe_verdict = None

    @property
    def shown(self) -> float:
        """The scale every printed relative error and tolerance is relative to: the tensor's
        own largest gradient, as the witnesses know it (finite differences' where they measured
        every element, else the tape's, else what finite differences measured, else the manual
        one's; the judging scale when all are zero), leaving out the elements they accept
        anything at (``vacuous``). A floor raises the
        tolerance printed, never shrinks the error printed; a wrong manual value never
        shrinks either."""
        fd = self.fd
        witnessed = None if fd is None else fd.measured & ~vacuous(self)
        if fd is not None and np.all(witnessed):
            truth = magnitude(fd.value)
        elif self.tape is not None:
            truth = magnitude(self.tape)
        elif fd is not None and np.any(witnessed):
            truth = magnitude(np.where(witnessed, fd.value, np.nan))
        else:
            truth = magnitude(self.manual)
        return truth if truth > 0 else (self.scale if self.scale > 0 else 1.0)


@dataclass
class ProbeVerdict:
    """Along each probe: the projections of manual and tape, and whether FD accepts each."""

    manual: np.ndarray
    tape: Optional[np.ndarray]
    slack: np.ndarray
    fd_ok_manual: np.ndarray
    fd_ok_tape: np.ndarray


def judge_probes(ev: TensorEvidence) -> ProbeVerdict:
    """The directional evidence judged probe by probe; each probe's slack is the elements'
    carried along its direction (``slack * sum |d|``)."""
    if ev._probe_verdict is None:
        ev._probe_verdict = _judge_probes(ev)
    return ev._probe_verdict


def _judge_probes(ev: TensorEvidence) -> ProbeVerdict:
    dirs, fd = ev.probes.directions, ev.probes.fd
    mp = dirs @ ev.manual.reshape(-1)
    tp = None if ev.tape is None else dirs @ ev.tape.reshape(-1)
    slack = ev.slack * np.sum(np.abs(dirs), axis=1)
    ok_m = np.isfinite(mp) & fd.accepts(mp, slack)
    ok_t = np.zeros_like(ok_m) if tp is None else np.isfinite(tp) & fd.accepts(tp, slack)
    return ProbeVerdict(mp, tp, slack, ok_m, ok_t)


def vacuous(ev: TensorEvidence) -> np.ndarray:
    """Elements finite differences accept without witnessing them: they accept the manual value
    with an error bar (plus their slack) of at least the tensor's whole ``scale`` (the loss
    jumps within their step, or is this noisy there), so any value a bug could give passes
    them. At a kink the error bar is that of the one-sided derivatives: the interval between
    them is the valid subgradients, witnessed. Elements directional mode did not difference one
    by one are vacuous where every probe is (its error bar at least the scale carried along its
    direction). A tensor whose every gradient is 0, or below the finest the loss resolves
    (``resolution``: 1/3 - 1/3 rounded, at a minimum), has no scale to measure a bar against:
    the bound finite differences give, |g| <= their error, is the witness there."""
    fd, m, s = ev.fd, ev.manual, ev.scale
    if fd is None or s <= ev.resolution:
        return np.zeros(m.shape, bool)
    with np.errstate(invalid="ignore"):
        wide = fd.error_bar + ev.slack >= s
    out = fd.measured & fd.accepts(m, ev.slack) & wide
    if ev.probes is not None and len(ev.probes.directions):
        probes, nd = judge_probes(ev), ev.probes.fd
        span = s * np.sum(np.abs(ev.probes.directions), axis=1)
        with np.errstate(invalid="ignore"):
            blind = probes.fd_ok_manual & (nd.error_bar + probes.slack >= span)
        if np.all(blind):
            out = out | ~fd.measured
    return out
