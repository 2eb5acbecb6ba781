"""The finite-difference witness: the loss itself, evaluated at perturbed parameters.

Along each coordinate (or, in directional mode, each random probe direction) the loss is
evaluated at five points, ``theta + s`` for ``s in (-h, -h/2, 0, +h/2, +h)``, with a relative,
power-of-two step ``h = 2^round(log2(eps^(1/4) * max(1, |theta|)))`` in float64 (the model's
float64 twin when it has one). From those five values:

- central differences ``D(h)`` and ``D(h/2)``, and their Richardson extrapolation
  ``R = D(h/2) + (D(h/2) - D(h)) / 3``, the reported value (error O(h^4));
- its error estimate: ``TRUNCATION_SAFETY * |D(h/2) - D(h)|`` (a generous bound on what
  Richardson leaves, even with a kink inside the step but not at theta) plus
  ``ROUNDING_SIGMAS`` standard deviations of rounding noise propagated into ``R``;
- the rounding noise of one loss evaluation, ``sigma_f``, pooled over every coordinate of the
  check from the fourth differences ``f(h) - 4 f(h/2) + 6 f(0) - 4 f(-h/2) + f(-h)``, which for a
  smooth loss are pure noise (a robust quantile, so kinks among them do not inflate it);
- one-sided derivatives ``F = 2 F(h/2) - F(h)`` and ``B = 2 B(h/2) - B(h)`` (each O(h^2)).
  Where they differ by far more than each side's own spread and the noise (``local_kinks``),
  the loss has a kink along that coordinate within the step, and any value between ``B`` and
  ``F`` is a valid subgradient.

No tolerance here is a magic constant of the loss's scale: every one is computed from the
evaluations themselves.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "NumericalGradient",
    "Stencil",
    "analyse",
    "pooled_noise",
    "power_of_two_step",
    "ROUNDING_SIGMAS",
    "KINK_SIGMAS",
    "ALONE_KINK_SIGMAS",
    "KINK_SPREAD",
    "STEP_EXPONENT",
    "FLOOR_ULPS",
    "QUARTILE_UNIT",
    "noise_samples",
    "quartile_noise",
    "refine",
    "refine_suspects",
    "kink_sigmas",
    "rounding_error",
    "carried_rounding",
    "coarser",
    "consistent",
    "suspect",
]

# Richardson leaves O(h^4) truncation against O(eps/h) rounding, so its best step is near
# eps^(1/5); eps^(1/4) (2^-13 at |theta| <= 1) is measured to give FD errors near 1e-10 on
# smooth float64 networks while crossing ReLU kinks rarely (eps^(1/3): 3e-9; eps^(1/5): kinks).
STEP_EXPONENT = 1.0 / 4.0
# Rounding noise in an estimate is allowed up to this many standard deviations: with the noise
# pooled from hundreds of lines, 6 sigma leaves no false alarm in the property suite's runs.
ROUNDING_SIGMAS = 6.0
# A kink's jump must stand out against the noise of the one-sided derivatives by this many
# sigmas (larger than ROUNDING_SIGMAS: calling noise a kink would excuse any value there)...
KINK_SIGMAS = 10.0
# ... and against each side's own spread |F(h/2) - F(h)| by this factor: on a smooth line the
# jump |F - B| is O(h^3) while the spread is O(h), so 4x never flags a smooth line.
KINK_SPREAD = 4.0
# Where finite differences judge alone (no tape), a jump standing this many sigmas out of the
# noise is taken for a kink: a kink crossed closer than a tenth of the step biases the estimate
# by half its jump while the error estimate stays small, and in float32 such a jump hides
# under 10 sigmas. Calling noise a kink here widens the accepted interval by that noise only
# (the one-sided derivatives stay measured), where with a tape it would excuse a value off it.
ALONE_KINK_SIGMAS = 3.0
# |D(h/2) - D(h)| bounds what Richardson leaves on a smooth line by orders of magnitude; a kink
# between h/7 (below which it is flagged) and h from theta can leave up to 4x that.
TRUNCATION_SAFETY = 4.0
# Where a line's estimate is suspect (a kink seen along it, a witness it rejects, or manual and
# tape apart so that it must decide), the step may have crossed another kink nearby (a
# pre-activation of another row 1e-5 from zero, a weight near 0 under an L1 penalty): the line
# is differenced again with the step divided by 2^REFINE_SHRINK, 2^(2 REFINE_SHRINK), ... (up to
# REFINE_LEVELS times), and the estimate kept is the one at the largest step that agrees with
# every smaller step (the least noisy that no crossing spoils). A step 4096 times smaller
# (2^-25 at |theta| <= 1 in float64) still leaves rounding noise near 1e-7 of the loss's scale.
REFINE_SHRINK = 4
REFINE_LEVELS = 3
# The least rounding noise of one evaluation any check assumes: this many ulps of the value it is
# evaluated around (the loss; an output projected on a cotangent; max(|loss|, 1) where finite
# differences judge alone, ``modes``; the largest value on an elementwise stencil, ``derivative``).
FLOOR_ULPS = 4.0
_SQRT70 = math.sqrt(70.0)  # noise of the fourth difference, in units of sigma_f
_Q25_ABS_NORMAL = 0.31863936396437  # 25th percentile of |N(0, 1)|
# The 25th percentile of |fourth difference| on a smooth line, in units of sigma_f: the noise is
# estimated from that quantile (robust to the kinks among the lines).
QUARTILE_UNIT = _SQRT70 * _Q25_ABS_NORMAL
_R_NOISE = math.sqrt(32.0 / 9.0 + 2.0 / 36.0)  # noise of R, in units of sigma_f / h
_ONE_SIDED_NOISE = math.sqrt(26.0)  # noise of F or B, in units of sigma_f / h


def power_of_two_step(theta: np.ndarray, eps: float) -> np.ndarray:
    """``2^round(log2(eps^STEP_EXPONENT * max(1, |theta|)))`` elementwise."""
    return np.exp2(np.round(np.log2(eps**STEP_EXPONENT * np.maximum(1.0, np.abs(theta)))))


@dataclass
class Stencil:
    """Loss values at five points along each of n lines: offsets ``s`` and values ``f``, both of
    shape (n, 5), ordered -h, -h/2, 0, +h/2, +h; ``s`` holds the displacements actually applied."""

    s: np.ndarray
    f: np.ndarray

    def fourth_difference(self) -> np.ndarray:
        return self.f @ np.array([1.0, -4.0, 6.0, -4.0, 1.0])

    def live(self) -> np.ndarray:
        """Lines along which the loss changed at all (a dead input leaves it exactly constant)."""
        return np.any(self.f != self.f[:, 2:3], axis=1)


# Inputs moved by about 1.7e-4 of themselves (and by 1.7e-4 at 0), twice, by factors that no
# decimal constant cancels, to values float32 cannot hold: far enough that a float64 output
# moves by many of its ulps (c |x| + 1000 with c = 1e-6 still does), where one computed in
# float32 stays a float32 value however far it moves.
_OFF_GRID = (math.pi / 4.0 * 2.0**-12, (math.sqrt(5.0) - 1.0) / 2.0 * 2.0**-12)


def computes_in_float32(outputs_at, inputs) -> bool:
    """Does a function given float64 inputs compute in float32 (a Keras layer casts them to
    its own float32; code may cast inside and back)? ``outputs_at(moved)`` evaluates it at
    float64 inputs ``moved`` (one array per input). Yes where at inputs moved off float32's grid
    (twice) every finite output is a value one float32 holds exactly, and some not 0: a float64
    computation sets some of the 29 bits float32 lacks. No where it does not run there."""
    for move in _OFF_GRID:
        moved = [np.asarray(x, np.float64) + move * (np.abs(x) + 1.0) for x in inputs]
        try:
            values = np.asarray(outputs_at(moved), np.float64).reshape(-1)
        except Exception:  # a function that does not run there: no evidence
            return False
        values = values[np.isfinite(values)]
        if values.size == 0 or not np.any(values != 0):
            return False
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.all(values.astype(np.float32).astype(np.float64) == values):
                return False
    return True


def coarsest_dtype(*dtypes) -> str:
    """The name of the coarsest of float dtypes (names or NumPy dtypes): a claim computed in
    one and finite differences resolving another are held to the coarser."""
    return max((np.dtype(d) for d in dtypes), key=lambda d: np.finfo(d).eps).name


def precision_note(what: str, given: str, returned: str, precision: str) -> Optional[str]:
    """Why a function given ``given`` inputs is judged to a coarser ``precision``; None where
    it is not coarser."""
    if coarsest_dtype(given, precision) == given:
        return None
    why = (
        f"returns {returned} outputs for {given} inputs (a Keras layer computes in its own dtype)"
        if returned != given
        else f"returns {returned} outputs that are {precision} values (it computes in "
        f"{precision} inside)"
    )
    return (
        f"{what} {why}: it is judged to {precision}'s precision (pass {precision} inputs, or "
        f"compute in {given}, to make that plain)"
    )


def one_sided(st: Stencil):
    """The one-sided derivatives at both steps: (F(h), F(h/2), B(h), B(h/2))."""
    s, f = st.s, st.f
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            (f[:, 4] - f[:, 2]) / s[:, 4],
            (f[:, 3] - f[:, 2]) / s[:, 3],
            (f[:, 2] - f[:, 0]) / -s[:, 0],
            (f[:, 2] - f[:, 1]) / -s[:, 1],
        )


def local_kinks(st: Stencil, sigma_f, kink_sigmas: float = KINK_SIGMAS) -> np.ndarray:
    """Lines along which the loss has a kink within the step.

    The Richardson one-sided derivatives ``F`` and ``B`` differ by O(h^3) on a smooth line and
    by the jump at a kink. Each side's own consistency, ``|F(h/2) - F(h)|``, is O(h) on a smooth
    line, about zero on a piecewise-linear one, and of the order of the noise when noise
    dominates. A kink is a jump that stands out against both, so no noise estimate that a
    majority of kinks could inflate is needed.
    """
    fwd1, fwd2, bwd1, bwd2 = one_sided(st)
    with np.errstate(invalid="ignore"):
        jump = np.abs((2.0 * fwd2 - fwd1) - (2.0 * bwd2 - bwd1))
        spread = np.abs(fwd2 - fwd1) + np.abs(bwd2 - bwd1)
        noise = kink_sigmas * 2.0 * _ONE_SIDED_NOISE * sigma_f / np.abs(st.s[:, 4])
        return np.nan_to_num(jump > KINK_SPREAD * spread + noise, nan=False)


def pooled_noise(stencils: Sequence[Stencil], f0: float, eps: float) -> float:
    """sigma_f, the rounding noise of one loss evaluation, pooled over every line checked that
    is live (the loss changes along it) and has no kink; at least ``FLOOR_ULPS`` ulps of
    ``f0``."""
    floor = FLOOR_ULPS * eps * max(abs(f0), np.finfo(np.float64).tiny)
    d4 = [noise_samples(st, floor) for st in stencils]
    return max(quartile_noise(np.concatenate(d4) if d4 else np.empty(0)), floor)


def noise_samples(st: Stencil, floor) -> np.ndarray:
    """Per line of ``st``, the fourth difference that samples the rounding noise (|d4|), or NaN
    where the line cannot: not live, a kink within the step (against the noise ``floor``), or
    not finite. Every check pools its noise from these (``quartile_noise``)."""
    d4 = np.abs(st.fourth_difference())
    usable = st.live() & ~local_kinks(st, floor) & np.isfinite(d4)
    return np.where(usable, d4, np.nan)


def quartile_noise(samples: np.ndarray, axis=None):
    """sigma from ``noise_samples`` (NaN ignored): their lower quartile over
    ``QUARTILE_UNIT``, robust to the lines that cross kinks unseen; 0 where there is none."""
    samples = np.asarray(samples, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no line samples the noise
        if samples.size == 0:
            q = np.full(() if axis is None else samples.shape[1 - axis], np.nan)
        else:
            q = np.nanquantile(samples, 0.25, axis=axis)
    sigma = np.nan_to_num(np.asarray(q) / QUARTILE_UNIT, nan=0.0)
    return float(sigma) if axis is None else sigma


@dataclass
class NumericalGradient:
    """The finite-difference estimate of one tensor's gradient (or of its projections on the
    probe directions, in directional mode), with everything needed to judge against it.

    ``value`` is the Richardson value and ``error`` its error estimate. Where ``kink`` is set the
    loss is not differentiable along that coordinate: ``lower``/``upper`` are the one-sided
    derivatives and ``kink_error`` their error; any value in between is a valid subgradient.
    ``measured`` marks the elements that were differenced at all (directional mode differences
    only some); elsewhere the other fields are NaN (``kink`` False) and carry no evidence.
    ``unresolved`` marks lines whose estimate at the smallest step still disagreed with the next
    larger one (another kink closer than any step resolves): their estimate is no evidence.
    ``still`` marks lines along which every evaluation came out equal to the loss at the point:
    the loss did not move at all (a dead input, or a loss rounded more coarsely than the change).
    ``sigma`` is the noise of one evaluation each line's error was computed with, and
    ``own_noise`` the noise its own stencil samples (its fourth difference in units of sigma,
    NaN where it cannot: see ``noise_samples``): at the smallest steps, where no truncation is
    left in it, the rounding of that very line (see ``refine``).
    """

    name: str
    value: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    kink_error: np.ndarray
    step: np.ndarray
    noise: float
    measured: Optional[np.ndarray] = None
    unresolved: Optional[np.ndarray] = None
    still: Optional[np.ndarray] = None
    sigma: Optional[np.ndarray] = None
    own_noise: Optional[np.ndarray] = None

    _FIELDS = (
        "value",
        "error",
        "kink",
        "lower",
        "upper",
        "kink_error",
        "step",
        "measured",
        "unresolved",
        "still",
        "sigma",
        "own_noise",
    )

    def __post_init__(self):
        if self.measured is None:
            self.measured = np.ones(np.shape(self.value), bool)
        if self.unresolved is None:
            self.unresolved = np.zeros(np.shape(self.value), bool)
        if self.still is None:
            self.still = np.zeros(np.shape(self.value), bool)
        if self.sigma is None:
            noise = self.noise if np.ndim(self.noise) == 0 else np.nan
            self.sigma = np.full(np.shape(self.value), noise, dtype=float)
        if self.own_noise is None:
            self.own_noise = np.full(np.shape(self.value), np.nan)

    @classmethod
    def unmeasured(cls, name: str, shape, noise: float) -> "NumericalGradient":
        """An estimate with no element differenced yet (see ``fill``)."""
        nan = np.full(shape, np.nan)
        return cls(
            name,
            nan.copy(),
            nan.copy(),
            np.zeros(shape, bool),
            nan.copy(),
            nan.copy(),
            nan.copy(),
            nan.copy(),
            noise,
            np.zeros(shape, bool),
            np.zeros(shape, bool),
            np.zeros(shape, bool),
        )

    def fill(self, flat_indices: np.ndarray, measured: "NumericalGradient") -> None:
        """Record the estimates ``measured`` of the elements at ``flat_indices``."""
        for f in self._FIELDS:
            getattr(self, f).reshape(-1)[flat_indices] = getattr(measured, f)

    def take(self, flat_indices) -> "NumericalGradient":
        """The estimates of the elements at ``flat_indices``, as a flat estimate."""
        return NumericalGradient(
            self.name,
            **{f: getattr(self, f).reshape(-1)[flat_indices] for f in self._FIELDS},
            noise=self.noise,
        )

    @property
    def n_kinks(self) -> int:
        return int(np.count_nonzero(self.kink))

    @property
    def error_bar(self) -> np.ndarray:
        """The error estimate of each value, at a kink that of its one-sided derivatives."""
        return np.where(self.kink, self.kink_error, self.error)

    def accepts(self, candidate: np.ndarray, slack) -> np.ndarray:
        """Elementwise: does ``candidate`` agree with this estimate, allowing ``slack`` more?
        (False where nothing was measured.)"""
        with np.errstate(invalid="ignore"):
            smooth = np.abs(candidate - self.value) <= self.error + slack
            inside = (candidate >= self.lower - self.kink_error - slack) & (
                candidate <= self.upper + self.kink_error + slack
            )
        return np.where(self.kink, inside, smooth) & self.measured

    def distance(self, candidate: np.ndarray) -> np.ndarray:
        """How far ``candidate`` is from what this estimate accepts (0 inside a kink's interval)."""
        off_interval = np.maximum(np.maximum(self.lower - candidate, candidate - self.upper), 0.0)
        return np.where(self.kink, off_interval, np.abs(candidate - self.value))

    def reshaped(self, shape) -> "NumericalGradient":
        return NumericalGradient(
            self.name,
            **{f: getattr(self, f).reshape(shape) for f in self._FIELDS},
            noise=self.noise,
        )


def analyse(name: str, st: Stencil, sigma_f, kink_sigmas: float = KINK_SIGMAS) -> NumericalGradient:
    """Values, error estimates and kinks from a stencil (see the module docstring); ``sigma_f``
    is the noise of one evaluation, a number or one per line; ``kink_sigmas`` how far a jump
    must stand out of the noise to be a kink (``KINK_SIGMAS``, or ``ALONE_KINK_SIGMAS``)."""
    s, f = st.s, st.f
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (f[:, 4] - f[:, 0]) / (s[:, 4] - s[:, 0])
        d2 = (f[:, 3] - f[:, 1]) / (s[:, 3] - s[:, 1])
        value = d2 + (d2 - d1) / 3.0
        h = s[:, 4]
        fwd1, fwd2, bwd1, bwd2 = one_sided(st)
        forward, backward = 2.0 * fwd2 - fwd1, 2.0 * bwd2 - bwd1
        error = TRUNCATION_SAFETY * np.abs(d2 - d1) + rounding_error(sigma_f, h)
        kink_error = (
            np.abs(fwd2 - fwd1)
            + np.abs(bwd2 - bwd1)
            + ROUNDING_SIGMAS * _ONE_SIDED_NOISE * sigma_f / h
        )
    kink = local_kinks(st, sigma_f, kink_sigmas)
    lower = np.where(kink, np.minimum(forward, backward), value)
    upper = np.where(kink, np.maximum(forward, backward), value)
    own = noise_samples(st, sigma_f) / _SQRT70
    return NumericalGradient(
        name,
        value,
        error,
        kink,
        lower,
        upper,
        kink_error,
        h,
        sigma_f,
        still=~st.live(),
        sigma=np.broadcast_to(np.asarray(sigma_f, float), np.shape(value)).copy(),
        own_noise=own,
    )


def consistent(a: NumericalGradient, b: NumericalGradient) -> np.ndarray:
    """Do two estimates of the same lines (at different steps) agree, each within its error?
    Both smooth with values that agree, or both kinked with one-sided derivatives that agree."""
    with np.errstate(invalid="ignore"):
        smooth = ~a.kink & ~b.kink & (np.abs(a.value - b.value) <= a.error + b.error)
        slack = a.kink_error + b.kink_error
        kinked = (
            a.kink
            & b.kink
            & (np.abs(a.lower - b.lower) <= slack)
            & (np.abs(a.upper - b.upper) <= slack)
        )
    return smooth | kinked


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


def rounding_error(sigma, step) -> np.ndarray:
    """The rounding error allowed in a Richardson value at ``step`` when one evaluation carries
    noise ``sigma`` (``ROUNDING_SIGMAS`` standard deviations)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return ROUNDING_SIGMAS * _R_NOISE * np.asarray(sigma) / np.abs(step)


def carried_rounding(sigma, step) -> np.ndarray:
    """``rounding_error`` where it is finite, else 0: the rounding of one evaluation (``sigma``,
    absolute) carried into a derivative at each ``step``, a floor on what finite differences
    resolve there (``TensorEvidence.fd_floor``, ``ProbeEvidence.fd_floor``)."""
    return np.nan_to_num(rounding_error(sigma, step), nan=0.0)


def kink_sigmas(alone: bool) -> float:
    """How far a jump must stand out of the noise to be a kink: ``ALONE_KINK_SIGMAS`` where
    finite differences judge alone, ``KINK_SIGMAS`` where a tape witnesses."""
    return ALONE_KINK_SIGMAS if alone else KINK_SIGMAS


def refine(nd: NumericalGradient, lines: np.ndarray, remeasure, alone: bool = False) -> None:
    """Difference the suspect ``lines`` (flat indices) again with smaller steps (see
    ``REFINE_SHRINK``) and keep, per line, the estimate at the largest step from which every
    step agrees with the next smaller one, down to the smallest: a kink crossed at distance c
    spoils every step above c and none below, so the chain of agreement from the smallest step
    up stops where the crossing begins. A step joins the chain only if it also agrees with the
    tightest pair of smaller steps in it (``_anchor``): a middle step whose error a crossing
    widened would otherwise join a wrong larger step to right smaller ones.
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
