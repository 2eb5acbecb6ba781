"""Hypothesis strategies for property tests of a hand-written backward pass.

Hypothesis draws the structure and the discrete choices (depth, widths, activations and their
parameters, the loss pairing, dtype, batch size, input and weight scale) and a seed; the bulk of
the continuous values (weights, inputs, labels) comes from that seed. A failing example prints
as a short, copy-pasteable description::

    model=MLP([3, 1, 2], ['tanh', 'linear'], 'mse', dtype='float32', seed=7, initializer='normal')
    batch=batch_for(model, n=2, input_scale=100.0, seed=3)

``models(build=...)`` and ``cases(build=...)`` draw your own model instead: your class (or a
function returning a model) is called with the keywords its signature takes among
``layer_sizes``, ``activations``, ``loss``, ``dtype`` and ``seed``, and a failing example prints
as that call::

    case=Case(model=Net(layer_sizes=[1, 1], activations=['linear'], dtype='float32', seed=0),
              batch=batch_for(n_inputs=1, n_outputs=1, loss='mse', n=1, input_scale=0.001, seed=0))

Every strategy takes keyword-only bounds with small defaults, checked up front (a bad bound
raises ``hypothesis.errors.InvalidArgument`` naming it).
"""

from ._catalogue import strategies as _strategies
from ._catalogue.strategies import *  # noqa: F403 (the names listed in __all__)

__all__ = list(_strategies.__all__)
