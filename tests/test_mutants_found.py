"""The property suite itself finds every mutant, not only the hand-picked revealing batch."""

import pytest
from corpus import MIN_HIDDEN, MIN_N
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from mutants import MUTANTS, USER_MUTANTS

from reference import MODES, check_gradients
from reference.strategies import batch_for

# Mutants whose bug only fits square layers (W used where W^T belongs, and the like).
SQUARE = {"WNotTransposed", "WeightGradFromOwnActivation", "InputGradientNotTransposed"}


@st.composite
def variants(draw, mutant):
    """The mutant's own activations and loss, with everything else drawn: widths, batch size
    (1 included), dtype, seed, input scale."""
    sizes, acts, loss = mutant.config
    if mutant.__name__ in SQUARE:
        width = draw(st.integers(2, 5))
        sizes = [width] * len(sizes)
    else:
        hidden = [draw(st.integers(1, 6)) for _ in sizes[1:-1]]
        sizes = [draw(st.integers(1, 5)), *hidden, sizes[-1]]
    model = mutant(
        sizes,
        acts,
        loss,
        dtype=draw(st.sampled_from(["float32", "float64"])),
        seed=draw(st.integers(0, 2**16)),
    )
    batch = batch_for(
        model,
        n=draw(st.integers(1, 8)),
        input_scale=draw(st.sampled_from([0.1, 1.0, 3.0])),
        seed=draw(st.integers(0, 2**16)),
    )
    return model, batch


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.__name__ for m in MUTANTS])
def test_the_property_finds_the_mutant(mutant):
    """The property a user writes ("the check passes") must be falsified within the profile's
    example budget. Shrinking is skipped: the first counterexample is enough here."""

    @settings(phases=[Phase.explicit, Phase.generate], deadline=None)
    @given(case=variants(mutant))
    def gradients_pass(case):
        model, (X, y) = case
        assert check_gradients(model, X, y).ok

    with pytest.raises(AssertionError):
        gradients_pass()


@pytest.mark.parametrize("case", USER_MUTANTS, ids=[c.id for c in USER_MUTANTS])
def test_the_property_finds_the_users_bug(case):
    """The same for every planted bug of the corpus of user-style models: seed, sizes and mode
    drawn."""

    @settings(phases=[Phase.explicit, Phase.generate], deadline=None)
    @given(
        seed=st.integers(0, 2**16),
        hidden=st.integers(MIN_HIDDEN, 7),
        n=st.integers(MIN_N, 10),
        mode=st.sampled_from(MODES),
    )
    def gradients_pass(seed, hidden, n, mode):
        model, X, y = case.build(seed, hidden, n)
        assert check_gradients(model, X, y, mode=mode).ok

    with pytest.raises(AssertionError):
        gradients_pass()
