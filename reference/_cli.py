"""gradcheck: the command line.

    gradcheck [--seed N] [--mode full|directional] [--dtype D] [--examples N] [--json F] [--quiet]
        check manual_backprop's MLP over every hidden activation x loss pairing x dtype
    gradcheck model MODULE:FACTORY      FACTORY() returns (model, X, y) or a list of them
    gradcheck derivative MODULE:FN [MODULE:DERIVATIVE]
    gradcheck function MODULE:FN --inputs MODULE:FACTORY [--vjp MODULE:VJP] [--jvp MODULE:JVP]
        [--order 2]      any function's hand-written VJP/JVP, or its tf.custom_gradient
    gradcheck steps MODULE:FACTORY [--plot FILE.png]
        finite-difference error against the step size, with the step the harness chooses

Exit codes: 0 every check passes, 1 any fails, 2 anything that kept a check from running (a
usage error, a factory with no cases, a model breaking the protocol, a FN check_derivative
refuses), 130 on Ctrl-C (after the summary so far). The options work before or after the
subcommand; MODULE may be a file path (path/to/models.py:make).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time

from ._cli_inputs import (
    UsageError,
    cases_from,
    check_json_path,
    load,
    user_traceback,
    write_json,
)
from ._cli_parser import build_parser

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


# --- the default job: the matrix -----------------------------------------------------------------


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1e}"


ROW_HEADER = (
    "hidden",
    "output + loss",
    "dtype",
    "manual~tape",
    "manual~FD",
    "tape~FD",
    "f32~f64",
    "forward",
    "verdict",
)
# Column widths: the longest activation name (hard_sigmoid) and output + loss pairing (52), the
# dtype, and the numbers as 1.0e-10.
_WIDTHS = (12, 52, 7, 11, 9, 9, 9, 9, 7)


def _row(cells) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, _WIDTHS)).rstrip()


def _cell_row(cell) -> str:
    from ._core.report import Between

    return _row(
        (
            cell.hidden,
            f"{cell.output} + {cell.loss}",
            cell.dtype,
            *(
                _fmt(cell.worst(b))
                for b in (
                    Between.MANUAL_TAPE,
                    Between.MANUAL_FD,
                    Between.TAPE_FD,
                    Between.FLOAT32_FLOAT64,
                )
            ),
            _fmt(cell.worst_forward()),
            cell.verdict,
        )
    )


def run_matrix(args) -> int:
    from ._catalogue.matrix import cells as matrix_cells

    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    cells = matrix_cells(dtypes)
    fancy = sys.stdout.isatty() and not args.quiet
    start = time.perf_counter()
    _check_cells(cells, args, fancy)
    elapsed = time.perf_counter() - start
    if fancy:
        print(_row(ROW_HEADER))
        for cell in cells:
            print(_cell_row(cell))
    failing = [c for c in cells if c.verdict == "FAIL"]
    if args.quiet:
        for cell in failing:
            print(_cell_row(cell))
    for cell in failing:
        for report in cell.reports:
            if not report.ok:
                print(report)
    summary = {
        "cells": len(cells),
        "checks": sum(len(c.reports) for c in cells),
        "pass": len(cells) - len(failing),
        "notes": sum(c.verdict == "NOTES" for c in cells),
        "fail": len(failing),
    }
    print(
        f"{summary['cells']} cells, {summary['checks']} checks ({args.mode} mode, seed "
        f"{args.seed}): {summary['pass']} pass ({summary['notes']} with notes), "
        f"{summary['fail']} fail in {elapsed:.1f} s"
    )
    if args.json:
        write_json(
            args.json,
            {
                "command": "matrix",
                "seed": args.seed,
                "mode": args.mode,
                "examples": args.examples,
                "seconds": elapsed,
                "ok": not failing,
                "cells": [c.to_dict() for c in cells],
                "summary": summary,
            },
        )
    return EXIT_FAIL if failing else EXIT_OK


def _check_cells(cells, args, fancy: bool) -> None:
    """Check every cell on its random architectures, with a progress bar on a terminal or a row
    per cell otherwise."""
    import numpy as np

    from ._catalogue.matrix import draw_case
    from ._checks.gradients import check_gradients

    rng = np.random.default_rng(args.seed)
    if not args.quiet and not fancy:
        print(_row(ROW_HEADER), flush=True)
    progress = _progress(len(cells)) if fancy else None
    try:
        for cell in cells:
            t0 = time.perf_counter()
            for _ in range(args.examples):
                model, X, y = draw_case(cell, rng)
                cell.reports.append(check_gradients(model, X, y, mode=args.mode, seed=args.seed))
            cell.seconds = time.perf_counter() - t0
            if progress is not None:
                progress.advance(f"{cell.hidden} {cell.output}+{cell.loss} {cell.dtype}")
            elif not args.quiet:
                print(_cell_row(cell), flush=True)
    finally:
        if progress is not None:
            progress.stop()


class _progress:
    """A rich progress bar on a terminal."""

    def __init__(self, total):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description:<52}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self._task = self._bar.add_task("checking", total=total)
        self._bar.start()

    def advance(self, description):
        self._bar.update(self._task, advance=1, description=description)

    def set(self, done, total, description):
        self._bar.update(self._task, completed=done, total=total, description=description)

    def stop(self):
        self._bar.stop()


def run_model(args) -> int:
    cases = cases_from(args.factory)
    start = time.perf_counter()
    reports = []
    try:
        _check_cases(cases, args, reports)
    except KeyboardInterrupt:
        print(f"interrupted after {len(reports)} of {len(cases)} model(s)")
        _model_summary(args, reports, start)
        return EXIT_INTERRUPTED
    return _model_summary(args, reports, start)


def _check_cases(cases, args, reports) -> None:
    from ._checks.gradients import check_gradients

    for i, (model, X, y) in enumerate(cases):
        label = args.factory if len(cases) == 1 else f"{args.factory}[{i}]"
        bar = _progress(1) if sys.stdout.isatty() and not args.quiet else None
        try:
            report = check_gradients(
                model,
                X,
                y,
                mode=args.mode,
                seed=args.seed,
                max_seconds=args.max_seconds or None,
                progress=None if bar is None else _bar_callback(bar, label),
            )
        except (TypeError, ValueError) as exc:  # the model breaks the protocol: nothing judged
            hint = (
                " (here: --mode directional, or --max-seconds 0)"
                if "max_seconds" in str(exc)
                else ""
            )
            raise UsageError(f"{label}: {exc}{hint}") from exc
        finally:
            if bar is not None:
                bar.stop()
        if report.error is not None:  # the model's own code raised: nothing was judged
            user_traceback(report.cause)
            raise UsageError(f"{label}: {report.error}")
        report.model = label
        reports.append(report)
        if not args.quiet or not report.ok:
            print(report)
            print()


def _bar_callback(bar, label):
    def progress(done, total):
        bar.set(done, total, label)

    return progress


def _model_summary(args, reports, start) -> int:
    failing = sum(not r.ok for r in reports)
    unchecked = sum(r.verdict == "NOT CHECKED" for r in reports)
    print(
        f"{len(reports)} model(s) from {args.factory} ({args.mode} mode): "
        f"{len(reports) - failing} pass, {failing - unchecked} fail"
        + (f", {unchecked} not checked" if unchecked else "")
        + f" in {time.perf_counter() - start:.1f} s"
    )
    if args.json:
        write_json(
            args.json,
            {
                "command": "model",
                "factory": args.factory,
                "mode": args.mode,
                "ok": failing == 0,
                "reports": [r.to_dict() for r in reports],
            },
        )
    return EXIT_FAIL if failing else EXIT_OK


def run_derivative(args) -> int:
    from ._checks.derivative import check_derivative

    fn = load(args.fn, "FN")
    derivative = load(args.derivative, "DERIVATIVE") if args.derivative else None
    start = time.perf_counter()
    try:
        report = check_derivative(fn, derivative, dtype=args.dtype, kinks=args.kinks)
    except ValueError as exc:  # FN refused (not elementwise, say): bad input, not a wrong gradient
        raise UsageError(f"{args.fn}: {exc}") from exc
    if not args.quiet or not report.ok:
        print(report)
    verdict = "PASS" if report.ok else "FAIL"
    print(f"derivative {args.fn}: {verdict} in {time.perf_counter() - start:.1f} s")
    if args.json:
        write_json(
            args.json,
            {
                "command": "derivative",
                "fn": args.fn,
                "derivative": args.derivative,
                **report.to_dict(),
            },
        )
    return EXIT_OK if report.ok else EXIT_FAIL


def run_function(args) -> int:
    from ._checks.function import check_function

    fn = load(args.fn, "FN")
    factory = load(args.inputs, "--inputs")
    try:
        made = factory()
    except Exception as exc:
        raise UsageError(f"{args.inputs}() raised {type(exc).__name__}: {exc}") from exc
    inputs = made if isinstance(made, tuple) else (made,)  # a tuple: several inputs
    vjp = load(args.vjp, "--vjp") if args.vjp else None
    jvp = load(args.jvp, "--jvp") if args.jvp else None
    start = time.perf_counter()
    try:
        report = check_function(
            fn, *inputs, vjp=vjp, jvp=jvp, order=args.order, mode=args.mode, seed=args.seed
        )
    except (TypeError, ValueError) as exc:  # bad input: not a wrong gradient
        raise UsageError(f"{args.fn}: {exc}") from exc
    except Exception as exc:  # the user's fn, vjp or jvp raised: nothing was judged
        user_traceback(exc)
        raise UsageError(
            f"{args.fn}: the check could not run: {type(exc).__name__}: {exc}"
        ) from exc
    if not args.quiet or not report.ok:
        print(report)
    verdict, seconds = "PASS" if report.ok else "FAIL", time.perf_counter() - start
    print(f"function {args.fn} ({args.mode} mode): {verdict} in {seconds:.1f} s")
    if args.json:
        write_json(
            args.json,
            {
                "command": "function",
                "fn": args.fn,
                "inputs": args.inputs,
                "vjp": args.vjp,
                "jvp": args.jvp,
                **report.to_dict(),
            },
        )
    return EXIT_OK if report.ok else EXIT_FAIL


# --- the step-size trade-off ---------------------------------------------------------------


def run_steps(args) -> int:
    from ._checks.steps import EXPONENTS, step_sweep

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot must name a .png file, such as steps.png; got {args.plot!r}")
    cases = cases_from(args.factory)
    model, X, y = cases[0]
    exponents = list(EXPONENTS)
    curves, chosen = step_sweep(model, X, y, exponents)
    print(
        "finite-difference error (Richardson, worst over tensors, relative to each tensor's "
        "largest gradient) against the step 2^k * max(1, |theta|)"
    )
    names = sorted(curves)
    print("  ".join(["k".rjust(4)] + [n.rjust(10) for n in names]))
    for i, k in enumerate(exponents):
        marks = "".join(f"  <- {n} step" for n in names if chosen[n] == k)
        print("  ".join([str(k).rjust(4)] + [f"{curves[n][i]:10.2e}" for n in names]) + marks)
    if args.plot:
        _plot_steps(args.plot, exponents, curves, chosen)
    if args.json:
        write_json(
            args.json,
            {
                "command": "steps",
                "factory": args.factory,
                "exponents": exponents,
                "errors": {n: [float(v) for v in curves[n]] for n in names},
                "chosen": {n: int(chosen[n]) for n in names},
            },
        )
    return EXIT_OK


# Errors of exactly 0 (a linear loss) are drawn at this floor on the log scale, below any
# rounding error the curves show.
_PLOT_FLOOR = 1e-17


def _plot_steps(path, exponents, curves, chosen) -> None:
    """The step-size curves as a PNG (a note instead when matplotlib is not installed)."""
    import numpy as np

    try:
        import matplotlib
    except ImportError:
        print(
            "matplotlib is not installed (pip install 'gradient-harness[plot]'): "
            "the table above is the result; no plot written"
        )
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = sorted(curves)
    lines = {}
    for n in names:
        (lines[n],) = ax.loglog(
            np.exp2(exponents), np.maximum(curves[n], _PLOT_FLOOR), marker=".", label=n
        )
    top = ax.get_ylim()[1]
    for n in names:
        color = lines[n].get_color()
        ax.axvline(2.0 ** chosen[n], color=color, linestyle="--", linewidth=1)
        ax.annotate(
            f"harness step, {n}",
            (2.0 ** chosen[n], top / 3),
            rotation=90,
            color=color,
            fontsize=8,
            ha="right",
            va="top",
        )
    ax.set_xlabel("step h (relative to max(1, |theta|))")
    ax.set_ylabel("worst error / largest gradient")
    ax.set_title("Finite-difference error against step: truncation vs rounding")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise UsageError(f"cannot write --plot file {path!r}: {exc}") from exc
    print(f"plot written to {path}")


# What TensorFlow's C++ libraries write to the process's stderr as they load, before its logging
# is set up and whatever TF_CPP_MIN_LOG_LEVEL says: absl's notice, then lines such as
# "I0000 00:00:1796676063.480392   11472 port.cc:153] oneDNN custom operations are on ..." or
# "E0000 ... cuda_executor.cc:...] failed call to cuInit: ..." (no GPU here).
_STARTUP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] .*"
    r"|E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] failed call to cuInit.*"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and let it find its devices with its start-up lines kept out of the
    command's output (the lines above; anything else written meanwhile is passed on, an import
    error's own text included)."""
    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stderr with no file underneath
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the devices are looked for (cuInit) here
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(x for x in lines if not _STARTUP_LINE.fullmatch(x.rstrip())))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on a usage error
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()
    runners = {
        None: run_matrix,
        "model": run_model,
        "derivative": run_derivative,
        "function": run_function,
        "steps": run_steps,
    }
    try:
        check_json_path(getattr(args, "json", None))
        return runners[args.command](args)
    except UsageError as exc:
        print(f"gradcheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gradcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
