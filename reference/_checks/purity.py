"""The purity pass: a loss that is random, or a loss or gradients() with side effects, cannot be
judged, and a report that judged it anyway could pass a wrong gradient.

Before anything is judged, the loss is evaluated several times at the same parameters (before
and after a ``gradients()`` call), ``gradients()`` twice, and the parameters are compared bit for
bit before and after each call. Any of these failing makes the report not ok, naming what
changed and the fix.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Union

import numpy as np

from .._core.adapter import Adapter, guarded

__all__ = ["purity_problem", "LOSS_REPEAT_ULPS"]

# Two evaluations of a deterministic loss at the same parameters agree to the bit on TensorFlow's
# CPU kernels; this many ulps of the loss leave room for a reduction split differently across
# threads, while a dropout mask or added noise moves the loss by far more.
LOSS_REPEAT_ULPS = 16

_FIX_RANDOM = (
    "a random loss (dropout, added noise, a sampled batch) cannot be checked: switch dropout off "
    "(training=False), fix its mask for the check, or seed the randomness so every call draws "
    "the same values"
)
_FIX_LOSS_SIDE_EFFECT = (
    "the loss must leave the parameters unchanged: remove the side effect (an assign, an update, "
    "a running statistic kept in params)"
)
_FIX_GRADIENT_SIDE_EFFECT = (
    "gradients() must return the gradients without updating the parameters: apply the update "
    "outside it (or call a fused backward with a learning rate of 0)"
)


def _changes(adapter: Adapter, before: List[np.ndarray]) -> Optional[str]:
    """Which parameters differ from ``before`` (a snapshot), where and by how much."""
    out = []
    for i, (name, old) in enumerate(zip(adapter.names, before)):
        new = adapter.read(i)
        if np.array_equal(new, old, equal_nan=True):
            continue
        with np.errstate(invalid="ignore"):
            diff = np.abs(new.astype(np.float64) - old.astype(np.float64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        first = tuple(int(i) for i in np.argwhere(diff > 0)[0])
        out.append(
            f"{name} ({int(np.count_nonzero(diff))} element(s), first at {first}, by up to "
            f"{float(np.max(diff)):.3g})"
        )
    return ", ".join(out) or None


def _rebound(adapter: Adapter) -> Optional[str]:
    """Which NumPy parameters ``model.params`` no longer returns (``self.W = self.W - lr * dW``
    binds a new array: the harness would perturb the old one, which the loss no longer reads)."""
    if not adapter.numpy_params:
        return None
    now = list(adapter.model.params)
    moved = [
        name
        for name, old, new in zip(adapter.names, adapter.params, now)
        if not (old is new or np.shares_memory(old, new))
    ]
    if len(now) != len(adapter.params):
        moved = list(adapter.names)
    if not moved:
        return None
    return (
        f"{', '.join(moved)} (a new array bound in place of the old one, as self.W = self.W - "
        f"lr * dW does)"
    )


class Point(NamedTuple):
    """The loss and the manual gradients at the point, shown deterministic and free of side
    effects (asking again would give the same)."""

    loss: float
    manual: Dict


def purity_problem(adapter: Adapter) -> Union[str, Point, None]:
    """What changed, and the fix, when the loss or the gradients are not deterministic or
    change the parameters; otherwise the :class:`Point` they gave (None when the loss is not
    finite, which the check reports itself). The parameters are put back by the caller."""
    before = adapter.snapshot()
    losses = [guarded("model.loss(X, y)", adapter.loss_value)]
    changed = _changes(adapter, before) or _rebound(adapter)
    if changed:
        return f"model.loss(X, y) changed the parameters: {changed}; {_FIX_LOSS_SIDE_EFFECT}."
    losses.append(guarded("model.loss(X, y)", adapter.loss_value))
    first = adapter.manual()
    changed = _changes(adapter, before) or _rebound(adapter)
    if changed:
        return (
            f"model.gradients(X, y) changed the parameters: {changed}; {_FIX_GRADIENT_SIDE_EFFECT}."
        )
    losses.append(guarded("model.loss(X, y)", adapter.loss_value))
    second = adapter.manual()
    spread = max(losses) - min(losses)
    if not np.all(np.isfinite(losses)):
        return None  # a non-finite loss is reported by the check itself
    if spread > LOSS_REPEAT_ULPS * adapter.eps * max(abs(losses[0]), np.finfo(float).tiny):
        values = ", ".join(f"{v:.17g}" for v in losses)
        return (
            f"model.loss(X, y) is not deterministic: {len(losses)} evaluations at the same "
            f"parameters gave {values} (moved by {spread:.3g}, "
            f"{spread / max(abs(losses[0]), np.finfo(float).tiny):.3g} of the loss); "
            f"{_FIX_RANDOM}."
        )
    for key in adapter.keys:
        a, b = first[key], second[key]
        scale = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
        with np.errstate(invalid="ignore"):
            moved = np.abs(a - b)
        moved = np.where(np.isnan(a) & np.isnan(b), 0.0, np.nan_to_num(moved, nan=np.inf))
        if np.max(moved, initial=0.0) > LOSS_REPEAT_ULPS * adapter.eps * scale:
            return (
                f"model.gradients(X, y) is not deterministic: two calls at the same parameters "
                f"gave {adapter.name(key)} differing by up to {float(np.max(moved)):.3g}; "
                f"{_FIX_RANDOM}."
            )
    return Point(losses[-1], second)
