"""The function ``check_function`` judges: fn and its inputs (one float dtype), the structures
handed to the user's vjp and jvp, and the witnesses asked at the point: the tape's VJP (and
where it is blind), the forward accumulator's JVP, the hand-written ones, the second order, and
the rounding the tape's own values carry."""

from __future__ import annotations

import copy
import inspect
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from .._core.function import FLOAT_DTYPES, VectorFunction, flat_tensors
from .._core.validate import InputTypeError, InputValueError

__all__ = [
    "Problem",
    "purity",
    "tape_vjp",
    "manual_vjp",
    "tape_jvp",
    "manual_jvp",
    "tape_first",
    "second",
    "tape_rounding",
    "reach",
    "gradients_of",
    "outputs_of",
]

_FN_FIX = "fn must return a tensor or a tuple/list of tensors, computed with TF ops."


def _input_names(fn, n: int) -> List[str]:
    """The names of fn's first n positional parameters, or x0, x1, ... ."""
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n and len(set(params[:n])) == n:
        return params[:n]
    return [f"x{i}" for i in range(n)] if n > 1 else ["x"]


def _as_input(value, i: int) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise InputTypeError(f"inputs[{i}] is not an array or tensor: {exc}") from exc
    if arr.dtype.name not in FLOAT_DTYPES:
        raise InputTypeError(
            f"inputs[{i}] has dtype {arr.dtype.name}; check_function differentiates float32 or "
            f"float64 inputs only: pass it as np.float64/np.float32, or close over it in fn "
            f"(lambda x: fn(x, labels)) when it is not differentiated."
        )
    if not np.all(np.isfinite(arr)):
        raise InputValueError(f"inputs[{i}] has non-finite values; check at a finite point.")
    if arr.size == 0:
        raise InputValueError(
            f"inputs[{i}] is empty (shape {arr.shape}): there is nothing to check."
        )
    return arr


def _require_arity(what: str, f, n: int, got: str, call: str) -> None:
    """``TypeError`` when ``f`` cannot be called with n positional arguments."""
    if f is None:
        return
    try:
        inspect.signature(f).bind(*range(n))
    except TypeError as exc:
        raise InputTypeError(
            f"{got}, but {what} {getattr(f, '__name__', f)!r} cannot take them ({exc}); it is "
            f"called as {call}."
        ) from None
    except ValueError:  # no signature to read (a builtin): the call itself will tell
        return


class Problem:
    """The function under check: fn, its inputs, the structure of its outputs, and the
    hand-written vjp/jvp called with the structures the issue's protocol gives them."""

    def __init__(self, fn, inputs, vjp, jvp):
        if not callable(fn):
            raise InputTypeError(f"fn must be callable; got {fn!r}.")
        for what, f in (("vjp", vjp), ("jvp", jvp)):
            if f is not None and not callable(f):
                raise InputTypeError(f"{what} must be callable or None; got {f!r}.")
        if not inputs:
            raise InputValueError("check_function needs at least one input: check_function(fn, x).")
        self.fn, self.vjp, self.jvp = fn, vjp, jvp
        n = len(inputs)
        _require_arity("fn", fn, n, f"fn(x) got {n} inputs", "fn(*inputs)")
        _require_arity(
            "vjp",
            vjp,
            n + 1,
            f"vjp(cotangents, *inputs) gets {n + 1} arguments",
            "vjp(cotangents, *inputs)",
        )
        _require_arity(
            "jvp",
            jvp,
            n + 1,
            f"jvp(tangents, *inputs) gets {n + 1} arguments",
            "jvp(tangents, *inputs)",
        )
        self.inputs = [_as_input(x, i) for i, x in enumerate(inputs)]
        dtypes = {x.dtype.name for x in self.inputs}
        if len(dtypes) > 1:
            raise InputValueError(
                f"the inputs mix dtypes {sorted(dtypes)}; pass them all as float32 or all as "
                f"float64."
            )
        self.dtype = self.inputs[0].dtype.name
        self.names = _input_names(fn, len(self.inputs))
        with tf.GradientTape() as tape:  # which trainable variables fn reads besides its inputs
            first = fn(*[tf.constant(x) for x in self.inputs])
        self.variables = [v.name for v in tape.watched_variables()]
        self.structured = isinstance(first, (tuple, list))
        self.container = type(first) if self.structured else None
        outs = flat_tensors(first, "fn", _FN_FIX)
        self.out_shapes = [tuple(t.shape) for t in outs]
        self.out_dtype = outs[0].dtype
        n = len(outs)
        self.out_names = ["y"] if n == 1 and not self.structured else [f"y{j}" for j in range(n)]
        self.f = VectorFunction(self.call, self.inputs, "fn")
        self.disconnected = set()  # inputs the tape gives no gradient for
        self.unreached = set()  # outputs the forward accumulator gives no tangent for

    def disconnected_notes(self) -> List[str]:
        """A note per input the tape gave no gradient for (where fn's tape is the claim)."""
        return [
            f"the tape has no gradient of fn with respect to {self.names[a]} (zeros are "
            f"assumed): fn does not depend on it, or computes it outside TensorFlow (NumPy, "
            f".numpy()), where the tape cannot witness and finite differences judge"
            for a in sorted(self.disconnected)
        ]

    def variables_note(self) -> List[str]:
        """A note when fn reads trainable variables besides its inputs: their gradients are not
        judged (a Keras layer's weights, read inside it)."""
        if not self.variables:
            return []
        names = ", ".join(self.variables[:4]) + (", ..." if len(self.variables) > 4 else "")
        return [
            f"fn reads {len(self.variables)} trainable variable(s) besides its inputs ({names}): "
            f"only the gradients with respect to its inputs are judged; to judge theirs too, "
            f"pass their values as inputs (fn(x, kernel, bias), with the vjp returning one "
            f"gradient each), or check the model with check_gradients"
        ]

    def call(self, *xs) -> List[tf.Tensor]:
        return flat_tensors(self.fn(*xs), "fn", _FN_FIX)

    def in_dtype(self, dtype) -> "Problem":
        """The same problem at the inputs cast to ``dtype`` (for the tape's rounding)."""
        other = copy.copy(self)
        other.inputs = [x.astype(dtype) for x in self.inputs]
        other.dtype = np.dtype(dtype).name
        other.disconnected = set()
        other.unreached = set()
        return other

    def moved(self, deltas: Sequence[np.ndarray], scale: float) -> "Problem":
        """The same problem at the inputs moved by ``scale * deltas`` (one per input)."""
        other = copy.copy(self)
        other.inputs = [
            (x.astype(np.float64) + scale * d).astype(x.dtype) for x, d in zip(self.inputs, deltas)
        ]
        other.disconnected = set()
        other.unreached = set()
        return other

    def tensors(self, dtype=None) -> List[tf.Tensor]:
        return [tf.constant(x if dtype is None else x.astype(dtype)) for x in self.inputs]

    # structures handed to the user's code
    def out_structure(self, flat: Sequence, dtype) -> object:
        parts = [tf.constant(np.asarray(p, dtype.as_numpy_dtype)) for p in flat]
        if not self.structured:
            return parts[0]
        return self.container(parts) if self.container in (tuple, list) else tuple(parts)

    def in_structure(self, flat: Sequence, dtype) -> object:
        parts = [tf.constant(np.asarray(p, dtype)) for p in flat]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def split_out(self, vector: np.ndarray) -> List[np.ndarray]:
        sizes = [int(np.prod(s, dtype=np.int64)) for s in self.out_shapes]
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, self.out_shapes)]

    def split_in(self, vector: np.ndarray) -> List[np.ndarray]:
        sizes = [x.size for x in self.inputs]
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        return [p.reshape(x.shape) for p, x in zip(parts, self.inputs)]


def gradients_of(result, shapes, names, what: str) -> List[np.ndarray]:
    """A vjp's (or a gradient's) result as one float64 array per input; None is zeros."""
    return _parts(result, shapes, [f"input {n!r}" for n in names], what, "gradient", "input")


def outputs_of(result, shapes, names, what: str) -> List[np.ndarray]:
    """A jvp's result as one float64 array per output."""
    return _parts(result, shapes, [f"output {n}" for n in names], what, "tangent", "output")


def _parts(result, shapes, labels, what: str, part: str, of: str) -> List[np.ndarray]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(items) != len(shapes):
        names = ", ".join(label.split(" ", 1)[1].strip("'") for label in labels)
        raise InputValueError(
            f"{what} returned {len(items)} {part}(s) for {len(shapes)} {of}(s) ({names}); "
            f"return one per {of}, in order (a bare tensor when there is one {of})."
        )
    out = []
    for item, shape, label in zip(items, shapes, labels):
        if item is None and part == "gradient":
            out.append(np.zeros(shape))
            continue
        arr = np.asarray(item.numpy() if hasattr(item, "numpy") else item, dtype=np.float64)
        if arr.shape != tuple(shape):
            raise InputValueError(
                f"{what} returned shape {arr.shape} for {label} of shape {tuple(shape)}; each "
                f"{part} must have its {of}'s shape."
            )
        out.append(arr)
    return out


# --- the witnesses ---------------------------------------------------------------------------


def tape_vjp(p: Problem, cot: np.ndarray) -> List[np.ndarray]:
    xs = p.tensors()
    with tf.GradientTape() as tape:
        tape.watch(xs)
        ys = p.call(*xs)
    cots = [tf.constant(c, y.dtype) for c, y in zip(p.split_out(cot), ys)]
    grads = tape.gradient(ys, xs, output_gradients=cots)
    p.disconnected.update(a for a, g in enumerate(grads) if g is None)
    return [
        np.zeros(x.shape) if g is None else g.numpy().astype(np.float64)
        for g, x in zip(grads, p.inputs)
    ]


def manual_vjp(p: Problem, cot: np.ndarray) -> List[np.ndarray]:
    result = p.vjp(p.out_structure(p.split_out(cot), p.out_dtype), *p.tensors())
    return gradients_of(result, [x.shape for x in p.inputs], p.names, "vjp")


def tape_jvp(p: Problem, tan: np.ndarray) -> List[np.ndarray]:
    xs = p.tensors()
    tans = [tf.constant(t.astype(p.dtype)) for t in p.split_in(tan)]
    with tf.autodiff.ForwardAccumulator(xs, tans) as acc:
        ys = p.call(*xs)
    jvps = [acc.jvp(y) for y in ys]
    p.unreached.update(j for j, t in enumerate(jvps) if t is None)
    return [
        np.zeros(s) if j is None else j.numpy().astype(np.float64)
        for j, s in zip(jvps, p.out_shapes)
    ]


def manual_jvp(p: Problem, tan: np.ndarray) -> List[np.ndarray]:
    result = p.jvp(p.in_structure(p.split_in(tan), p.dtype), *p.tensors())
    return outputs_of(result, p.out_shapes, p.out_names, "jvp")


def purity(p: Problem) -> Optional[str]:
    """Why the function cannot be judged (it changes between calls at the same inputs), or
    None."""
    xs = p.tensors()
    a = [t.numpy() for t in p.call(*xs)]
    b = [t.numpy() for t in p.call(*xs)]
    for j, (u, v) in enumerate(zip(a, b)):
        if not np.array_equal(u, v, equal_nan=True):
            return (
                f"fn returned different values for output {p.out_names[j]} at the same inputs "
                f"(by up to {float(np.nanmax(np.abs(u - v))):.3g}): a random function (dropout, "
                f"noise) has no derivative to check; switch the randomness off, or pass the mask "
                f"(or noise) as an input, and check again"
            )
    return None


def tape_rounding(p: Problem, tape_fn, directions, own) -> List[np.ndarray]:
    """The rounding the tape's values ``own[k] = tape_fn(p, directions[k])`` carry in the
    inputs' dtype, per part (input or output) and element, measured by running the tape in the
    other float dtype: the float64 tape's difference from the float32 one scaled by
    eps64/eps32 (for float64 inputs), or the float32 tape's difference from the float64 one
    (for float32 inputs). A gradient that cancels to nearly 0 (1 - n/n) is rounded on the
    terms it cancels from, which neither its value nor the outputs show. Zeros where fn does
    not run in the other dtype, or gives non-finite values there."""
    other = np.float32 if p.dtype == "float64" else np.float64
    zeros = [np.zeros((len(own),) + np.shape(part)) for part in own[0]]
    try:
        theirs = [tape_fn(p.in_dtype(other), d) for d in directions]
    except Exception:  # fn that runs in one dtype only: no measure, no allowance
        return zeros
    scale = min(1.0, float(np.finfo(np.dtype(p.dtype)).eps / np.finfo(other).eps))
    out = []
    for j, zero in enumerate(zeros):
        gap = np.stack([np.abs(t[j] - o[j]) for t, o in zip(theirs, own)])
        out.append(scale * gap if np.all(np.isfinite(gap)) else zero)
    return out


def reach(x) -> float:
    return max(1.0, float(np.max(np.abs(x), initial=0.0)))


def tape_first(p: Problem, cot, xs) -> List[tf.Tensor]:
    with tf.GradientTape() as tape:
        tape.watch(list(xs))
        ys = p.call(*xs)
    cots = [tf.constant(np.asarray(c), y.dtype) for c, y in zip(cot, ys)]
    grads = tape.gradient(ys, list(xs), output_gradients=cots)
    return [tf.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]


def second(p: Problem, first, w: np.ndarray):
    """TensorFlow's gradient of <w, first(x)> at the inputs (zeros where it is None), and the
    inputs for which it was None."""
    xs = p.tensors()
    ws = [tf.constant(part.astype(p.dtype)) for part in p.split_in(w)]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        g = first(*xs)
    grads = tape.gradient(g, xs, output_gradients=ws)
    none = {a for a, u in enumerate(grads) if u is None}
    return [
        np.zeros(x.shape) if u is None else u.numpy().astype(np.float64)
        for u, x in zip(grads, p.inputs)
    ], none
