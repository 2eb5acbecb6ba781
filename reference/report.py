"""The verdict: one entry per checked tensor, a forward check, and a table a person can read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

__all__ = ["PASS", "NOTES", "FAIL", "ERROR", "Comparison", "TensorCheck", "ForwardCheck",
           "GradientReport", "GradientMismatch"]

PASS, NOTES, FAIL, ERROR = "pass", "pass-with-notes", "fail", "error"


def _num(x):
    """A float for JSON: None for missing, and non-finite values as strings."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


@dataclass
class Comparison:
    """Two witnesses compared over one tensor: their worst disagreement against the tolerance.

    ``relative`` is the worst absolute disagreement divided by the largest magnitude of the
    reference gradient in the tensor; ``tolerance`` is on the same scale. For a comparison with
    finite differences the tolerance varies by element; ``tolerance`` is then the one at the
    worst element, and ``agree`` whether every element is within its own.
    """

    between: str
    relative: float
    tolerance: float
    agree: bool

    def to_dict(self):
        return {"between": self.between, "relative": _num(self.relative),
                "tolerance": _num(self.tolerance), "agree": bool(self.agree)}


@dataclass
class TensorCheck:
    """The verdict on one parameter tensor (or dL/dX).

    ``status`` is ``pass``, ``pass-with-notes`` (kinks, or the tape and finite differences
    disagreeing while the manual value matches one of them), ``fail`` or ``error`` (the model
    could not produce this gradient). At ``worst_index``: each witness's value, and the errors.
    """

    name: str
    shape: Tuple[int, ...]
    status: str
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
    notes: List[str] = field(default_factory=list)
    diagnosis: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (PASS, NOTES)

    def comparison(self, between: str) -> Optional[Comparison]:
        return next((c for c in self.comparisons if c.between == between), None)

    def disagreements(self) -> List[str]:
        return [c.between for c in self.comparisons if not c.agree]

    def to_dict(self):
        return {
            "name": self.name, "shape": list(self.shape), "status": self.status,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "manual": _num(self.manual), "tape": _num(self.tape), "fd": _num(self.fd),
            "fd_error": _num(self.fd_error),
            "fd_interval": None if self.fd_interval is None else [_num(v) for v in self.fd_interval],
            "abs_error": _num(self.abs_error), "rel_error": _num(self.rel_error),
            "tolerance": _num(self.tolerance), "n_failing": self.n_failing, "kinks": self.kinks,
            "kinks_accepted": self.kinks_accepted, "notes": list(self.notes),
            "diagnosis": list(self.diagnosis),
        }

    def detail(self) -> str:
        """The lines that explain a failure (or notes)."""
        lines = []
        if self.status == ERROR:
            return f"ERROR {self.name}: " + "; ".join(self.notes)
        if self.status == FAIL:
            who = ", ".join(self.disagreements()) or "the witnesses"
            lines.append(f"FAIL {self.name} {self.shape}: {who} disagree "
                         f"({self.n_failing} of {max(1, math.prod(self.shape))} elements)")
        elif self.notes:
            lines.append(f"NOTE {self.name}:")
        if self.worst_index is not None and self.status == FAIL:
            fd = _fmt(self.fd, 10)
            if self.fd_interval is not None:
                fd = f"kink, one-sided [{_fmt(self.fd_interval[0], 10)}, " \
                     f"{_fmt(self.fd_interval[1], 10)}]"
            elif self.fd_error is not None:
                fd += f" (+- {_fmt(self.fd_error, 2)})"
            lines.append(f"  worst at index {self.worst_index}: manual {_fmt(self.manual, 10)}, "
                         f"tape {_fmt(self.tape, 10)}, FD {fd}")
            lines.append(f"  abs err {_fmt(self.abs_error)}, rel err {_fmt(self.rel_error)} "
                         f"> tol {_fmt(self.tolerance, 2)}")
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
        return {"model_loss": _num(self.model_loss), "independent_loss": _num(self.independent_loss),
                "rel_error": _num(self.rel_error), "tolerance": _num(self.tolerance),
                "ok": self.ok, "description": self.description}


@dataclass
class GradientReport:
    """Everything a check found. ``ok`` is the verdict; ``print(report)`` shows the table."""

    mode: str
    dtype: str
    fd_dtype: str
    entries: List[TensorCheck] = field(default_factory=list)
    forward: Optional[ForwardCheck] = None
    diagnosis: List[str] = field(default_factory=list)
    error: Optional[str] = None
    model: str = ""

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        if self.forward is not None and not self.forward.ok:
            return False
        return all(e.ok for e in self.entries)

    @property
    def failing(self) -> List[TensorCheck]:
        return [e for e in self.entries if not e.ok]

    def __bool__(self):
        return self.ok

    def to_dict(self):
        return {"ok": self.ok, "mode": self.mode, "dtype": self.dtype, "fd_dtype": self.fd_dtype,
                "model": self.model, "error": self.error,
                "forward": None if self.forward is None else self.forward.to_dict(),
                "entries": [e.to_dict() for e in self.entries],
                "diagnosis": list(self.diagnosis)}

    def __str__(self):
        verdict = "PASS" if self.ok else "FAIL"
        how = (f"finite differences in {self.fd_dtype}" if self.dtype == self.fd_dtype else
               f"judged through its {self.fd_dtype} twin")
        head = f"Gradient check: {verdict} (mode {self.mode}, model {self.dtype}, {how})"
        lines = [head]
        if self.model:
            lines.append(f"model: {self.model}")
        if self.error is not None:
            lines.append(f"ERROR: {self.error}")
            return "\n".join(lines)
        columns = [("manual vs tape", "manual~tape"), ("manual vs FD", "manual~FD"),
                   ("tape vs FD", "tape~FD")]
        if any(e.comparison("float32 vs float64") for e in self.entries):
            columns.append(("float32 vs float64", "f32~f64"))
        header = ("tensor", "shape", "verdict", *(c[1] for c in columns), "kinks")
        rows = [header]
        for e in self.entries:
            cells = [e.name, "x".join(str(s) for s in e.shape) or "()", e.status]
            for between, _ in columns:
                c = e.comparison(between)
                cells.append("-" if c is None else
                             f"{_fmt(c.relative, 2)}{'<=' if c.agree else '>'}{_fmt(c.tolerance, 1)}")
            cells.append(str(e.kinks) + (f" ({e.kinks_accepted} used)" if e.kinks_accepted else ""))
            rows.append(tuple(cells))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if self.forward is not None:
            f = self.forward
            lines.append(f"forward vs independent forward: {'ok' if f.ok else 'MISMATCH'} "
                         f"(model loss {f.model_loss:.12g}, independent {f.independent_loss:.12g}, "
                         f"rel err {_fmt(f.rel_error, 2)}, tol {_fmt(f.tolerance, 1)}; "
                         f"{f.description})")
        for e in self.entries:
            if e.status != PASS:
                lines.append(e.detail())
        for d in self.diagnosis:
            lines.append(f"diagnosis: {d}")
        return "\n".join(lines)


class GradientMismatch(AssertionError):
    """Raised by ``assert_gradients_match``; ``.report`` holds the full report."""

    def __init__(self, report: GradientReport):
        self.report = report
        super().__init__("\n" + str(report))
