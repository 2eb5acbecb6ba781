"""The tape witness: tf.GradientTape over the model's own loss.

It gives the exact gradient (up to rounding) of the forward the model actually computes, so it is
held to the tightest tolerance. It cannot see a forward bug that the backward mirrors (the
independent forward does), nor a wrong ``tf.custom_gradient`` inside the forward (finite
differences do).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from .adapter import Adapter, _is_float, guarded
from .validate import InputTypeError, InputValueError, short_input_errors

__all__ = ["tape_gradients", "tape_witness", "tape_values", "overrides"]


@short_input_errors
def tape_gradients(model, X, y, *, include_input: bool = False) -> List[tf.Tensor]:
    """``dL/dparam`` for every tensor in ``model.params`` (a parameter the loss does not depend
    on gets zeros), by ``tf.GradientTape`` over ``model.loss(X, y)``; with
    ``include_input=True`` the list ends with ``dL/dX``. The params must be tf.Variables and the
    loss a tf.Tensor (TypeError otherwise: the tape cannot see NumPy code)."""
    for i, p in enumerate(model.params):
        if not isinstance(p, tf.Variable):
            raise InputTypeError(
                f"tape_gradients needs tf.Variable params; model.params[{i}] is a "
                f"{type(p).__name__}, which tf.GradientTape cannot watch."
            )
    sources, grads, loss = _taped(model, X, y, include_input)
    if grads is None:
        raise InputTypeError(_NOT_A_TENSOR.format(kind=type(loss).__name__) + ".")
    return [tf.zeros_like(s) if g is None else g for s, g in zip(sources, grads)]


# Why the tape cannot witness, in the report's words.
_NUMPY_PARAMS = "the parameters are NumPy arrays, which tf.GradientTape cannot watch"
_NOT_A_TENSOR = (
    "model.loss returned a {kind}, which tf.GradientTape cannot differentiate (return the "
    "tf.Tensor itself, not .numpy() or float(...), for the tape to witness)"
)
_DISCONNECTED = (
    "model.loss is not connected to the parameters on the tape (computed outside TensorFlow, "
    "such as in NumPy, or through .numpy() or tf.constant)"
)


def _taped(model, X, y, include_input: bool, cotangent: float = 1.0):
    """(the sources: the params, and X; the tape's gradients of ``model.loss`` with respect to
    them (of ``cotangent`` times it, divided back), None where the loss is not connected, or
    None altogether when the loss is not a tensor; the loss)."""
    params = list(model.params)
    # Integer inputs (token ids, class indices) are passed as they are: only float ones can be
    # watched, and only they are converted to the model's dtype.
    integer = not isinstance(X, tf.Tensor) and not _is_float(X)
    Xt = (
        X
        if isinstance(X, tf.Tensor) or integer
        else tf.convert_to_tensor(np.asarray(X, dtype=params[0].dtype.as_numpy_dtype))
    )
    sources = params + ([Xt] if include_input else [])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(sources)
        try:
            loss = model.loss(Xt, y)
        except Exception:
            # A loss written in NumPy (X.T, X @ W.numpy()) over tf.Variable parameters cannot
            # take a tensor; without dL/dX the tape needs none, so X goes in as given, as
            # finite differences pass it (its own error, if any, is the one reported).
            if include_input or Xt is X:
                raise
            loss = model.loss(X, y)
    if np.ndim(loss) != 0:
        raise InputValueError(
            f"model.loss(X, y) must return a scalar (the batch mean); got shape "
            f"{tuple(np.shape(loss))}."
        )
    if not isinstance(loss, (tf.Tensor, tf.Variable)):
        return sources, None, loss
    seed = None if cotangent == 1.0 else tf.constant(cotangent, loss.dtype)
    grads = tape.gradient(
        loss, sources, output_gradients=seed, unconnected_gradients=tf.UnconnectedGradients.NONE
    )
    # A gathered parameter (an embedding lookup) gets IndexedSlices: made dense.
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    if seed is not None:
        grads = [None if g is None else g / seed for g in grads]
    return sources, grads, loss


def tape_witness(adapter: Adapter, cotangent: float = 1.0) -> Tuple[Dict, Optional[str]]:
    """The tape's gradients keyed like ``adapter.keys``, as float64 arrays, or None for a tensor
    the tape cannot witness (a loss not connected to that tensor on the tape); and why it can
    witness no tensor at all (NumPy parameters, a loss that is not a tensor, a loss connected
    to none of them), or None. ModelError when the model's loss raises or is not a scalar."""
    if adapter.numpy_params:
        return {k: None for k in adapter.keys}, _NUMPY_PARAMS
    _, grads, loss = guarded(
        "tf.GradientTape over model.loss(X, y)",
        _taped,
        adapter.model,
        adapter.X,
        adapter.y,
        adapter.include_input,
        cotangent,
    )
    blind = None
    if grads is None:
        blind = _NOT_A_TENSOR.format(kind=type(loss).__name__)
    elif all(g is None for g in grads):
        blind = _DISCONNECTED
    if blind is not None:
        return {k: None for k in adapter.keys}, blind
    values = {
        k: None if g is None else np.asarray(g.numpy(), dtype=np.float64)
        for k, g in zip(adapter.keys, grads)
    }
    return values, None


def tape_values(adapter: Adapter) -> Dict:
    """``tape_witness``'s gradients alone (None where the tape cannot witness)."""
    return tape_witness(adapter)[0]


# The tape's own rounding at the point is sampled by scaling its cotangent by these (no powers
# of two: every value the backward pass computes is scaled and rounds anew)...
_RESCALES = (3.0, 0.7, 7.0, 0.3)
# ... and a steady manual-minus-tape difference within this many times the largest move it
# makes is the tape's rounding (a bias's gradient summed from terms that cancel keeps only their
# absolute accuracy: in float32 one ulp of a term near 0.5 is 1.6e-4 of a sum of 9.5e-5).
WOBBLE_FACTOR = 4.0


def within_wobble(adapter: Adapter, tape: Dict, suspects: Dict, gaps: Dict, bounds: Dict) -> Dict:
    """The tensors of ``suspects`` (masks) whose manual-minus-tape ``gaps`` there are all within
    ``WOBBLE_FACTOR`` times the tape's own rounding, elementwise, and both within the tensor's
    rounding ``bounds``, with the largest gap as a multiple of it: the tape's gradient
    of ``c * loss`` over c, for each c of ``_RESCALES``, moves by that rounding from its
    gradient of the loss, ``tape`` (by more, where a custom gradient is not linear in its
    cotangent)."""
    wobble = {k: np.zeros_like(tape[k]) for k in suspects if tape[k] is not None}
    for c in _RESCALES:
        scaled = tape_witness(adapter, c)[0]
        for k in wobble:
            if scaled[k] is not None:
                wobble[k] = np.maximum(wobble[k], np.abs(scaled[k] - tape[k]))
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, w in wobble.items():
            mask = suspects[k]
            gap, w = gaps[k][mask], w[mask]
            if np.all(np.maximum(gap, w) <= bounds[k]) and np.all(gap <= WOBBLE_FACTOR * w):
                out[k] = float(np.max(np.where(w > 0, gap / w, 0.0)))
    return out


# Ops whose gradient on the tape is not TensorFlow's own derivative of what they compute: the
# Python ones; the quantization ops, whose registered gradient is straight-through (1 inside
# the range, where what they compute is a step function whose derivative is 0); and
# tf.stop_gradient, whose gradient is 0 whatever its input does, where the outputs depend on
# what it stops (``ys + stop_gradient(yt - ys)`` computes yt with ys's gradient; see
# ``_stops_that_matter``).
_PY_OPS = {
    "EagerPyFunc": "tf.py_function",
    "PyFunc": "tf.numpy_function",
    "PyFuncStateless": "tf.numpy_function",
}
_OVERRIDING_OPS = {
    **_PY_OPS,
    "FakeQuantWithMinMaxArgs": "tf.quantization.fake_quant_with_min_max_args",
    "FakeQuantWithMinMaxVars": "tf.quantization.fake_quant_with_min_max_vars",
    "FakeQuantWithMinMaxVarsPerChannel": (
        "tf.quantization.fake_quant_with_min_max_vars_per_channel"
    ),
    **{
        f"QuantizeAndDequantize{v}": "tf.quantization.quantize_and_dequantize"
        for v in ("", "V2", "V3", "V4")
    },
    "StopGradient": "tf.stop_gradient",
}


def overrides(call) -> Optional[List[str]]:
    """What in ``call()`` (a function of no arguments, TF ops) makes the tape's gradient other
    than TensorFlow's derivative of the forward: ``tf.custom_gradient`` (and gradient override
    maps, which mark ops the same way), ``tf.py_function``, ``tf.numpy_function``, and the
    quantization ops with a straight-through gradient (``tf.quantization.fake_quant_*``,
    ``quantize_and_dequantize``) and ``tf.stop_gradient``. Read from the
    graph ``call`` traces into (nested functions included); None when it cannot be traced (NumPy
    inside, ``.numpy()``): then nothing is known."""
    try:
        graph = tf.function(call).get_concrete_function().graph.as_graph_def()
    except Exception:  # the user's code, traced: anything it raises means "cannot tell"
        return None
    nested = [node for function in graph.library.function for node in function.node_def]
    found = []
    for node in list(graph.node) + nested:
        if "_gradient_op_type" in node.attr:
            found.append("tf.custom_gradient")
        elif node.op in _OVERRIDING_OPS:
            found.append(_OVERRIDING_OPS[node.op])
    top = any(node.op == "StopGradient" for node in graph.node)
    inner = any(node.op == "StopGradient" for node in nested)
    if top and not inner and not _stops_that_matter(call):
        found = [name for name in found if name != _OVERRIDING_OPS["StopGradient"]]
    return sorted(set(found))


# A tf.stop_gradient matters where the gradient it drops, relative to the tape's own, is more
# than this power of the outputs' eps: tf.nn.moments and tf.reduce_logsumexp stop a value the
# outputs do not depend on to first order (the mean inside sum (y - mean)^2, the max inside
# log sum exp(x - max) + max), and what they drop is rounding, 1e-12 of the gradient in float64.
_STOP_EPS_POWER = 0.5


def _stops_that_matter(call) -> bool:
    r"""Whether the ``tf.stop_gradient``\ s of ``call`` (at the top of its graph) drop any of
    its gradient: the gradient the tape misses through them, sum over the stops s of
    (d s_in / d x)^T (d <c, out> / d s) for random cotangents c, against the tape's own, for
    every input and variable x (a variable's reads summed: each use of it in a graph may read
    it anew). True where it cannot be worked out."""
    try:
        wrapped = tf.compat.v1.wrap_function(call, [])
        graph = wrapped.graph
        stops = [op for op in graph.get_operations() if op.type == "StopGradient"]
        outs = [t for t in tf.nest.flatten(wrapped.outputs) if t.dtype.is_floating]
        reads = [
            op
            for op in graph.get_operations()
            if op.type == "ReadVariableOp" and op.outputs[0].dtype.is_floating
        ]
        captured = [t for _, t in graph.captures if t.dtype.is_floating]
        sources = captured + [op.outputs[0] for op in reads]
        owners = [t.name for t in captured] + [op.inputs[0].name for op in reads]
        with graph.as_default():
            cots = [
                tf.random.stateless_normal(tf.shape(o), [7, i], dtype=o.dtype)
                for i, o in enumerate(outs)
            ]
            through = tf.gradients(outs, [op.outputs[0] for op in stops], grad_ys=cots)
            pairs = [(op.inputs[0], g) for op, g in zip(stops, through) if g is not None]
            if not pairs:
                return False
            dropped = tf.gradients([p for p, _ in pairs], sources, grad_ys=[g for _, g in pairs])
            kept = tf.gradients(outs, sources, grad_ys=cots)
            fetches = [
                tf.zeros_like(x) if g is None else g
                for x, pair in zip(sources, zip(dropped, kept))
                for g in pair
            ]
        if not any(d is not None for d in dropped):
            return False
        values = wrapped.prune(feeds=[], fetches=fetches)()
    except Exception:  # the user's code, traced again: anything it raises means "cannot tell"
        return True
    eps = max(float(np.finfo(o.dtype.as_numpy_dtype).eps) for o in outs)
    totals: Dict[str, List[np.ndarray]] = {}
    for owner, d, k in zip(owners, values[0::2], values[1::2]):
        pair = [np.asarray(d, np.float64), np.asarray(k, np.float64)]
        if owner in totals:
            totals[owner] = [t + v for t, v in zip(totals[owner], pair)]
        else:
            totals[owner] = pair
    dropped_max = max(float(np.max(np.abs(d), initial=0.0)) for d, _ in totals.values())
    kept_max = max(float(np.max(np.abs(k), initial=0.0)) for _, k in totals.values())
    return not dropped_max <= eps**_STOP_EPS_POWER * kept_max
