"""The strategies behind ``reference.strategies`` (documented there): what hypothesis draws from
``manual_backprop``'s catalogue, its pairing rules and its parameters' examples."""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

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
    build: Optional[Callable] = None,
) -> st.SearchStrategy:
    """A ``manual_backprop.MLP``: architecture, per-layer hidden activations, loss pairing,
    dtype, initializer and weight scale drawn, weights from a drawn seed.

    With ``build`` (your model class, or a function returning a model), your model instead:
    ``build`` is called with the keywords its signature takes among ``layer_sizes`` (which it
    must take), ``activations`` (catalogue names, one per layer, the last paired with the
    loss), ``loss`` (a catalogue loss name), ``dtype`` and ``seed``, each drawn within the
    bounds above (``initializers`` and ``weight_scales`` are the MLP's own). A failing example
    prints as a call of ``build``."""
    if build is not None:
        return _built_models(
            build, dtypes, min_depth, max_depth, max_width, hidden, losses, outputs
        ).map(lambda built: built[0])
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


# What a builder may take, drawn when its signature names it (``models(build=...)``).
BUILD_KEYWORDS = ("layer_sizes", "activations", "loss", "dtype", "seed")


def _build_keywords(build) -> tuple:
    """The keywords of ``BUILD_KEYWORDS`` that ``build`` takes (all of them with ``**kwargs``)."""
    if not callable(build):
        raise InvalidArgument(
            f"build must be your model class or a function returning a model; got "
            f"{type(build).__name__}."
        )
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"build={build!r} has no signature to read its keywords from."
        ) from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return BUILD_KEYWORDS
    taken = tuple(k for k in BUILD_KEYWORDS if k in params)
    name = getattr(build, "__name__", repr(build))
    if "layer_sizes" not in taken:
        raise InvalidArgument(
            f"build={name} must take layer_sizes (and any of {list(BUILD_KEYWORDS[1:])} it "
            f"understands, each drawn); it takes {list(params)}."
        )
    return taken


def _built_models(build, dtypes, min_depth, max_depth, max_width, hidden, losses, outputs):
    """``(model, layer_sizes, loss name)`` for ``models(build=...)``: the keywords ``build``
    takes, drawn, and the model built from them by ``st.builds`` (so a failing example prints
    as the call)."""
    taken = _build_keywords(build)
    dtypes = _check_names("dtypes", dtypes, ("float32", "float64"))
    hidden = _check_names("hidden", hidden, _ANY)
    losses = _check_names("losses", losses, tuple(PAIRINGS))
    outputs = _check_names("outputs", outputs, _ANY)
    min_depth, max_depth = _check_bounds("min_depth", min_depth, "max_depth", max_depth)
    max_width = _check_int("max_width", max_width, 1)
    if "loss" not in taken and len(losses) != 1:
        raise InvalidArgument(
            f"build takes no loss: name the one its model computes, losses=['mse'] (its labels "
            f"are drawn for it); got losses={list(losses)}."
        )
    usable = [l for l in losses if "activations" not in taken or set(PAIRINGS[l]) & set(outputs)]
    if not usable:
        raise InvalidArgument(f"no valid pairing between losses {losses} and outputs {outputs}.")

    @st.composite
    def draw_built(draw):
        loss = draw(st.sampled_from(usable))
        n_out = draw(st.integers(2 if mb.LOSSES[loss].labels == "sparse" else 1, max(2, max_width)))
        sizes = draw(
            architectures(
                min_depth=min_depth, max_depth=max_depth, max_width=max_width, n_outputs=n_out
            )
        )
        drawn = {"layer_sizes": sizes}
        if "activations" in taken:
            out = draw(st.sampled_from([o for o in PAIRINGS[loss] if o in outputs]))
            drawn["activations"] = [draw(st.sampled_from(hidden)) for _ in sizes[2:]] + [out]
        if "loss" in taken:
            drawn["loss"] = loss
        if "dtype" in taken:
            drawn["dtype"] = draw(st.sampled_from(dtypes))
        if "seed" in taken:
            drawn["seed"] = draw(st.integers(0, _MAX_SEED))
        model = draw(st.builds(build, **{k: st.just(v) for k, v in drawn.items()}))
        return model, sizes, loss

    return draw_built()


@dataclass(frozen=True, eq=False)
class Batch:
    """Inputs and labels for a model, made from a seed; unpacks as ``X, y``."""

    X: np.ndarray
    y: np.ndarray
    n: int
    input_scale: float
    seed: int
    # (n_inputs, n_outputs, loss) where they were given rather than read off the model
    shape: Optional[tuple] = None

    def __iter__(self):
        yield self.X
        yield self.y

    def __repr__(self):
        given = (
            "model"
            if self.shape is None
            else "n_inputs={}, n_outputs={}, loss={!r}".format(*self.shape)
        )
        return f"batch_for({given}, n={self.n}, input_scale={self.input_scale!r}, seed={self.seed})"

    def _repr_pretty_(self, printer, cycle):  # hypothesis prints failing examples with this
        printer.text(repr(self))


def batch_for(
    model=None,
    *,
    n: int,
    input_scale: float = 1.0,
    seed: int = 0,
    n_inputs: Optional[int] = None,
    n_outputs: Optional[int] = None,
    loss: Optional[str] = None,
) -> Batch:
    """``n`` rows of inputs ``N(0, input_scale^2)`` and labels valid for the model's loss: reals
    for regression losses, 0/1 for binary ones, one-hot rows or class indices for categorical
    ones (every class present when n allows it). The sizes and the loss are the
    ``manual_backprop`` model's (its ``layer_sizes`` and ``loss_function``), or given as
    ``n_inputs``, ``n_outputs`` and ``loss`` (a catalogue loss name) for a model of your own."""
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    with _invalid_argument():
        input_scale = validate.positive_number(input_scale, "input_scale")
    shape = None
    if n_inputs is not None or n_outputs is not None or loss is not None:
        if None in (n_inputs, n_outputs, loss):
            raise InvalidArgument("give n_inputs, n_outputs and loss together, or a model alone.")
        sizes = [_check_int("n_inputs", n_inputs, 1), _check_int("n_outputs", n_outputs, 1)]
        kind = mb.LOSSES[_check_names("loss", [loss], tuple(PAIRINGS))[0]].labels
        shape = (sizes[0], sizes[-1], loss)
    elif hasattr(model, "layer_sizes") and hasattr(model, "loss_function"):
        sizes, kind = model.layer_sizes, model.loss_function.labels
    else:
        raise InvalidArgument(
            f"batch_for reads the sizes and the loss of a manual_backprop model; for "
            f"{type(model).__name__}, give n_inputs=, n_outputs= and loss= (a catalogue name)."
        )
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])) * input_scale
    d = sizes[-1]
    if kind == "binary":
        y = rng.integers(0, 2, size=(n, d)).astype(float)
    elif kind in ("categorical", "sparse"):
        classes = rng.permutation(np.arange(n) % d) if n >= d else rng.integers(0, d, size=n)
        y = np.eye(d)[classes] if kind == "categorical" else classes
    else:
        y = rng.normal(size=(n, d))
    return Batch(X, y, n, float(input_scale), int(seed), shape)


def batches(
    model=None,
    *,
    min_size: int = 1,
    max_size: int = 8,
    input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0),
    **shape,
) -> st.SearchStrategy:
    """A :class:`Batch` for ``model``: batch size (1 included), input scale and seed drawn; for
    a model of your own, its ``n_inputs``, ``n_outputs`` and ``loss`` given (see
    ``batch_for``)."""
    min_size, max_size = _check_bounds("min_size", min_size, "max_size", max_size)
    input_scales = _check_positive_numbers("input_scales", input_scales)
    batch_for(model, n=1, **shape)  # a model batch_for cannot read is refused here, by name

    @st.composite
    def draw_batch(draw):
        return batch_for(
            model,
            n=draw(st.integers(min_size, max_size)),
            input_scale=draw(st.sampled_from(input_scales)),
            seed=draw(st.integers(0, _MAX_SEED)),
            **shape,
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
        # The model through the printer: a model drawn with models(build=...) prints as the
        # call of its builder.
        printer.text("Case(model=")
        printer.pretty(self.model)
        printer.text(f", batch={self.batch!r})")


# The keywords of models() that a builder's draw uses, and their defaults.
_MODEL_DEFAULTS = {
    "dtypes": ("float32", "float64"),
    "min_depth": 1,
    "max_depth": 3,
    "max_width": 6,
    "hidden": _ANY,
    "losses": tuple(PAIRINGS),
    "outputs": _ANY,
}


def _only_built(kwargs: dict) -> dict:
    """The keywords of ``kwargs`` a builder's draw uses; the MLP's own (``initializers``,
    ``weight_scales``) are refused with ``build``."""
    mlp_only = sorted(set(kwargs) - set(_MODEL_DEFAULTS))
    if mlp_only:
        raise InvalidArgument(
            f"{mlp_only} apply to the manual_backprop MLP only, not with build=; your builder "
            f"makes its own weights."
        )
    return kwargs


def cases(
    *,
    min_size: int = 1,
    max_size: int = 8,
    input_scales: Sequence[float] = (1e-3, 0.1, 1.0, 10.0, 100.0),
    **model_kwargs,
):
    """A :class:`Case`: ``models(**model_kwargs)`` and ``batches`` for it (``build=`` your
    model class or function: see ``models``)."""
    build = model_kwargs.pop("build", None)
    if build is not None:
        built = _built_models(build, **{**_MODEL_DEFAULTS, **_only_built(model_kwargs)})
    else:
        model_strategy = models(**model_kwargs)
    min_size, max_size = _check_bounds("min_size", min_size, "max_size", max_size)
    input_scales = _check_positive_numbers("input_scales", input_scales)

    @st.composite
    def draw_case(draw):
        if build is None:
            model = draw(model_strategy)
            sizes = {"min_size": min_size, "max_size": max_size, "input_scales": input_scales}
            return Case(model, draw(batches(model, **sizes)))
        model, sizes, loss = draw(built)
        batch = batch_for(
            n=draw(st.integers(min_size, max_size)),
            input_scale=draw(st.sampled_from(input_scales)),
            seed=draw(st.integers(0, _MAX_SEED)),
            n_inputs=sizes[0],
            n_outputs=sizes[-1],
            loss=loss,
        )
        return Case(model, batch)

    return draw_case()
