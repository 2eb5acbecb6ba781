"""The verdict's codes and their texts: statuses, note codes (each note's sentence is generated
from its code and the values it quotes), findings of the diagnosis, and which witnesses a
comparison sets against each other. Decisions read codes, never texts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict

__all__ = ["Status", "NoteCode", "Note", "Finding", "Diagnosis", "Between", "num"]


def num(x):
    """A float for JSON: None for missing, and non-finite values as strings."""
    if x is None or isinstance(x, str):
        return x
    x = float(x)
    return x if math.isfinite(x) else str(x)


class _Code(str, Enum):
    """A string enum that prints and formats as its value."""

    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)


class Status(_Code):
    """The verdict on one tensor (or one element). Only PASS and NOTES are ok."""

    PASS = "pass"
    NOTES = "pass-with-notes"
    FAIL = "fail"
    UNVERIFIABLE = "unverifiable"  # no witness could judge it: not ok

    @property
    def ok(self) -> bool:
        return self in (Status.PASS, Status.NOTES)


class NoteCode(_Code):
    """Why a tensor passed with notes (each is data; the text below is generated from it)."""

    KINK_SUBGRADIENT = "kink-subgradient"
    KINK_REGION = "kink-region"
    KINK_REGION_FD = "kink-region-fd"
    KINK_CROWDED = "kink-crowded"
    KINK_CROWDED_FD = "kink-crowded-fd"
    KINKS_HIDDEN = "kinks-hidden"
    KINK_REGION_COARSE = "kink-region-coarse"
    KINK_COMPOSED = "kink-composed"
    KINKS_MATCH_TAPE = "kinks-match-tape"
    TAPE_UNFAITHFUL = "tape-unfaithful"
    TAPE_DISOWNED = "tape-disowned"
    ROUNDING_EXCUSED = "rounding-excused"
    LOSS_FLAT = "loss-flat"
    UNRESOLVED = "unresolved"
    FD_UNRESOLVED = "fd-unresolved"
    FD_ROUNDED = "fd-rounded"
    FD_CONFOUNDED = "fd-confounded"
    UNWITNESSED = "unwitnessed"
    FLOAT32_ROUNDING = "float32-rounding"
    PROBES_DISAGREE = "probes-disagree"
    PROBES_CONFOUNDED = "probes-confounded"
    NO_TAPE = "no-tape"
    FD_COARSE = "fd-coarse"


_NOTE_TEXT = {
    NoteCode.KINK_SUBGRADIENT: (
        "{count} element(s) at a kink: the manual value differs from the tape's but lies "
        "between the one-sided derivatives (a valid subgradient; at the largest difference, "
        "manual {manual:.6g}, tape {tape:.6g}, one-sided [{lower:.6g}, {upper:.6g}])"
    ),
    NoteCode.KINK_REGION: (
        "{count} element(s) where several kinks meet: the manual gradient is the gradient of "
        "the differentiable region next to the point (TensorFlow's tape at a point "
        "{displacement:.1g} away), a valid generalized gradient (a consistent one-sided "
        "convention such as relu'(0) = 1)"
    ),
    NoteCode.KINK_REGION_FD: (
        "{count} element(s) where several kinks meet: the manual gradient is the gradient of "
        "the differentiable region next to the point (the model's own gradient at a point "
        "pushed into that region, which finite differences confirm {displacement:.1g} inside "
        "it), a valid generalized gradient (a consistent one-sided convention such as "
        "relu'(0) = 1)"
    ),
    NoteCode.KINK_COMPOSED: (
        "{count} element(s) at a kink where manual and tape agree on a value outside the "
        "one-sided derivatives (where several kinks meet, chain-rule conventions compose to no "
        "subgradient; the farthest, {manual:.6g} against one-sided [{lower:.6g}, {upper:.6g}])"
    ),
    NoteCode.KINKS_MATCH_TAPE: (
        "{count} kink(s) along this tensor's coordinates; the manual value matches the tape there"
    ),
    NoteCode.TAPE_UNFAITHFUL: (
        "{count} element(s) where the tape disagrees with finite differences and the manual "
        "value agrees with finite differences (a custom gradient or an op outside TensorFlow "
        "in the forward?; at the largest, manual {manual:.6g}, tape {tape:.6g}, FD {fd:.6g} "
        "+- {error:.2g})"
    ),
    NoteCode.TAPE_DISOWNED: (
        "{count} element(s) where manual and tape differ and finite differences accept both, "
        "in a tensor where they show the tape unfaithful elsewhere: the tape's word decides "
        "nothing here, and finite differences accept the manual value (at the largest, manual "
        "{manual:.6g}, tape {tape:.6g}, FD {fd:.6g} +- {error:.2g})"
    ),
    NoteCode.ROUNDING_EXCUSED: (
        "{count} element(s) where manual and tape differ by more than rounding of a "
        "well-conditioned formula, by less than finite differences resolve, and "
        "{moved?}{wobble?}: cancellation (such as elu's a + alpha deep in saturation, or a "
        "bias's gradient summed from terms that cancel), not a bug (the difference: up to "
        "{difference:.2g} of the tensor's scale, within {bound:.2g})"
    ),
    NoteCode.LOSS_FLAT: (
        "{count} element(s) where the manual value or the tape's is 0{own?} and the other is "
        "not, steadily, but "
        "the loss shows no gradient of the model at all (every tensor's largest gradient is "
        "at most {fraction:.2g} of the finest the loss resolves, {ulps} ulps of the loss over "
        "the tensor's largest value): a formula that cancels to 0 there (such as selu's "
        "a + lambda * alpha deep in saturation, hand-written or in TensorFlow's kernel) is "
        "right to the loss's precision, and nothing can judge it further; check again on a "
        "batch that does not saturate the model"
    ),
    NoteCode.KINK_CROWDED: (
        "{count} element(s) where manual and tape differ and another kink lies within "
        "{reach:.1g} of the point, inside the two smallest finite-difference steps that must "
        "agree to confirm a value: unverifiable; check on another batch, or with inputs off "
        "the kinks"
    ),
    NoteCode.KINK_CROWDED_FD: (
        "{count} element(s) where finite differences at every step down to {step:.1g} disagree "
        "with the next smaller one (a kink closer than that, or a loss rounded more coarsely "
        "than its measured noise, such as log(1 - p) at p near 1), and no tape witnesses: "
        "unverifiable; check on another batch, with inputs off the kinks, or with a loss "
        "written stably"
    ),
    NoteCode.KINKS_HIDDEN: (
        "{count} element(s) where finite differences disagree with the manual value, but the "
        "gradient checked jumps within their step along the line (kinks closer together "
        "than any step resolves: pre-activations all near 0; it bends by {bend:.2g} of the "
        "disagreement), and no tape witnesses: unverifiable; check on a batch with inputs and "
        "weights of ordinary size"
    ),
    NoteCode.KINK_REGION_COARSE: (
        "{count} element(s) where several kinks meet and finite differences inside the region "
        "next to the point agree with the manual value, but resolve it only to "
        "{resolution:.2g} of the tensor's scale (the region reaches only {reach:.1g} from the "
        "point, and their steps must stay inside it), and no tape witnesses: "
        "unverifiable; check on another batch, or with inputs off the kinks"
    ),
    NoteCode.UNRESOLVED: (
        "{count} element(s) where manual and tape differ by up to {difference:.2g} (of the "
        "tensor's scale), more than rounding can carry ({bound:.2g}), and finite differences "
        "(resolving {resolution:.2g}) accept both: unverifiable; judge it in float64, on smaller "
        "inputs or on another batch"
    ),
    NoteCode.FD_UNRESOLVED: (
        "{count} element(s) where finite differences disagree with both manual and tape, "
        "which agree, but do not resolve the line (at the largest: manual {manual:.6g}, FD "
        "{fd:.6g} +- {error:.2g} at step {step:.2g}, where the rounding of the values they "
        "difference alone reaches {floor:.2g}{rounding?}; smaller steps disagree, or the "
        "difference is within that rounding)"
    ),
    NoteCode.FD_ROUNDED: (
        "{count} element(s) where finite differences disagree with the manual value by less "
        "than the rounding of the values they difference alone reaches at their step (at the "
        "largest: manual {manual:.6g}, FD {fd:.6g} +- {error:.2g} at step {step:.2g}, where "
        "that rounding reaches {floor:.2g}{rounding?}), and no tape witnesses: unverifiable; "
        "gradients this small against that rounding (an output near 1 rounds away a change "
        "below its ulp) can be judged where a tape witnesses, or at a point where no output "
        "saturates"
    ),
    NoteCode.FD_CONFOUNDED: (
        "{count} element(s) where finite differences resolve a value that manual and tape "
        "both miss, but are confounded there: the gradient checked moves within their step by "
        "{bend:.2g} of the disagreement (kinks inside the step){moved?}{still?}"
    ),
    NoteCode.UNWITNESSED: (
        "{count} element(s) that no witness judged: finite differences, their error "
        "{spread:.2g} times the tensor's scale, accept any value a bug could give (the loss "
        "jumps, or is this noisy, within their step of {step:.2g}){tape?}: unverifiable; check "
        "at another point or on another batch"
    ),
    NoteCode.FLOAT32_ROUNDING: (
        "float32 rounding: the hand-written gradient in float32 is {deviation:.2g} (of the "
        "tensor's largest gradient) from the same code in float64, TensorFlow's tape "
        "{tape_deviation:.2g}; the math is right in float64, the formula loses precision in "
        "float32"
    ),
    NoteCode.PROBES_CONFOUNDED: (
        "{count} probe(s) where finite differences resolve a projection the manual gradient "
        "misses, but are confounded there: the gradient checked bends within their step by "
        "{bend:.2g} of the disagreement (kinks inside the step){moved?}: no evidence against it"
    ),
    NoteCode.PROBES_DISAGREE: (
        "{count} of {probes} probe(s) disagree with finite differences along the manual "
        "gradient{within?}"
    ),
    NoteCode.FD_COARSE: (
        "finite differences alone resolve this tensor only to {resolution:.2g} of its largest "
        "gradient (in {dtype}): a bug smaller than that passes; {advice}"
    ),
    NoteCode.NO_TAPE: (
        "the tape has no gradient for this tensor (the loss is not connected to it on the tape: "
        "computed outside TensorFlow, or not used): finite differences judge it alone"
    ),
}


# Clauses of a note's text (``{key?}`` in it) said only when the evidence carries their figure:
# a function's check moves no weights, so its confounded elements carry no nudge.
_NUDGED = (
    ", or the disagreement moved by {moved:.2g} of itself when the weights moved by a relative "
    "{nudge:.1g} (rounding)"
)
_STILL = (
    ", or the loss did not move at all along {still} of these lines (every evaluation the "
    "same: rounded more coarsely than the change, as -log p is at p near 1)"
)
_ERRATIC = (
    "the difference changes erratically when the weights move by 1e-6 (or, below what the "
    "loss resolves, by 1e-3), as rounding does (it moved by {moved:.2g} of itself)"
)
_WOBBLE = (
    "the difference is within the tape's own rounding (it is {wobble:.2g} times what the "
    "tape's gradient moves by when its cotangent is scaled by 3, 0.7, 7 or 0.3)"
)
_OWN_TAPE = ", and the tape is no independent witness there"
_LOSS_ROUNDING = (
    " (the loss strays by {rounding:.2g} from exact arithmetic where every weight moves: a "
    "value it is very sensitive to, such as a softmax output near 1, can stay on one "
    "representable number along a whole line)"
)
_LOSS_STRAYS = (
    ", the loss straying by {rounding:.2g} from exact arithmetic where every weight moves"
)
_WITHIN_ROUNDING = (
    ", {within} of them by less than the rounding of the values they difference alone "
    "reaches at their step ({floor:.2g}{rounding?}): no evidence either way"
)
_OWN_ZERO = (
    " (the manual value in the model's own float32; in its float64 twin, judged here, at most "
    "{own:.2g}: an ulp or two of the terms that cancel)"
)
_OPTIONAL_TEXT = {
    NoteCode.UNWITNESSED: {"tape": _OWN_TAPE},
    NoteCode.ROUNDING_EXCUSED: {"moved": _ERRATIC, "wobble": _WOBBLE},
    NoteCode.FD_CONFOUNDED: {"moved": _NUDGED, "still": _STILL},
    NoteCode.PROBES_CONFOUNDED: {"moved": _NUDGED},
    NoteCode.PROBES_DISAGREE: {"within": _WITHIN_ROUNDING, "rounding": _LOSS_STRAYS},
    NoteCode.FD_UNRESOLVED: {"rounding": _LOSS_ROUNDING},
    NoteCode.FD_ROUNDED: {"rounding": _LOSS_ROUNDING},
    NoteCode.LOSS_FLAT: {"own": _OWN_ZERO},
}


@dataclass
class Note:
    """A structured note: its code, how many elements (or kinks, probes) it concerns, and the
    values its text quotes. ``str(note)`` is the text."""

    code: NoteCode
    count: int = 0
    values: Dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        text = _NOTE_TEXT[self.code]
        for key, clause in _OPTIONAL_TEXT.get(self.code, {}).items():
            text = text.replace("{" + key + "?}", clause if key in self.values else "")
        return text.format(count=self.count, **self.values)

    def __str__(self):
        return self.text

    def to_dict(self):
        return {
            "code": self.code.value,
            "count": self.count,
            **{k: num(v) for k, v in self.values.items()},
            "text": self.text,
        }


class Finding(_Code):
    """What a diagnosis recognised."""

    CONSTANT_FACTOR = "constant-factor"
    TRANSPOSE = "transpose"
    FEW_ELEMENTS = "few-elements"
    NON_FINITE = "non-finite"
    ALL_ZEROS = "all-zeros"
    FLOAT32_OVERFLOW = "float32-overflow"
    LAYER = "layer"
    TENSOR_KIND = "tensor-kind"
    INPUT_GRADIENT = "input-gradient"
    FORWARD = "forward"
    IGNORES_UPSTREAM = "ignores-upstream"
    DIAGONAL_ONLY = "diagonal-only"
    SWAPPED = "swapped"
    WHICH_INPUT = "which-input"
    JOINT_DIRECTIONS = "joint-directions"
    NOT_DIFFERENTIABLE = "not-differentiable"
    PENALTY_TERM = "penalty-term"


@dataclass
class Diagnosis:
    """A recognised pattern of a wrong gradient: its code and the sentence that explains it."""

    code: Finding
    text: str

    def __str__(self):
        return self.text

    def to_dict(self):
        return {"code": self.code.value, "text": self.text}


class Between(_Code):
    """Which two witnesses a comparison sets against each other."""

    MANUAL_TAPE = "manual vs tape"
    MANUAL_FD = "manual vs FD"
    TAPE_FD = "tape vs FD"
    FLOAT32_FLOAT64 = "float32 vs float64"

    @property
    def column(self) -> str:
        return _COLUMNS[self]


_COLUMNS = {
    Between.MANUAL_TAPE: "manual~tape",
    Between.MANUAL_FD: "manual~FD",
    Between.TAPE_FD: "tape~FD",
    Between.FLOAT32_FLOAT64: "f32~f64",
}
