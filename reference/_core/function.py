"""A function of several tensors seen by the judges: its inputs, its outputs, and evaluations
at batches of perturbed inputs for finite differences.

``VectorFunction`` wraps any callable of tensors that returns a tensor or a tuple/list of
tensors (a user's ``fn``, or the first-order gradient of one when the second order is judged).
Finite differences evaluate it in float64 whenever it accepts float64 inputs (a dtype-generic
function written in TF ops), otherwise in the inputs' own dtype. Batches of points are evaluated
through one ``tf.function`` over ``tf.vectorized_map`` where that traces and agrees with the
eager evaluation at the point, one point at a time otherwise.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .fd import computes_in_float32, power_of_two_step
from .validate import InputTypeError

__all__ = ["VectorFunction", "flat_tensors", "changed_scale", "FLOAT_DTYPES"]

FLOAT_DTYPES = ("float32", "float64")
# At most this many float64 values (inputs and outputs of every point) per batched call: 32 MB.
_BUDGET = 1 << 22
# The vectorized evaluation is trusted when it matches the eager one at the point to this many
# ulps of the output's largest magnitude (batched kernels may sum in another order).
_VECTORIZED_ULPS = 64
_OFFSETS = np.array([-1.0, -0.5, 0.5, 1.0])  # the four perturbed points of a line; f0 is shared


def changed_scale(changes: np.ndarray, f0: np.ndarray, projector) -> np.ndarray:
    """The rounding scale of each line's projected change: ``sum_o |P_o| |f0_o|`` over the
    outputs that change anywhere along the line (``changes`` (n, 4 or 5, n_out)); the outputs
    that do not change are bit for bit the same and add no rounding. ``projector`` None is the
    identity (each output its own column)."""
    scale = np.any(changes != 0.0, axis=1) * np.abs(f0)
    return scale if projector is None else scale @ np.abs(projector)


def _quiet(function) -> None:
    """No "triggered tf.function retracing" warnings from ``function``: each check compiles
    its own functions, once, by design. (A private flag of tf.function; without it only the
    warning returns.)"""
    function._omit_frequent_tracing_warning = True


def flat_tensors(result, what: str, fix: str) -> List[tf.Tensor]:
    """A tensor, or a tuple/list of tensors, as a list; ``TypeError`` naming ``what`` otherwise."""
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    if not items:
        raise InputTypeError(f"{what} returned an empty {type(result).__name__}; {fix}")
    for i, item in enumerate(items):
        if not isinstance(item, (tf.Tensor, tf.Variable)):
            where = what if len(items) == 1 and item is result else f"{what}[{i}]"
            raise InputTypeError(f"{where} is a {type(item).__name__}, not a tensor; {fix}")
        if item.dtype.name not in FLOAT_DTYPES:
            raise InputTypeError(
                f"{what} returned a {item.dtype.name} tensor; only float32 and float64 outputs "
                f"can be differentiated. {fix}"
            )
    return [tf.convert_to_tensor(t) for t in items]


class VectorFunction:
    """``call(*tensors) -> list of tensors`` at fixed ``inputs`` (NumPy arrays of one float
    dtype), with its outputs at the point and evaluations at batches of points."""

    def __init__(self, call: Callable, inputs: Sequence[np.ndarray], what: str):
        self.call = call
        self.what = what
        self.inputs = [np.asarray(x) for x in inputs]
        self.dtype = self.inputs[0].dtype
        self.in_shapes = [x.shape for x in self.inputs]
        self.in_sizes = [int(x.size) for x in self.inputs]
        outputs = call(*[tf.constant(x) for x in self.inputs])
        self.out_shapes = [tuple(t.shape) for t in outputs]
        self.out_sizes = [int(np.prod(s, dtype=np.int64)) for s in self.out_shapes]
        self.out_dtype = outputs[0].dtype
        self.fd_dtype = self._fd_dtype()
        self.precision = self._precision()
        self.eps = float(np.finfo(self.precision).eps)
        self.point = [x.astype(self.fd_dtype).astype(np.float64) for x in self.inputs]
        self.f0 = self.evaluate_one(self.point)
        self._vectorized: Optional[Callable] = None
        self._tried = False
        self._coordinate_fns = {}  # input -> its compiled coordinate evaluation, or None
        self.note: Optional[str] = None  # why the vectorized evaluation is not used

    @property
    def n_out(self) -> int:
        return int(sum(self.out_sizes))

    def _fd_dtype(self):
        """float64 when the function accepts float64 inputs and returns float64 outputs of the
        same shapes; otherwise the inputs' own dtype."""
        if self.dtype == np.float64:
            return np.dtype(np.float64)
        try:
            out = self.call(*[tf.constant(x.astype(np.float64)) for x in self.inputs])
        except Exception:  # a function that only takes its own dtype is evaluated in it
            return self.dtype
        if all(t.dtype == tf.float64 for t in out) and [tuple(t.shape) for t in out] == list(
            self.out_shapes
        ):
            return np.dtype(np.float64)
        return self.dtype

    def _precision(self):
        """The precision finite differences resolve: the dtype they take the inputs in, or
        float32 where fn computes in float32 (``fd.computes_in_float32``: a Keras layer given
        float64 inputs, whatever dtype it returns)."""
        if self.fd_dtype == np.float64 and computes_in_float32(self._outputs_at, self.inputs):
            return np.dtype(np.float32)
        return self.fd_dtype

    def _outputs_at(self, xs) -> np.ndarray:
        return np.concatenate([np.ravel(t.numpy()) for t in self.call(*map(tf.constant, xs))])

    def cast(self, values: np.ndarray) -> np.ndarray:
        """Values as the function sees them in finite differences, back in float64."""
        return np.asarray(values).astype(self.fd_dtype).astype(np.float64)

    # --- evaluations --------------------------------------------------------------------------

    def evaluate_one(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """The outputs at one point, flattened and concatenated, as float64."""
        out = self.call(*[tf.constant(np.asarray(x, self.fd_dtype)) for x in xs])
        return np.concatenate([np.asarray(t.numpy(), np.float64).reshape(-1) for t in out])

    def evaluate(self, stacks: Sequence[np.ndarray]) -> np.ndarray:
        """The outputs at R points (``stacks[a]`` has shape ``(R, *in_shape[a])``), as float64
        of shape (R, n_out)."""
        fast = self._vectorized_call(stacks)
        if fast is not None:
            return fast
        rows = len(stacks[0])
        return np.stack([self.evaluate_one([s[r] for s in stacks]) for r in range(rows)])

    def _ensure_compiled(self) -> None:
        if not self._tried:
            self._tried = True
            self._vectorized = self._compile()

    def _vectorized_call(self, stacks) -> Optional[np.ndarray]:
        self._ensure_compiled()
        if self._vectorized is None:
            return None
        out = self._vectorized(*[tf.constant(np.asarray(s, self.fd_dtype)) for s in stacks])
        rows = len(stacks[0])
        return np.concatenate(
            [np.asarray(t.numpy(), np.float64).reshape(rows, -1) for t in out], axis=1
        )

    def _compile(self) -> Optional[Callable]:
        """The batched evaluation, or None (with ``note`` saying why) when it does not trace or
        disagrees with the eager evaluation at the point."""
        call = self.call

        @tf.function(reduce_retracing=True)
        def batched(*stacks):
            return tf.vectorized_map(
                lambda xs: tuple(call(*xs)), tuple(stacks), fallback_to_while_loop=True
            )

        _quiet(batched)
        point = [np.stack([x, x]) for x in self.point]
        try:
            out = batched(*[tf.constant(np.asarray(p, self.fd_dtype)) for p in point])
            got = np.concatenate([np.asarray(t.numpy(), np.float64).reshape(2, -1) for t in out], 1)
        except Exception as exc:  # anything that does not trace is evaluated eagerly
            self.note = (
                f"{self.what} could not be vectorized ({type(exc).__name__}); it is evaluated "
                f"one point at a time"
            )
            return None
        bound = (
            _VECTORIZED_ULPS * self.eps * max(float(np.max(np.abs(self.f0), initial=0.0)), 1e-300)
        )
        gap = float(np.max(np.abs(got - self.f0[None, :]), initial=0.0))
        if got.shape != (2, self.f0.size) or not gap <= bound:
            self.note = (
                f"{self.what} evaluated in a batch differs from its eager evaluation by {gap:.3g} "
                f"(more than {bound:.3g}); it is evaluated one point at a time"
            )
            return None
        # Every value of a stencil comes from one code path: the point too.
        self.f0 = got[0]
        return batched

    # --- lines for finite differences ---------------------------------------------------------

    def _rows_per_call(self) -> int:
        width = sum(self.in_sizes) + self.n_out
        return max(4, (_BUDGET // max(1, width)) // 4 * 4)

    def coordinate_lines(self, a: int, idx: np.ndarray, projector: np.ndarray, shrink: int = 0):
        """Five-point stencils along coordinates ``idx`` (flat) of input ``a``, the outputs
        projected on the columns of ``projector`` (n_out, m): (s of shape (n, 5), f of shape
        (n, 5, m), and the rounding scale of each line's projected change, (n, m): the
        projection on ``|projector|`` of ``|f0|`` over the outputs that change along the line).
        The step is ``power_of_two_step`` divided by ``2^shrink``; the displacements recorded
        are the ones applied after rounding to the evaluation dtype."""
        self._ensure_compiled()
        idx = np.asarray(idx, dtype=np.int64)
        flat = self.point[a].reshape(-1)
        steps = power_of_two_step(flat[idx], self.eps) * 2.0**-shrink
        n, m = idx.size, projector.shape[1]
        s = np.zeros((n, 5))
        f = np.empty((n, 5, m))
        scale = np.zeros((n, m))
        # The outputs' changes are projected, not the outputs: an input moves few outputs of
        # many (a matmul's row), and the rounding of a projection of every output would swamp
        # the change.
        f[:, 2] = 0.0
        per = max(1, self._rows_per_call() // 4)
        compiled = self._coordinate_fn(a, projector)
        for start in range(0, n, per):
            stop = min(n, start + per)
            cols = np.repeat(idx[start:stop], 4)
            moved = self.cast(flat[cols] + (steps[start:stop, None] * _OFFSETS).reshape(-1))
            s[start:stop][:, [0, 1, 3, 4]] = (moved - flat[cols]).reshape(stop - start, 4)
            if compiled is not None:
                values, rows_scale = compiled(
                    tf.constant(cols, tf.int32),
                    tf.constant(moved.astype(self.fd_dtype)),
                    tf.constant(projector),
                )
                f[start:stop][:, [0, 1, 3, 4]] = values.numpy().reshape(stop - start, 4, m)
                scale[start:stop] = np.max(rows_scale.numpy().reshape(stop - start, 4, m), axis=1)
                continue
            block = np.tile(flat, (cols.size, 1))
            block[np.arange(cols.size), cols] = moved
            stacks = [
                block.reshape((-1,) + self.in_shapes[b])
                if b == a
                else np.broadcast_to(self.point[b], (cols.size,) + self.in_shapes[b])
                for b in range(len(self.point))
            ]
            changes = (self.evaluate(stacks) - self.f0).reshape(stop - start, 4, -1)
            f[start:stop][:, [0, 1, 3, 4]] = changes @ projector
            scale[start:stop] = changed_scale(changes, self.f0, projector)
        return s, f, scale

    def _coordinate_fn(self, a: int, projector: np.ndarray) -> Optional[Callable]:
        """One compiled call that builds the perturbed copies of input ``a`` (one coordinate
        moved per row), evaluates the function on them (the other inputs as they are), and
        returns the outputs' changes projected: nothing of the size of the inputs or outputs
        crosses into NumPy. None when the batched evaluation is not used, or this one does not
        give the point's outputs back at the point."""
        if self._vectorized is None:
            return None
        if a in self._coordinate_fns:
            return self._coordinate_fns[a]
        call, n_in = self.call, len(self.point)
        point = [tf.constant(x.astype(self.fd_dtype)) for x in self.point]
        f0 = tf.constant(self.f0.astype(self.fd_dtype))
        shape = list(self.in_shapes[a])

        def one(xa):
            out = call(*[xa if b == a else point[b] for b in range(n_in)])
            return tf.concat([tf.reshape(t, [-1]) for t in out], 0)

        @tf.function(reduce_retracing=True)
        def run(cols, moved, proj):
            rows = tf.shape(cols)[0]
            stack = tf.tile(tf.reshape(point[a], [1, -1]), [rows, 1])
            where = tf.stack([tf.range(rows), cols], axis=1)
            stack = tf.reshape(tf.tensor_scatter_nd_update(stack, where, moved), [rows] + shape)
            outs = tf.vectorized_map(one, stack, fallback_to_while_loop=True)
            changes = tf.cast(outs - f0, tf.float64)
            moved_out = tf.where(changes != 0.0, tf.abs(tf.cast(f0, tf.float64)), 0.0)
            return tf.matmul(changes, proj), tf.matmul(moved_out, tf.abs(proj))

        _quiet(run)
        flat = self.point[a].reshape(-1)
        try:
            probe = np.random.default_rng(0).standard_normal((self.n_out, 1))
            at_point = run(
                tf.constant([0, flat.size - 1], tf.int32),
                tf.constant(flat[[0, -1]].astype(self.fd_dtype)),
                tf.constant(probe),
            )[0].numpy()
            bound = _VECTORIZED_ULPS * self.eps * float(np.abs(probe[:, 0]) @ np.abs(self.f0))
            usable = bool(np.all(np.abs(at_point) <= max(bound, 1e-300)))
        except Exception:  # this path is an optimisation; the batched evaluation remains
            usable = False
        self._coordinate_fns[a] = run if usable else None
        return self._coordinate_fns[a]

    def directional_lines(self, directions: Sequence[Sequence[Optional[np.ndarray]]], shrink=0):
        """Five-point stencils along joint directions over the inputs: ``directions[p][a]`` is
        direction p's component in input ``a`` (None for none). The step is relative to the
        largest input moved and to the direction's largest entry. Returns (s of shape (P, 5),
        f of shape (P, 5, n_out)), f as the outputs' changes from the point."""
        self._ensure_compiled()
        P = len(directions)
        s = np.zeros((P, 5))
        f = np.empty((P, 5, self.n_out))
        f[:, 2] = 0.0
        stacks = [[] for _ in self.point]
        for p, d in enumerate(directions):
            moved = [a for a in range(len(self.point)) if d[a] is not None]
            big = max(float(np.max(np.abs(self.point[a]), initial=0.0)) for a in moved)
            reach = max(float(np.max(np.abs(d[a]), initial=0.0)) for a in moved) or 1.0
            step = float(power_of_two_step(np.asarray(big), self.eps)) * 2.0**-shrink / reach
            s[p, [0, 1, 3, 4]] = step * _OFFSETS
            for a, x in enumerate(self.point):
                for off in _OFFSETS:
                    stacks[a].append(x if d[a] is None else x + off * step * d[a])
        values = np.empty((4 * P, self.n_out))
        per = self._rows_per_call()
        for start in range(0, 4 * P, per):
            stop = min(4 * P, start + per)
            values[start:stop] = self.evaluate([np.stack(st[start:stop]) for st in stacks])
        f[:, [0, 1, 3, 4]] = (values - self.f0).reshape(P, 4, self.n_out)
        return s, f
