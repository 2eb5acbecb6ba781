"""The refinement of suspect finite-difference lines, the one every check runs: which lines
are suspect (``suspect``), differencing them again with smaller steps and keeping the estimate
the steps confirm (``refine``, ``refine_suspects``), and the larger step kept where it is the
sharper (``coarser``). Estimates come from ``fd``; the steps from ``fd.REFINE_SHRINK`` and
``fd.REFINE_LEVELS``."""

from __future__ import annotations

import numpy as np

from .fd import (
    _ONE_SIDED_NOISE,
    REFINE_LEVELS,
    REFINE_SHRINK,
    ROUNDING_SIGMAS,
    NumericalGradient,
    carried_rounding,
    consistent,
    rounding_error,
)

__all__ = ["coarser", "refine", "refine_suspects", "suspect"]


def suspect(nd: NumericalGradient, manual, tape, slack, apart=None, wide=None) -> np.ndarray:
    """Flat indices of measured lines whose estimate is suspect, or must decide between manual
    and tape: a kink along them, a candidate it does not accept (allowing ``slack``), manual
    and tape further apart than ``apart`` (default ``slack``), or (given ``wide``) an error
    estimate whose truncation part, beyond the rounding carried at its step, exceeds ``wide``:
    a step that crosses a kink just beside the point widens its own error bar until it accepts
    anything, and a smaller step may not cross it."""
    with np.errstate(invalid="ignore"):
        apart = ~(np.abs(manual - tape) <= (slack if apart is None else apart))
        bad = nd.kink | apart | ~nd.accepts(manual, slack) | ~nd.accepts(tape, slack)
        if wide is not None:
            noise = nd.noise if np.ndim(nd.noise) == 0 else 0.0  # per line: not taken along
            truncation = nd.error - carried_rounding(noise, nd.step)
            bad |= ~nd.kink & (truncation > wide)
    return np.flatnonzero((bad & nd.measured).reshape(-1))


def refine_suspects(
    nd: NumericalGradient, lines, manual, tape, slack, apart, remeasure, alone: bool, wide=None
) -> np.ndarray:
    """The one refinement every check runs: of the flat ``lines`` of ``nd`` (elements or
    probes), those whose estimate is suspect (``suspect``, with the candidates ``manual`` and
    ``tape`` at those lines: the tape, or the manual values again where no tape witnesses) are
    differenced again with smaller steps (``refine``): even one that accepts the tape and not
    the manual value, since a step across another kink can accept anything within its wide
    error. ``remeasure(flat_lines, shrink)`` measures lines of ``nd``. Returns the lines it did
    not refine."""
    lines = np.asarray(lines, dtype=np.int64)
    here = nd.take(lines)
    bad = suspect(here, manual, tape, slack, apart)
    # Refined for their width alone: the smaller steps' estimate is kept only where it agrees
    # with the default step's (it sharpens a bar that held the truth); where it does not, the
    # smaller steps sit on the stairs of a loss rounded more coarsely than its measured noise
    # (a naive log(1 - p) at p near 1), and the default step's estimate stays, as it was.
    wide_only = (
        np.setdiff1d(suspect(here, manual, tape, slack, apart, wide), bad)
        if wide is not None
        else np.empty(0, np.int64)
    )
    before = here.take(wide_only)
    bad = np.union1d(bad, wide_only)
    if bad.size:
        refine(nd, lines[bad], remeasure, alone=alone)
    if wide_only.size:
        back = np.flatnonzero(~consistent(before, nd.take(lines[wide_only])))
        nd.fill(lines[wide_only[back]], before.take(back))
    return np.delete(lines, bad)


def refine(nd: NumericalGradient, lines: np.ndarray, remeasure, alone: bool = False) -> None:
    """Difference the suspect ``lines`` (flat indices) again with smaller steps (see
    ``REFINE_SHRINK``) and keep, per line, the estimate at the largest step from which every
    step agrees with the next smaller one, down to the smallest: a kink crossed at distance c
    spoils every step above c and none below, so the chain of agreement from the smallest step
    up stops where the crossing begins. A step joins the chain only if it also agrees with the
    tightest pair of smaller steps in it (``_anchor``): a middle step whose error a crossing
    widened would otherwise join a wrong larger step to right smaller ones. Every step's error
    along a line first carries the line's own rounding, where its smallest steps measure more
    than the pooled noise (``_own_rounding``).
    ``remeasure(lines, shrink)`` returns the flat estimate of those lines with the step divided
    by ``2^shrink``. ``nd`` is updated in place.

    With ``alone`` (finite differences judge without a tape), of the steps in the chain the one
    with the smallest error is kept (a smaller one where the largest step's truncation outweighs
    the noise a smaller step adds), and its error is made at least its distance from the next
    smaller step's estimate: a kink crossed closer than a tenth of the step moves the estimate by
    half its jump while its error estimate stays small, and only a smaller step shows it (in
    float32, where such a jump is below the noise the kink test allows for)."""
    lines = np.asarray(lines, dtype=np.int64)
    if lines.size == 0:
        return
    levels = [nd.take(lines)] + [
        remeasure(lines, level * REFINE_SHRINK) for level in range(1, REFINE_LEVELS + 1)
    ]
    widened = _own_rounding(levels)
    last = len(levels) - 1
    chosen = np.full(lines.size, last)
    chain = np.ones(lines.size, bool)
    anchor = _unanchored(levels[last])
    for j in range(last - 1, -1, -1):
        chain &= consistent(levels[j], levels[j + 1]) & consistent(levels[j], anchor)
        chosen[chain] = j
        _anchor(anchor, levels[j], levels[j + 1], chain)
    unresolved = chosen == last
    if alone:
        errors = np.stack([lv.error_bar for lv in levels])
        for i in np.flatnonzero(~unresolved):
            chain_levels = np.arange(chosen[i], last + 1)
            chosen[i] = chain_levels[int(np.argmin(errors[chain_levels, i]))]
    for j, level in enumerate(levels):
        pick = np.flatnonzero((chosen == j) & (widened if j == 0 else True))
        if pick.size:
            nd.fill(lines[pick], level.take(pick))
    if alone:
        _widen_by_the_next_step(nd, lines, levels, chosen, unresolved)
    # The smallest step agreeing with no larger one: a kink closer than any step resolves.
    nd.unresolved.reshape(-1)[lines[unresolved]] = True


def _own_rounding(levels) -> np.ndarray:
    """Each line's rounding, as its own stencils at the two smallest steps sample it (their
    fourth differences, where no truncation is left: the smaller of the two), made the noise of
    every step's error along it where it exceeds the noise that error was computed with. The
    noise pooled over a tensor's lines is their lower quartile; a line along which the loss is
    rounded more coarsely (a naive log(1 - p) at p near 1, its stairs 100 times the pooled
    noise along the lines that move that row most) would otherwise read its smaller steps'
    rounding as disagreement. Returns the lines widened."""
    with np.errstate(invalid="ignore"):
        own = np.fmin(levels[-1].own_noise, levels[-2].own_noise)
        widened = np.zeros(own.shape, bool)
        for level in levels:
            excess = np.nan_to_num(own - level.sigma, nan=0.0)
            more = excess > 0
            if not more.any():
                continue
            h = np.abs(level.step)
            level.error = level.error + np.where(more, rounding_error(excess, h), 0.0)
            level.kink_error = level.kink_error + np.where(
                more, ROUNDING_SIGMAS * _ONE_SIDED_NOISE * excess / h, 0.0
            )
            level.sigma = np.where(more, own, level.sigma)
            widened |= more
    return widened


def _unanchored(level: NumericalGradient) -> NumericalGradient:
    """An anchor that accepts every estimate of the same kind (see ``_anchor``)."""
    anchor = level.take(np.arange(level.value.size))
    anchor.error = np.full_like(anchor.error, np.inf)
    anchor.kink_error = np.full_like(anchor.kink_error, np.inf)
    return anchor


def _anchor(anchor: NumericalGradient, larger, smaller, chain) -> None:
    """Where ``chain`` holds, the pair of steps ``larger`` and ``smaller`` becomes the
    ``anchor`` if the two agree more tightly than the anchor's pair did: the smaller step's
    estimate, within the larger of their two error bars. A step joins the chain only if it
    agrees with its anchor too: a middle step that crosses a kink widens its own bar until it
    agrees with a wrong larger step and right smaller ones alike, but two steps that agree
    tightly are not spoiled by it. (Every step's own bar would not do: on a loss rounded in
    stairs one small step's bar is as wrong as the default step's.)"""
    error = np.maximum(larger.error, smaller.error)
    kink_error = np.maximum(larger.kink_error, smaller.kink_error)
    with np.errstate(invalid="ignore"):
        tighter = chain & (np.where(smaller.kink, kink_error, error) < anchor.error_bar)
    pick = np.flatnonzero(tighter)
    if pick.size:
        pair = smaller.take(pick)
        pair.error, pair.kink_error = error[pick], kink_error[pick]
        anchor.fill(pick, pair)


def coarser(nd: NumericalGradient, wide: NumericalGradient, sigma) -> NumericalGradient:
    """Per line, the estimate at the larger step (``wide``: the same lines of the flat ``nd``
    differenced with a step 2^c times larger) where it is safe to use, else ``nd``'s.

    Richardson's value ``R(h)`` errs by O(h^4) truncation plus rounding noise O(sigma_f / h), so
    where noise dominates (a tensor whose gradients are small against the loss) a larger step
    is the more accurate. Its error is bounded by the two values themselves:
    ``R(2^c h) - exact = (R(2^c h) - R(h)) + (R(h) - exact)``, where ``R(h)``'s truncation is
    2^(4c) times smaller than the larger step's (so at most a 1/(2^(4c) - 1) share of their
    difference and noises) and its noise is bounded as every estimate's is; and it is bounded
    by the difference plus R(h)'s own error estimate. The smaller of the two bounds is kept.
    Where either step sees a kink, or the two disagree beyond their errors (a kink between
    them), the default step's estimate stays."""
    here = nd.take(np.arange(nd.value.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        noise_h = rounding_error(sigma, here.step)
        noise_wide = rounding_error(sigma, wide.step)
        gap = np.abs(wide.value - here.value)
        share = 1.0 / ((np.abs(wide.step) / np.abs(here.step)) ** 4 - 1.0)
        error = np.minimum(gap + noise_h + share * (gap + noise_h + noise_wide), gap + here.error)
        safe = consistent(here, wide) & ~here.kink & ~wide.kink & np.isfinite(error)
        # Kept only where it is the sharper: a larger step that crosses a kink unseen is
        # "consistent" within its own wide error, and would trade a resolved value for it.
        safe &= error < here.error
    pick = np.flatnonzero(safe)
    if pick.size:
        kept = wide.take(pick)
        kept.error = error[pick]
        here.fill(pick, kept)
    return here


def _widen_by_the_next_step(nd, lines, levels, chosen, unresolved) -> None:
    """Each kept estimate's error made at least its distance from the next smaller step's."""
    last = len(levels) - 1
    for i in np.flatnonzero(~unresolved & (chosen < last)):
        here, finer = levels[chosen[i]], levels[chosen[i] + 1]
        flat = lines[i]
        with np.errstate(invalid="ignore"):
            gap = abs(here.value[i] - finer.value[i])
            ends = max(abs(here.lower[i] - finer.lower[i]), abs(here.upper[i] - finer.upper[i]))
        if np.isfinite(gap):
            nd.error.reshape(-1)[flat] = max(nd.error.reshape(-1)[flat], gap)
        if np.isfinite(ends):
            nd.kink_error.reshape(-1)[flat] = max(nd.kink_error.reshape(-1)[flat], ends)
