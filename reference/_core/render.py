"""The report as text: the table, the detail lines of a tensor, the headline, the one-line
summary. Every sentence is generated here or from the codes (``codes``); the report types hold
data only."""

from __future__ import annotations

import math
from typing import List

from .codes import Between, NoteCode, Status

__all__ = [
    "detail",
    "headline",
    "function_headline",
    "dependence",
    "text",
    "table",
    "summary",
    "fmt",
]


def fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def detail(check) -> str:
    """The lines that explain a failure (or notes)."""
    lines = []
    joint = check.note(NoteCode.PROBES_DISAGREE)
    if check.status == Status.FAIL and check.n_failing == 0 and joint is not None:
        lines.append(
            f"FAIL {check.name} {check.shape}: manual vs FD disagree along {joint.count} of "
            f"{joint.values['probes']} joint direction(s), while every element passes on "
            f"its own"
        )
    elif check.status == Status.FAIL:
        who = ", ".join(map(str, check.disagreements())) or "the witnesses"
        lines.append(
            f"FAIL {check.name} {check.shape}: {who} disagree "
            f"({check.n_failing} of {max(1, math.prod(check.shape))} elements)"
        )
    elif check.status == Status.UNVERIFIABLE:
        lines.append(f"UNVERIFIABLE {check.name} {check.shape}: no witness could judge it")
    elif check.notes:
        lines.append(f"NOTE {check.name}:")
    if check.worst_index is not None and check.status == Status.FAIL and check.n_failing:
        fd = fmt(check.fd, 10)
        if check.fd_interval is not None:
            low, high = (fmt(v, 10) for v in check.fd_interval)
            fd = f"kink, one-sided [{low}, {high}]"
        elif check.fd_error is not None:
            fd += f" (+- {fmt(check.fd_error, 2)})"
        tape = "n/a" if check.tape_missing else fmt(check.tape, 10)
        lines.append(
            f"  worst at index {check.worst_index}: manual {fmt(check.manual, 10)}, "
            f"tape {tape}, FD {fd}"
        )
        lines.append(
            f"  abs err {fmt(check.abs_error)}, rel err {fmt(check.rel_error)} "
            f"> tol {fmt(check.tolerance, 2)}"
        )
    for d in check.diagnosis:
        lines.append(f"  diagnosis: {d}")
    for n in check.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def headline(report) -> List[str]:
    """The first lines of the report: the verdict and how the check was run."""
    verdict = report.verdict
    how = (
        f"judged through its {report.fd_dtype} twin"
        if report.dtype == "float32" and report.fd_dtype == "float64"
        else f"finite differences in {report.fd_dtype}"
    )
    lines = [f"Gradient check: {verdict} (mode {report.mode}, model {report.dtype}, {how})"]
    if report.model:
        lines.append(f"model: {report.model}")
    if report.tape_blind:
        lines.append(f"tape: cannot witness ({report.tape_blind}); finite differences judge alone")
    lines.extend(dependence(report))
    return lines


def function_headline(report) -> List[str]:
    """The first lines of a function check: the verdict, how it was run, what was judged, and
    where the tape could not witness."""
    verdict = report.verdict
    lines = [
        f"Function check of {report.function}: {verdict} (order {report.order}, mode "
        f"{report.mode}, inputs {report.dtype}, finite differences in {report.fd_dtype})"
    ]
    if report.judged:
        lines.append("judged: " + "; ".join(report.judged))
    if report.tape_blind:
        lines.append(
            f"tape: cannot witness ({report.tape_blind}); finite differences judge alone there"
        )
    lines.extend(dependence(report))
    return lines


def dependence(report) -> List[str]:
    """The header line saying the tape is not an independent witness, when it is not."""
    if not report.tape_dependent:
        return []
    return [
        f"tape: not an independent witness (the forward runs through "
        f"{report.tape_dependent}, whose gradient is not TensorFlow's derivative of what it "
        f"computes, but a custom, straight-through or stopped one): manual == tape proves nothing; "
        f"finite differences judge"
    ]


def text(report) -> str:
    """The whole report: headline, notes, table, the independent forward, details, diagnosis."""
    lines = report.headline()
    if report.error is not None:
        lines.append(f"ERROR: {report.error}")
        return "\n".join(lines)
    if report.impure is not None:
        lines.append(f"NOT JUDGED: {report.impure}")
        return "\n".join(lines)
    lines.extend(f"note: {n}" for n in report.notes)
    lines.extend(table(report))
    if report.forward is not None:
        f = report.forward
        lines.append(
            f"forward vs independent forward: {'ok' if f.ok else 'MISMATCH'} "
            f"(model loss {f.model_loss:.12g}, independent {f.independent_loss:.12g}, "
            f"rel err {fmt(f.rel_error, 2)}, tol {fmt(f.tolerance, 1)}; "
            f"{f.description})"
        )
    elif report.forward_skipped:
        lines.append(f"independent forward: not run ({report.forward_skipped})")
    for e in report.entries:
        if e.status != Status.PASS:
            lines.append(e.detail())
    for d in report.diagnosis:
        lines.append(f"diagnosis: {d}")
    return "\n".join(lines)


def table(report) -> List[str]:
    columns = [Between.MANUAL_TAPE, Between.MANUAL_FD, Between.TAPE_FD]
    if any(e.comparison(Between.FLOAT32_FLOAT64) for e in report.entries):
        columns.append(Between.FLOAT32_FLOAT64)
    header = ("tensor", "shape", "verdict", *(c.column for c in columns), "kinks")
    rows = [header]
    for e in report.entries:
        cells = [e.name, "x".join(str(s) for s in e.shape) or "()", e.status.value]
        for between in columns:
            c = e.comparison(between)
            if c is not None:
                cell = f"{fmt(c.relative, 2)}{'<=' if c.agree else '>'}{fmt(c.tolerance, 2)}"
            elif e.tape_missing and between in (Between.MANUAL_TAPE, Between.TAPE_FD):
                cell = "n/a"
            else:
                cell = "-"
            cells.append(cell)
        cells.append(str(e.kinks) + (f" ({e.kinks_accepted} used)" if e.kinks_accepted else ""))
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def summary(report) -> str:
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
