"""The matrix ``gradcheck`` runs by default: every hidden activation x every (output, loss)
pairing the loss records name for it x dtype, a few random architectures each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import manual_backprop as mb

from .._core.report import Between, Status
from .strategies import batch_for

__all__ = ["Cell", "PAIRINGS", "cells", "draw_case"]

# (output activation, loss): each loss record's matrix_outputs, in catalogue order.
PAIRINGS = [(out, name) for name, record in mb.LOSSES.items() for out in record.matrix_outputs]

# The random architectures of a cell: depth 1..2 hidden layers, widths 1..5, 1..4 inputs, 1..3
# outputs (2..3 for class labels and softmax), batches of 1..6 rows at input scales 0.1..3:
# small enough for a full check in tens of milliseconds, varied enough to reach widths and
# batches of 1.
_DEPTHS = (1, 3)
_INPUTS = (1, 5)
_WIDTHS = (1, 6)
_OUTPUTS, _CLASS_OUTPUTS = (1, 4), (2, 4)
_ROWS = (1, 7)
_INPUT_SCALES = (0.1, 1.0, 3.0)
_SEEDS = 2**16


@dataclass
class Cell:
    """One hidden activation x (output, loss) x dtype, and the reports of its checks."""

    hidden: str
    output: str
    loss: str
    dtype: str
    reports: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if any(not r.ok for r in self.reports):
            return "FAIL"
        if any(e.status != Status.PASS for r in self.reports for e in r.entries):
            return "NOTES"
        return "PASS"

    def worst(self, between: Between) -> Optional[float]:
        values = [
            c.relative
            for r in self.reports
            for e in r.entries
            for c in e.comparisons
            if c.between == between
        ]
        return max(values) if values else None

    def worst_forward(self) -> Optional[float]:
        values = [r.forward.rel_error for r in self.reports if r.forward is not None]
        return max(values) if values else None

    def to_dict(self):
        return {
            "hidden": self.hidden,
            "output": self.output,
            "loss": self.loss,
            "dtype": self.dtype,
            "verdict": self.verdict,
            "seconds": self.seconds,
            "checks": [r.to_dict() for r in self.reports],
        }


def cells(dtypes) -> List[Cell]:
    return [
        Cell(h, out, loss, d)
        for d in dtypes
        for h in mb.activation_names()
        for out, loss in PAIRINGS
    ]


def draw_case(cell: Cell, rng):
    """A small random architecture and batch for a cell, from the run's seeded generator."""
    depth = int(rng.integers(*_DEPTHS))
    classes = mb.LOSSES[cell.loss].labels in ("sparse", "categorical") or cell.output == "softmax"
    n_out = int(rng.integers(*(_CLASS_OUTPUTS if classes else _OUTPUTS)))
    sizes = (
        [int(rng.integers(*_INPUTS))]
        + [int(rng.integers(*_WIDTHS)) for _ in range(depth)]
        + [n_out]
    )
    model = mb.MLP(
        sizes,
        [cell.hidden] * depth + [cell.output],
        cell.loss,
        dtype=cell.dtype,
        seed=int(rng.integers(0, _SEEDS)),
        initializer=str(rng.choice(list(mb.INITIALIZERS))),
    )
    batch = batch_for(
        model,
        n=int(rng.integers(*_ROWS)),
        input_scale=float(rng.choice(_INPUT_SCALES)),
        seed=int(rng.integers(0, _SEEDS)),
    )
    return model, batch.X, batch.y
