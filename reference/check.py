"""check_gradients and assert_gradients_match: the three witnesses, run and judged."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from . import finite_differences as fdm
from ._adapter import Adapter, ModelError
from .compare import (LOSS_ULPS, SCALE_FLOOR, TAPE_RTOL, ElementVerdict, _candidates,
                      _fd_comparison, _ratio_text, _scale, assemble, classify, diagnose_layers,
                      diagnose_tensor, judge_elements)
from .finite_differences import NumericalGradient
from .independent import FORWARD_RTOL, describable, independent_loss
from .report import (FAIL, NOTES, PASS, Comparison, ForwardCheck, GradientMismatch,
                     GradientReport, TensorCheck)
from .tape import tape_gradients

__all__ = ["check_gradients", "assert_gradients_match", "MODES"]

MODES = ("full", "directional")
# Directional mode: elements individually differenced where manual and tape disagree, at most.
_MAX_ELEMENTS = 256
_LEAF = 16


def _rtol_for(dtype: tf.DType, rtol) -> float:
    if rtol is not None:
        if isinstance(rtol, dict):
            rtol = rtol.get(dtype.name)
        if rtol is not None:
            if not (isinstance(rtol, (int, float)) and rtol > 0):
                raise ValueError(f"rtol must be a positive number or a dict dtype -> number; "
                                 f"got {rtol!r}.")
            return float(rtol)
    if dtype.name not in TAPE_RTOL:
        raise ValueError(f"the model's dtype {dtype.name} has no tolerance; the harness checks "
                         f"{sorted(TAPE_RTOL)} models.")
    return TAPE_RTOL[dtype.name]


def _label_shape(y):
    arr = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y)
    return arr.shape


def check_gradients(model, X, y, *, mode: str = "full", rtol=None, probes: int = 3,
                    seed: int = 0, include_input: Optional[bool] = None,
                    independent: bool = True) -> GradientReport:
    """Check a model's hand-written gradients against the tape, finite differences and (for
    catalogue models) an independent forward.

    Args:
      model: any object with the model protocol (``params``, ``loss(X, y)``,
        ``gradients(X, y)``; see ``reference._adapter``).
      X, y: the batch to check on.
      mode: ``"full"`` differences every element; ``"directional"`` uses ``probes`` random
        directions per tensor and differences elements only where something disagrees.
      rtol: the manual-vs-tape tolerance, a number (for the model's own dtype) or
        ``{"float32": ..., "float64": ...}``; default ``TAPE_RTOL``.

    A float32 model with ``astype`` is judged through its float64 twin: the same code in
    float64 must match the tape and finite differences there, which is where the math is right
    or wrong. Its float32 gradients are then compared with the float64 ones: a difference larger
    than TensorFlow's own tape shows in float32 is rounding of the hand-written formula (noted),
    and values that are not finite in float32 only are an overflow (a failure).
      include_input: check ``dL/dX`` too (default: when the model has ``input_gradient``).
      independent: run the independent forward when the model can be rebuilt.

    Returns a :class:`GradientReport`; the model's parameters are left bit-identical.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer; got {probes!r}.")
    adapter = Adapter(model, X, y, include_input=include_input)
    own_rtol = _rtol_for(adapter.dtype, rtol)
    twin = adapter.twin64()
    judge_rtol = own_rtol if twin is adapter else \
        _rtol_for(twin.dtype, rtol if isinstance(rtol, dict) else None)
    report = GradientReport(mode, adapter.dtype.name, twin.dtype.name, model=_short(model))
    before = adapter.snapshot()
    try:
        _run_checks(report, adapter, twin, judge_rtol, mode, probes, seed, independent)
        if twin is not adapter:
            _float32_rounding(report, adapter, twin, own_rtol)
    except ModelError as exc:
        report.error = str(exc)
    finally:
        for var, value in zip(adapter.params, before):
            if not np.array_equal(var.numpy(), value, equal_nan=True):
                var.assign(value)
    return report


def _short(model) -> str:
    text = repr(model)
    return text if len(text) <= 300 else text[:297] + "..."


def _call(what, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _run_checks(report, adapter, twin, rtol, mode, probes, seed, independent):
    """The verdict on the twin (the model itself when it is float64 or has no astype)."""
    manual = twin.manual()
    tape = _tape_dict(twin)
    rtols = {k: rtol for k in adapter.keys}
    f0 = _call("model.loss(X, y)", twin.loss_value)
    if not np.isfinite(f0):
        raise ModelError(f"the loss is not finite at this X, y ({f0}); nothing can be checked.")
    eps = np.finfo(twin.dtype.as_numpy_dtype).eps
    largest = max(_scale(manual[k], tape[k]) for k in adapter.keys)
    floors = {k: max(SCALE_FLOOR * largest,
                     LOSS_ULPS * eps * max(abs(f0), 1.0)
                     / max(1.0, float(np.max(np.abs(twin.value(k)), initial=0.0))) / rtol)
              for k in adapter.keys}
    shape = _label_shape(adapter.y)
    n_rows, n_out = int(np.shape(adapter.X)[0]), (int(shape[1]) if len(shape) == 2 else None)
    if n_out is None and hasattr(adapter.model, "layer_sizes"):
        n_out = int(adapter.model.layer_sizes[-1])

    if mode == "full":
        stencils = _call("model.loss during finite differences", fdm.coordinate_stencils,
                         twin, adapter.keys, f0)
        sigma = fdm.pooled_noise(list(stencils.values()), f0, eps)
        judged = {}
        for k in adapter.keys:
            fd = fdm.analyse(adapter.name(k), stencils[k], sigma).reshaped(adapter.shape(k))
            v, comparisons = judge_elements(manual[k], tape[k], rtols[k], fd, floors[k])
            judged[k] = (v, comparisons, fd, None)
        _excuse_rounding(twin, judged, manual, tape, seed)
        for k in adapter.keys:
            v, comparisons, fd, kinks = judged[k]
            check = assemble(adapter.name(k), manual[k], tape[k], rtols[k], v, comparisons, fd,
                             kinks, floors[k])
            _diagnose(check, manual[k], tape[k], fd, rtols[k], n_rows, n_out)
            report.entries.append(check)
    else:
        rng = np.random.default_rng(seed)
        dirs = {k: fdm.probe_directions(adapter.shape(k), probes, rng) for k in adapter.keys}
        stencils = {k: _call("model.loss during finite differences", fdm.directional_stencil,
                             twin, k, f0, dirs[k]) for k in adapter.keys}
        sigma = fdm.pooled_noise(list(stencils.values()), f0, eps)
        judged = {}
        for k in adapter.keys:
            fd_probe = fdm.analyse(adapter.name(k), stencils[k], sigma)
            judged[k] = _directional_check(twin, k, adapter.name(k), manual[k], tape[k],
                                           rtols[k], dirs[k], fd_probe, f0, sigma, rng,
                                           floors[k])
        _excuse_rounding(twin, judged, manual, tape, seed)
        for k in adapter.keys:
            v, comparisons, fd_elem, kinks, probe_notes = judged[k]
            check = assemble(adapter.name(k), manual[k], tape[k], rtols[k], v, comparisons,
                             fd_elem, kinks, floors[k])
            if probe_notes and check.status != FAIL:
                check.notes.append(probe_notes)
                if check.status == PASS:
                    check.status = NOTES
            _diagnose(check, manual[k], tape[k], fd_elem, rtols[k], n_rows, n_out)
            report.entries.append(check)

    report.diagnosis.extend(diagnose_layers(report.entries))
    if independent:
        report.forward = _forward_check(adapter, twin, f0)
        if report.forward is not None:
            report.diagnosis.extend(_diagnose_forward(report.forward, n_rows, n_out))


def _tape_dict(adapter: Adapter) -> Dict:
    grads = _call("tf.GradientTape over model.loss(X, y)", tape_gradients, adapter.model,
                  adapter.X, adapter.y, include_input=adapter.include_input)
    return {k: np.asarray(g.numpy(), dtype=np.float64) for k, g in zip(adapter.keys, grads)}


def _float32_rounding(report, adapter, twin, rtol):
    """The model's own float32 gradients against the same code in float64 (see
    ``check_gradients``): rounding is noted, overflow fails."""
    manual32, manual64 = adapter.manual(), twin.manual()
    tape32, tape64 = _tape_dict(adapter), _tape_dict(twin)
    for entry, k in zip(report.entries, adapter.keys):
        scale = _scale(manual64[k], tape64[k]) or 1.0
        with np.errstate(invalid="ignore"):
            diff = np.abs(manual32[k] - manual64[k])
        overflow = ~np.isfinite(manual32[k]) & np.isfinite(manual64[k])
        dev = float(np.max(np.where(np.isfinite(diff), diff, 0.0), initial=0.0)) / scale
        tape_dev = float(np.max(np.abs(tape32[k] - tape64[k]), initial=0.0)) / scale
        tol = max(rtol, 4.0 * tape_dev) if np.isfinite(tape_dev) else rtol
        entry.comparisons.append(Comparison("float32 vs float64", dev, tol,
                                            dev <= tol and not overflow.any()))
        if overflow.any():
            first = tuple(int(i) for i in np.argwhere(overflow)[0])
            entry.status = FAIL
            entry.n_failing += int(overflow.sum())
            entry.diagnosis.append(f"{int(overflow.sum())} value(s) are not finite in float32 but "
                                   f"finite in float64 (first at {first}): an overflow in the "
                                   f"float32 backward")
        elif dev > tol:
            entry.notes.append(f"float32 rounding: the hand-written gradient in float32 is "
                               f"{dev:.2g} (of the tensor's largest gradient) from the same code "
                               f"in float64, TensorFlow's tape {tape_dev:.2g}; the math is right "
                               f"in float64, the formula loses precision in float32")
            if entry.status == PASS:
                entry.status = NOTES


def _directional_check(twin, key, name, m, t, rtol, dirs, fd_probe, f0, sigma, rng, floor):
    """Tape elementwise, FD along the probes, and FD element by element wherever the manual
    value disagrees with the tape or a probe disagrees (found by bisection)."""
    scale = max(_scale(m, t), floor)
    tape_tol = rtol * scale
    flat_m, flat_t = m.reshape(-1), t.reshape(-1)
    mp, tp = dirs @ flat_m, dirs @ flat_t
    slack = tape_tol * np.sum(np.abs(dirs), axis=1)
    vp = classify(mp, tp, slack, fd_probe, slack)
    comparisons = [_fd_comparison("manual vs FD", mp, fd_probe, vp.fd_ok_manual, slack,
                                  scale * float(np.max(np.sum(np.abs(dirs), axis=1)))),
                   _fd_comparison("tape vs FD", tp, fd_probe, vp.fd_ok_tape, slack,
                                  scale * float(np.max(np.sum(np.abs(dirs), axis=1))))]

    with np.errstate(invalid="ignore"):
        off_tape = ~(np.isfinite(flat_m) & (np.abs(flat_m - flat_t) <= tape_tol))
    order = np.argsort(-np.where(off_tape, np.nan_to_num(np.abs(flat_m - flat_t), nan=np.inf),
                                 -1.0), kind="stable")
    chosen = order[:min(int(off_tape.sum()), _MAX_ELEMENTS)]
    if not np.all(vp.fd_ok_manual):
        chosen = np.union1d(chosen, _bisect(twin, key, m, f0, sigma, rng, tape_tol))
    chosen = np.asarray(chosen, dtype=np.int64)

    fd_elem = _empty_fd(name, m.shape, sigma)
    fail = np.zeros(m.size, bool)
    none = np.zeros(m.size, bool)
    kink_used, unjudged, unfaithful, unresolved = none.copy(), none.copy(), none.copy(), none.copy()
    undecided = none.copy()
    tape_ok = ~off_tape
    if chosen.size:
        st = fdm.coordinate_stencil(twin, key, f0, chosen)
        sub = fdm.analyse(name, st, sigma)
        vs = classify(flat_m[chosen], flat_t[chosen], tape_tol, sub)
        fail[chosen], kink_used[chosen], unjudged[chosen] = vs.fail, vs.kink_used, vs.kink_unjudged
        undecided[chosen] = vs.undecided
        unfaithful[chosen], unresolved[chosen] = vs.tape_unfaithful, vs.fd_unresolved
        for field in ("value", "error", "kink", "lower", "upper", "kink_error", "step"):
            getattr(fd_elem, field).reshape(-1)[chosen] = getattr(sub, field)
    unchecked = off_tape.copy()
    unchecked[chosen] = False
    if np.any(unchecked):
        # Too many to difference one by one: they stand or fall with the ones that were, and
        # with the probes (which see every element).
        if np.any(fail) or not np.all(vp.fd_ok_manual) or np.all(vp.fd_ok_tape):
            fail |= unchecked
        else:
            unfaithful |= unchecked
    v = ElementVerdict(fail.reshape(m.shape), kink_used.reshape(m.shape), unjudged.reshape(m.shape),
                       unfaithful.reshape(m.shape), unresolved.reshape(m.shape),
                       tape_ok.reshape(m.shape), None, None, undecided.reshape(m.shape))
    kinks = int(np.count_nonzero(fd_elem.kink)) + fd_probe.n_kinks
    probe_notes = None
    if not np.all(vp.fd_ok_manual):
        probe_notes = (f"{int((~vp.fd_ok_manual).sum())} of {len(mp)} probe(s) disagree with "
                       f"finite differences along the manual gradient")
    return v, comparisons, fd_elem, kinks, probe_notes


# The rounding test: the weights move by this relative amount, a few times.
_NUDGE = 2.0 ** -20
_NUDGES = 4
_ERRATIC = 0.25


def _excuse_rounding(twin: Adapter, judged: Dict, manual: Dict, tape: Dict, seed: int) -> None:
    """Decide the undecided elements (FD accepts manual and tape; only the tape separates them).

    A bug is systematic: moving every weight by a relative 1e-6 moves the manual-minus-tape
    difference by about 1e-6 of itself. Rounding amplified by cancellation (elu's a + alpha deep
    in saturation) depends on the low bits of the values and changes erratically. Where the
    difference changes by at least a quarter of itself under one of a few such nudges (a bug
    would need to be 250000 times less smooth than the loss), the elements are excused as
    rounding (and noted); otherwise they fail as before.
    """
    suspects = {k: entry[0].undecided for k, entry in judged.items()
                if entry[0].undecided is not None and np.any(entry[0].undecided)}
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
            m, t = twin.manual(), _tape_dict(twin)
            for k, mask in suspects.items():
                dk = (m[k] - t[k])[mask]
                moved = float(np.sum(np.abs(dk - d0[k])) / max(np.sum(np.abs(d0[k])), 1e-300))
                change[k] = max(change[k], moved)
    finally:
        for var, value in zip(twin.params, original):
            var.assign(value)
    for k, mask in suspects.items():
        if change[k] >= _ERRATIC:
            judged[k][0].excuse_rounding(mask)


def _empty_fd(name, shape, sigma) -> NumericalGradient:
    nan = np.full(shape, np.nan)
    return NumericalGradient(name, nan.copy(), nan.copy(), np.zeros(shape, bool), nan.copy(),
                             nan.copy(), nan.copy(), nan.copy(), sigma)


def _bisect(twin, key, m, f0, sigma, rng, tape_tol):
    """Indices of small blocks whose restricted probe still disagrees with the manual gradient."""
    flat_m = m.reshape(-1)
    pending, leaves = [np.arange(flat_m.size)], []
    while pending and len(leaves) < _MAX_ELEMENTS:
        idx = pending.pop()
        if idx.size <= _LEAF:
            leaves.extend(idx.tolist())
            continue
        for half in np.array_split(idx, 2):
            mask = np.zeros(flat_m.size)
            mask[half] = 1.0
            d = fdm.probe_directions(m.shape, 1, rng, mask)
            g = fdm.analyse("", fdm.directional_stencil(twin, key, f0, d), sigma)
            proj = d @ flat_m
            if not np.all(g.accepts(proj, tape_tol * np.sum(np.abs(d), axis=1))):
                pending.append(half)
    return np.asarray(leaves, dtype=np.int64)


def _diagnose(check: TensorCheck, m, t, fd, rtol, n_rows, n_out):
    if check.status != FAIL:
        return
    truth = t
    if any("tape" in n and "disagrees" in n for n in check.notes) and fd is not None \
            and np.all(np.isfinite(fd.value)):
        truth = fd.value
    check.diagnosis.extend(diagnose_tensor(m, truth, rtol, n_rows=n_rows, n_out=n_out))


def _forward_check(adapter: Adapter, twin: Adapter, f0: float) -> Optional[ForwardCheck]:
    why_not = describable(adapter.model)
    if why_not is not None:
        return None
    try:
        ref, scale = independent_loss(twin.model, adapter.X, adapter.y)
    except Exception as exc:  # a model that describes itself wrongly is the model's problem
        raise ModelError(f"rebuilding the model from primitives failed: {type(exc).__name__}: "
                         f"{exc}") from exc
    eps = np.finfo(np.float64).eps
    tol_abs = FORWARD_RTOL * abs(ref) + 64 * eps * scale
    rel = abs(f0 - ref) / max(abs(ref), np.finfo(float).tiny)
    tol_rel = tol_abs / max(abs(ref), np.finfo(float).tiny)
    return ForwardCheck(f0, ref, rel, tol_rel, "the same network from tf.nn/tf.math primitives, "
                        "float64")


def _diagnose_forward(check: ForwardCheck, n_rows, n_out) -> List[str]:
    if check.ok:
        return []
    out = [f"the model's loss ({check.model_loss:.10g}) is not the loss it claims to be "
           f"({check.independent_loss:.10g} from primitives): a bug in the forward, which the "
           f"backward mirrors if the tape and finite differences agree with it"]
    if check.independent_loss != 0:
        ratio = check.model_loss / check.independent_loss
        for value, label in _candidates(n_rows, n_out):
            if abs(ratio - value) <= 1e-6 * abs(value):
                out.append(f"model loss = {_ratio_text(ratio)} x the true loss: {label}")
                break
    return out


def assert_gradients_match(model, X, y, **kwargs) -> GradientReport:
    """``check_gradients`` that raises :class:`GradientMismatch` (an AssertionError carrying the
    table) unless the verdict is a pass; returns the report when it is."""
    report = check_gradients(model, X, y, **kwargs)
    if not report.ok:
        raise GradientMismatch(report)
    return report

