"""What the activation and loss catalogues share: parameters, name lookup, checks, reprs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Tuple


@dataclass(frozen=True)
class Param:
    """A parameter of a catalogue activation or loss.

    ``default`` is what ``get_activation``/``get_loss`` use when it is not given; ``examples`` are
    the values property tests draw (empty: the parameter is not drawn, it stays at its default).
    """

    default: float
    examples: Tuple[float, ...] = ()
    positive: bool = False

    def __post_init__(self):
        number("parameter", "Param", "default", self.default, positive=self.positive)
        for value in self.examples:
            number("parameter", "Param", "each of examples", value, positive=self.positive)


def check_record(kind: str, record, callables: Tuple[str, ...]) -> None:
    """A TypeError naming the first missing or malformed field of a catalogue record."""
    name = getattr(record, "name", None)
    if not isinstance(name, str) or not name or name != name.lower():
        raise TypeError(f"{kind} record: name must be a non-empty lower-case string; got {name!r}.")
    for attr in callables:
        if not callable(getattr(record, attr, None)):
            raise TypeError(
                f"{kind} record {name!r}: {attr} must be callable; "
                f"got {getattr(record, attr, None)!r}."
            )
    params = getattr(record, "params", None)
    if not isinstance(params, Mapping) or not all(isinstance(p, Param) for p in params.values()):
        raise TypeError(f"{kind} record {name!r}: params must map names to Param; got {params!r}.")
    aliases = getattr(record, "aliases", ())
    if not isinstance(aliases, tuple) or not all(isinstance(a, str) for a in aliases):
        raise TypeError(f"{kind} record {name!r}: aliases must be a tuple of names.")


def defaults(record) -> dict:
    return {p: spec.default for p, spec in record.params.items()}


def resolve(kind: str, obj, params: dict, *, cls, records) -> str:
    """The registry key for ``obj`` (a name or an alias), after checking it and ``params``.

    ``kind`` is ``"activation"`` or ``"loss"``; ``records`` maps names to catalogue records.
    """
    if not isinstance(obj, str):
        raise TypeError(
            f"{kind} must be a name or a {cls.__name__}; got {obj!r} of type {type(obj).__name__}."
        )
    aliases = {alias: key for key, rec in records.items() for alias in rec.aliases}
    key = aliases.get(obj.lower(), obj.lower())
    if key not in records:
        raise ValueError(f"Unknown {kind} {obj!r}. Valid names: {', '.join(records)}.")
    unknown = set(params) - set(records[key].params)
    if unknown:
        allowed = ", ".join(records[key].params) or "none"
        raise TypeError(
            f"{kind.capitalize()} {key!r} got unknown parameter(s) {sorted(unknown)}; "
            f"it takes: {allowed}."
        )
    return key


def merged_params(kind: str, record, params: dict) -> dict:
    """The record's defaults updated with ``params``, each checked."""
    merged = {**defaults(record), **params}
    return {
        p: number(kind, record.name, p, v, positive=record.params[p].positive)
        for p, v in merged.items()
    }


def passthrough(kind: str, obj, params: dict):
    """An already-built object is returned as is; parameters cannot be added to it."""
    if params:
        raise TypeError(
            f"get_{kind}: parameters {sorted(params)} given with a built {kind} "
            f"{obj!r}; set them when building it instead."
        )
    return obj


def number(kind: str, key: str, pname: str, value, *, positive: bool = False) -> float:
    """``value`` as a float, or a ValueError naming the parameter."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        what = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{kind.capitalize()} {key!r}: {pname} must be {what}; got {value!r}.")
    return float(value)


def catalogue_call(factory: str, name: str, params, defaults=None) -> str:
    """``name`` alone when ``params`` equal ``defaults``, else ``factory('name', k=v, ...)``."""
    if defaults is not None and dict(params) == dict(defaults):
        return name
    inner = "".join(f", {k}={v!r}" for k, v in params.items())
    return f"{factory}({name!r}{inner})"
