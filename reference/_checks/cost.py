"""What a check will cost, estimated before it runs: the number of loss evaluations its mode
makes, times one evaluation timed on the model itself (a batched call's cost per row when the
model has a trusted ``batched_loss``). A full check of a large model (every parameter
differenced, each difference a forward pass) can take minutes; it is refused above a limit with
advice to use directional mode, unless the caller lifts the limit."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._core.adapter import Adapter, guarded

__all__ = ["Estimate", "estimate", "evaluations", "too_slow", "worth_compiling", "MAX_SECONDS"]

# A full check estimated to take longer than this is refused (check_gradients' max_seconds).
MAX_SECONDS = 60.0
# Each differenced coordinate costs four evaluations; refinement near kinks, the rounding test
# and the direct noise measurement add about this fraction (measured on the catalogue: 5-20%).
_OVERHEAD = 1.25
# Rows of the batched call that is timed (the model is warm by then: the purity check and the
# batched_loss spot check have evaluated it).
_TIMED_ROWS = 64
# coordinate_losses costs little per row and much per call: timed on as many rows as a full
# check of a small model makes in one call, so that the per-call cost is not taken per row.
_TIMED_COORDINATE_ROWS = 1024


@dataclass(frozen=True)
class Estimate:
    """``evaluations`` loss evaluations at ``per_evaluation`` seconds each: ``seconds``."""

    evaluations: int
    per_evaluation: float

    @property
    def seconds(self) -> float:
        return self.evaluations * self.per_evaluation

    def text(self) -> str:
        return (
            f"about {_duration(self.seconds)} ({self.evaluations:,} loss evaluations at "
            f"{self.per_evaluation * 1e3:.3g} ms each)"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def evaluations(adapter: Adapter, keys, full: bool, probes: int) -> int:
    """The loss evaluations a check of ``adapter``'s tensors ``keys`` makes, about."""
    if full:
        lines = sum(int(np.prod(adapter.shape(k), dtype=np.int64)) for k in keys)
    else:
        lines = probes * len(keys) + sum(
            min(256, int(np.prod(adapter.shape(k), dtype=np.int64))) for k in keys
        )
    return int(4 * lines * _OVERHEAD)


def estimate(adapter: Adapter, keys, full: bool, probes: int) -> Estimate:
    """The cost of a check of ``adapter``'s tensors ``keys`` in full or directional mode."""
    return Estimate(evaluations(adapter, keys, full, probes), _time_one(adapter, keys[0]))


def too_slow(adapter: Adapter, keys, probes: int, max_seconds: float):
    """The estimate of a full check when it exceeds ``max_seconds``, else None. One loss call
    bounds the cost of an evaluation from above (a batched call costs less per row); only when
    that bound exceeds the limit is the check's own way of evaluating timed."""
    count = evaluations(adapter, keys, True, probes)
    if count * _one_loss(adapter) <= max_seconds:
        return None
    est = estimate(adapter, keys, True, probes)
    return est if est.seconds > max_seconds else None


# Compiling a loss into a batched graph costs about 0.1 s (tracing, vectorizing, optimizing); it
# is worth it when the evaluations it replaces would take longer than this one at a time...
COMPILE_WORTH_SECONDS = 0.25
# ... and while the model is small enough that each evaluation is dominated by the cost of
# dispatching its ops, not by their arithmetic (a batched graph call stacks every parameter of
# every variant, so past this many parameters it saves little and costs memory).
COMPILE_MAX_PARAMS = 1 << 17


def worth_compiling(adapter: Adapter, keys, full: bool, probes: int) -> bool:
    """Whether compiling the loss pays for itself on this check: the evaluations it would make
    one at a time, timed by one eager loss call, take longer than ``COMPILE_WORTH_SECONDS``."""
    size = sum(int(np.prod(adapter.shape(k), dtype=np.int64)) for k in keys)
    if adapter.numpy_params or size > COMPILE_MAX_PARAMS:
        return False
    return evaluations(adapter, keys, full, probes) * _one_loss(adapter) > COMPILE_WORTH_SECONDS


def _one_loss(adapter: Adapter) -> float:
    """Seconds of one eager loss() call: the latest one the check made, or one timed now."""
    if adapter.loss_seconds is None:
        guarded("model.loss while timing the check", adapter.loss_value)
    return adapter.loss_seconds


def _time_one(adapter: Adapter, key) -> float:
    """Seconds per loss evaluation, as finite differences will make them (the faster of two
    timed calls): by ``coordinate_losses`` over every parameter when the model has it (a move of
    a low layer costs more than one of the output layer), else by a stack of ``key``."""
    if adapter.has_coordinates:
        keys = [k for k in adapter.keys if isinstance(k, int)]
        per = max(1, _TIMED_COORDINATE_ROWS // len(keys))
        sizes = {k: int(np.prod(adapter.shape(k))) for k in keys}
        moves = {k: (np.arange(per) % sizes[k], np.zeros(per)) for k in keys}
        rows = per * len(keys)

        def call():
            return adapter.evaluate_coordinates(moves)

    else:
        base = adapter.value(key)
        rows = _TIMED_ROWS if adapter.batched else 2
        stack = np.broadcast_to(base, (rows,) + base.shape).copy()

        def call():
            return adapter.evaluate(key, stack)

    hook, adapter.on_evaluated = adapter.on_evaluated, None
    try:
        best = np.inf
        for _ in range(2):
            start = time.perf_counter()
            guarded("model.loss while timing the check", call)
            best = min(best, (time.perf_counter() - start) / rows)
    finally:
        adapter.on_evaluated = hook
    return float(best)
