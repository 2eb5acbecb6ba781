"""The passes of ``check_gradients``' pipeline that run after the policy's first verdict.

- ``rounding_pass``: decides the undecided elements (only the tape separates manual from truth);
- ``forward_pass``: the loss against the same network rebuilt from primitives;
- ``float32_pass``: a float32 model's own gradients against its float64 twin.

Each reads the evidence and the verdict as data and changes the verdict only through the
policy's types (an element excused, a note, a failure).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from .._core.adapter import Adapter, ModelError
from .._core.policy import magnitude
from .._core.report import (
    Between,
    Comparison,
    Diagnosis,
    ElementVerdict,
    Finding,
    ForwardCheck,
    GradientReport,
    Note,
    NoteCode,
    Status,
)
from .._core.tape import tape_values

__all__ = ["rounding_pass", "forward_pass", "float32_pass", "FORWARD_RTOL"]

# --- the rounding test -----------------------------------------------------------------------

# The weights move by this relative amount (about 1e-6), this many times...
_NUDGE = 2.0**-20
_NUDGES = 4
# ... and a manual-minus-tape difference that changes by at least this fraction of itself under
# one nudge is erratic: a bug moves it by about 1e-6 of itself, 250000 times less.
_ERRATIC = 0.25


def rounding_pass(
    twin: Adapter, verdicts: Dict[object, ElementVerdict], manual: Dict, tape: Dict, seed: int
) -> None:
    """Decide the undecided elements (FD accepts manual and tape; only the tape separates them).

    A bug is systematic: moving every weight by a relative 1e-6 moves the manual-minus-tape
    difference by about 1e-6 of itself. Rounding amplified by cancellation (elu's a + alpha deep
    in saturation) depends on the low bits of the values and changes erratically. Where the
    difference changes by at least a quarter of itself under one of a few such nudges, the
    elements are excused as rounding (and noted); otherwise they fail as before.
    """
    suspects = {k: v.undecided for k, v in verdicts.items() if np.any(v.undecided)}
    if not suspects:
        return
    rng = np.random.default_rng(seed + 1)
    d0 = {k: (manual[k] - tape[k])[mask] for k, mask in suspects.items()}
    change = {k: 0.0 for k in suspects}
    original = twin.snapshot()
    try:
        for _ in range(_NUDGES):
            for var, value in zip(twin.params, original):
                var.assign(value * (1.0 + _NUDGE * rng.standard_normal(value.shape)))
            m, t = twin.manual(), tape_values(twin)
            for k, mask in suspects.items():
                dk = (m[k] - t[k])[mask]
                denominator = max(np.sum(np.abs(d0[k])), np.finfo(float).tiny)
                moved = float(np.sum(np.abs(dk - d0[k])) / denominator)
                change[k] = max(change[k], moved)
    finally:
        twin.restore(original)
    for k, mask in suspects.items():
        if change[k] >= _ERRATIC:
            verdicts[k].excuse_rounding(mask)


# --- the independent forward -----------------------------------------------------------------

# The model's loss (in float64) must match the rebuilt one to this relative tolerance, plus
# _FORWARD_ULPS ulps of the values it is computed from: two float64 forwards written differently
# agree to a few ulps of their largest intermediate, far inside both; a forward bug (a missing
# mean, a wrong constant) is off by far more.
FORWARD_RTOL = 1e-9
_FORWARD_ULPS = 64


def forward_pass(report: GradientReport, adapter: Adapter, twin: Adapter, f0: float) -> None:
    """Set ``report.forward`` (or ``report.forward_skipped`` with the reason it cannot run)."""
    from .._catalogue.independent import independent_loss, why_not

    reason = why_not(adapter.model)
    if reason is not None:
        report.forward_skipped = reason
        return
    try:
        ref, scale = independent_loss(twin.model, adapter.X, adapter.y)
    except Exception as exc:  # a model that describes itself wrongly is the model's problem
        raise ModelError(
            f"rebuilding the model from primitives failed: {type(exc).__name__}: {exc}"
        ) from exc
    eps = np.finfo(np.float64).eps
    tiny = np.finfo(float).tiny
    tol_abs = FORWARD_RTOL * abs(ref) + _FORWARD_ULPS * eps * scale
    report.forward = ForwardCheck(
        f0,
        ref,
        abs(f0 - ref) / max(abs(ref), tiny),
        tol_abs / max(abs(ref), tiny),
        "the same network from tf.nn/tf.math primitives, float64",
    )


# --- float32 against the float64 twin --------------------------------------------------------

# The float32 gradient may differ from its float64 twin by the manual-vs-tape tolerance, or by
# this many times the difference TensorFlow's own tape shows between float32 and float64 on the
# same model: rounding the formula cannot avoid.
_TAPE_DEVIATION_FACTOR = 4.0


def float32_pass(
    report: GradientReport,
    adapter: Adapter,
    twin: Adapter,
    rtol: float,
    manual64: Dict,
    tape64: Dict,
) -> None:
    """The model's own float32 gradients against the same code in float64 (``manual64`` and
    ``tape64``, the twin's, already asked): a difference beyond what TensorFlow's tape shows is
    rounding of the hand-written formula (noted); values that overflow in float32 only fail."""
    if twin is adapter:
        return
    manual32, tape32 = adapter.manual(), tape_values(adapter)
    for entry, k in zip(report.entries, adapter.keys):
        scale = magnitude(manual64[k], tape64[k]) or 1.0
        with np.errstate(invalid="ignore"):
            diff = np.abs(manual32[k] - manual64[k])
        overflow = ~np.isfinite(manual32[k]) & np.isfinite(manual64[k])
        dev = float(np.max(np.where(np.isfinite(diff), diff, 0.0), initial=0.0)) / scale
        tape_dev = float(np.max(np.abs(tape32[k] - tape64[k]), initial=0.0)) / scale
        tol = max(rtol, _TAPE_DEVIATION_FACTOR * tape_dev) if np.isfinite(tape_dev) else rtol
        entry.comparisons.append(
            Comparison(Between.FLOAT32_FLOAT64, dev, tol, dev <= tol and not overflow.any())
        )
        if overflow.any():
            first = tuple(int(i) for i in np.argwhere(overflow)[0])
            entry.status = Status.FAIL
            entry.n_failing += int(overflow.sum())
            entry.diagnosis.append(
                Diagnosis(
                    Finding.FLOAT32_OVERFLOW,
                    f"{int(overflow.sum())} value(s) are not finite in float32 but finite in "
                    f"float64 "
                    f"(first at {first}): an overflow in the float32 backward",
                )
            )
        elif dev > tol:
            entry.add_note(
                Note(NoteCode.FLOAT32_ROUNDING, 0, {"deviation": dev, "tape_deviation": tape_dev})
            )
