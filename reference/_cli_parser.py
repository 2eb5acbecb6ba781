"""gradcheck's argument parser: the subcommands, their options, and the options common to all
(which work before or after the subcommand)."""

from __future__ import annotations

import argparse

from ._core import validate

__all__ = ["build_parser"]


def _non_negative(value, argument):
    """A number >= 0 (0 meaning no limit)."""
    return 0.0 if value == 0 else validate.positive_number(value, argument)


def _float_list(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes. The subcommands' copies have no defaults of their own
    (``SUPPRESS``), so an option given before the subcommand is kept, not overwritten."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value):
        return value if defaults else argparse.SUPPRESS

    common.add_argument(
        "--mode",
        choices=("full", "directional"),
        default=default("full"),
        help="difference every element (full) or random probes (directional)",
    )
    common.add_argument(
        "--seed",
        type=validate.option(validate.seed, "--seed"),
        default=default(0),
        help="seed of every random choice (0)",
    )
    common.add_argument(
        "--json", metavar="FILE", default=default(None), help="write the full report as JSON"
    )
    common.add_argument(
        "--quiet",
        action="store_true",
        default=default(False),
        help="print failures and the summary only",
    )
    return common


def _version() -> str:
    """The installed distribution's version (``gradient-harness``)."""
    from importlib import metadata

    try:
        return metadata.version("gradient-harness")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    common = _common(defaults=True)

    parser = argparse.ArgumentParser(
        prog="gradcheck",
        parents=[common],
        description="Check hand-written backpropagation against tf.GradientTape, finite "
        "differences and an independent forward. Without a command: manual_backprop's "
        "MLP over every hidden activation x loss pairing x dtype.",
        epilog="exit codes: 0 all checks pass, 1 a check fails, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64", "both"),
        default="both",
        help="dtypes of the matrix (both)",
    )
    parser.add_argument(
        "--examples",
        type=validate.option(validate.positive_integer, "--examples"),
        default=2,
        help="random architectures per cell (2)",
    )
    _add_commands(parser.add_subparsers(dest="command"), _common(defaults=False))
    return parser


def _add_commands(sub, common) -> None:
    """The subcommands: model, derivative, function, steps."""

    model = sub.add_parser(
        "model",
        parents=[common],
        help="check a user's model",
        description="FACTORY() returns (model, X, y) or a list of them.",
    )
    model.add_argument("factory", metavar="MODULE:FACTORY")
    model.add_argument(
        "--max-seconds",
        type=validate.option(_non_negative, "--max-seconds", float),
        default=60.0,
        metavar="S",
        help="refuse a full check estimated to take longer (60; 0: no limit)",
    )

    deriv = sub.add_parser(
        "derivative",
        parents=[common],
        help="check a custom derivative",
        description="Check DERIVATIVE (or FN's own tape gradient) against FN.",
    )
    deriv.add_argument("fn", metavar="MODULE:FN")
    deriv.add_argument("derivative", metavar="MODULE:DERIVATIVE", nargs="?")
    deriv.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    deriv.add_argument(
        "--kinks",
        type=_float_list,
        default=[],
        metavar="X1,X2,...",
        help="points where FN has kinks, sampled with their neighbours",
    )

    function = sub.add_parser(
        "function",
        parents=[common],
        help="check any function's VJP, JVP or custom gradient",
        description="Check VJP and/or JVP (or FN's own tape gradient, such as a "
        "tf.custom_gradient) against FN at the inputs FACTORY() returns (a tuple of arrays, "
        "or one array).",
    )
    function.add_argument("fn", metavar="MODULE:FN")
    function.add_argument("--inputs", metavar="MODULE:FACTORY", required=True)
    function.add_argument("--vjp", metavar="MODULE:VJP", help="vjp(cotangents, *inputs)")
    function.add_argument("--jvp", metavar="MODULE:JVP", help="jvp(tangents, *inputs)")
    function.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: judge the derivatives of the first-order gradient too",
    )

    steps = sub.add_parser(
        "steps",
        parents=[common],
        help="FD error against the step size",
        description="The finite-difference error against the step size for "
        "the first model FACTORY returns, one line per dtype.",
    )
    steps.add_argument("factory", metavar="MODULE:FACTORY")
    steps.add_argument("--plot", metavar="FILE.png", help="draw the curves (needs matplotlib)")
