"""reference.strategies: what they draw, and how they refuse bad bounds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import manual_backprop as mb
from reference.strategies import (
    PAIRINGS,
    activations,
    architectures,
    batch_for,
    batches,
    cases,
    loss_pairings,
    models,
)


@given(sizes=architectures(min_depth=2, max_depth=4, max_width=5, n_inputs=3, n_outputs=2))
def test_architectures_respect_their_bounds(sizes):
    assert sizes[0] == 3 and sizes[-1] == 2 and 3 <= len(sizes) <= 5
    assert all(1 <= w <= 5 for w in sizes[1:-1])


def draws(strategy, n=200):
    """``n`` values hypothesis generates from ``strategy`` (derandomized, no shrinking)."""
    seen = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value):
        seen.append(value)

    collect()
    return seen


def test_width_one_and_equal_consecutive_widths_come_up_often():
    """The docstring's promise, measured: both edge cases in at least 1 draw in 10."""
    sizes = draws(architectures(min_depth=2))
    width_one = np.mean([1 in s[1:-1] for s in sizes])
    equal = np.mean([any(a == b for a, b in zip(s[1:-1], s[2:-1])) for s in sizes])
    assert width_one >= 0.1 and equal >= 0.1, (width_one, equal)


@given(pair=loss_pairings())
def test_every_drawn_pairing_is_valid(pair):
    out, loss = pair
    assert out.name in PAIRINGS[loss.name]
    mb.MLP([2, 3], [out], loss)  # the model accepts it


@given(model=models(max_width=4), data=st.data())
def test_batches_are_valid_for_the_model(model, data):
    batch = data.draw(batches(model, max_size=5))
    X, y = batch
    assert X.shape == (batch.n, model.layer_sizes[0]) and 1 <= batch.n <= 5
    assert np.isfinite(float(model.loss(X, y)))  # labels pass the model's checks


def test_batch_size_one_comes_up_often():
    model = mb.MLP([2, 3], ["linear"], "mse", seed=0)
    sizes = [b.n for b in draws(batches(model))]
    assert np.mean(np.equal(sizes, 1)) >= 0.1 and max(sizes) == 8, sizes


def test_drawn_values_reproduce_from_their_repr():
    case = find(cases(dtypes=["float64"]), lambda c: len(c.model.layer_sizes) > 2)
    namespace = {name: getattr(mb, name) for name in mb.__all__}
    namespace["batch_for"] = batch_for
    model = eval(repr(case.model), namespace)
    namespace["model"] = model
    X, y = eval(repr(case.batch), namespace)
    np.testing.assert_array_equal(X, case.batch.X)
    np.testing.assert_array_equal(y, case.batch.y)
    for a, b in zip(model.get_weights(), case.model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: architectures(min_depth=0), "min_depth must be a positive integer"),
        (lambda: architectures(min_depth=1.0), "min_depth must be a positive integer"),
        (lambda: architectures(min_width=4, max_width=2), "max_width=2 is below min_width=4"),
        (lambda: architectures(n_outputs=0), "n_outputs must be a positive integer"),
        (lambda: activations(names=["relu", "swishh"]), "unknown: \\['swishh'\\]"),
        (lambda: activations(names=[]), "non-empty"),
        (
            lambda: loss_pairings(losses=["binary_crossentropy"], outputs=["linear"]),
            "no valid pairing",
        ),
        (lambda: models(dtypes=["float16"]), "dtypes must be a non-empty list"),
        (lambda: models(weight_scales=[0.0]), "weight_scales must be a positive finite number"),
        (lambda: models(weight_scales=[float("inf")]), "weight_scales must be a positive finite"),
        (lambda: batches(mb.MLP([2, 1], ["linear"], "mse"), min_size=0), "min_size"),
        (lambda: batches(mb.MLP([2, 1], ["linear"], "mse"), input_scales=[-1.0]), "input_scales"),
        (lambda: cases(input_scales=[]), "input_scales must be a non-empty list"),
        (
            lambda: batch_for(mb.MLP([2, 1], ["linear"], "mse"), n=2, seed=-1),
            "seed must be a non-negative integer",
        ),
    ],
)
def test_bad_bounds_are_refused_up_front_as_invalid_argument(make, match):
    with pytest.raises(InvalidArgument, match=match):
        make()


def test_numpy_integers_are_bounds_like_any_other():
    sizes = find(
        architectures(min_depth=np.int64(2), max_depth=np.int64(2), n_inputs=np.int32(3)),
        lambda s: True,
    )
    assert len(sizes) == 3 and sizes[0] == 3 and isinstance(sizes[0], int)
