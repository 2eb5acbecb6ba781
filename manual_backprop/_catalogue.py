"""What the activation and loss registries share: name lookup, parameter checks, reprs."""

from __future__ import annotations

import math


def resolve(kind: str, obj, params: dict, *, cls, names, aliases, param_names) -> str:
    """The registry key for ``obj`` (a name), after checking it and ``params``.

    ``kind`` is ``"activation"`` or ``"loss"``; ``param_names(key)`` lists what ``key`` takes.
    """
    if not isinstance(obj, str):
        raise TypeError(f"{kind} must be a name or a {cls.__name__}; got {obj!r} of type "
                        f"{type(obj).__name__}.")
    key = aliases.get(obj.lower(), obj.lower())
    if key not in names:
        raise ValueError(f"Unknown {kind} {obj!r}. Valid names: {', '.join(names)}.")
    unknown = set(params) - set(param_names(key))
    if unknown:
        allowed = ", ".join(param_names(key)) or "none"
        raise TypeError(f"{kind.capitalize()} {key!r} got unknown parameter(s) {sorted(unknown)}; "
                        f"it takes: {allowed}.")
    return key


def passthrough(kind: str, obj, params: dict):
    """An already-built object is returned as is; parameters cannot be added to it."""
    if params:
        raise TypeError(f"get_{kind}: parameters {sorted(params)} given with a built {kind} "
                        f"{obj!r}; set them when building it instead.")
    return obj


def number(kind: str, key: str, pname: str, value, *, positive: bool = False) -> float:
    """``value`` as a float, or a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (positive and value <= 0):
        what = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{kind.capitalize()} {key!r}: {pname} must be {what}; got {value!r}.")
    return float(value)


def catalogue_call(factory: str, name: str, params, defaults=None) -> str:
    """``name`` alone when ``params`` equal ``defaults``, else ``factory('name', k=v, ...)``."""
    if defaults is not None and dict(params) == dict(defaults):
        return name
    inner = "".join(f", {k}={v!r}" for k, v in params.items())
    return f"{factory}({name!r}{inner})"
