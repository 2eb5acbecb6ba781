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
    "kink_sigmas",
    "rounding_error",
    "carried_rounding",
    "consistent",
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
# REFINE_LEVELS times), and the estimate kept is the one at the largest step that the smaller
# steps confirm (the least noisy that no crossing spoils; ``refinement.refine``). A step 4096
# times smaller (2^-25 at |theta| <= 1 in float64) still leaves rounding noise near 1e-7 of the
# loss's scale.
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
    left in it, the rounding of that very line (see ``refinement.refine``).
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
