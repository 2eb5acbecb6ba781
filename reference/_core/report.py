"""The verdict's types: a status enum, note codes whose text is generated from them, the
comparisons between witnesses, one entry per checked tensor, and the report a person reads."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import render
from .codes import Between, Diagnosis, Finding, Note, NoteCode, Status
from .codes import num as _num
from .render import summary

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
    "FunctionReport",
    "GradientMismatch",
    "summary",
]


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
    ``tape_disowned`` (manual != tape, finite differences accept both, in a tensor where they
    show the tape unfaithful elsewhere: judged by them alone),
    ``fd_unresolved`` (manual == tape != FD where finite differences do not resolve the line;
    without a tape, FD off the manual value by less than the rounding of what they
    difference),
    ``undecided`` (failing, but finite differences accept the manual value and accept the
    tape's too, or reject it by less than their floor: only the rounding test can tell),
    ``rounding`` (undecided elements excused as rounding), ``flat`` (undecided elements whose
    manual value is 0 in a model whose loss shows no gradient at all),
    ``unverifiable`` (no witness could judge the element), ``region_coarse`` (unverifiable:
    finite differences inside a region accept the element without resolving it),
    ``fd_against`` (manual == tape, and finite differences resolve another value: failing),
    ``confounded`` (such elements shown confounded by the evidence pass), ``unwitnessed``
    (no finite differences witnessed the element: they accept anything there, or do not resolve
    the line; it passes on the tape's word alone, unverifiable without a tape or where the tape is
    the user's own).
    ``fd_ok_manual``/``fd_ok_tape``:
    finite differences accept the manual/tape value; ``fd_kink``: a kink along the coordinate.
    Masks not given are all False.
    """

    fail: np.ndarray
    tape_ok: Optional[np.ndarray] = None
    kink_used: Optional[np.ndarray] = None
    kink_region: Optional[np.ndarray] = None
    tape_unfaithful: Optional[np.ndarray] = None
    tape_disowned: Optional[np.ndarray] = None
    fd_unresolved: Optional[np.ndarray] = None
    undecided: Optional[np.ndarray] = None
    rounding: Optional[np.ndarray] = None
    flat: Optional[np.ndarray] = None
    unverifiable: Optional[np.ndarray] = None
    fd_kink: Optional[np.ndarray] = None
    fd_ok_manual: Optional[np.ndarray] = None
    fd_ok_tape: Optional[np.ndarray] = None
    kinks_hidden: Optional[np.ndarray] = None
    region_coarse: Optional[np.ndarray] = None
    fd_against: Optional[np.ndarray] = None
    confounded: Optional[np.ndarray] = None
    unwitnessed: Optional[np.ndarray] = None
    # The evidence each excuse granted by a pass rests on, keyed by the note that quotes it: a
    # pass grants no excuse without it (``policy``'s transitions).
    evidence: Dict[NoteCode, Dict[str, float]] = field(default_factory=dict)

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) is None:
                setattr(self, f.name, np.zeros(np.shape(self.fail), bool))

    def excused(self) -> np.ndarray:
        """Elements that differ from the tape for a reason that is not a failure."""
        excused = self.kink_used | self.kink_region | self.tape_unfaithful | self.rounding
        return excused | self.flat | self.tape_disowned

    def statuses(self) -> np.ndarray:
        """The status of every element (an object array of :class:`Status`)."""
        noted = self.excused() | self.fd_unresolved | self.confounded
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
        return render.detail(self)


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
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, or ``NOT CHECKED`` where nothing was judged (the model broke the
        protocol, or its loss or gradients are random or change the parameters); ``ok`` is
        False then too."""
        if self.error is not None or self.impure is not None:
            return "NOT CHECKED"
        return "PASS" if self.ok else "FAIL"

    @property
    def failing(self) -> List[TensorCheck]:
        return [e for e in self.entries if not e.ok]

    def __bool__(self):
        return self.ok

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
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
        return render.headline(self)

    def __str__(self):
        return render.text(self)


@dataclass
class FunctionReport(GradientReport):
    """The verdict of ``check_function``: one entry per thing judged (``vjp: x`` for each input,
    ``jvp: y`` for each output, ``J[y, x]`` for the whole Jacobian, ``order 2: x``), with the
    table, the notes and the diagnosis of a :class:`GradientReport`."""

    function: str = ""
    order: int = 1
    judged: List[str] = field(default_factory=list)

    def to_dict(self):
        return {
            **super().to_dict(),
            "function": self.function,
            "order": self.order,
            "judged": list(self.judged),
        }

    def headline(self) -> List[str]:
        return render.function_headline(self)


class GradientMismatch(AssertionError):
    """Raised by ``assert_gradients_match``; ``.report`` holds the full report. The message's
    first line (pytest's summary line) names what failed: the first failing tensor and its
    diagnosis, or why nothing was judged."""

    def __init__(self, report: GradientReport):
        self.report = report
        super().__init__(f"{summary(report)}\n{report}")


GradientMismatch.__module__ = "reference"  # as it is imported; pytest's summary line prints it
