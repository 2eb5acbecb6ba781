"""The example scripts train to 100% training accuracy with their fixed seeds."""

import importlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module", autouse=True)
def examples_on_path():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


@pytest.mark.parametrize("name", ["xor_sigmoid", "two_relu_layers", "softmax_3class"])
def test_example_reaches_full_accuracy(name):
    result = importlib.import_module(name).main(verbose=False)
    history = result["history"]
    assert result["accuracy"] == 1.0, f"{name}: accuracy {result['accuracy']:.1%}"
    assert np.all(np.isfinite(history)) and history[-1] < 0.1 * history[0]


def test_run_all_prints_each_example_and_exits_zero():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_all.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("final training accuracy 100.0%") == 3
    assert "3 of 3 examples reached 100% training accuracy" in proc.stdout


def test_planted_bug_example_fails_on_b2_only():
    report = importlib.import_module("planted_bug").main()
    assert not report.ok and [e.name for e in report.failing] == ["b2"]
    assert "manual = 2 x truth: a factor of 2" in str(report)


def test_custom_gradient_example_fails_with_the_diagonal_diagnosis():
    report = importlib.import_module("custom_gradient").main()
    assert not report.ok
    assert "the manual Jacobian is the diagonal of the true one only" in str(report)


def test_numpy_example_passes_the_right_net_and_names_the_penalty_slip():
    right, slip = importlib.import_module("numpy_two_layer").main(verbose=False)
    assert right.ok and right.tape_blind.startswith("the parameters are NumPy arrays")
    assert not slip.ok and [e.name for e in slip.failing] == ["W1"]
    assert "a penalty term's gradient is off" in str(slip)


def test_own_model_example_passes_its_net_and_shrinks_the_buggy_one_to_a_pasteable_call():
    from reference import check_gradients
    from reference.strategies import Case, batch_for

    example = importlib.import_module("own_model_properties")
    failure = example.main()
    notes = "\n".join(failure.__notes__)
    call = notes.split("case=", 1)[1].split("\n)\n", 1)[0].rstrip(",")
    assert call.startswith("Case(model=BuggyNet(") and "batch_for(n_inputs=" in call, notes
    names = {"Case": Case, "BuggyNet": example.BuggyNet, "batch_for": batch_for}
    report = check_gradients(*eval(call, names))
    assert not report.ok and [e.name for e in report.failing] == ["b1"], str(report)
