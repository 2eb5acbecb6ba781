"""The passes of ``check_gradients`` that compare the model with another computation of
itself: its loss against the same network rebuilt from primitives (``forward_pass``), and a
float32 model's own gradients against its float64 twin (``float32_pass``)."""

from __future__ import annotations

import numpy as np

from .._core.adapter import Adapter, ModelError
from .._core.codes import Between, Diagnosis, Finding, Note, NoteCode, Status
from .._core.report import Comparison, ForwardCheck, GradientReport
from .trust import TAPE_DEVIATION_FACTOR, TwinAgreement

__all__ = ["forward_pass", "float32_pass", "FORWARD_RTOL"]


# --- the independent forward -----------------------------------------------------------------

# The model's loss (float64, or float32 for a model judged as it is) must match the rebuilt one
# (float64) to this relative tolerance, plus _FORWARD_ULPS ulps (of the model's dtype) of the
# values it is computed from: two forwards written differently agree to a few ulps of their
# largest intermediate, far inside both; a forward bug (a missing mean, a wrong constant) is off
# by far more.
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
    eps = twin.eps  # the loss compared is the twin's: float32 when the model is judged as it is
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


def float32_pass(report: GradientReport, keys, agreement: TwinAgreement) -> None:
    """The model's own float32 gradients against its float64 twin, which was accepted as the
    same code (``twin_agreement``): values that overflow in float32 only fail; a difference
    beyond what TensorFlow's own tape shows in float32, within the rounding the values can
    carry, is the formula's rounding (noted)."""
    for entry, k in zip(report.entries, keys):
        scale = agreement.scale[k] or 1.0
        dev = agreement.deviation[k] / scale
        tol = max(agreement.rtol, TAPE_DEVIATION_FACTOR * agreement.tape_deviation[k] / scale)
        overflow = agreement.overflow[k]
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
                    f"float64 (first at {first}): an overflow in the float32 backward",
                )
            )
        elif dev > tol:
            entry.add_note(
                Note(
                    NoteCode.FLOAT32_ROUNDING,
                    0,
                    {"deviation": dev, "tape_deviation": agreement.tape_deviation[k] / scale},
                )
            )
