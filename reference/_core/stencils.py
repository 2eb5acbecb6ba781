"""The loss evaluated along lines: every coordinate of a tensor (or some), or random probe
directions, at the five points of finite differences' stencil (``fd``), in as few batched
evaluations as fit in memory; and the noise of one evaluation measured directly, a few ulps from
the point. What the values mean is ``fd``'s business; this module only asks the model."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from .adapter import INPUT, Adapter
from .fd import (
    FLOOR_ULPS,
    NumericalGradient,
    Stencil,
    analyse,
    noise_samples,
    pooled_noise,
    power_of_two_step,
)
from .validate import short_input_errors

__all__ = [
    "coordinate_stencil",
    "coordinate_stencils",
    "directional_stencil",
    "probe_directions",
    "pair_directions",
    "jitter_noise",
    "loss_rounding",
    "numerical_gradients",
]

# Memory bounds of a batched evaluation: at most 2^22 float64 values (32 MB) of perturbed
# parameters per call, and at most 1024 lines (4096 rows) per call, whose intermediate
# activations (rows x batch x width) are the larger cost; every tensor in one call only while
# the stack has at most 8192 rows (2048 coordinates), past which one call per tensor is cheaper
# than carrying every other tensor's unperturbed copies.
_BUDGET = 1 << 22
_MAX_LINES_PER_CALL = 1024
_MAX_ROWS_ONE_CALL = 8192


# The direct noise estimate moves every checked value by this many ulps (relative, as a
# standard deviation)...
_JITTER_ULPS = 4.0
# ... times a uniform draw on [-sqrt(3), sqrt(3)), of unit variance (a quarter of the cost of a
# Gaussian draw, which a million parameters moved 16 times made a fifth of a check)...
_UNIFORM_SPAN = 2.0 * np.sqrt(3.0)
# ... this many times; the standard deviation of the losses is the noise of one evaluation (the
# gradient's own share of the change, |g| |theta| 4 eps, is itself of the order of rounding).
_JITTER_SAMPLES = 16
# The direct estimate is one sample of 16: it is doubled before it bounds the pooled one (its
# chance of falling below half the true noise is 0.2%).
_JITTER_MARGIN = 2.0


_OFFSETS = np.array([-1.0, -0.5, 0.5, 1.0])  # the four perturbed points; f0 is shared


def jitter_noise(adapter: Adapter, f0: float, rng: np.random.Generator) -> float:
    """The rounding noise of one loss evaluation measured directly: the loss at points a few
    ulps from the point, where no kink is crossed. Fourth differences pooled over lines that
    cross kinks (a handful of probes, or a small ReLU network where every line has one) are
    inflated; this is not."""
    rel = _JITTER_ULPS * adapter.eps

    def move(i, k, v, row):
        rng.random(out=row)
        row -= 0.5
        row *= _UNIFORM_SPAN * rel
        row += 1.0
        row *= v

    values = _moved_losses(adapter, _JITTER_SAMPLES, move)
    values = values[np.isfinite(values)]
    floor = FLOOR_ULPS * adapter.eps * max(abs(f0), np.finfo(np.float64).tiny)
    if values.size < 2:
        return floor
    return max(_JITTER_MARGIN * float(np.std(values - f0, ddof=1)), floor)


def _moved_losses(adapter: Adapter, count: int, move) -> np.ndarray:
    """The loss at ``count`` points near the point, each tensor's value at point ``i`` written by
    ``move(i, key, value, row)`` into ``row`` (a view); rounded to the model's dtype.

    The points are drawn tensor by tensor into stacks of as many points as fit finite
    differences' memory bound per call (a million parameters make 4 at a time), and the stacks
    are reused: 16 copies of every parameter at once made a million-parameter check vary from
    0.4 s to 0.7 s from run to run, as fresh memory was mapped for them."""
    base = {k: adapter.value(k) for k in adapter.keys}
    size = max(1, sum(v.size for v in base.values()))
    per_call = max(1, min(count, _BUDGET // size))
    stacks = {k: np.empty((per_call,) + v.shape) for k, v in base.items()}
    values = np.empty(count)
    for start in range(0, count, per_call):
        n = min(per_call, count - start)
        for i in range(n):
            for k, v in base.items():
                row = stacks[k][i, ...]  # a view, also of a 0-d tensor's row
                move(start + i, k, v, row)
                if adapter.dtype != np.float64:
                    row[...] = adapter.cast(row)
        if adapter.batched:
            got = adapter.evaluate_many({k: stack[:n] for k, stack in stacks.items()})
        else:
            got = adapter.evaluate_points([{k: stacks[k][i] for k in base} for i in range(n)])
        values[start : start + n] = got
    return values


# The loss's rounding where every weight moves: lines through every parameter at once, each
# moved by up to about sqrt(eps) of itself (at least of 1)...
_SPREAD_EXPONENT = 0.5
# ... along this many random directions (four new evaluations each, as many as the jitter's).
_SPREAD_LINES = 4


def loss_rounding(adapter: Adapter, f0: float, rng: np.random.Generator) -> float:
    """How far the loss as computed strays from the function it computes, measured where every
    intermediate value moves by many of its ulps: the fourth differences of the loss along
    random lines through every parameter at once (``_SPREAD_LINES`` of them, each parameter
    moved by up to ``2^round(log2(eps^_SPREAD_EXPONENT))`` of max(1, |itself|)), as a standard
    deviation (their root mean square over sqrt(70)); at least ``FLOOR_ULPS`` ulps of ``f0``.

    Along one coordinate, an intermediate the loss is very sensitive to can stay on one
    representable value for the whole stencil (a softmax output 3e-7 from 1, under a
    cross-entropy that divides by that distance, moves by less than its ulp as one weight of
    another class moves by the step): every evaluation rounds it alike, the line's own fourth
    difference sees no noise, and finite differences miss its share of the slope, steadily, by
    up to what that rounding carries into a derivative at the step. Along these lines it moves
    by many ulps, and its rounding shows as noise (1e-12 of a loss of 7, 2,000 of its ulps,
    where the pooled noise is a few ulps). A line that crosses a kink (a ReLU at 0 at the
    point) samples no noise (``noise_samples``)."""
    reach = float(np.exp2(np.round(np.log2(adapter.eps**_SPREAD_EXPONENT))))
    offsets = np.repeat(_OFFSETS[None, :], _SPREAD_LINES, axis=0).reshape(-1)
    draws = {}

    def move(i, k, v, row):
        line = i // _OFFSETS.size
        if (line, k) not in draws:
            draws[(line, k)] = rng.uniform(-reach, reach, np.shape(v)) * np.maximum(1.0, np.abs(v))
        row[...] = v + offsets[i] * draws[(line, k)]

    values = _moved_losses(adapter, offsets.size, move).reshape(_SPREAD_LINES, _OFFSETS.size)
    f = np.insert(values, 2, f0, axis=1)
    s = np.tile(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]), (_SPREAD_LINES, 1))
    floor = FLOOR_ULPS * adapter.eps * max(abs(f0), np.finfo(np.float64).tiny)
    d4 = noise_samples(Stencil(s, f), floor)  # NaN along a line that crosses a kink
    d4 = d4[np.isfinite(d4)]
    if d4.size == 0:
        return floor
    return max(float(np.sqrt(np.mean(d4**2) / 70.0)), floor)


def _run(adapter: Adapter, key, base: np.ndarray, n: int, make_chunk, f0: float) -> Stencil:
    """Evaluate the loss on n lines through ``base``, a chunk of lines per batched call.

    ``make_chunk(start, stop)`` returns the perturbed values, shape (c * 4, size) ordered line by
    line and then by _OFFSETS, and the displacements applied, shape (c, 4).
    """
    f = np.empty((n, 5))
    s = np.empty((n, 5))
    f[:, 2], s[:, 2] = f0, 0.0
    per_chunk = max(1, min(_MAX_LINES_PER_CALL, _BUDGET // (4 * max(1, base.size))))
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        stack, disp = make_chunk(start, stop)
        values = adapter.evaluate(key, stack.reshape((-1,) + base.shape))
        f[start:stop][:, [0, 1, 3, 4]] = values.reshape(stop - start, 4)
        s[start:stop][:, [0, 1, 3, 4]] = disp
    return Stencil(s, f)


def _coordinate_plan(
    adapter: Adapter, key, indices=None, exponent: Optional[int] = None, shrink: int = 0
):
    """(base, indices, steps) of the coordinates to difference in tensor ``key``."""
    base = adapter.value(key)
    flat = base.reshape(-1)
    idx = np.arange(flat.size) if indices is None else np.asarray(indices, dtype=np.int64)
    if exponent is None:
        eps = np.finfo(adapter.dtype.as_numpy_dtype).eps
        steps = power_of_two_step(flat[idx], eps) * 2.0**-shrink
    else:
        steps = np.exp2(exponent + np.round(np.log2(np.maximum(1.0, np.abs(flat[idx])))))
    return base, idx, steps


def _perturbed(adapter: Adapter, flat, idx, steps):
    """Rows ``flat`` with one coordinate moved per row (4 rows per coordinate, by _OFFSETS), and
    the displacements actually applied after rounding to the model's dtype, shape (n, 4)."""
    cols = np.repeat(idx, 4)
    stack = np.tile(flat, (cols.size, 1))
    moved = adapter.cast(flat[cols] + (steps[:, None] * _OFFSETS).reshape(-1))
    stack[np.arange(cols.size), cols] = moved
    return stack, (moved - flat[cols]).reshape(idx.size, 4)


def coordinate_stencils(adapter: Adapter, keys, f0: float, samples: Optional[Dict] = None):
    """Stencils along every coordinate of every tensor in ``keys``, as a dict; and the losses
    at ``samples`` (moves of single elements, ``trust.coordinate_samples``), evaluated in the
    same call of the model's ``coordinate_losses`` (an empty dict without one).

    A model with ``batched_loss`` gets every perturbation of every tensor in one batched call
    when they fit in memory together (each row moves one coordinate of one tensor and keeps the
    rest at its value); otherwise one tensor at a time.
    """
    plans = {k: _coordinate_plan(adapter, k) for k in keys}
    if adapter.has_coordinates:
        return _by_coordinates(adapter, plans, f0, samples or {})
    return _by_stacks(adapter, plans, keys, f0), {}


def _by_stacks(adapter: Adapter, plans, keys, f0: float):
    """Stencils by whole stacks of parameters (one batched call for every tensor while they fit
    in memory together), or one tensor at a time."""
    rows = sum(4 * plan[1].size for plan in plans.values())
    width = sum(plan[0].size for plan in plans.values())
    if not (adapter.batched and rows * width <= _BUDGET and rows <= _MAX_ROWS_ONE_CALL):
        return {k: coordinate_stencil(adapter, k, f0) for k in keys}
    stacks, disps, offset = {}, {}, 0
    for k, (base, idx, steps) in plans.items():
        flat = base.reshape(-1)
        block, disps[k] = _perturbed(adapter, flat, idx, steps)
        full = np.tile(flat, (rows, 1))
        full[offset : offset + block.shape[0]] = block
        stacks[k] = full.reshape((rows,) + base.shape)
        offset += block.shape[0]
    values = adapter.evaluate_many(stacks)
    out, offset = {}, 0
    for k, (_base, idx, _steps) in plans.items():
        n = idx.size
        f = np.empty((n, 5))
        s = np.empty((n, 5))
        f[:, 2], s[:, 2] = f0, 0.0
        f[:, [0, 1, 3, 4]] = values[offset : offset + 4 * n].reshape(n, 4)
        s[:, [0, 1, 3, 4]] = disps[k]
        out[k] = Stencil(s, f)
        offset += 4 * n
    return out


def _by_coordinates(adapter: Adapter, plans, f0: float, samples: Dict):
    """Stencils of the parameters by the model's ``coordinate_losses`` (one call for all, with
    the ``samples`` of the spot check), and of dL/dX by whole stacks; and the samples' losses."""
    moves, disps = {}, {}
    for k, (base, idx, steps) in plans.items():
        if k == INPUT:
            continue
        flat = base.reshape(-1)
        cols = np.repeat(idx, 4)
        moved = adapter.cast(flat[cols] + (steps[:, None] * _OFFSETS).reshape(-1))
        disps[k] = (moved - flat[cols]).reshape(idx.size, 4)
        moves[k] = (cols, disps[k].reshape(-1))
    asked = {
        k: (
            np.concatenate([moves[k][0], samples[k][0]]),
            np.concatenate([moves[k][1], samples[k][1]]),
        )
        if k in samples
        else moves[k]
        for k in moves
    }
    values = adapter.evaluate_coordinates(asked) if asked else {}
    sampled = {k: values[k][len(moves[k][0]) :] for k in samples if k in moves}
    out = {}
    for k in plans:
        if k == INPUT:
            out[k] = coordinate_stencil(adapter, k, f0)
            continue
        n = plans[k][1].size
        f = np.empty((n, 5))
        s = np.empty((n, 5))
        f[:, 2], s[:, 2] = f0, 0.0
        f[:, [0, 1, 3, 4]] = values[k][: 4 * n].reshape(n, 4)
        s[:, [0, 1, 3, 4]] = disps[k]
        out[k] = Stencil(s, f)
    return out, sampled


def coordinate_stencil(
    adapter: Adapter,
    key,
    f0: float,
    indices=None,
    exponent: Optional[int] = None,
    shrink: int = 0,
) -> Stencil:
    """Stencils along the coordinates ``indices`` (flat; default all) of tensor ``key``.

    The step is the harness's own (``power_of_two_step``, divided by ``2^shrink``) unless
    ``exponent`` fixes it at ``2^exponent * max(1, |theta|)`` (for studying the step-size
    trade-off). The displacements recorded are the ones actually applied after rounding to the
    model's dtype.
    """
    base, idx, steps = _coordinate_plan(adapter, key, indices, exponent, shrink)
    flat = base.reshape(-1)

    def make_chunk(start, stop):
        return _perturbed(adapter, flat, idx[start:stop], steps[start:stop])

    return _run(adapter, key, base, idx.size, make_chunk, f0)


def probe_directions(shape, probes: int, rng: np.random.Generator, mask=None) -> np.ndarray:
    """``probes`` Gaussian directions over the tensor (or its masked part), scaled so their
    largest entry is 1: every tensor, large or small, is perturbed on its own scale."""
    size = int(np.prod(shape))
    v = rng.normal(size=(probes, size))
    if mask is not None:
        v = v * np.asarray(mask, dtype=np.float64).reshape(1, -1)
    return v / np.max(np.abs(v), axis=1, keepdims=True)


def pair_directions(coords: np.ndarray, values: np.ndarray, most: int) -> np.ndarray:
    """Directions e_i + e_j over pairs of coordinates with kinks (``coords``, flat, sorted):
    consecutive in flat order (tied maxima of a row, zeros side by side), and each with the
    coordinates whose input ``values`` equal its own (the partners of a tie, wherever they lie,
    and whether or not they were differenced: directional mode differences only some), at most
    ``most``: along them a derivative given in full to both (a tie's gradient counted
    twice) is no subgradient."""
    pairs = list(zip(coords[:-1].tolist(), coords[1:].tolist()))
    for i in coords.tolist():
        partners = np.flatnonzero(values == values[i])
        pairs.extend((min(i, j), max(i, j)) for j in partners.tolist() if j != i)
    pairs = list(dict.fromkeys(pairs))[:most]  # the consecutive ones first
    dirs = np.zeros((len(pairs), values.size))
    for row, (i, j) in enumerate(pairs):
        dirs[row, i] = dirs[row, j] = 1.0
    return dirs


def directional_stencil(
    adapter: Adapter, key, f0: float, directions: np.ndarray, shrink: int = 0
) -> Stencil:
    """Stencils along probe directions of tensor ``key`` (rows of ``directions``), with one
    power-of-two step for the tensor, relative to its largest entry (divided by ``2^shrink``)."""
    base = adapter.value(key)
    flat = base.reshape(-1)
    eps = np.finfo(adapter.dtype.as_numpy_dtype).eps
    step = float(power_of_two_step(np.max(np.abs(flat)) if flat.size else 0.0, eps))
    step *= 2.0**-shrink

    def make_chunk(start, stop):
        disp = np.tile(step * _OFFSETS, (stop - start, 1))
        stack = flat[None, None, :] + disp[:, :, None] * directions[start:stop, None, :]
        return stack.reshape(-1, flat.size), disp

    return _run(adapter, key, base, len(directions), make_chunk, f0)


@short_input_errors
def numerical_gradients(model, X, y, *, include_input: bool = False) -> List[NumericalGradient]:
    """Finite-difference gradients of every tensor in ``model.params`` (and ``dL/dX`` with
    ``include_input``), element by element, in float64 when the model has ``astype``.

    Each result carries the value, its error estimate and the kinks found; ``value`` has the
    tensor's shape. The model is left exactly as it was.
    """
    adapter = Adapter(model, X, y, include_input=include_input).twin64()
    f0 = adapter.loss_value()
    stencils, _ = coordinate_stencils(adapter, adapter.keys, f0)
    sigma = pooled_noise(list(stencils.values()), f0, adapter.eps)
    return [
        analyse(adapter.name(key), stencils[key], sigma).reshaped(adapter.shape(key))
        for key in adapter.keys
    ]
