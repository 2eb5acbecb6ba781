"""The verdict's types: a status enum, note codes whose text is generated from them, the
comparisons between witnesses, one entry per checked tensor, and the report a person reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "Status",
    "NoteCode",
    "Note",
    "Finding",
    "Diagnosis",
    "Between",
    "Comparison",
    "ElementVerdict",
    "TensorCheck",
    "ForwardCheck",
    "GradientReport",
    "GradientMismatch",
    "summary",
]


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
    ROUNDING_EXCUSED = "rounding-excused"
    UNRESOLVED = "unresolved"
    FD_UNRESOLVED = "fd-unresolved"
    FLOAT32_ROUNDING = "float32-rounding"
    PROBES_DISAGREE = "probes-disagree"
    NO_TAPE = "no-tape"
    FD_COARSE = "fd-coarse"


_NOTE_TEXT = {
    NoteCode.KINK_SUBGRADIENT: (
        "{count} element(s) at a kink: the manual value differs from the tape's but lies "
        "between the one-sided derivatives (a valid subgradient)"
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
        "subgradient)"
    ),
    NoteCode.KINKS_MATCH_TAPE: (
        "{count} kink(s) along this tensor's coordinates; the manual value matches the tape there"
    ),
    NoteCode.TAPE_UNFAITHFUL: (
        "{count} element(s) where the tape disagrees with finite differences and the manual "
        "value agrees with finite differences (a custom gradient or an op outside TensorFlow "
        "in the forward?)"
    ),
    NoteCode.ROUNDING_EXCUSED: (
        "{count} element(s) where manual and tape differ by more than rounding of a "
        "well-conditioned formula, by less than finite differences resolve, and the "
        "difference changes erratically when the weights move by 1e-6 (or, below what the "
        "loss resolves, by 1e-3), as rounding does: "
        "cancellation in the hand-written formula (such as elu's a + alpha deep in "
        "saturation), not a bug"
    ),
    NoteCode.KINK_CROWDED: (
        "{count} element(s) where manual and tape differ and another kink lies closer than the "
        "smallest finite-difference step ({step:.1g}) resolves: unverifiable; check on another "
        "batch, or with inputs off the kinks"
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
        "model's own gradient jumps within their step along the line (kinks closer together "
        "than any step resolves: pre-activations all near 0), and no tape witnesses: "
        "unverifiable; check on a batch with inputs and weights of ordinary size"
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
        "which agree (FD cannot resolve them)"
    ),
    NoteCode.FLOAT32_ROUNDING: (
        "float32 rounding: the hand-written gradient in float32 is {deviation:.2g} (of the "
        "tensor's largest gradient) from the same code in float64, TensorFlow's tape "
        "{tape_deviation:.2g}; the math is right in float64, the formula loses precision in "
        "float32"
    ),
    NoteCode.PROBES_DISAGREE: (
        "{count} of {probes} probe(s) disagree with finite differences along the manual gradient"
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


@dataclass
class Note:
    """A structured note: its code, how many elements (or kinks, probes) it concerns, and the
    values its text quotes. ``str(note)`` is the text."""

    code: NoteCode
    count: int = 0
    values: Dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return _NOTE_TEXT[self.code].format(count=self.count, **self.values)

    def __str__(self):
        return self.text

    def to_dict(self):
        return {
            "code": self.code.value,
            "count": self.count,
            **{k: _num(v) for k, v in self.values.items()},
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


def _num(x):
    """A float for JSON: None for missing, and non-finite values as strings."""
    if x is None or isinstance(x, str):
        return x
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


@dataclass
class Comparison:
    """Two witnesses compared over one tensor: their worst disagreement against the tolerance.

    ``relative`` is the worst absolute disagreement divided by the scale the tensor is judged on
    (its largest gradient, or a floor); ``tolerance`` is on the same scale. For a comparison with
    finite differences the tolerance varies by element; ``tolerance`` is then the one at the
    worst element, and ``agree`` whether every element is within its own.
    """

    between: Between
    relative: float
    tolerance: float
    agree: bool

    def to_dict(self):
        return {
            "between": self.between.value,
            "relative": _num(self.relative),
            "tolerance": _num(self.tolerance),
            "agree": bool(self.agree),
        }


@dataclass
class ElementVerdict:
    """The verdict element by element over one tensor (boolean masks of its shape).

    ``fail``: wrong. The others say why an element that differs from the tape is not a failure,
    or what else was seen: ``kink_used`` (a subgradient at a kink other than the tape's),
    ``kink_region`` (several kinks meet and the manual gradient is the gradient of a
    differentiable region next to the point), ``tape_unfaithful`` (manual == FD != tape),
    ``fd_unresolved`` (manual == tape != FD), ``undecided`` (failing, but finite differences
    accept manual and tape alike: only the rounding test can tell), ``rounding`` (undecided
    elements excused as rounding),
    ``unverifiable`` (no witness could judge the element), ``region_coarse`` (unverifiable:
    finite differences inside a region accept the element without resolving it).
    ``fd_ok_manual``/``fd_ok_tape``:
    finite differences accept the manual/tape value; ``fd_kink``: a kink along the coordinate.
    Masks not given are all False.
    """

    fail: np.ndarray
    tape_ok: Optional[np.ndarray] = None
    kink_used: Optional[np.ndarray] = None
    kink_region: Optional[np.ndarray] = None
    tape_unfaithful: Optional[np.ndarray] = None
    fd_unresolved: Optional[np.ndarray] = None
    undecided: Optional[np.ndarray] = None
    rounding: Optional[np.ndarray] = None
    unverifiable: Optional[np.ndarray] = None
    fd_kink: Optional[np.ndarray] = None
    fd_ok_manual: Optional[np.ndarray] = None
    fd_ok_tape: Optional[np.ndarray] = None
    kinks_hidden: Optional[np.ndarray] = None
    region_coarse: Optional[np.ndarray] = None
    fd_against: Optional[np.ndarray] = None
    # The values the region and unresolved notes quote.
    region: Dict[str, float] = field(default_factory=dict)
    region_coarse_by: Dict[str, float] = field(default_factory=dict)
    unresolved_by: Dict[str, float] = field(default_factory=dict)
    fd_against_by: Dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) is None:
                setattr(self, f.name, np.zeros(np.shape(self.fail), bool))

    def excuse_rounding(self, mask: np.ndarray) -> None:
        """The rounding test's decision: these undecided elements are rounding, not bugs."""
        self.rounding = self.rounding | (mask & self.undecided)
        self.fail = self.fail & ~self.rounding
        self.undecided = self.undecided & ~self.rounding

    def excuse_region(self, mask: np.ndarray) -> None:
        """The region test's decision: these failing (or unverifiable) elements are a region's
        gradient."""
        self.kink_region = self.kink_region | (mask & (self.fail | self.unverifiable))
        self.fail = self.fail & ~self.kink_region
        self.unverifiable = self.unverifiable & ~self.kink_region
        self.undecided = self.undecided & ~self.kink_region

    def hidden_kinks(self, mask: np.ndarray) -> None:
        """These failing elements lie on lines with kinks hidden inside the step: unverifiable."""
        self.kinks_hidden = self.kinks_hidden | self._failed_to_unverifiable(mask)

    def region_unresolved(self, mask: np.ndarray) -> None:
        """These failing elements are accepted by finite differences inside a region that do
        not resolve them: unverifiable, not failed."""
        self.region_coarse = self.region_coarse | self._failed_to_unverifiable(mask)

    def _failed_to_unverifiable(self, mask: np.ndarray) -> np.ndarray:
        mask = mask & self.fail
        self.unverifiable = self.unverifiable | mask
        self.fail = self.fail & ~mask
        return mask

    def unresolved(self, mask: np.ndarray) -> None:
        """These undecided elements cannot be judged: unverifiable, not failed."""
        mask = mask & self.undecided
        self.unverifiable = self.unverifiable | mask
        self.fail = self.fail & ~mask
        self.undecided = self.undecided & ~mask

    def excused(self) -> np.ndarray:
        """Elements that differ from the tape for a reason that is not a failure."""
        return self.kink_used | self.kink_region | self.tape_unfaithful | self.rounding

    def statuses(self) -> np.ndarray:
        """The status of every element (an object array of :class:`Status`)."""
        noted = self.excused() | self.fd_unresolved
        out = np.full(self.fail.shape, Status.PASS, dtype=object)
        out[noted] = Status.NOTES
        out[self.unverifiable] = Status.UNVERIFIABLE
        out[self.fail] = Status.FAIL
        return out


@dataclass
class TensorCheck:
    """The verdict on one parameter tensor (or dL/dX).

    ``status`` is a :class:`Status`. At ``worst_index``: each witness's value, and the errors.
    ``elements`` holds the verdict element by element; ``notes`` and ``diagnosis`` are
    structured (a code each) and print as sentences.
    """

    name: str
    shape: Tuple[int, ...]
    status: Status
    comparisons: List[Comparison] = field(default_factory=list)
    worst_index: Optional[Tuple[int, ...]] = None
    manual: Optional[float] = None
    tape: Optional[float] = None
    fd: Optional[float] = None
    fd_error: Optional[float] = None
    fd_interval: Optional[Tuple[float, float]] = None
    abs_error: Optional[float] = None
    rel_error: Optional[float] = None
    tolerance: Optional[float] = None
    n_failing: int = 0
    kinks: int = 0
    kinks_accepted: int = 0
    probes: Optional[int] = None
    notes: List[Note] = field(default_factory=list)
    diagnosis: List[Diagnosis] = field(default_factory=list)
    elements: Optional[ElementVerdict] = field(default=None, repr=False)
    # The tape could not witness this tensor (NumPy parameters, a loss that is not a tensor or
    # not connected to it): its columns show n/a, and finite differences judged alone.
    tape_missing: bool = False

    @property
    def ok(self) -> bool:
        return self.status.ok

    def note(self, code: NoteCode) -> Optional[Note]:
        return next((n for n in self.notes if n.code == code), None)

    def add_note(self, note: Note) -> None:
        """A note that does not change a failure; a pass becomes a pass with notes."""
        self.notes.append(note)
        if self.status == Status.PASS:
            self.status = Status.NOTES

    def comparison(self, between: Between) -> Optional[Comparison]:
        return next((c for c in self.comparisons if c.between == between), None)

    def disagreements(self) -> List[Between]:
        return [c.between for c in self.comparisons if not c.agree]

    def to_dict(self):
        return {
            "name": self.name,
            "shape": list(self.shape),
            "status": self.status.value,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "manual": _num(self.manual),
            "tape": _num(self.tape),
            "fd": _num(self.fd),
            "fd_error": _num(self.fd_error),
            "fd_interval": None
            if self.fd_interval is None
            else [_num(v) for v in self.fd_interval],
            "abs_error": _num(self.abs_error),
            "rel_error": _num(self.rel_error),
            "tolerance": _num(self.tolerance),
            "n_failing": self.n_failing,
            "kinks": self.kinks,
            "kinks_accepted": self.kinks_accepted,
            "probes": self.probes,
            "tape_missing": self.tape_missing,
            "notes": [n.to_dict() for n in self.notes],
            "diagnosis": [d.to_dict() for d in self.diagnosis],
        }

    def detail(self) -> str:
        """The lines that explain a failure (or notes)."""
        lines = []
        joint = self.note(NoteCode.PROBES_DISAGREE)
        if self.status == Status.FAIL and self.n_failing == 0 and joint is not None:
            lines.append(
                f"FAIL {self.name} {self.shape}: manual vs FD disagree along {joint.count} of "
                f"{joint.values['probes']} joint direction(s), while every element passes on "
                f"its own"
            )
        elif self.status == Status.FAIL:
            who = ", ".join(map(str, self.disagreements())) or "the witnesses"
            lines.append(
                f"FAIL {self.name} {self.shape}: {who} disagree "
                f"({self.n_failing} of {max(1, math.prod(self.shape))} elements)"
            )
        elif self.status == Status.UNVERIFIABLE:
            lines.append(f"UNVERIFIABLE {self.name} {self.shape}: no witness could judge it")
        elif self.notes:
            lines.append(f"NOTE {self.name}:")
        if self.worst_index is not None and self.status == Status.FAIL and self.n_failing:
            fd = _fmt(self.fd, 10)
            if self.fd_interval is not None:
                fd = (
                    f"kink, one-sided [{_fmt(self.fd_interval[0], 10)}, "
                    f"{_fmt(self.fd_interval[1], 10)}]"
                )
            elif self.fd_error is not None:
                fd += f" (+- {_fmt(self.fd_error, 2)})"
            tape = "n/a" if self.tape_missing else _fmt(self.tape, 10)
            lines.append(
                f"  worst at index {self.worst_index}: manual {_fmt(self.manual, 10)}, "
                f"tape {tape}, FD {fd}"
            )
            lines.append(
                f"  abs err {_fmt(self.abs_error)}, rel err {_fmt(self.rel_error)} "
                f"> tol {_fmt(self.tolerance, 2)}"
            )
        for d in self.diagnosis:
            lines.append(f"  diagnosis: {d}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


@dataclass
class ForwardCheck:
    """The model's loss against the same network rebuilt from tf.nn / tf.math primitives."""

    model_loss: float
    independent_loss: float
    rel_error: float
    tolerance: float
    description: str

    @property
    def ok(self) -> bool:
        return bool(self.rel_error <= self.tolerance)

    def to_dict(self):
        return {
            "model_loss": _num(self.model_loss),
            "independent_loss": _num(self.independent_loss),
            "rel_error": _num(self.rel_error),
            "tolerance": _num(self.tolerance),
            "ok": self.ok,
            "description": self.description,
        }


@dataclass
class GradientReport:
    """Everything a check found. ``ok`` is the verdict; ``print(report)`` shows the table.

    ``forward`` is the independent forward's check, or None with ``forward_skipped`` saying why
    it did not run; ``error`` is set when the model broke the protocol; ``impure`` when its loss
    is random or its loss or gradients change the parameters (nothing is judged then: any
    verdict would rest on evidence that moves under it). ``notes`` say how the check was run
    where that differs from the default (a float64 twin refused, ``batched_loss`` not trusted).
    """

    mode: str
    dtype: str
    fd_dtype: str
    entries: List[TensorCheck] = field(default_factory=list)
    forward: Optional[ForwardCheck] = None
    forward_skipped: Optional[str] = None
    diagnosis: List[Diagnosis] = field(default_factory=list)
    error: Optional[str] = None
    impure: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    model: str = ""
    # Why tf.GradientTape could not witness the model (finite differences judged alone), or None.
    tape_blind: Optional[str] = None
    # What makes the tape's gradient the user's own claim rather than TensorFlow's derivative of
    # the forward (tf.custom_gradient, tf.py_function), where it disagrees with finite
    # differences; None when nothing does.
    tape_dependent: Optional[str] = None
    # The exception the model's own code raised (``error``'s cause): not data, not compared.
    cause: Optional[BaseException] = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        if self.error is not None or self.impure is not None:
            return False
        if self.forward is not None and not self.forward.ok:
            return False
        return all(e.ok for e in self.entries)

    @property
    def failing(self) -> List[TensorCheck]:
        return [e for e in self.entries if not e.ok]

    def __bool__(self):
        return self.ok

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "dtype": self.dtype,
            "fd_dtype": self.fd_dtype,
            "model": self.model,
            "error": self.error,
            "impure": self.impure,
            "notes": list(self.notes),
            "tape_blind": self.tape_blind,
            "tape_dependent": self.tape_dependent,
            "forward": None if self.forward is None else self.forward.to_dict(),
            "forward_skipped": self.forward_skipped,
            "entries": [e.to_dict() for e in self.entries],
            "diagnosis": [d.to_dict() for d in self.diagnosis],
        }

    def headline(self) -> List[str]:
        """The first lines of the report: the verdict and how the check was run."""
        verdict = "PASS" if self.ok else "FAIL"
        how = (
            f"finite differences in {self.fd_dtype}"
            if self.dtype == self.fd_dtype
            else f"judged through its {self.fd_dtype} twin"
        )
        lines = [f"Gradient check: {verdict} (mode {self.mode}, model {self.dtype}, {how})"]
        if self.model:
            lines.append(f"model: {self.model}")
        if self.tape_blind:
            lines.append(
                f"tape: cannot witness ({self.tape_blind}); finite differences judge alone"
            )
        lines.extend(self._dependence())
        return lines

    def _dependence(self) -> List[str]:
        if not self.tape_dependent:
            return []
        return [
            f"tape: not an independent witness (the forward runs through "
            f"{self.tape_dependent}, whose gradient is the user's own): manual == tape proves "
            f"nothing; finite differences judge"
        ]

    def __str__(self):
        lines = self.headline()
        if self.error is not None:
            lines.append(f"ERROR: {self.error}")
            return "\n".join(lines)
        if self.impure is not None:
            lines.append(f"NOT JUDGED: {self.impure}")
            return "\n".join(lines)
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(self._table())
        if self.forward is not None:
            f = self.forward
            lines.append(
                f"forward vs independent forward: {'ok' if f.ok else 'MISMATCH'} "
                f"(model loss {f.model_loss:.12g}, independent {f.independent_loss:.12g}, "
                f"rel err {_fmt(f.rel_error, 2)}, tol {_fmt(f.tolerance, 1)}; "
                f"{f.description})"
            )
        elif self.forward_skipped:
            lines.append(f"independent forward: not run ({self.forward_skipped})")
        for e in self.entries:
            if e.status != Status.PASS:
                lines.append(e.detail())
        for d in self.diagnosis:
            lines.append(f"diagnosis: {d}")
        return "\n".join(lines)

    def _table(self) -> List[str]:
        columns = [Between.MANUAL_TAPE, Between.MANUAL_FD, Between.TAPE_FD]
        if any(e.comparison(Between.FLOAT32_FLOAT64) for e in self.entries):
            columns.append(Between.FLOAT32_FLOAT64)
        header = ("tensor", "shape", "verdict", *(c.column for c in columns), "kinks")
        rows = [header]
        for e in self.entries:
            cells = [e.name, "x".join(str(s) for s in e.shape) or "()", e.status.value]
            for between in columns:
                c = e.comparison(between)
                if c is not None:
                    cell = f"{_fmt(c.relative, 2)}{'<=' if c.agree else '>'}{_fmt(c.tolerance, 2)}"
                elif e.tape_missing and between in (Between.MANUAL_TAPE, Between.TAPE_FD):
                    cell = "n/a"
                else:
                    cell = "-"
                cells.append(cell)
            cells.append(str(e.kinks) + (f" ({e.kinks_accepted} used)" if e.kinks_accepted else ""))
            rows.append(tuple(cells))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


class GradientMismatch(AssertionError):
    """Raised by ``assert_gradients_match``; ``.report`` holds the full report. The message's
    first line (pytest's summary line) names what failed: the first failing tensor and its
    diagnosis, or why nothing was judged."""

    def __init__(self, report: GradientReport):
        self.report = report
        super().__init__(f"{summary(report)}\n{report}")


GradientMismatch.__module__ = "reference"  # as it is imported; pytest's summary line prints it


def summary(report: GradientReport) -> str:
    """One line: what failed first, and why."""
    if report.error is not None:
        return f"the check could not run: {report.error}"
    if report.impure is not None:
        return f"not judged: {report.impure}"
    failing = report.failing
    if not failing:
        if report.forward is not None and not report.forward.ok:
            return "the forward is not the loss it claims to be (independent forward)"
        return "pass"
    first = failing[0]
    why = first.diagnosis[0].text if first.diagnosis else None
    if why is None and report.diagnosis:
        why = report.diagnosis[0].text
    if why is None:
        who = ", ".join(map(str, first.disagreements())) or "the witnesses"
        why = f"{who} disagree ({first.n_failing} of {max(1, math.prod(first.shape))} elements)"
    more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
    return f"{first.name} {first.status.value}{more}: {why}"
