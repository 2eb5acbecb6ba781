"""reference: the judges that decide whether a hand-written backward pass is right.

    from reference import check_gradients, assert_gradients_match
    report = check_gradients(model, X, y)          # mode="full" or "directional"
    report.ok; print(report); report.to_dict()
    assert_gradients_match(model, X, y)            # raises GradientMismatch with the table
    check_derivative(fn, derivative)               # an elementwise custom derivative
    check_function(fn, *inputs, vjp=..., jvp=...)  # any function: VJP, JVP, custom_gradient

A model is any object with ``params`` (tf.Variables, or NumPy arrays), ``loss(X, y)`` and
``gradients(X, y)`` (hand-written, aligned with params): see :class:`GradientModel` for the
whole protocol. Three witnesses judge it: tf.GradientTape (when the loss is TF ops on
tf.Variables), finite differences in float64, and, for catalogue models, the same network
rebuilt from tf.nn/tf.math primitives.

``reference.strategies`` holds the hypothesis strategies. Everything else is internal (the
``_``-prefixed modules): ``_core`` (evidence and policy), ``_checks`` (the check functions and
their passes), ``_catalogue`` (what knows manual_backprop), and the plugin, CLI and snapshots.
The names below are imported on first use, so ``import reference`` costs nothing until a check
runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the internal module that defines it
_EXPORTS = {
    "check_gradients": "._checks.gradients",
    "assert_gradients_match": "._checks.gradients",
    "MODES": "._checks.gradients",
    "check_derivative": "._checks.derivative",
    "DerivativeReport": "._checks.derivative",
    "check_function": "._checks.function",
    "assert_function_gradients": "._checks.function",
    "FunctionReport": "._core.report",
    "tape_gradients": "._core.tape",
    "numerical_gradients": "._core.stencils",
    "NumericalGradient": "._core.fd",
    "TAPE_RTOL": "._core.policy",
    "GradientModel": "._core.protocol",
    "GradientMismatch": "._core.report",
    "GradientReport": "._core.report",
    "TensorCheck": "._core.report",
    "ElementVerdict": "._core.report",
    "ForwardCheck": "._core.report",
    "Comparison": "._core.report",
    "Between": "._core.report",
    "Status": "._core.report",
    "Note": "._core.report",
    "NoteCode": "._core.report",
    "Diagnosis": "._core.report",
    "Finding": "._core.report",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reference' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from ._checks.derivative import DerivativeReport, check_derivative
    from ._checks.function import assert_function_gradients, check_function
    from ._checks.gradients import MODES, assert_gradients_match, check_gradients
    from ._core.fd import NumericalGradient
    from ._core.policy import TAPE_RTOL
    from ._core.protocol import GradientModel
    from ._core.report import (
        Between,
        Comparison,
        Diagnosis,
        ElementVerdict,
        Finding,
        ForwardCheck,
        FunctionReport,
        GradientMismatch,
        GradientReport,
        Note,
        NoteCode,
        Status,
        TensorCheck,
    )
    from ._core.stencils import numerical_gradients
    from ._core.tape import tape_gradients
