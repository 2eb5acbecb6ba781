"""The property suite: random models and batches, judged by every witness."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, note
from hypothesis import strategies as st

import manual_backprop as mb
from reference import check_gradients
from reference.strategies import activations, batches, cases, loss_pairings, models


@given(case=cases())
def test_manual_gradients_agree_with_every_witness(case):
    model, X, y = case
    loss = float(model.loss(X, y))
    assert np.isfinite(loss), f"loss not finite: {loss}"
    report = check_gradients(model, X, y)
    note(str(report))
    assert report.ok, str(report)
    assert report.forward is not None and report.forward.ok


@given(case=cases(max_width=10, max_size=16))
def test_directional_mode_agrees(case):
    model, X, y = case
    report = check_gradients(model, X, y, mode="directional")
    assert report.ok, str(report)
