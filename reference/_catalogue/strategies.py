"""The strategies behind ``reference.strategies`` (documented there): what hypothesis draws from
``manual_backprop``'s catalogue, its pairing rules and its parameters' examples."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import manual_backprop as mb

from .._core import validate

__all__ = [
    "architectures",
    "activations",
    "loss_pairings",
    "models",
    "batches",
    "batch_for",
    "cases",
    "Batch",
    "Case",
    "PAIRINGS",
]

_ANY = tuple(mb.activation_names())
# loss -> the output activations it may follow (its catalogue record's pairing rule: losses on
# probabilities need an output in [0, 1], every other loss takes any output).
PAIRINGS = {name: record.outputs or _ANY for name, record in mb.LOSSES.items()}
# The seeds of drawn weights and data: 0 .. 2^16, few enough that shrinking reaches 0 fast.
_MAX_SEED = 2**16


@contextlib.contextmanager
def _invalid_argument():
    """The shared validators' errors, as hypothesis's InvalidArgument (what its users expect)."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(str(exc)) from None


def _check_int(name, value, low):
    """An integer >= ``low`` (0 or 1), as the shared validators define them."""
    with _invalid_argument():
        return validate.seed(value, name) if low == 0 else validate.positive_integer(value, name)


def _check_bounds(lo_name, lo, hi_name, hi, low=1):
    lo, hi = _check_int(lo_name, lo, low), _check_int(hi_name, hi, low)
    if hi < lo:
        raise InvalidArgument(
            f"{hi_name}={hi} is below {lo_name}={lo}; raise {hi_name} or lower {lo_name}."
        )
    return lo, hi


def _check_names(what, names, valid):
    names = tuple(names)
    unknown = [n for n in names if n not in valid]
    if not names or unknown:
        raise InvalidArgument(
            f"{what} must be a non-empty list from {', '.join(valid)}; "
            f"unknown: {unknown or 'none given'}."
        )
    return names


def _check_positive_numbers(what, values):
    values = tuple(values)
    if not values:
        raise InvalidArgument(f"{what} must be a non-empty list of positive numbers; got ().")
    with _invalid_argument():
        return tuple(validate.positive_number(v, f"each of {what}") for v in values)


def _drawn_params(draw, record) -> dict:
    """The record's parameters that property tests vary, each drawn from its examples."""
    return {
        p: draw(st.sampled_from(spec.examples))
        for p, spec in record.params.items()
        if spec.examples
    }


def architectures(
    *,
    min_depth: int = 1,
    max_depth: int = 3,
    min_width: int = 1,
    max_width: int = 6,
    n_inputs: Optional[int] = None,
    n_outputs: Optional[int] = None,
) -> st.SearchStrategy:
    """Layer sizes ``[n_inputs, hidden..., n_outputs]`` with ``depth`` layers (weights), widths in
    ``[min_width, max_width]``; widths of 1 and equal consecutive widths come up often."""
    min_depth, max_depth = _check_bounds("min_depth", min_depth, "max_depth", max_depth)
    min_width, max_width = _check_bounds("min_width", min_width, "max_width", max_width)
    if n_inputs is not None:
        n_inputs = _check_int("n_inputs", n_inputs, 1)
    if n_outputs is not None:
        n_outputs = _check_int("n_outputs", n_outputs, 1)

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
        return mb.get_activation(name, **_drawn_params(draw, mb.ACTIVATIONS[name]))

    return draw_activation()


def loss_pairings(
    *, losses: Sequence[str] = tuple(PAIRINGS), outputs: Sequence[str] = _ANY
) -> st.SearchStrategy:
    """``(output activation, loss)``: every valid pairing (see ``PAIRINGS``), with the loss's
    parameter (Huber's delta) and the activation's drawn."""
    losses = _check_names("losses", losses, tuple(PAIRINGS))
    outputs = _check_names("outputs", outputs, _ANY)
    usable = [l for l in losses if set(PAIRINGS[l]) & set(outputs)]
    if not usable:
        raise InvalidArgument(f"no valid pairing between losses {losses} and outputs {outputs}.")

    @st.composite
    def draw_pairing(draw):
        loss_name = draw(st.sampled_from(usable))
        allowed = [o for o in PAIRINGS[loss_name] if o in outputs]
        out = draw(activations(names=allowed))
        return out, mb.get_loss(loss_name, **_drawn_params(draw, mb.LOSSES[loss_name]))

    return draw_pairing()


def models(
    *,
    dtypes: Sequence[str] = ("float32", "float64"),
    min_depth: int = 1,
    max_depth: int = 3,
    max_width: int = 6,
    hidden: Sequence[str] = _ANY,
    losses: Sequence[str] = tuple(PAIRINGS),
    outputs: Sequence[str] = _ANY,
    weight_scales: Sequence[float] = (0.1, 1.0, 3.0),
    initializers: Sequence[str] = tuple(mb.INITIALIZERS),
) -> st.SearchStrategy:
    """A ``manual_backprop.MLP``: architecture, per-layer hidden activations, loss pairing,
    dtype, initializer and weight scale drawn, weights from a drawn seed."""
    dtypes = _check_names("dtypes", dtypes, ("float32", "float64"))
    weight_scales = _check_positive_numbers("weight_scales", weight_scales)
    initializers = _check_names("initializers", initializers, tuple(mb.INITIALIZERS))
    hidden_acts = activations(names=hidden)
    pairings = loss_pairings(losses=losses, outputs=outputs)
    min_depth, max_depth = _check_bounds("min_depth", min_depth, "max_depth", max_depth)
    max_width = _check_int("max_width", max_width, 1)

    @st.composite
    def draw_model(draw):
        out, loss = draw(pairings)
        n_out = draw(st.integers(2 if loss.labels == "sparse" else 1, max(2, max_width)))
        sizes = draw(
            architectures(
                min_depth=min_depth, max_depth=max_depth, max_width=max_width, n_outputs=n_out
            )
        )
        acts = [draw(hidden_acts) for _ in range(len(sizes) - 2)] + [out]
        return mb.MLP(
            sizes,
            acts,
            loss,
            dtype=draw(st.sampled_from(dtypes)),
            seed=draw(st.integers(0, _MAX_SEED)),
            initializer=draw(st.sampled_from(initializers)),
            weight_scale=draw(st.sampled_from(weight_scales)),
        )

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
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    with _invalid_argument():
        input_scale = validate.positive_number(input_scale, "input_scale")
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


def batches(
    model,
    *,
    min_size: int = 1,
    max_size: int = 8,
    input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0),
) -> st.SearchStrategy:
    """A :class:`Batch` for ``model``: batch size (1 included), input scale and seed drawn."""
    min_size, max_size = _check_bounds("min_size", min_size, "max_size", max_size)
    input_scales = _check_positive_numbers("input_scales", input_scales)

    @st.composite
    def draw_batch(draw):
        return batch_for(
            model,
            n=draw(st.integers(min_size, max_size)),
            input_scale=draw(st.sampled_from(input_scales)),
            seed=draw(st.integers(0, _MAX_SEED)),
        )

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


def cases(
    *,
    min_size: int = 1,
    max_size: int = 8,
    input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0),
    **model_kwargs,
):
    """A :class:`Case`: ``models(**model_kwargs)`` and ``batches`` for it."""
    model_strategy = models(**model_kwargs)
    min_size, max_size = _check_bounds("min_size", min_size, "max_size", max_size)
    input_scales = _check_positive_numbers("input_scales", input_scales)

    @st.composite
    def draw_case(draw):
        model = draw(model_strategy)
        return Case(
            model,
            draw(batches(model, min_size=min_size, max_size=max_size, input_scales=input_scales)),
        )

    return draw_case()
