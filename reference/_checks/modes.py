"""How ``check_gradients`` gathers its evidence: every element (full) or random probes
(directional). Each mode returns one :class:`TensorEvidence` per checked tensor; judging it is
the policy's job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .._core import fd as fdm
from .._core import stencils
from .._core.adapter import Adapter, guarded
from .._core.policy import (
    ProbeEvidence,
    TensorEvidence,
    classify,
    judge_probes,
    refine_elements,
    refine_probes,
    tolerance_at,
    within_tape,
)
from .._core.refinement import coarser

__all__ = ["Gathered", "FullMode", "DirectionalMode", "MODES", "with_rounding_floor"]

# Every element differenced, or random probes (and elements where something disagrees): the
# same two modes for every check.
MODES = ("full", "directional")

_DURING_FD = "model.loss during finite differences"
# See Gathered.coarser_where_alone: the second step is 2^COARSER times the default.
COARSER = 2


@dataclass
class Gathered:
    """What the witnesses were asked before any evidence is gathered, shared by every mode."""

    twin: Adapter  # the model judged (its float64 twin when it has one)
    keys: list
    f0: float  # the loss at the point
    manual: Dict
    tape: Dict
    rtol: float
    floors: Dict  # the least scale each tensor is judged on
    resolutions: Dict  # the finest absolute error the loss can show, per tensor
    blind: Optional[str] = None  # why the tape witnesses no tensor, or None
    # Moves of single elements whose losses finite differences evaluate in their own call of
    # the model's coordinate_losses, for its spot check (``trust.coordinate_samples``).
    samples: Optional[Dict] = None

    def noise_floor(self) -> float:
        """The least rounding noise of one loss evaluation: ``fd.FLOOR_ULPS`` ulps of
        max(|loss|, 1). A batch-mean loss below 1 is the cancellation of O(1) terms
        (logsumexp(z) - z_y of a confident softmax, -log p at p near 1) and is rounded on their
        scale, while its fourth differences and its values a few ulps away, and every loss
        along a line, can all come out exact, measuring no noise at all. With a tape as
        without: finite differences that measured nothing resolve nothing against manual and
        tape alike (a right confident classifier failed where they read 0 +- 1e-25)."""
        return fdm.FLOOR_ULPS * self.twin.eps * max(abs(self.f0), 1.0)

    def analyse(self, key, name: str, st, sigma) -> fdm.NumericalGradient:
        """``fd.analyse``, with the looser kink test where finite differences judge alone."""
        return fdm.analyse(name, st, sigma, fdm.kink_sigmas(self.tape[key] is None))

    def refine_elements(self, ev: TensorEvidence, key, sigma: float, lines) -> np.ndarray:
        """Difference again, with smaller steps, the elements among ``lines`` whose estimate
        is suspect (``refinement.refine_suspects``); returns the others (flat indices)."""
        lines = np.asarray(lines, dtype=np.int64)

        def remeasure(idx, shrink):
            st = guarded(
                _DURING_FD, stencils.coordinate_stencil, self.twin, key, self.f0, idx, shrink=shrink
            )
            return self.analyse(key, ev.fd.name, st, sigma)

        return refine_elements(ev, lines, remeasure)

    def coarser_where_alone(self, ev: TensorEvidence, key, sigma: float, lines) -> None:
        """Where finite differences judge alone, the ``lines`` (flat indices) their first
        estimate settled (no kink, nothing suspect) are differenced again with the step times
        ``2^COARSER``, and that estimate kept where it is safe (``refinement.coarser``) and still
        accepts the manual value. Rounding noise, which grows as 1/h, dominates the error of
        tensors whose gradients are small against the loss (3e-10 of their largest at the
        default step on a float64 tanh network, 5e-11 at four times the step); the larger
        step's estimate is kept only where it agrees with the verdict the default step gave,
        so it sharpens the values finite differences report and never changes a verdict."""
        nd = ev.fd
        lines = np.asarray(lines, dtype=np.int64)
        if ev.tape is not None or nd is None or lines.size == 0:
            return
        st = guarded(
            _DURING_FD, stencils.coordinate_stencil, self.twin, key, self.f0, lines, shrink=-COARSER
        )
        here = nd.take(lines)
        wide = coarser(here, self.analyse(key, nd.name, st, sigma), sigma)
        keep = wide.accepts(ev.manual.reshape(-1)[lines], tolerance_at(ev.slack, lines))
        keep &= here.accepts(ev.manual.reshape(-1)[lines], tolerance_at(ev.slack, lines))
        pick = np.flatnonzero(keep)
        if pick.size:
            nd.fill(lines[pick], wide.take(pick))

    def evidence(self, key, fd, probes=None) -> TensorEvidence:
        return TensorEvidence(
            self.twin.name(key),
            self.manual[key],
            self.tape[key],
            fd,
            self.rtol,
            self.floors[key],
            probes,
            resolution=self.resolutions[key],
        )


class FullMode:
    """Every element of every tensor differenced, in as few batched evaluations as fit."""

    name = "full"

    def __init__(self):
        # The losses at ``Gathered.samples``, evaluated by the last gathering (empty without).
        self.sampled: Dict = {}

    def gather(self, g: Gathered) -> Dict[object, TensorEvidence]:
        lines, self.sampled = guarded(
            _DURING_FD, stencils.coordinate_stencils, g.twin, g.keys, g.f0, g.samples
        )
        sigma = fdm.pooled_noise(list(lines.values()), g.f0, g.twin.eps)
        # Where most lines cross kinks the pooled estimate is inflated: the noise measured
        # directly a few ulps from the point bounds it.
        direct = guarded(_DURING_FD, stencils.jitter_noise, g.twin, g.f0, np.random.default_rng(0))
        sigma = max(min(sigma, direct), g.noise_floor())
        out = {}
        for k in g.keys:
            name = g.twin.name(k)
            ev = g.evidence(k, g.analyse(k, name, lines[k], sigma).reshaped(g.twin.shape(k)))
            settled = g.refine_elements(ev, k, sigma, np.arange(ev.manual.size))
            g.coarser_where_alone(ev, k, sigma, settled)
            out[k] = ev
        return out


class DirectionalMode:
    """``probes`` random directions per tensor, differenced along each; then elements one by
    one, where manual and tape disagree and where bisection narrows a disagreeing probe down."""

    name = "directional"
    # At most this many elements per tensor are differenced one by one (the largest
    # manual-vs-tape disagreements first, then bisection's finds): the cost of a full check of a
    # small tensor, while a large model stays a few dozen loss evaluations per tensor.
    MAX_ELEMENTS = 256
    # Bisection stops at blocks of this many elements and differences them all: below that,
    # halving costs more evaluations than it saves.
    LEAF = 16

    def __init__(self, probes: int, seed: int):
        self.probes = probes
        self.seed = seed
        self.sampled: Dict = {}  # directional mode differences no coordinate samples

    def gather(self, g: Gathered) -> Dict[object, TensorEvidence]:
        rng = np.random.default_rng(self.seed)
        dirs = {k: stencils.probe_directions(g.twin.shape(k), self.probes, rng) for k in g.keys}
        along = {
            k: guarded(_DURING_FD, stencils.directional_stencil, g.twin, k, g.f0, dirs[k])
            for k in g.keys
        }
        sigma = fdm.pooled_noise(list(along.values()), g.f0, g.twin.eps)
        # A few probe lines pool a poor estimate, inflated when they cross kinks: the noise
        # measured directly a few ulps from the point bounds it (as in full mode).
        direct = guarded(_DURING_FD, stencils.jitter_noise, g.twin, g.f0, rng)
        sigma = max(min(sigma, direct), g.noise_floor())
        out = {}
        for k in g.keys:
            name, shape = g.twin.name(k), g.twin.shape(k)
            probes = ProbeEvidence(dirs[k], g.analyse(k, name, along[k], sigma))
            ev = g.evidence(k, fdm.NumericalGradient.unmeasured(name, shape, sigma), probes)
            self._refine_probes(g, k, ev, sigma)
            chosen = self._elements(g, k, ev, rng, sigma)
            if chosen.size:
                st = guarded(_DURING_FD, stencils.coordinate_stencil, g.twin, k, g.f0, chosen)
                ev.fd.fill(chosen, g.analyse(k, name, st, sigma))
                g.refine_elements(ev, k, sigma, chosen)
            out[k] = ev
        return out

    @staticmethod
    def _refine_probes(g: Gathered, key, ev: TensorEvidence, sigma) -> None:
        """Difference again, with smaller steps, the probes whose estimate is suspect."""
        dirs, nd = ev.probes.directions, ev.probes.fd

        def remeasure(idx, shrink):
            st = guarded(
                _DURING_FD,
                stencils.directional_stencil,
                g.twin,
                key,
                g.f0,
                dirs[idx],
                shrink=shrink,
            )
            return g.analyse(key, nd.name, st, sigma)

        refine_probes(ev, remeasure)

    def _elements(self, g: Gathered, key, ev: TensorEvidence, rng, sigma) -> np.ndarray:
        """The flat indices to difference one by one: where manual and tape disagree (largest
        gaps first), or a random sample where no tape witnesses; and what bisection of a
        disagreeing probe narrows down to."""
        if ev.tape is None:
            size = ev.manual.size
            chosen = rng.choice(size, size=min(size, self.MAX_ELEMENTS), replace=False)
        else:
            off_tape = ~within_tape(ev).reshape(-1)
            with np.errstate(invalid="ignore"):
                gap = np.abs(ev.manual - ev.tape).reshape(-1)
            order = np.argsort(
                -np.where(off_tape, np.nan_to_num(gap, nan=np.inf), -1.0), kind="stable"
            )
            chosen = order[: min(int(off_tape.sum()), self.MAX_ELEMENTS)]
        if not np.all(judge_probes(ev).fd_ok_manual):
            chosen = np.union1d(chosen, self._bisect(g, key, ev, rng, sigma))
        return np.sort(np.asarray(chosen, dtype=np.int64))

    def _bisect(self, g: Gathered, key, ev: TensorEvidence, rng, sigma) -> np.ndarray:
        """Indices of small blocks whose restricted probe still disagrees with the manual
        gradient."""
        flat_m = ev.manual.reshape(-1)
        pending, leaves = [np.arange(flat_m.size)], []
        while pending and len(leaves) < self.MAX_ELEMENTS:
            idx = pending.pop()
            if idx.size <= self.LEAF:
                leaves.extend(idx.tolist())
                continue
            for half in np.array_split(idx, 2):
                mask = np.zeros(flat_m.size)
                mask[half] = 1.0
                d = stencils.probe_directions(ev.manual.shape, 1, rng, mask)
                st = guarded(_DURING_FD, stencils.directional_stencil, g.twin, key, g.f0, d)
                estimate = g.analyse(key, "", st, sigma)
                if not np.all(estimate.accepts(d @ flat_m, ev.slack * np.sum(np.abs(d), axis=1))):
                    pending.append(half)
        return np.asarray(leaves, dtype=np.int64)


def with_rounding_floor(g: Gathered, evidence: Dict, verdicts: Dict, seed: int) -> Dict:
    """The verdicts again, with finite differences' floor (``TensorEvidence.fd_floor``) set
    to the loss's own rounding (``stencils.loss_rounding``) carried into a derivative at each
    step, where they are evidence against a value: they reject the manual gradient or the
    tape somewhere, or a probe does. Asked only there, as every excuse is: along one
    coordinate, a value the loss is very sensitive to (a softmax output 3e-7 from 1 under a
    cross-entropy) may stay on one representable number for the whole stencil, so finite
    differences miss its share of the slope by up to that rounding at their step, steadily
    under any nudge, where manual and tape are right (to 1.7e-15, in 70-digit decimal
    arithmetic). Only where a tape witnesses: the floor decides between witnesses, and where
    finite differences judge alone their own error bar stands (a jump of the loss at the point
    is no rounding, though it strays as far). Elsewhere the verdicts are returned as they
    are."""
    witnessed = {k for k, ev in evidence.items() if ev.tape is not None}
    disputed = any(np.any(verdicts[k].fail | verdicts[k].tape_unfaithful) for k in witnessed)
    disputed = disputed or any(
        evidence[k].probes is not None and not np.all(judge_probes(evidence[k]).fd_ok_manual)
        for k in witnessed
    )
    if not disputed:
        return verdicts
    rng = np.random.default_rng(seed)
    sigma = guarded(_DURING_FD, stencils.loss_rounding, g.twin, g.f0, rng)
    for k in witnessed:
        ev = evidence[k]
        ev.loss_rounding = sigma
        if ev.fd is not None:
            ev.fd_floor = fdm.carried_rounding(sigma, ev.fd.step)
        if ev.probes is not None:
            ev.probes.fd_floor = fdm.carried_rounding(sigma, ev.probes.fd.step)
    return {k: classify(evidence[k]) if k in witnessed else v for k, v in verdicts.items()}
