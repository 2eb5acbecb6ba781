"""check_function's diagnosis: the patterns of a wrong derivative (a constant factor, the
diagonal of the Jacobian only, a gradient that ignores dy, swapped inputs, which input is
wrong), named from the evidence of each entry and across the inputs."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .._core.codes import Diagnosis, Finding, Status
from .._core.policy import TensorEvidence, magnitude
from .._core.report import TensorCheck
from .diagnosis import Sizes, diagnose_tensor

__all__ = ["diagnose"]


_PATTERN = 100  # as in the diagnosis pass: a pattern explains the values to 100x the tolerance


def diagnose(check) -> None:
    report, p = check.report, check.p
    for e, entry in zip(check.entries, report.entries):
        if entry.status != Status.FAIL:
            continue
        ev = e.evidence
        truth = _truth(ev, entry)
        if e.kind == "order2" and e.input_index in getattr(check, "lost", set()):
            entry.diagnosis.append(
                Diagnosis(
                    Finding.NOT_DIFFERENTIABLE,
                    f"TensorFlow cannot differentiate the first-order gradient with respect to "
                    f"{p.names[e.input_index]} (the tape returned None): it is computed outside "
                    f"TensorFlow (NumPy, .numpy()) or behind tf.stop_gradient",
                )
            )
            continue
        if truth is None:  # finite differences of some elements only (directional mode)
            truth = np.where(ev.fd.measured, ev.fd.value, np.nan)
        if np.any(e.probe_fail) and not np.any(entry.elements.fail):
            entry.diagnosis.append(_joint_diagnosis())
            continue
        entry.diagnosis.extend(_entry_diagnosis(e, truth, check.rtol))
    report.diagnosis.extend(_across_inputs(check))


def _truth(ev: TensorEvidence, entry: TensorCheck) -> Optional[np.ndarray]:
    """The tape, or finite differences where every element was differenced and the tape is
    absent or found unfaithful."""
    fd = ev.fd
    fd_whole = fd is not None and np.all(fd.measured) and np.all(np.isfinite(fd.value))
    if ev.tape is not None and not (fd_whole and np.any(entry.elements.tape_unfaithful)):
        return ev.tape
    return fd.value if fd_whole else None


def _joint_diagnosis() -> Diagnosis:
    return Diagnosis(
        Finding.JOINT_DIRECTIONS,
        "every element passes on its own, but the gradient is wrong along joint directions: at "
        "a tie or kink, a derivative given in full to several elements at once is no "
        "subgradient (give it to one of them, or split it)",
    )


def _entry_diagnosis(e, truth: np.ndarray, rtol: float) -> List[Diagnosis]:
    m = e.manual
    known = np.isfinite(truth)
    scale = float(np.max(np.abs(truth[known]), initial=0.0))
    tight = max(_PATTERN * rtol, 1e-7) * max(scale, float(np.max(np.abs(m), initial=0.0)))
    out = []
    if e.kind in ("vjp", "order2") and m.shape[0] > 1 and scale > 0 and np.any(m):
        same = np.max(np.abs(m - m[:1])) <= tight
        # Elements known for two cotangents at least, compared across them.
        both = known & known[:1]
        differs = np.max(np.abs(np.where(both, truth - truth[:1], 0.0))) > 10 * tight
        if same and differs:
            return [
                Diagnosis(
                    Finding.IGNORES_UPSTREAM,
                    "the gradient is the same for every cotangent: it ignores the upstream "
                    "gradient dy (a custom gradient must multiply by dy)",
                )
            ]
    if e.kind == "jacobian":
        n = int(np.prod(m.shape[: m.ndim // 2], dtype=np.int64)) if m.ndim % 2 == 0 else 0
        if n and m.size == n * n and m.shape[: m.ndim // 2] == m.shape[m.ndim // 2 :]:
            J, T = m.reshape(n, n), truth.reshape(n, n)
            if np.max(np.abs(J - np.diag(np.diag(T)))) <= tight and np.any(T - np.diag(np.diag(T))):
                return [
                    Diagnosis(
                        Finding.DIAGONAL_ONLY,
                        "the manual Jacobian is the diagonal of the true one only: each output's "
                        "derivative with respect to its own input is right, the cross terms (such "
                        "as softmax's -s_i s_j) are missing",
                    )
                ]
    if not np.all(known):
        return out
    wrong_rows = (
        [k for k in range(m.shape[0]) if np.any(np.abs(m[k] - truth[k]) > tight)]
        if e.kind in ("vjp", "jvp", "order2")
        else []
    )
    if wrong_rows:
        k = wrong_rows[0]
        sizes = _sizes(m[k].shape)
        out.extend(diagnose_tensor(m[k], truth[k], rtol, sizes=sizes))
    elif e.kind == "jacobian":
        out.extend(diagnose_tensor(m, truth, rtol))
    return out


def _sizes(shape) -> Sizes:
    if len(shape) >= 2:
        return Sizes(int(shape[0]), int(shape[-1]), "the first axis")
    return Sizes(int(shape[0]) if shape else None, None, "the length")


def _across_inputs(check) -> List[Diagnosis]:
    """Which inputs' gradients are wrong, and a swapped pair."""
    p = check.p
    out = []
    failing = {}
    for e, entry in zip(check.entries, check.report.entries):
        if e.kind == "vjp":
            failing[e.input_index] = (e, entry.status == Status.FAIL, entry)
    if len(failing) > 1:
        bad = [p.names[a] for a, (_, f, _) in failing.items() if f]
        good = [p.names[a] for a, (_, f, _) in failing.items() if not f]
        if bad and good:
            out.append(
                Diagnosis(
                    Finding.WHICH_INPUT,
                    f"only the gradient with respect to {', '.join(bad)} is wrong "
                    f"({', '.join(good)}: right)",
                )
            )
        for i in range(len(bad)):
            for j in range(i + 1, len(bad)):
                a, b = p.names.index(bad[i]), p.names.index(bad[j])
                ea, eb = failing[a][0], failing[b][0]
                ta = _truth(ea.evidence, failing[a][2])
                tb = _truth(eb.evidence, failing[b][2])
                if ta is None or tb is None or ea.manual.shape != eb.manual.shape:
                    continue
                tight = max(_PATTERN * check.rtol, 1e-7) * max(magnitude(ta, tb), 1e-300)
                if (
                    np.max(np.abs(ea.manual - tb)) <= tight
                    and np.max(np.abs(eb.manual - ta)) <= tight
                ):
                    out.append(
                        Diagnosis(
                            Finding.SWAPPED,
                            f"the gradients of {bad[i]} and {bad[j]} are swapped: each is the "
                            f"other's",
                        )
                    )
    return out
