"""reference: the judges that decide whether a hand-written backward pass is right.

    from reference import check_gradients, assert_gradients_match
    report = check_gradients(model, X, y)          # mode="full" or "directional"
    report.ok; print(report); report.to_dict()
    assert_gradients_match(model, X, y)            # raises GradientMismatch with the table
    check_derivative(fn, derivative)               # an elementwise custom derivative

A model is any object with ``params`` (tf.Variables), ``loss(X, y)`` written in TF ops and
``gradients(X, y)`` (hand-written, aligned with params); see ``reference._adapter`` for the
optional parts. Three witnesses judge it: tf.GradientTape, finite differences in float64, and,
for catalogue models, the same network rebuilt from tf.nn/tf.math primitives.
"""

from .check import MODES, assert_gradients_match, check_gradients
from .compare import TAPE_RTOL
from .derivative import DerivativeReport, check_derivative
from .finite_differences import NumericalGradient, numerical_gradients
from .report import (Comparison, ForwardCheck, GradientMismatch, GradientReport, TensorCheck)
from .tape import tape_gradients

__all__ = [
    "check_gradients", "assert_gradients_match", "GradientMismatch", "check_derivative",
    "tape_gradients", "numerical_gradients",
    "GradientReport", "TensorCheck", "ForwardCheck", "Comparison", "DerivativeReport",
    "NumericalGradient", "TAPE_RTOL", "MODES",
]
