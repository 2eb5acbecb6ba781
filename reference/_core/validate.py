"""The argument validators shared by the API, the pytest plugin, the command line and the
strategies. Each returns the value in its canonical type or raises a ``TypeError`` (wrong kind of
value) or ``ValueError`` (right kind, wrong value) that names the argument and the fix.

Every such error the harness raises about its caller's input is an ``InputTypeError`` or
``InputValueError`` (subclasses of the two), and the public checks (``short_input_errors``)
raise them without the harness's own frames: the traceback ends at the caller's line, then the
message. Any other exception keeps its whole traceback.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Sequence

__all__ = [
    "positive_number",
    "rtol",
    "positive_integer",
    "probes",
    "seed",
    "choice",
    "order",
    "option",
    "InputTypeError",
    "InputValueError",
    "short_input_errors",
]


class InputError(Exception):
    """An error about what the caller passed, raised by the harness with the fix in its text."""


class InputTypeError(InputError, TypeError):
    """A wrong kind of value (a ``TypeError``)."""


class InputValueError(InputError, ValueError):
    """The right kind of value, a wrong value (a ``ValueError``)."""


# Printed as what they are to the caller (a traceback's last line reads "TypeError: ..."); the
# harness tells them from other errors by class.
for _cls, _shown in ((InputTypeError, "TypeError"), (InputValueError, "ValueError")):
    _cls.__module__, _cls.__name__, _cls.__qualname__ = "builtins", _shown, _shown


def short_input_errors(check):
    """``check`` raising its input errors from the caller's frame: the harness's frames between
    (its passes, the adapter, the validators) say nothing the message does not, and pytest would
    print each with its arguments (the whole X and y)."""

    @functools.wraps(check)
    def checked(*args, **kwargs):
        __tracebackhide__ = True
        try:
            return check(*args, **kwargs)
        except InputError as exc:
            error = exc
        raise error.with_traceback(None)

    return checked


def _is_integral(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_number(value, argument: str) -> float:
    """A finite real number > 0 (NumPy scalars included; bools, NaN and inf refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"{argument} must be a positive finite number, such as 1e-6; got "
            f"{value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputValueError(
            f"{argument} must be a positive finite number, such as 1e-6; got {value!r}."
        )
    return value


def rtol(value, argument: str = "rtol") -> float:
    """A relative tolerance: a positive finite number."""
    return positive_number(value, argument)


def _integer(value, argument: str, low: int, kind: str, example: int) -> int:
    if not _is_integral(value):
        raise InputTypeError(
            f"{argument} must be {kind}, such as {example}; got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value < low:
        raise InputValueError(f"{argument} must be {kind}, such as {example}; got {value!r}.")
    return int(value)


def positive_integer(value, argument: str) -> int:
    """An integer >= 1 (NumPy integers included; bools and integral floats refused)."""
    return _integer(value, argument, 1, "a positive integer", 3)


def probes(value, argument: str = "probes") -> int:
    """The number of probe directions per tensor: an integer >= 1."""
    return positive_integer(value, argument)


def seed(value, argument: str = "seed") -> int:
    """A seed: an integer >= 0 (NumPy integers included)."""
    return _integer(value, argument, 0, "a non-negative integer", 0)


def order(value, argument: str = "order") -> int:
    """The order of the derivatives checked: 1 or 2."""
    if value not in (1, 2) or isinstance(value, bool):
        raise InputValueError(f"{argument} must be 1 or 2; got {value!r}.")
    return int(value)


def choice(value, options: Sequence[str], argument: str) -> str:
    """One of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise InputValueError(
            f"{argument} must be one of {', '.join(map(repr, options))}; got {value!r}."
        )
    return value


def option(validator, argument: str, convert=int):
    """A command-line option's ``type=``: the text converted (``int`` or ``float``), then
    checked by ``validator``; any error is argparse's, with the validator's message."""
    import argparse

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"{argument} must be {kind}; got {text!r}.") from None
        try:
            return validator(value, argument)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = argument
    return parse
