"""Hypothesis strategies for property tests of a hand-written backward pass.

Hypothesis draws the structure and the discrete choices (depth, widths, activations and their
parameters, the loss pairing, dtype, batch size, input and weight scale) and a seed; the bulk of
the continuous values (weights, inputs, labels) comes from that seed. Shrinking therefore works
on a handful of small choices and stays fast, and a failing example prints as a short,
copy-pasteable description::

    model=MLP([3, 1, 2], ['tanh', 'linear'], 'mse', dtype='float32', seed=7, initializer='normal')
    batch=batch_for(model, n=2, input_scale=100.0, seed=3)

Every strategy takes keyword-only bounds with small defaults, checked up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from hypothesis import strategies as st

import manual_backprop as mb

__all__ = ["architectures", "activations", "loss_pairings", "models", "batches", "batch_for",
           "cases", "Batch", "Case", "PAIRINGS"]

# Parameters drawn for the activations and losses that take one.
ACTIVATION_PARAMS = {"leaky_relu": {"alpha": (0.01, 0.1, 0.3)}, "elu": {"alpha": (0.5, 1.0, 1.7)}}
LOSS_PARAMS = {"huber": {"delta": (0.1, 0.5, 1.0, 3.0)}}

_ANY = tuple(mb.activation_names())
_PROBABILITY = ("sigmoid", "hard_sigmoid", "softmax")
# loss -> the output activations it may follow. Losses on probabilities need an output in
# [0, 1]; every other loss takes any output (logits or values).
PAIRINGS = {
    "mse": _ANY, "mae": _ANY, "huber": _ANY,
    "binary_crossentropy": _PROBABILITY,
    "binary_crossentropy_from_logits": _ANY,
    "categorical_crossentropy": ("softmax", "sigmoid"),
    "categorical_crossentropy_from_logits": _ANY,
    "sparse_categorical_crossentropy_from_logits": _ANY,
}


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def _check_bounds(lo_name, lo, hi_name, hi, low=1):
    _check_int(lo_name, lo, low)
    _check_int(hi_name, hi, low)
    if hi < lo:
        raise ValueError(f"{hi_name}={hi} is below {lo_name}={lo}; raise {hi_name} or lower "
                         f"{lo_name}.")


def _check_names(what, names, valid):
    names = tuple(names)
    unknown = [n for n in names if n not in valid]
    if not names or unknown:
        raise ValueError(f"{what} must be a non-empty list from {', '.join(valid)}; "
                         f"unknown: {unknown or 'none given'}.")
    return names


def _check_choices(what, values, check=lambda v: True):
    values = tuple(values)
    if not values or not all(check(v) for v in values):
        raise ValueError(f"{what} must be a non-empty list of valid values; got {values!r}.")
    return values


def architectures(*, min_depth: int = 1, max_depth: int = 3, min_width: int = 1,
                  max_width: int = 6, n_inputs: Optional[int] = None,
                  n_outputs: Optional[int] = None) -> st.SearchStrategy:
    """Layer sizes ``[n_inputs, hidden..., n_outputs]`` with ``depth`` layers (weights), widths in
    ``[min_width, max_width]``; widths of 1 and equal consecutive widths come up often."""
    _check_bounds("min_depth", min_depth, "max_depth", max_depth)
    _check_bounds("min_width", min_width, "max_width", max_width)
    for name, value in (("n_inputs", n_inputs), ("n_outputs", n_outputs)):
        if value is not None:
            _check_int(name, value, 1)

    @st.composite
    def draw_sizes(draw):
        depth = draw(st.integers(min_depth, max_depth))
        width = st.integers(min_width, max_width)
        sizes = [n_inputs if n_inputs is not None else draw(width)]
        for i in range(depth):
            if i == depth - 1 and n_outputs is not None:
                sizes.append(n_outputs)
            else:
                sizes.append(draw(st.one_of(st.just(sizes[-1]), width)))
        return sizes

    return draw_sizes()


def activations(*, names: Sequence[str] = _ANY) -> st.SearchStrategy:
    """A catalogue activation, with its parameter (leaky_relu's and elu's alpha) drawn."""
    names = _check_names("names", names, _ANY)

    @st.composite
    def draw_activation(draw):
        name = draw(st.sampled_from(names))
        params = {p: draw(st.sampled_from(vals))
                  for p, vals in ACTIVATION_PARAMS.get(name, {}).items()}
        return mb.get_activation(name, **params)

    return draw_activation()


def loss_pairings(*, losses: Sequence[str] = tuple(PAIRINGS),
                  outputs: Sequence[str] = _ANY) -> st.SearchStrategy:
    """``(output activation, loss)``: every valid pairing (see ``PAIRINGS``), with the loss's
    parameter (Huber's delta) and the activation's drawn."""
    losses = _check_names("losses", losses, tuple(PAIRINGS))
    outputs = _check_names("outputs", outputs, _ANY)
    usable = [l for l in losses if set(PAIRINGS[l]) & set(outputs)]
    if not usable:
        raise ValueError(f"no valid pairing between losses {losses} and outputs {outputs}.")

    @st.composite
    def draw_pairing(draw):
        loss_name = draw(st.sampled_from(usable))
        allowed = [o for o in PAIRINGS[loss_name] if o in outputs]
        out = draw(activations(names=allowed))
        params = {p: draw(st.sampled_from(vals))
                  for p, vals in LOSS_PARAMS.get(loss_name, {}).items()}
        return out, mb.get_loss(loss_name, **params)

    return draw_pairing()


def models(*, dtypes: Sequence[str] = ("float32", "float64"), min_depth: int = 1,
           max_depth: int = 3, max_width: int = 6, hidden: Sequence[str] = _ANY,
           losses: Sequence[str] = tuple(PAIRINGS), outputs: Sequence[str] = _ANY,
           weight_scales: Sequence[float] = (0.1, 1.0, 3.0),
           initializers: Sequence[str] = tuple(mb.INITIALIZERS)) -> st.SearchStrategy:
    """A ``manual_backprop.MLP``: architecture, per-layer hidden activations, loss pairing,
    dtype, initializer and weight scale drawn, weights from a drawn seed."""
    dtypes = _check_choices("dtypes", dtypes, lambda d: d in ("float32", "float64"))
    weight_scales = _check_choices("weight_scales", weight_scales,
                                   lambda v: isinstance(v, (int, float)) and v > 0)
    initializers = _check_names("initializers", initializers, tuple(mb.INITIALIZERS))
    hidden_acts = activations(names=hidden)
    pairings = loss_pairings(losses=losses, outputs=outputs)
    _check_bounds("min_depth", min_depth, "max_depth", max_depth)
    _check_int("max_width", max_width, 1)

    @st.composite
    def draw_model(draw):
        out, loss = draw(pairings)
        n_out = draw(st.integers(2 if loss.labels == "sparse" else 1, max(2, max_width)))
        sizes = draw(architectures(min_depth=min_depth, max_depth=max_depth,
                                   max_width=max_width, n_outputs=n_out))
        acts = [draw(hidden_acts) for _ in range(len(sizes) - 2)] + [out]
        return mb.MLP(sizes, acts, loss, dtype=draw(st.sampled_from(dtypes)),
                      seed=draw(st.integers(0, 2 ** 16)),
                      initializer=draw(st.sampled_from(initializers)),
                      weight_scale=draw(st.sampled_from(weight_scales)))

    return draw_model()


@dataclass(frozen=True, eq=False)
class Batch:
    """Inputs and labels for a model, made from a seed; unpacks as ``X, y``."""

    X: np.ndarray
    y: np.ndarray
    n: int
    input_scale: float
    seed: int

    def __iter__(self):
        yield self.X
        yield self.y

    def __repr__(self):
        return f"batch_for(model, n={self.n}, input_scale={self.input_scale!r}, seed={self.seed})"

    def _repr_pretty_(self, printer, cycle):  # hypothesis prints failing examples with this
        printer.text(repr(self))


def batch_for(model, *, n: int, input_scale: float = 1.0, seed: int = 0) -> Batch:
    """``n`` rows of inputs ``N(0, input_scale^2)`` and labels valid for the model's loss: reals
    for regression losses, 0/1 for binary ones, one-hot rows or class indices for categorical
    ones (every class present when n allows it)."""
    _check_int("n", n, 1)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.layer_sizes[0])) * input_scale
    d = model.layer_sizes[-1]
    kind = model.loss_function.labels
    if kind == "binary":
        y = rng.integers(0, 2, size=(n, d)).astype(float)
    elif kind in ("categorical", "sparse"):
        classes = rng.permutation(np.arange(n) % d) if n >= d else rng.integers(0, d, size=n)
        y = np.eye(d)[classes] if kind == "categorical" else classes
    else:
        y = rng.normal(size=(n, d))
    return Batch(X, y, n, float(input_scale), int(seed))


def batches(model, *, min_size: int = 1, max_size: int = 8,
            input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0)) -> st.SearchStrategy:
    """A :class:`Batch` for ``model``: batch size (1 included), input scale and seed drawn."""
    _check_bounds("min_size", min_size, "max_size", max_size)
    input_scales = _check_choices("input_scales", input_scales,
                                  lambda v: isinstance(v, (int, float)) and v > 0)
    @st.composite
    def draw_batch(draw):
        return batch_for(model, n=draw(st.integers(min_size, max_size)),
                         input_scale=draw(st.sampled_from(input_scales)),
                         seed=draw(st.integers(0, 2 ** 16)))

    return draw_batch()


@dataclass(frozen=True, eq=False)
class Case:
    """A drawn model with a batch for it; unpacks as ``model, X, y``."""

    model: object
    batch: Batch

    def __iter__(self):
        yield self.model
        yield self.batch.X
        yield self.batch.y

    def __repr__(self):
        return f"Case(model={self.model!r}, batch={self.batch!r})"

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


def cases(*, min_size: int = 1, max_size: int = 8,
          input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0), **model_kwargs):
    """A :class:`Case`: ``models(**model_kwargs)`` and ``batches`` for it."""
    model_strategy = models(**model_kwargs)
    _check_bounds("min_size", min_size, "max_size", max_size)

    @st.composite
    def draw_case(draw):
        model = draw(model_strategy)
        return Case(model, draw(batches(model, min_size=min_size, max_size=max_size,
                                        input_scales=input_scales)))

    return draw_case()
