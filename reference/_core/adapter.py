"""A model seen through the model protocol (``GradientModel``), with X and y fixed.

Everything the judges ask of a model goes through here: the hand-written gradients, loss
evaluations (one at a time, or batched when the model offers ``batched_loss``), the float64
twin. A failure of the model's own code becomes a :class:`ModelError`, reported, not raised.
"""

from __future__ import annotations

import time
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from .fd import computes_in_float32
from .numpy_twin import numpy_twin64
from .validate import InputTypeError, InputValueError

__all__ = ["Adapter", "ModelError", "INPUT", "INPUT_NAME", "guarded"]

INPUT = "X"  # the key of dL/dX among the checked tensors (batched_loss uses it too)
INPUT_NAME = "dL/dX"


class ModelError(Exception):
    """The model did not honour the protocol (a call raised, or returned the wrong shapes)."""


def guarded(what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with any exception of the model's own code as a ModelError."""
    try:
        return fn(*args, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # the model's own failure is reported, not propagated
        raise ModelError(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _param_kind(params) -> str:
    """ "variable" or "ndarray": the kind every parameter is (TypeError for anything else, or
    for a mix)."""
    kinds = set()
    for i, p in enumerate(params):
        if isinstance(p, tf.Variable):
            kinds.add("variable")
        elif isinstance(p, np.ndarray):
            kinds.add("ndarray")
        else:
            keras = type(p).__module__.startswith("keras") and hasattr(p, "value")
            raise InputTypeError(
                f"model.params[{i}] must be a tf.Variable or a NumPy array (perturbed in place); "
                f"got {type(p).__name__}"
                + (
                    " (a Keras 3 variable: give the tf.Variable underneath it, layer.kernel.value)."
                    if keras
                    else "."
                )
            )
    if len(kinds) > 1:
        raise InputTypeError(
            "model.params mixes tf.Variables and NumPy arrays; make them all one kind (the "
            "tape can watch Variables only, so a mix could not be judged by it anyway)."
        )
    return kinds.pop()


def _check_arrays(model, params) -> None:
    """NumPy parameters: one float dtype, writable, and the model's own arrays (the harness
    perturbs them in place, so a ``params`` that returns copies would perturb nothing)."""
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1 or not all(np.issubdtype(d, np.floating) for d in dtypes):
        raise InputTypeError(
            f"model.params must all have one float dtype (float32 or float64); got "
            f"{', '.join(sorted(str(d) for d in dtypes))}: convert them with .astype(np.float64)."
        )
    for i, p in enumerate(params):
        if not p.flags.writeable:
            raise InputValueError(
                f"model.params[{i}] is a read-only array; the harness perturbs the parameters in "
                f"place, so they must be writable (np.array(..., copy=True))."
            )
    again = list(model.params)
    if len(again) != len(params) or not all(
        a is b or np.shares_memory(a, b) for a, b in zip(params, again)
    ):
        raise InputValueError(
            "model.params returned new arrays when asked a second time; the harness perturbs the "
            "parameters in place, so params must return the model's own arrays (such as "
            "[self.W1, self.b1]), not copies."
        )


def _dtype_name(X) -> str:
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        dtype = np.asarray(X).dtype
    return getattr(dtype, "name", str(dtype))


def _is_float(X) -> bool:
    """Whether X holds floats (integer inputs, such as token ids, have no dL/dX)."""
    try:
        dtype = tf.as_dtype(getattr(X, "dtype", None) or np.asarray(X).dtype)
    except TypeError:
        return True  # whatever it is, the model's own code will say
    return dtype.is_floating


class Adapter:
    """A model seen through the protocol, with X and y fixed."""

    def __init__(self, model, X, y, *, include_input: Optional[bool] = None):
        for attr in ("params", "loss", "gradients"):
            if not hasattr(model, attr):
                raise InputTypeError(
                    f"model must have params, loss(X, y) and gradients(X, y) (the "
                    f"model protocol, reference.GradientModel); "
                    f"{type(model).__name__} has no {attr!r}."
                )
        self.model = model
        self.params: List = list(model.params)
        if not self.params:
            raise InputValueError("model.params is empty: there is nothing to check.")
        # NumPy arrays are perturbed in place; tf.GradientTape cannot watch them.
        self.numpy_params = _param_kind(self.params) == "ndarray"
        if self.numpy_params:
            _check_arrays(model, self.params)
        self.dtype: tf.DType = tf.as_dtype(self.params[0].dtype)
        # The precision the loss is computed in where coarser than the dtype (float32 inside a
        # float64 model: ``computes_in_float32``), or None.
        self.precision: Optional[np.dtype] = None
        names = list(
            getattr(model, "param_names", None) or [f"param{i}" for i in range(len(self.params))]
        )
        if len(names) != len(self.params):
            raise InputValueError(
                f"model.param_names has {len(names)} names for {len(self.params)} params."
            )
        self.names = names
        self.X = X
        self.y = y
        has_input = callable(getattr(model, "input_gradient", None))
        float_input = _is_float(X)
        if include_input and not float_input:
            raise InputValueError(
                f"include_input=True needs a float X (dL/dX of integer inputs such as token ids "
                f"is not defined); X has dtype {_dtype_name(X)}: pass include_input=False."
            )
        if include_input is None:
            include_input = has_input and float_input
        self.include_input = include_input and has_input
        self.keys: List = list(range(len(self.params))) + ([INPUT] if self.include_input else [])
        self._twin = None
        # Finite differences use batched_loss only while it is trusted (see reference._checks).
        self.use_batched = True
        # The model's own loss compiled into a batched graph (reference._core.compiled), used
        # where the model has no trusted batched_loss, once it is shown to equal the loss.
        self.compiled = None
        # The model's coordinate_losses (one element moved per row), used only while trusted.
        self.use_coordinates = True
        # Called with the number of loss evaluations each call made (a check's progress).
        self.on_evaluated = None
        # The seconds the latest loss() call took (what one eager evaluation costs).
        self.loss_seconds: Optional[float] = None

    # --- what is checked ---------------------------------------------------------------------

    def name(self, key) -> str:
        return INPUT_NAME if key == INPUT else self.names[key]

    def shape(self, key) -> tuple:
        return tuple(np.shape(self.X)) if key == INPUT else tuple(self.params[key].shape)

    def value(self, key) -> np.ndarray:
        """The current value of a checked tensor, as float64."""
        if key == INPUT:
            return np.asarray(
                self.X.numpy() if isinstance(self.X, tf.Tensor) else self.X, dtype=np.float64
            )
        return self.read(key).astype(np.float64)

    def read(self, i: int) -> np.ndarray:
        """A copy of parameter ``i`` as it is now, in the model's dtype."""
        p = self.params[i]
        return p.numpy().copy() if isinstance(p, tf.Variable) else np.array(p, copy=True)

    def write(self, i: int, value: np.ndarray) -> None:
        """Set parameter ``i`` to ``value`` (cast to the model's dtype): assigned to a
        tf.Variable, copied into a NumPy array in place."""
        p = self.params[i]
        value = np.asarray(value, dtype=self.dtype.as_numpy_dtype)
        if isinstance(p, tf.Variable):
            p.assign(value)
        else:
            np.copyto(p, value)

    def snapshot(self) -> List[np.ndarray]:
        return [self.read(i) for i in range(len(self.params))]

    def restore(self, values: List[np.ndarray]) -> None:
        """Put ``values`` (a ``snapshot``) back, bit for bit, wherever a parameter differs."""
        for i, value in enumerate(values):
            if not np.array_equal(self.read(i), value, equal_nan=True):
                self.write(i, value)

    @property
    def eps(self) -> float:
        """The machine epsilon of the precision the loss is computed in (the model's dtype,
        unless ``precision`` says coarser)."""
        return float(np.finfo(self.precision or self.dtype.as_numpy_dtype).eps)

    def computes_in_float32(self) -> bool:
        """Does this float64 model compute its loss in float32 (``fd.computes_in_float32``:
        its loss a float32 value wherever the parameters move off float32's grid)?"""
        if self.dtype != tf.float64:
            return False
        original = self.snapshot()

        def loss_at(moved):
            try:
                for i, value in enumerate(moved):
                    self.write(i, value)
                return [self.loss_value()]
            finally:
                self.restore(original)

        return computes_in_float32(loss_at, original)

    # --- the hand-written side ---------------------------------------------------------------

    def manual(self) -> Dict:
        """The hand-written gradients keyed like ``keys``, as float64 arrays; ModelError when the
        model raises or returns the wrong number or shapes of tensors."""
        grads = guarded("model.gradients(X, y)", self.model.gradients, self.X, self.y)
        if isinstance(grads, Mapping):
            keys = ", ".join(repr(k) for k in list(grads)[:6])
            raise ModelError(
                f"model.gradients(X, y) returned a dict (keys {keys}); return a list with one "
                f"gradient per tensor of model.params, in its order ({', '.join(self.names)})."
            )
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ModelError(
                f"model.gradients(X, y) returned {len(grads)} tensors for "
                f"{len(self.params)} params ({', '.join(self.names)})."
            )
        out = {}
        for i, g in enumerate(grads):
            out[i] = self._as_array(g, self.shape(i), f"gradient for {self.names[i]}")
        if self.include_input:
            dX = guarded("model.input_gradient(X, y)", self.model.input_gradient, self.X, self.y)
            out[INPUT] = self._as_array(dX, self.shape(INPUT), "input_gradient")
        return out

    @staticmethod
    def _as_array(g, shape, what) -> np.ndarray:
        if g is None:
            raise ModelError(f"the {what} is None.")
        try:
            # A copy: a NumPy backward may hand out arrays it later overwrites in place.
            arr = np.array(g.numpy() if hasattr(g, "numpy") else g, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the {what} is not numeric: {exc}") from exc
        if arr.shape != shape:
            raise ModelError(f"the {what} has shape {arr.shape}; the tensor has shape {shape}.")
        return arr

    # --- the float64 twin --------------------------------------------------------------------

    def twin64(self) -> "Adapter":
        """This model in float64 by its ``astype``, or for NumPy parameters without one by a copy
        with its arrays in float64 (``numpy_twin``); itself when it already is float64 or has no
        twin. Whether the twin runs the same code is the caller's to establish."""
        if self._twin is None:
            self._twin = self
            if self.dtype != tf.float64 and callable(getattr(self.model, "astype", None)):
                twin = guarded("model.astype('float64')", self.model.astype, "float64")
                self._twin = Adapter(twin, self.X, self.y, include_input=self.include_input)
            elif self.dtype != tf.float64 and self.numpy_params:
                twin = numpy_twin64(self.model, self.params)
                if twin is not None:
                    self._twin = Adapter(twin, self.X, self.y, include_input=self.include_input)
        return self._twin

    # --- loss evaluations for finite differences ----------------------------------------------

    def loss_value(self) -> float:
        start = time.perf_counter()
        value = self.model.loss(self.X, self.y)
        self.loss_seconds = time.perf_counter() - start
        if np.ndim(value) != 0:
            raise InputValueError(
                f"model.loss(X, y) must return a scalar (the batch mean); got shape "
                f"{tuple(np.shape(value))}."
            )
        return float(value)

    @property
    def has_batched_loss(self) -> bool:
        """The model's own ``batched_loss``, while it is trusted."""
        return self.use_batched and callable(getattr(self.model, "batched_loss", None))

    @property
    def batched(self) -> bool:
        """Many evaluations in one call: by a trusted ``batched_loss``, or the compiled loss."""
        return self.has_batched_loss or self.compiled is not None

    @property
    def has_coordinates(self) -> bool:
        """The model's own ``coordinate_losses``, while it is trusted (it is checked against
        ``batched_loss``, so it is used only with it)."""
        return (
            self.use_coordinates
            and self.has_batched_loss
            and callable(getattr(self.model, "coordinate_losses", None))
        )

    def evaluate_coordinates(self, moves: Dict) -> Dict:
        """Losses with one element moved per row: ``moves`` maps a parameter index to (flat
        indices, displacements); needs ``has_coordinates``."""
        values = self.model.coordinate_losses(self.X, self.y, moves)
        out = {}
        for key, (index, _) in moves.items():
            out[key] = np.asarray(values[key], dtype=np.float64).reshape(-1)
            if out[key].shape != (len(index),):
                raise ModelError(
                    f"model.coordinate_losses returned {out[key].size} losses for "
                    f"{len(index)} moves of {self.name(key)}."
                )
            self._evaluated(len(index))
        return out

    def evaluate_many(self, stacks: Dict) -> np.ndarray:
        """Losses with every tensor in ``stacks`` replaced, row by row (all stacks have the same
        number of rows K): needs ``batched``."""
        if self.has_batched_loss:
            values = np.asarray(self.model.batched_loss(self.X, self.y, stacks), dtype=np.float64)
        elif INPUT in stacks and not self.compiled.has_input:
            # X could not be a graph input (the loss calls tf.constant(X), say): one by one.
            K = len(next(iter(stacks.values())))
            base = self.snapshot()
            points = [
                {**{i: base[i] for i in range(len(base))}, **{k: v[r] for k, v in stacks.items()}}
                for r in range(K)
            ]
            return self.evaluate_points(points)
        else:
            base = [None if i in stacks else self.read(i) for i in range(len(self.params))]
            values = self.compiled(stacks, base, self.X)
        self._evaluated(values.size)
        return values

    def _evaluated(self, count: int) -> None:
        if self.on_evaluated is not None:
            self.on_evaluated(count)

    def evaluate(self, key, stack: np.ndarray) -> np.ndarray:
        """Losses with the tensor ``key`` replaced by each of the K values in ``stack``
        (shape ``(K, *shape)``), as float64. The model is left exactly as it was."""
        if self.batched:
            return self.evaluate_many({key: stack})
        out = np.empty(len(stack))
        self._evaluated(len(stack))
        if key == INPUT:
            for k, value in enumerate(stack):
                out[k] = float(self.model.loss(value.astype(self.dtype.as_numpy_dtype), self.y))
            return out
        original = self.read(key)
        try:
            for k, value in enumerate(stack):
                self.write(key, value)
                out[k] = float(self.model.loss(self.X, self.y))
        finally:
            self.write(key, original)
        return out

    def evaluate_points(self, points) -> np.ndarray:
        """Losses at whole points, one ``loss()`` call each: ``points`` is a list of dicts mapping
        every key (parameters, and ``INPUT`` when it is checked) to a value. The parameters are
        left bit-identical."""
        out = np.empty(len(points))
        self._evaluated(len(points))
        original = self.snapshot()
        try:
            for i, point in enumerate(points):
                for k in range(len(self.params)):
                    self.write(k, point[k])
                X = point[INPUT].astype(self.dtype.as_numpy_dtype) if INPUT in point else self.X
                out[i] = float(self.model.loss(X, self.y))
        finally:
            self.restore(original)
        return out

    def cast(self, values: np.ndarray) -> np.ndarray:
        """Values as the model will see them (rounded to its dtype), back in float64."""
        return values.astype(self.dtype.as_numpy_dtype).astype(np.float64)
