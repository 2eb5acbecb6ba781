"""The float64 twin of a float32 model written in NumPy, which has no ``astype``.

Most tutorial code is dtype-generic: the same formulas on float64 arrays compute the same model
in float64. The twin is a deep copy of the model whose parameter arrays are replaced, where the
copy holds them (attributes, dicts, lists, tuples), by float64 copies of their values. It is a
twin only if its ``params`` returns exactly those arrays; whether it runs the same code is the
caller's to establish, as for any ``astype`` (``trust.twin_agreement``: its gradients must agree
with the model's float32 ones to float32 rounding).
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import numpy as np

__all__ = ["numpy_twin64", "HOW"]

# What the report says of such a twin.
HOW = (
    "the float64 twin is a copy of the model with its NumPy parameters in float64 (the model "
    "has no astype); its gradients agree with the float32 ones to float32 rounding"
)
# How deep into the model's attributes the parameters are looked for.
_DEPTH = 6


def numpy_twin64(model, params: List[np.ndarray]) -> Optional[object]:
    """A copy of ``model`` whose ``params`` are float64 copies of ``params``, or None when the
    model cannot be copied or its copy's ``params`` are not the arrays put in place."""
    memo: Dict[int, object] = {}
    try:
        twin = copy.deepcopy(model, memo)
    except Exception:  # the user's object: anything it raises means "no twin"
        return None
    copies = [memo.get(id(p)) for p in params]
    if any(not isinstance(c, np.ndarray) for c in copies):
        return None
    wide = {id(c): np.array(c, dtype=np.float64) for c in copies}
    _replace(twin, wide, _DEPTH, set())
    try:
        got = list(twin.params)
    except Exception:
        return None
    want = [wide[id(c)] for c in copies]
    if len(got) != len(want) or any(g is not w for g, w in zip(got, want)):
        return None
    return twin


def _replace(node, wide: Dict[int, np.ndarray], depth: int, seen: set) -> None:
    """Put ``wide[id(a)]`` in place of every array ``a`` held by ``node`` (an object's
    attributes, a dict's values, a list's items, a tuple's items through its holder)."""
    if depth < 0 or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, dict):
        items = list(node.items())
        for key, value in items:
            node[key] = _swapped(value, wide, depth, seen)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            node[i] = _swapped(value, wide, depth, seen)
    elif hasattr(node, "__dict__") and not isinstance(node, type):
        for key, value in list(vars(node).items()):
            new = _swapped(value, wide, depth, seen)
            if new is not value:
                setattr(node, key, new)


def _swapped(value, wide, depth, seen):
    """``value`` with its arrays replaced (a new tuple when a tuple held one)."""
    if isinstance(value, np.ndarray):
        return wide.get(id(value), value)
    if isinstance(value, tuple):
        items = tuple(_swapped(v, wide, depth - 1, seen) for v in value)
        return items if any(a is not b for a, b in zip(items, value)) else value
    if isinstance(value, (dict, list)) or (
        hasattr(value, "__dict__") and not isinstance(value, type)
    ):
        _replace(value, wide, depth - 1, seen)
    return value
