"""The step-size trade-off of finite differences: error against the step, for ``gradcheck
steps``. Truncation error falls with the step and rounding error grows as it shrinks; the
curve shows where the harness's own step sits."""

from __future__ import annotations

import numpy as np

from .._core import fd as fdm
from .._core import stencils
from .._core.adapter import Adapter
from .._core.tape import tape_gradients

__all__ = ["step_sweep", "EXPONENTS"]

# Steps 2^-40 .. 2^-2: from deep in rounding (float64's eps is 2^-52) to deep in truncation.
EXPONENTS = range(-40, -1)
# Elements sampled per tensor: enough for a worst case, few enough for a quick sweep.
_MAX_ELEMENTS = 64


def step_sweep(model, X, y, exponents, *, max_elements=_MAX_ELEMENTS, seed=0):
    """Finite-difference error against the step: for each dtype the model comes in (its own,
    and float64/float32 through ``astype``), the worst error of the harness's Richardson
    estimate, relative to each tensor's largest exact gradient, at ``2^k * max(1, |theta|)``.

    Returns ``(curves, chosen)``: dtype name -> errors aligned with ``exponents``, and dtype name
    -> the exponent of the step the harness itself uses (at |theta| <= 1)."""
    base = Adapter(model, X, y)
    exact_model = base.twin64().model
    exact = [np.asarray(g.numpy(), np.float64) for g in tape_gradients(exact_model, X, y)]
    variants = {base.dtype.name: base}
    if callable(getattr(model, "astype", None)):
        for d in ("float64", "float32"):
            if d not in variants:
                variants[d] = Adapter(model.astype(d), X, y)
    rng = np.random.default_rng(seed)
    picks = {
        k: np.sort(rng.permutation(int(np.prod(base.shape(k)) or 1))[:max_elements])
        for k in range(len(base.params))
    }
    curves, chosen = {}, {}
    for name, adapter in sorted(variants.items()):
        f0 = adapter.loss_value()
        errors = []
        for k_exp in exponents:
            worst = 0.0
            for key, idx in picks.items():
                st = stencils.coordinate_stencil(adapter, key, f0, idx, exponent=k_exp)
                est = fdm.analyse("", st, 0.0).value
                truth = exact[key].reshape(-1)
                scale = float(np.max(np.abs(truth))) or 1.0
                worst = max(worst, float(np.max(np.abs(est - truth[idx]))) / scale)
            errors.append(worst)
        curves[name] = errors
        chosen[name] = int(np.round(np.log2(adapter.eps**fdm.STEP_EXPONENT)))
    return curves, chosen
