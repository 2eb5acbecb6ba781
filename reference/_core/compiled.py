"""A model's own loss compiled into one batched graph, for finite differences of any TF model.

A model without ``batched_loss`` is differenced by assigning each perturbed value to its
tf.Variables, evaluating ``loss`` eagerly and restoring: a few hundred microseconds of Python and
kernel launches per evaluation. Here the loss is traced once into a graph
(``tf.compat.v1.wrap_function``), every read of a parameter in that graph (a ``ReadVariableOp``
of its handle) is made an input (``prune``), and the resulting pure function of the parameters'
values is vectorized over K stacked variants (``tf.vectorized_map``, or a graph loop where an op
has no vectorized form). No variable is assigned: the model's parameters are never touched.

What can go wrong is said, not guessed: a loss that cannot be traced (NumPy inside, ``.numpy()``,
Python control flow on a tensor), or one that reads a parameter other than by value (a gather
from its handle, a nested ``tf.function``), is not compiled, and :class:`NotCompiled` carries the
reason for the report. A compiled loss is a witness only once it has been shown to equal the
eager loss at the point and at random points around it (``reference._checks.trust``), at every
check, so a graph traced from Python state that has since changed is caught there.

The first compilation of a model costs about 0.1 s (tracing, vectorizing, optimizing the graph);
it is kept for later checks of the same model on the same batch.
"""

from __future__ import annotations

import textwrap
import weakref
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from .adapter import INPUT
from .stencils import _BUDGET

__all__ = ["NotCompiled", "CompiledLoss", "compiled_loss", "cached", "forget"]


class NotCompiled(Exception):
    """The loss cannot be compiled into a batched graph; the message says why."""


def _trace(model, X, y, with_input: bool, dtype):
    """The wrapped graph of ``model.loss`` (with X a placeholder when ``with_input``); a loss
    decorated with ``tf.function`` is traced from its Python function, so that its parameter
    reads are in this graph, not in a nested call."""
    # The graph keeps the Python function it was traced from; through a weak reference, so the
    # cache (keyed weakly by the model) does not keep the model alive.
    try:
        ref = weakref.ref(model)
    except TypeError:  # a model that cannot be weakly referenced is not cached either

        def ref():
            return model

    def loss(X_, y_):
        own = ref().loss
        return (getattr(own, "python_function", None) or own)(X_, y_)

    # A tf.function the loss calls (a layer's __call__, as tf.Module tutorials write it) runs
    # as Python while tracing, so that its parameter reads are in this graph, not in a nested
    # call, which could not be fed.
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        if with_input:
            spec = tf.TensorSpec(np.shape(X), dtype)
            return tf.compat.v1.wrap_function(lambda Xp: loss(Xp, y), [spec])
        return tf.compat.v1.wrap_function(lambda: loss(X, y), [])
    finally:
        tf.config.run_functions_eagerly(eager)


def _reads(wrapped, params, names) -> List[List]:
    """For each parameter, the tensors its value is read into in the wrapped graph (empty when
    the loss does not read it); NotCompiled when it is used other than by a plain read."""
    captured = {id(external): internal for external, internal in wrapped.graph.captures}
    reads = []
    for p, name in zip(params, names):
        handle = captured.get(id(p.handle))
        if handle is None:
            reads.append([])
            continue
        ops = handle.consumers()
        other = sorted({op.type for op in ops if op.type != "ReadVariableOp"})
        if other:
            how = (
                "a nested graph that cannot be inlined"
                if any(t.endswith("PartitionedCall") for t in other)
                else ", ".join(other)
            )
            raise NotCompiled(
                f"the loss uses {name} through {how} (not only its value, as a gather from the "
                f"variable does), which cannot be fed"
            )
        reads.append([op.outputs[0] for op in ops])
    return reads


class CompiledLoss:
    """``model.loss`` at K variants of the parameters (and of X, when ``has_input``) at once."""

    def __init__(self, adapter, with_input: bool):
        model, params = adapter.model, adapter.params
        self.dtype = adapter.dtype
        self.shapes = [tuple(p.shape) for p in params]
        self.has_input = with_input
        try:
            wrapped = _trace(model, adapter.X, adapter.y, with_input, adapter.dtype)
            reads = _reads(wrapped, params, adapter.names)
            outputs = wrapped.graph.outputs
            if len(outputs) != 1 or outputs[0].shape.rank not in (0, None):
                raise NotCompiled(
                    f"the traced loss has shape {outputs[0].shape if outputs else None}, not a "
                    f"scalar"
                )
            feeds = list(wrapped.graph.inputs[:1]) if with_input else []
            self._owner = [None] * len(feeds) + [i for i, r in enumerate(reads) for _ in r]
            feeds += [t for r in reads for t in r]
            pure = wrapped.prune(feeds=feeds, fetches=outputs[0])
        except NotCompiled:
            raise
        except Exception as exc:  # the model's code under tracing: any failure means eager
            raise NotCompiled(
                f"tracing it raised {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        self._pure = pure
        self._function = None
        self._vectorized = True
        # Why X could not be a graph input (dL/dX checked, differenced eagerly), or None.
        self.input_problem = None

    def _build(self):
        owner, pure = self._owner, self._pure

        def row(args):
            x, values = args
            return pure(*[x if i is None else values[i] for i in owner])

        def batched(x, values):
            if self._vectorized:
                return tf.vectorized_map(row, (x, values), fallback_to_while_loop=False)
            return tf.map_fn(row, (x, values), fn_output_signature=self.dtype)

        specs = tuple(tf.TensorSpec((None,) + s, self.dtype) for s in self.shapes)
        x_shape = self._x_shape if self.has_input else (0,)
        fn = tf.function(batched)
        try:
            return fn.get_concrete_function(tf.TensorSpec((None,) + x_shape, self.dtype), specs)
        except Exception:  # an op pfor cannot vectorize: a graph loop instead
            self._vectorized = False
            fn = tf.function(batched)
            return fn.get_concrete_function(tf.TensorSpec((None,) + x_shape, self.dtype), specs)

    def __call__(self, stacks: Dict, base: List[np.ndarray], X) -> np.ndarray:
        """Losses with every tensor in ``stacks`` (K rows each) replaced row by row, the others
        at ``base`` (their values now); ``X`` the batch (its stack when ``INPUT`` is replaced)."""
        K = len(next(iter(stacks.values())))
        if self._function is None:
            self._x_shape = tuple(np.shape(X))
            self._function = self._build()
        np_dtype = self.dtype.as_numpy_dtype
        width = sum(int(np.prod(s)) for s in self.shapes) + (
            int(np.prod(self._x_shape)) if self.has_input else 0
        )
        # The memory bound of every batched evaluation (fd._BUDGET values a call).
        per_call = max(1, _BUDGET // max(1, width))
        out = np.empty(K)
        for start in range(0, K, per_call):
            stop = min(K, start + per_call)
            n = stop - start
            values = tuple(
                np.asarray(stacks[i][start:stop], np_dtype)
                if i in stacks
                else np.broadcast_to(np.asarray(base[i], np_dtype), (n,) + self.shapes[i])
                for i in range(len(self.shapes))
            )
            if self.has_input:
                x = (
                    np.asarray(stacks[INPUT][start:stop], np_dtype)
                    if INPUT in stacks
                    else np.broadcast_to(np.asarray(X, np_dtype), (n,) + self._x_shape)
                )
            else:
                x = np.zeros((n, 0), np_dtype)
            out[start:stop] = self._function(tf.constant(x), tuple(map(tf.constant, values)))
        return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return textwrap.shorten(text[0], 200, placeholder=" ...") if text else ""


# Compiled losses kept for later checks of the same model, on the same batch and parameters.
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHE_PER_MODEL = 4


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        a, b = np.asarray(a), np.asarray(b)
    except Exception:
        return False
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def compiled_loss(adapter) -> CompiledLoss:
    """The model's loss compiled (from the cache when this model, batch and parameters were
    compiled before); NotCompiled with the reason when it cannot be."""
    if adapter.numpy_params:
        raise NotCompiled("the parameters are NumPy arrays")
    model = adapter.model
    key = (tuple(id(p) for p in adapter.params), adapter.include_input)
    try:
        entries = _CACHE.setdefault(model, [])
    except TypeError:  # an unhashable model: compiled afresh each time
        entries = []
    for entry_key, X, y, compiled in entries:
        if entry_key == key and _same(X, adapter.X) and _same(y, adapter.y):
            if isinstance(compiled, str):  # tried before and failed: not traced again
                raise NotCompiled(compiled)
            return compiled
    try:
        compiled = _compile(adapter)
    except NotCompiled as exc:
        compiled = str(exc)  # the reason only: an exception's traceback would hold the model
    X = adapter.X if isinstance(adapter.X, tf.Tensor) else np.array(adapter.X, copy=True)
    y = adapter.y if isinstance(adapter.y, tf.Tensor) else np.array(adapter.y, copy=True)
    entries.append((key, X, y, compiled))
    del entries[:-_CACHE_PER_MODEL]
    if isinstance(compiled, str):
        raise NotCompiled(compiled)
    return compiled


def _compile(adapter) -> CompiledLoss:
    why = None
    if adapter.include_input:
        try:
            return CompiledLoss(adapter, with_input=True)
        except NotCompiled as exc:
            why = str(exc)  # dL/dX is then differenced eagerly (see Adapter.evaluate_many)
    compiled = CompiledLoss(adapter, with_input=False)
    compiled.input_problem = why
    return compiled


def cached(model) -> Optional[list]:
    """The cache entries of ``model``, or None when it has none."""
    try:
        return _CACHE.get(model) or None
    except TypeError:
        return None


def forget(model, compiled: CompiledLoss) -> None:
    """Drop ``compiled`` from the cache (it did not compute the model's loss)."""
    entries = cached(model) or []
    entries[:] = [e for e in entries if e[3] is not compiled]
