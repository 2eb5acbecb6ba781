"""check_gradients and assert_gradients_match: the evidence gathered, judged, and passed over.

The pipeline: the model's gradients and the tape's; a mode (full or directional) gathers the
finite-difference evidence; the policy judges each element; the rounding pass decides what only
the tape could separate; the policy assembles each tensor's verdict; then the independent
forward, the diagnosis and the float32 comparison each run as a pass of their own.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .._core import validate
from .._core.adapter import Adapter, ModelError, guarded
from .._core.policy import LOSS_ULPS, SCALE_FLOOR, TAPE_RTOL, assemble, classify, magnitude
from .._core.report import GradientMismatch, GradientReport
from .._core.tape import tape_values
from .diagnosis import diagnosis_pass, problem_sizes
from .modes import DirectionalMode, FullMode, Gathered
from .passes import float32_pass, forward_pass, rounding_pass

__all__ = ["check_gradients", "assert_gradients_match", "MODES"]

MODES = ("full", "directional")
# The longest model repr a report carries.
_MAX_REPR = 300


def _rtol_for(dtype_name: str, rtol) -> float:
    """The tolerance for a model of ``dtype_name``: ``rtol`` (a number for the model's own dtype,
    or a dict dtype name -> number), else ``TAPE_RTOL``."""
    if isinstance(rtol, dict):
        unknown = set(rtol) - set(TAPE_RTOL)
        if unknown:
            raise ValueError(
                f"rtol's keys must be dtype names from {sorted(TAPE_RTOL)}; got "
                f"{sorted(map(repr, unknown))}."
            )
        for key, value in rtol.items():
            validate.rtol(value, f"rtol[{key!r}]")
        rtol = rtol.get(dtype_name)
    if rtol is not None:
        return validate.rtol(rtol)
    if dtype_name not in TAPE_RTOL:
        raise ValueError(
            f"the model's dtype {dtype_name} has no tolerance; the harness checks "
            f"{sorted(TAPE_RTOL)} models."
        )
    return TAPE_RTOL[dtype_name]


def check_gradients(
    model,
    X,
    y,
    *,
    mode: str = "full",
    rtol=None,
    probes: int = 3,
    seed: int = 0,
    include_input: Optional[bool] = None,
    independent: bool = True,
) -> GradientReport:
    """Check a model's hand-written gradients against the tape, finite differences and (for
    catalogue models) an independent forward.

    Args:
      model: any object with the model protocol (``params``, ``loss(X, y)``,
        ``gradients(X, y)``; see :class:`reference.GradientModel`).
      X, y: the batch to check on.
      mode: ``"full"`` differences every element; ``"directional"`` uses ``probes`` random
        directions per tensor and differences elements only where something disagrees.
      rtol: the manual-vs-tape tolerance, a positive number (for the model's own dtype) or
        ``{"float32": ..., "float64": ...}``; default ``TAPE_RTOL``.
      probes: random directions per tensor in directional mode (an integer >= 1).
      seed: seeds the probes and the rounding test (an integer >= 0).
      include_input: check ``dL/dX`` too (default: when the model has ``input_gradient``).
      independent: run the independent forward when the model can be rebuilt.

    A float32 model with ``astype`` is judged through its float64 twin: the same code in
    float64 must match the tape and finite differences there, which is where the math is right
    or wrong. Its float32 gradients are then compared with the float64 ones: a difference larger
    than TensorFlow's own tape shows in float32 is rounding of the hand-written formula (noted),
    and values that are not finite in float32 only are an overflow (a failure).

    Returns a :class:`GradientReport`; the model's parameters are left bit-identical.
    """
    mode = validate.choice(mode, MODES, "mode")
    probes = validate.probes(probes)
    seed = validate.seed(seed)
    adapter = Adapter(model, X, y, include_input=include_input)
    own_rtol = _rtol_for(adapter.dtype.name, rtol)
    twin = adapter.twin64()
    judge_rtol = (
        own_rtol
        if twin is adapter
        else _rtol_for(twin.dtype.name, rtol if isinstance(rtol, dict) else None)
    )
    gatherer = FullMode() if mode == "full" else DirectionalMode(probes, seed)
    report = GradientReport(mode, adapter.dtype.name, twin.dtype.name, model=_short(model))
    before = adapter.snapshot()
    try:
        gathered = _pipeline(report, adapter, twin, gatherer, judge_rtol, seed, independent)
        float32_pass(report, adapter, twin, own_rtol, gathered.manual, gathered.tape)
    except ModelError as exc:
        report.error = str(exc)
    finally:
        adapter.restore(before)
    return report


def _pipeline(report, adapter, twin, gatherer, rtol, seed, independent):
    """The verdict on the twin (the model itself when it is float64 or has no astype); returns
    what the witnesses said, for the float32 pass."""
    gathered = _ask_the_witnesses(adapter, twin, rtol)
    evidence = gatherer.gather(gathered)
    verdicts = {k: classify(evidence[k]) for k in adapter.keys}
    rounding_pass(twin, verdicts, gathered.manual, gathered.tape, seed)
    report.entries.extend(assemble(evidence[k], verdicts[k]) for k in adapter.keys)
    if independent:
        forward_pass(report, adapter, twin, gathered.f0)
    diagnosis_pass(report, evidence, adapter.keys, problem_sizes(adapter))
    return gathered


def _ask_the_witnesses(adapter: Adapter, twin: Adapter, rtol: float) -> Gathered:
    """The manual and tape gradients, the loss, and the scale each tensor is judged on."""
    manual = twin.manual()
    tape = tape_values(twin)
    f0 = guarded("model.loss(X, y)", twin.loss_value)
    if not np.isfinite(f0):
        raise ModelError(f"the loss is not finite at this X, y ({f0}); nothing can be checked.")
    return Gathered(
        twin,
        list(adapter.keys),
        f0,
        manual,
        tape,
        rtol,
        _floors(twin, adapter.keys, manual, tape, f0, rtol),
    )


def _floors(twin: Adapter, keys, manual: Dict, tape: Dict, f0: float, rtol: float) -> Dict:
    """The least scale each tensor is judged on (see ``SCALE_FLOOR`` and ``LOSS_ULPS``)."""
    largest = max(magnitude(manual[k], tape[k]) for k in keys)
    resolution = LOSS_ULPS * twin.eps * max(abs(f0), 1.0) / rtol
    return {
        k: max(
            SCALE_FLOOR * largest,
            resolution / max(1.0, float(np.max(np.abs(twin.value(k)), initial=0.0))),
        )
        for k in keys
    }


def _short(model) -> str:
    text = repr(model)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def assert_gradients_match(model, X, y, **kwargs) -> GradientReport:
    """``check_gradients`` that raises :class:`GradientMismatch` (an AssertionError carrying the
    table) unless the verdict is a pass; returns the report when it is."""
    report = check_gradients(model, X, y, **kwargs)
    if not report.ok:
        raise GradientMismatch(report)
    return report
