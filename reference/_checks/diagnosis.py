"""The diagnosis pass: recognisable patterns of a wrong gradient, from the data alone.

Per failing tensor: non-finite values, all zeros, a constant factor (a missing 1/N, a factor of
2, a sign), a transpose, a few wrong elements. Across the tensors named like ``W1, b1, ...``:
the layer where the error starts, or one kind of tensor only. And for the loss itself: a
forward that is not the loss it claims to be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

import numpy as np

from .._core.adapter import INPUT_NAME, Adapter
from .._core.report import Diagnosis, Finding, ForwardCheck, GradientReport, Status, TensorCheck

__all__ = [
    "diagnosis_pass",
    "diagnose_tensor",
    "diagnose_layers",
    "diagnose_forward",
    "candidates",
    "problem_sizes",
    "Sizes",
]

# A pattern (a constant factor, a transpose) is recognised when it explains the manual gradient
# to this many times the tape tolerance, and to no less than 1e-7 of the scale: far looser than
# rounding, far tighter than any coincidence over a tensor of random values.
_PATTERN_TOLERANCES = 100
_PATTERN_FLOOR = 1e-7
# A ratio is a factor worth naming only when it is this many pattern tolerances away from 1, and
# it is that named factor when it is within as many of it.
_FACTOR_MARGIN = 10
# "Only a few elements are wrong": at most 1 in 20 of them (5%), or a single one.
_FEW_ELEMENTS = 20
# ... of which the diagnosis lists this many indices.
_LISTED = 5
# The forward's loss ratio is a named factor when within this relative distance of it.
_FORWARD_RATIO_RTOL = 1e-6
# Ratios print as fractions with denominators up to this (1/2, 1/3, 2/3, ...) when the fraction
# is within this relative distance of the ratio.
_MAX_DENOMINATOR = 1000
_FRACTION_RTOL = 1e-6


def diagnosis_pass(
    report: GradientReport, evidence: dict, keys, sizes: "Sizes", values: Optional[dict] = None
) -> None:
    """Diagnose every failing tensor against its truth (the tape, or finite differences where
    the tape was found unfaithful or cannot witness), then the layers, then the forward.
    ``values`` are the parameters' own values, by key (a penalty term's gradient is a multiple
    of them)."""
    for entry, key in zip(report.entries, keys):
        if entry.status != Status.FAIL:
            continue
        ev = evidence[key]
        truth = ev.tape
        fd = ev.fd
        if (
            (truth is None or np.any(entry.elements.tape_unfaithful))
            and fd is not None
            and np.all(fd.measured)
            and np.all(np.isfinite(fd.value))
        ):
            truth = fd.value
        if truth is None:
            continue
        if ev.tape is None and (np.any(fd.kink) or _fd_rtol(ev) > _FD_TRUTH_RTOL):
            continue  # finite differences too coarse (or kinked) to name a pattern by
        entry.diagnosis.extend(
            diagnose_tensor(
                ev.manual,
                truth,
                ev.rtol if ev.tape is not None else max(ev.rtol, _fd_rtol(ev)),
                sizes=sizes,
                wrong=entry.elements.fail,
                value=None if values is None else values.get(key),
            )
        )
    report.diagnosis.extend(diagnose_layers(report.entries))
    if report.forward is not None:
        report.diagnosis.extend(diagnose_forward(report.forward, sizes))


# Finite differences serve as the truth a pattern is named against only where they resolve
# every element of the tensor to this fraction of its scale (float64 reaches about 1e-9).
_FD_TRUTH_RTOL = 1e-6


def _fd_rtol(ev) -> float:
    """Finite differences' own resolution of a tensor (its largest error estimate over its
    scale): what a pattern must explain the manual gradient to when they are the truth."""
    scale = ev.scale if ev.scale > 0 else 1.0
    return float(np.max(ev.fd.error, initial=0.0)) / scale


@dataclass(frozen=True)
class Sizes:
    """The batch size N and the output width D the constant factors are named with, and how N
    was found (declared by the model, or inferred from the shapes of X and y)."""

    n_rows: Optional[int]
    n_out: Optional[int]
    how: str = ""


_NO_SIZES = Sizes(None, None)


def candidates(sizes: Sizes):
    """Named constant factors a wrong backward pass commonly introduces."""
    n_rows, n_out = sizes.n_rows, sizes.n_out
    how = f" ({sizes.how})" if sizes.how else ""
    named = [
        (2.0, "a factor of 2"),
        (0.5, "a factor of 1/2"),
        (-1.0, "the sign flipped (-1)"),
        (-2.0, "a factor of -2"),
        (-0.5, "a factor of -1/2"),
        (4.0, "a factor of 4"),
        (0.25, "a factor of 1/4"),
    ]
    if n_rows and n_rows > 1:
        named += [
            (float(n_rows), f"the batch size N = {n_rows}{how}: a missing 1/N"),
            (1.0 / n_rows, f"1/N = 1/{n_rows}{how}: an extra division by the batch size"),
        ]
    if n_out and n_out > 1:
        named += [
            (float(n_out), f"the output width D = {n_out}: a missing 1/D"),
            (1.0 / n_out, f"1/D = 1/{n_out}: an extra division by the output width"),
        ]
    if n_rows and n_out and n_rows > 1 and n_out > 1:
        named += [
            (float(n_rows * n_out), f"N*D = {n_rows * n_out}: a missing 1/(N*D)"),
            (1.0 / (n_rows * n_out), f"1/(N*D) = 1/{n_rows * n_out}"),
        ]
    return named


def diagnose_tensor(
    m: np.ndarray,
    truth: np.ndarray,
    rtol: float,
    *,
    sizes: Sizes = _NO_SIZES,
    wrong: Optional[np.ndarray] = None,
    value: Optional[np.ndarray] = None,
) -> List[Diagnosis]:
    """Recognisable patterns of a wrong gradient against the truth (tape or FD); ``wrong`` is
    the verdict's mask of failing elements (counted as they are in the report); ``value`` the
    parameter's own values, when the tensor is one."""
    bad = ~np.isfinite(m)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        text = (
            f"{int(bad.sum())} non-finite value(s) in the manual gradient (first at "
            f"{first}): an overflow, a log or division at 0, or 0 * inf"
        )
        return [Diagnosis(Finding.NON_FINITE, text)]
    scale = np.max(np.abs(truth)) if truth.size else 0.0
    if scale == 0:
        return []
    if not np.any(m):
        text = "the manual gradient is all zeros where the truth is not"
        return [Diagnosis(Finding.ALL_ZEROS, text)]
    tight = max(_PATTERN_TOLERANCES * rtol, _PATTERN_FLOOR)
    factor = _constant_factor(m, truth, scale, tight, sizes)
    if factor is not None:
        return [factor]
    penalty = _penalty_term(m, truth, value, scale, tight)
    if penalty is not None:
        return [penalty]
    square = m.ndim == 2 and m.shape[0] == m.shape[1] and m.shape[0] > 1
    if square and np.max(np.abs(m - truth.T)) <= tight * scale:
        text = (
            "manual matches the transpose of the true gradient: a W used where W^T belongs "
            "(or the reverse)"
        )
        return [Diagnosis(Finding.TRANSPOSE, text)]
    if wrong is None:
        wrong = np.abs(m - truth) > tight * scale
    count = int(np.count_nonzero(wrong))
    if m.size > 1 and 0 < count <= max(1, m.size // _FEW_ELEMENTS):
        where = [tuple(int(i) for i in ix) for ix in np.argwhere(wrong)[:_LISTED]]
        more = f" and {count - _LISTED} more" if count > _LISTED else ""
        text = f"only {count} of {m.size} elements are wrong, at {where}{more}"
        return [Diagnosis(Finding.FEW_ELEMENTS, text)]
    return []


def _constant_factor(m, truth, scale, tight, sizes: Sizes) -> Optional[Diagnosis]:
    """manual = c x truth for a constant c other than 1, named when it is a common one."""
    ratio = float(np.sum(m * truth) / np.sum(truth * truth))
    fits = np.max(np.abs(m - ratio * truth)) <= tight * max(scale, np.max(np.abs(m)))
    if not fits or abs(ratio - 1.0) <= _FACTOR_MARGIN * tight:
        return None
    for value, label in candidates(sizes):
        if abs(ratio - value) <= _FACTOR_MARGIN * tight * abs(value):
            return Diagnosis(
                Finding.CONSTANT_FACTOR, f"manual = {ratio_text(ratio)} x truth: {label}"
            )
    return Diagnosis(
        Finding.CONSTANT_FACTOR,
        f"manual = {ratio_text(ratio)} x truth everywhere: a constant factor",
    )


def _penalty_term(m, truth, value, scale, tight) -> Optional[Diagnosis]:
    """manual - truth = c x W: the gradient of a penalty on the weights (L2's 2 * reg * W)
    given the wrong factor, or left out (c = -2 reg), or added where it does not belong."""
    if value is None or np.shape(value) != m.shape or m.size < 2:
        return None
    w = np.asarray(value, np.float64)
    norm = float(np.sum(w * w))
    if norm == 0:
        return None
    diff = m - truth
    c = float(np.sum(diff * w) / norm)
    if np.max(np.abs(diff - c * w)) > tight * scale or np.max(np.abs(c * w)) <= tight * scale:
        return None
    return Diagnosis(
        Finding.PENALTY_TERM,
        f"manual - truth = {c:.6g} x the parameter itself: a penalty term's gradient is off "
        f"(L2's reg * sum(W^2) has the gradient 2 * reg * W; it is missing, halved, or added "
        f"to a tensor it does not penalise)",
    )


def ratio_text(r: float) -> str:
    frac = Fraction(r).limit_denominator(_MAX_DENOMINATOR)
    if frac.denominator != 1 and abs(float(frac) - r) <= _FRACTION_RTOL * abs(r):
        return f"{frac.numerator}/{frac.denominator}"
    return f"{r:.6g}"


_LAYER = re.compile(r"^(.*?)(\d+)$")
_KIND_HINTS = {
    "b": "db = the sum of dz over the examples (not a mean, not one example)",
    "W": "dW = a_prev^T @ dz, with the previous layer's output",
}
# The names the harness gives tensors of a model without param_names: no layer structure.
_DEFAULT_NAME = re.compile(r"^param\d+$")


def diagnose_layers(checks: List[TensorCheck]) -> List[Diagnosis]:
    """Where in the network the backward pass goes wrong, from the names W1, b1, ... .

    The error flows down: a wrong dz in layer k spoils every tensor of layers 1..k (and dL/dX),
    and none above. The diagnosis says so only when the verdicts show exactly that pattern;
    one kind of tensor wrong in every layer it touches is named as such; any other pattern is
    named tensor by tensor, since no single layer's dz explains it.
    """
    if any(c.status == Status.UNVERIFIABLE for c in checks):
        return []  # a tensor no witness judged: the pattern across layers is unknown
    layers = {}
    for c in checks:
        if _DEFAULT_NAME.match(c.name):
            continue
        m = _LAYER.match(c.name)
        if m:
            layers.setdefault(int(m.group(2)), {})[m.group(1)] = c
    if not layers:
        return []
    input_check = next((c for c in checks if c.name == INPUT_NAME), None)
    bad = sorted(k for k, cs in layers.items() if any(not c.ok for c in cs.values()))
    if not bad:
        if input_check is not None and not input_check.ok:
            text = "only dL/dX is wrong: the input gradient (dz1 @ W1^T)"
            return [Diagnosis(Finding.INPUT_GRADIENT, text)]
        return []
    wrong = [c.name for k in sorted(layers) for c in layers[k].values() if not c.ok]
    right = [c.name for k in sorted(layers) for c in layers[k].values() if c.ok]
    kinds = {kind for k in bad for kind, c in layers[k].items() if not c.ok}
    all_kinds = {kind for cs in layers.values() for kind in cs}
    if len(kinds) == 1 and kinds != all_kinds:
        kind = next(iter(kinds))
        explained = all(c.diagnosis for c in checks if not c.ok)
        hint = "" if explained else _KIND_HINTS.get(kind, "")
        where = ", ".join(wrong)
        text = (
            f"only {where} {'is' if len(wrong) == 1 else 'are'} wrong while the other tensors "
            f"are right" + (f": {hint}" if hint else "")
        )
        return [Diagnosis(Finding.TENSOR_KIND, text)]
    top = bad[-1]
    flows_down = (
        bad == list(range(1, top + 1))
        and all(not c.ok for k in bad for c in layers[k].values())
        and (input_check is None or not input_check.ok)
    )
    if flows_down:
        return [Diagnosis(Finding.LAYER, _where_it_starts(top, max(layers)))]
    return [
        Diagnosis(
            Finding.LAYER,
            f"only {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong while "
            f"{', '.join(right)} {'is' if len(right) == 1 else 'are'} right: an error in one "
            f"layer's dz would spoil every tensor below it, so look at each wrong tensor's own "
            f"formula",
        )
    ]


def _where_it_starts(k: int, depth: int) -> str:
    if k == depth:
        return (
            f"every layer is wrong, from the output layer ({depth}) down: the bug is at the "
            f"output, in the loss gradient or the output activation's derivative"
        )
    return (
        f"{_layers(k + 1, depth)} right and {_layers(1, k)} wrong: the bug is in layer "
        f"{k}'s backward, in the derivative of activation {k} or the propagation through "
        f"W{k + 1} (dz{k + 1} @ W{k + 1}^T)"
    )


def _layers(first: int, last: int) -> str:
    """'layer 2 is' or 'layers 1..3 are'."""
    return f"layer {first} is" if first == last else f"layers {first}..{last} are"


def diagnose_forward(check: ForwardCheck, sizes: Sizes = _NO_SIZES) -> List[Diagnosis]:
    """A model loss that is not the loss it claims to be, and the factor between them."""
    if check.ok:
        return []
    out = [
        Diagnosis(
            Finding.FORWARD,
            f"the model's loss ({check.model_loss:.10g}) is not the loss it claims to "
            f"be ({check.independent_loss:.10g} from primitives): a bug in the forward, "
            f"which the backward mirrors if the tape and finite differences agree with "
            f"it",
        )
    ]
    if check.independent_loss != 0:
        ratio = check.model_loss / check.independent_loss
        for value, label in candidates(sizes):
            if abs(ratio - value) <= _FORWARD_RATIO_RTOL * abs(value):
                out.append(
                    Diagnosis(
                        Finding.FORWARD,
                        f"model loss = {ratio_text(ratio)} x the true loss: {label}",
                    )
                )
                break
    return out


def problem_sizes(adapter: Adapter) -> Sizes:
    """N and D, for naming constant factors: along the axis of X the model declares
    (``batch_axis``), or inferred from the shapes of X and y (examples as rows, the usual
    layout, or as columns, features x examples), saying which."""
    X_shape = tuple(np.shape(adapter.X))
    y = adapter.y
    y_shape = tuple(np.shape(y.numpy() if hasattr(y, "numpy") else y))
    declared = getattr(adapter.model, "batch_axis", None)
    if len(X_shape) != 2:
        n = int(X_shape[0]) if X_shape else None
        return Sizes(n, _width(adapter, y_shape, 0), "the first axis of X")
    if declared in (0, 1):
        axis, how = int(declared), f"axis {int(declared)} of X, declared by the model"
    else:
        axis, how = _infer_axis(X_shape, y_shape)
    return Sizes(int(X_shape[axis]), _width(adapter, y_shape, axis), how)


def _infer_axis(X_shape, y_shape):
    """(the batch axis of X, how it was found) from the shapes of X and y."""
    rows, cols = X_shape
    n_y = y_shape if y_shape else ()
    by_rows = bool(n_y) and n_y[0] == rows
    by_cols = bool(n_y) and n_y[-1] == cols and (len(n_y) == 2 or n_y[0] == cols)
    if by_cols and not by_rows:
        return 1, "columns of X, inferred from X and y"
    if by_rows and not by_cols:
        return 0, "rows of X, inferred from X and y"
    return 0, "rows of X, assumed: the shapes of X and y do not tell"


def _width(adapter: Adapter, y_shape, axis: int) -> Optional[int]:
    if len(y_shape) == 2:
        return int(y_shape[1 - axis])
    sizes = getattr(adapter.model, "layer_sizes", None)
    return int(sizes[-1]) if sizes else None
