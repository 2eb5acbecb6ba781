"""What a check may trust besides the model's own loss: its float64 twin, its ``batched_loss``
(or its loss compiled into a graph) and its ``coordinate_losses``.

A witness built on something other than the code under test is no witness: ``astype`` of an
``MLP`` subclass returns a plain ``MLP``, a subclass that overrides ``loss`` inherits a
``batched_loss`` that computes the parent's loss, and a graph traced from a loss keeps the Python
state it was traced with. Each is used only once it is shown to be the same code:

- the twin when it is of the model's own type and its gradients agree with the model's float32
  ones to float32 rounding (``twin_agreement``);
- ``batched_loss``, or the compiled loss, when it equals ``loss`` at the point and at random
  points around it (``batched_problem``);
- ``coordinate_losses`` when it equals ``batched_loss`` at random elements of every parameter
  (``coordinate_samples``, ``coordinate_problem``).

Otherwise the model is judged as it is, and the report says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from .._core.adapter import INPUT, Adapter, guarded
from .._core.policy import floors, magnitude, resolutions, rounding_bound
from .._core.tape import tape_values

__all__ = [
    "TwinAgreement",
    "twin_agreement",
    "batched_problem",
    "coordinate_problem",
    "coordinate_samples",
    "TAPE_DEVIATION_FACTOR",
]

# The float32 gradient may differ from its float64 twin by the float32 tape tolerance, by this
# many times the difference TensorFlow's own tape shows between float32 and float64 on the same
# model (rounding any formula of these values carries), or by the rounding bound of the policy.
TAPE_DEVIATION_FACTOR = 4.0
# batched_loss must equal loss to this many ulps of max(|loss|, 1): two float64 (float32)
# forwards of one network written for one and for K rows agree to a few ulps of their largest
# intermediate; a regulariser or any term batched_loss leaves out differs by far more, unless it
# is too small to move any finite difference.
BATCHED_ULPS = 1024
# batched_loss is compared with loss at the point and at this many random points around it,
# each parameter moved by this relative amount (so a term that vanishes at the point, such as
# a penalty on biases that are zero, still shows).
_BATCHED_POINTS = 2
_BATCHED_MOVE = 1e-2


@dataclass
class TwinAgreement:
    """The model's float32 gradients against its float64 twin's, tensor by tensor.

    ``deviation``, ``tape_deviation`` and ``tolerance`` are absolute (the largest difference of
    the finite float32 values, TensorFlow's own float32-vs-float64 difference, and what is
    allowed, on the scale the tensor is judged on); ``overflow`` marks values finite in float64
    only; ``scale`` is each tensor's largest gradient, ``rtol`` the float32 tape tolerance;
    ``own`` the model's own float32 gradients.
    """

    deviation: Dict
    tape_deviation: Dict
    tolerance: Dict
    overflow: Dict
    scale: Dict
    rtol: float
    own: Dict

    @property
    def same_code(self) -> bool:
        return all(self.deviation[k] <= self.tolerance[k] for k in self.deviation)

    def worst(self) -> object:
        """The key whose deviation exceeds its tolerance the most."""
        return max(self.deviation, key=lambda k: self.deviation[k] / self.tolerance[k])


def twin_agreement(adapter: Adapter, twin: Adapter, rtol32: float, manual64, tape64):
    """How far the model's own float32 gradients are from its twin's (``manual64``,
    ``tape64``, already asked), against what float32 rounding allows."""
    manual32, tape32 = adapter.manual(), tape_values(adapter)
    f32 = guarded("model.loss(X, y)", adapter.loss_value)
    base = floors(adapter.keys, manual64, tape64)
    resolution = resolutions(adapter, adapter.keys, f32)
    largest = max(magnitude(manual64[k], tape64[k]) for k in adapter.keys)
    bound = rounding_bound(adapter.eps, largest)
    out = TwinAgreement({}, {}, {}, {}, {}, rtol32, manual32)
    for k in adapter.keys:
        out.scale[k] = magnitude(manual64[k], tape64[k])
        scale = max(out.scale[k], base[k])
        finite = np.isfinite(manual32[k])
        with np.errstate(invalid="ignore"):
            diff = np.abs(manual32[k] - manual64[k])
            # TensorFlow's own float32 rounding on this model, where its tape witnesses.
            tape_dev = (
                np.zeros(1)
                if tape32[k] is None or tape64[k] is None
                else np.abs(tape32[k] - tape64[k])
            )
        out.overflow[k] = ~finite & np.isfinite(manual64[k])
        out.deviation[k] = float(np.max(np.where(finite, np.nan_to_num(diff, nan=np.inf), 0.0)))
        tdev = float(np.max(np.nan_to_num(tape_dev, nan=0.0), initial=0.0))
        out.tape_deviation[k] = tdev
        out.tolerance[k] = max(rtol32 * scale, resolution[k], TAPE_DEVIATION_FACTOR * tdev, bound)
    return out


def batched_problem(adapter: Adapter, seed: int, f0: Optional[float] = None) -> Optional[str]:
    """None when the batched path finite differences will use (the model's ``batched_loss``,
    or its loss compiled into a graph) computes the model's ``loss``; otherwise where it does
    not. ``f0``: the loss at the point, when it is known. The parameters are left
    bit-identical."""
    rng = np.random.default_rng(seed + 2)
    base = {k: adapter.value(k) for k in adapter.keys}

    def moved(v):
        return adapter.cast(
            v + _BATCHED_MOVE * np.maximum(1.0, np.abs(v)) * rng.normal(size=v.shape)
        )

    points = [base] + [{k: moved(v) for k, v in base.items()} for _ in range(_BATCHED_POINTS)]
    stacks = {k: np.stack([p[k] for p in points]) for k in adapter.keys}
    own = adapter.has_batched_loss
    if own:
        batched = guarded("model.batched_loss", adapter.evaluate_many, stacks)
    else:
        try:  # the compiled graph is the harness's own: its failure is not the model's
            batched = adapter.evaluate_many(stacks)
        except Exception as exc:
            return (
                f"model.loss compiled into a graph raised {type(exc).__name__} when evaluated: "
                f"finite differences evaluated loss() eagerly, one point at a time (slower)"
            )
    if f0 is None:
        eager = guarded("model.loss(X, y)", adapter.evaluate_points, points)
    else:  # the loss at the point is known (the purity pass): only the points around it
        eager = np.concatenate(
            [[f0], guarded("model.loss(X, y)", adapter.evaluate_points, points[1:])]
        )
    tol = BATCHED_ULPS * adapter.eps * np.maximum(np.abs(eager), 1.0)
    bad = ~(np.abs(batched - eager) <= tol)
    if not np.any(bad):
        return None
    i = int(np.argmax(bad))
    where = "at the point" if i == 0 else "at a point near it"
    if own:
        return (
            f"model.batched_loss disagrees with model.loss {where} ({batched[i]:.12g} against "
            f"{eager[i]:.12g}; a subclass that overrides loss inherits the parent's "
            f"batched_loss): finite differences evaluated loss() one point at a time instead"
        )
    return (
        f"model.loss compiled into a graph disagrees with model.loss run eagerly {where} "
        f"({batched[i]:.12g} against {eager[i]:.12g}; the loss depends on Python state the graph "
        f"cannot follow): finite differences evaluated loss() eagerly, one point at a time"
    )


# coordinate_losses is compared with batched_loss (itself compared with loss) at this many random
# elements of every parameter, each moved by _BATCHED_MOVE * 10 relative (one element moved by
# 1e-2 can leave the loss within rounding of where it was), in one call of each.
_COORDINATE_SAMPLES = 8
_COORDINATE_MOVE = 10 * _BATCHED_MOVE


def coordinate_samples(adapter: Adapter, seed: int) -> Dict:
    """Random elements of every parameter, each with a substantive move, for the spot check of
    ``coordinate_losses`` (``coordinate_problem``); finite differences evaluate them in their
    own call (``fd.coordinate_stencils``), so the check costs no call of its own."""
    rng = np.random.default_rng(seed + 3)
    moves = {}
    for k in (k for k in adapter.keys if k != INPUT):
        flat = adapter.value(k).reshape(-1)
        idx = rng.choice(flat.size, size=min(flat.size, _COORDINATE_SAMPLES), replace=False)
        moved = adapter.cast(
            flat[idx]
            + _COORDINATE_MOVE * np.maximum(1.0, np.abs(flat[idx])) * rng.normal(size=idx.size)
        )
        moves[k] = (idx, moved - flat[idx])
    return moves


def coordinate_problem(adapter: Adapter, moves: Dict, values: Dict) -> Optional[str]:
    """None when the model's ``coordinate_losses`` gave at the sampled ``moves`` (``values``)
    what its (trusted) ``batched_loss`` gives there; otherwise where it did not.

    The spot check is a few elements; finite differences do not rest on it alone: every line
    whose estimate decides anything (a kink, a value that the manual gradient or the tape does
    not match) is differenced again at smaller steps through ``batched_loss``, and the estimate
    from ``coordinate_losses`` is kept only where it agrees with those (``refinement.refine``)."""
    got = np.concatenate([values[k] for k in moves])
    dense = guarded("model.batched_loss", _dense_moves, adapter, moves)
    tol = BATCHED_ULPS * adapter.eps * np.maximum(np.abs(dense), 1.0)
    bad = ~(np.abs(got - dense) <= tol)
    if not np.any(bad):
        return None
    r = int(np.argmax(bad))
    offset = 0
    for k, (idx, _) in moves.items():
        if r < offset + idx.size:
            where = np.unravel_index(int(idx[r - offset]), adapter.shape(k))
            name = adapter.name(k)
            break
        offset += idx.size
    return (
        f"model.coordinate_losses disagrees with model.batched_loss with {name}"
        f"{list(map(int, where))} moved ({got[r]:.12g} against {dense[r]:.12g}): finite "
        f"differences evaluated whole stacks of parameters instead"
    )


def _dense_moves(adapter: Adapter, moves) -> np.ndarray:
    """The losses of ``moves`` (one element moved per row) by whole stacks of parameters: every
    tensor in one call while they fit in memory together, else one call per tensor."""
    rows = sum(len(m[0]) for m in moves.values())
    base = {k: adapter.value(k) for k in moves}
    width = sum(v.size for v in base.values())
    if rows * width <= _DENSE_BUDGET:
        stacks = {k: np.broadcast_to(v, (rows,) + v.shape).copy() for k, v in base.items()}
        offset = 0
        for k, (idx, delta) in moves.items():
            stacks[k].reshape(rows, -1)[offset + np.arange(idx.size), idx] += delta
            offset += idx.size
        return adapter.evaluate_many(stacks)
    out = []
    for k, (idx, delta) in moves.items():
        stack = np.broadcast_to(base[k], (idx.size,) + base[k].shape).copy()
        stack.reshape(idx.size, -1)[np.arange(idx.size), idx] += delta
        out.append(adapter.evaluate_many({k: stack}))
    return np.concatenate(out)


_DENSE_BUDGET = 1 << 20
