"""The gradcheck command line: exit codes, the JSON report, user models, the step plot."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from reference._cli import main

USER_MODULE = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf
    import manual_backprop as mb


    class Doubled:
        """A user's model whose backward doubles the output-layer gradients."""

        def __init__(self, model):
            self.model, self.params, self.param_names = model, model.params, model.param_names

        def loss(self, X, y):
            return self.model.loss(X, y)

        def gradients(self, X, y):
            return [2.0 * g for g in self.model.gradients(X, y)]


    def _batch(model, n=5, seed=0):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, model.layer_sizes[0]))
        return X, rng.normal(size=(n, model.layer_sizes[-1]))


    def good():
        model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
        return (model, *_batch(model))


    def several():
        out = []
        for seed, act in enumerate(["relu", "gelu", "softsign"]):
            model = mb.MLP([2, 3, 2], [act, "linear"], "mse", dtype="float32", seed=seed)
            out.append((model, *_batch(model, seed=seed)))
        return out


    def bad():
        model = mb.MLP([3, 4, 2], ["tanh", "linear"], "mse", dtype="float64", seed=0)
        return (Doubled(model), *_batch(model))


    def not_a_case():
        return 42


    def cube(x):
        return x ** 3


    def cube_prime(x):
        return 3.0 * x ** 2


    def cube_wrong(x):
        return 2.0 * x ** 2


    def softmax(x):
        return tf.nn.softmax(x, axis=-1)


    def softmax_diagonal(x):
        s = tf.nn.softmax(x, axis=-1)
        return s * (1.0 - s)


    def softmax_vjp(dy, x):
        s = tf.nn.softmax(x, axis=-1)
        return s * (dy - tf.reduce_sum(dy * s, axis=-1, keepdims=True))


    def softmax_vjp_diagonal(dy, x):
        s = tf.nn.softmax(x, axis=-1)
        return dy * s * (1.0 - s)


    def softmax_jvp(dx, x):
        return softmax_vjp(dx, x)


    def logits():
        return np.random.default_rng(0).normal(size=(3, 4))


    def two_inputs():
        return logits(), logits()


    def integers():
        return np.arange(6).reshape(2, 3)


    def a_list():
        return [0.5, -1.0, 2.0]


    def no_cases():
        return []


    class ListParams:
        params = [[1.0, 2.0]]  # neither a tf.Variable nor a NumPy array: nothing to perturb

        def loss(self, X, y):
            return tf.reduce_sum(X)

        def gradients(self, X, y):
            return [np.zeros(2)]


    def list_params():
        return ListParams(), np.ones((3, 2)), np.ones((3, 2))


    class NoParams:
        def loss(self, X, y):
            return tf.reduce_sum(X)

        def gradients(self, X, y):
            return [np.zeros(2)]


    def no_params():
        return NoParams(), np.ones((3, 2)), np.ones((3, 2))


    class Interrupted(Doubled):
        def gradients(self, X, y):
            raise KeyboardInterrupt  # as Ctrl-C would, in the middle of a check


    def interrupted():
        model, X, y = good()
        return [(model, X, y), (Interrupted(model), X, y), (model, X, y)]


    def _helper_that_fails(X):
        return X.shape[5]


    class RaisesInGradients(Doubled):
        def gradients(self, X, y):
            return _helper_that_fails(X)


    def raises():
        model, X, y = good()
        return RaisesInGradients(model), X, y


    def vjp_raises(dy, x):
        raise RuntimeError("my vjp is unfinished")


    class NumpyLinear:
        """A NumPy model; ``slip`` forgets the 2 of the mean squared error in dW."""

        def __init__(self, slip=False):
            self.W = np.array([[0.5, -0.25], [0.125, 1.0], [0.3, 0.2]])
            self.params, self.slip = [self.W], slip

        def loss(self, X, y):
            return np.mean((X @ self.W - y) ** 2)

        def gradients(self, X, y):
            return [X.T @ ((1 if self.slip else 2) * (X @ self.W - y) / y.size)]


    def a_tuple_of_cases():
        return tuple(numpy_models())


    def a_generator_of_cases():
        return (case for case in numpy_models())


    def pairs():
        return [(NumpyLinear(), np.ones((4, 3)))]


    def numpy_models():
        X, y = np.ones((4, 3)) * np.arange(1, 5)[:, None], np.zeros((4, 2))
        return [(NumpyLinear(), X, y), (NumpyLinear(slip=True), X, y)]
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("usermodels", None)


def test_the_matrix_passes_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["--dtype", "float64", "--examples", "1", "--seed", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "168 cells, 168 checks (full mode, seed 3): 168 pass" in text
    assert "relu          linear + mse" in text
    data = json.loads(out.read_text())
    assert data["ok"] is True and data["summary"]["fail"] == 0 and len(data["cells"]) == 168
    cell = data["cells"][0]
    assert {"hidden", "output", "loss", "dtype", "verdict", "checks"} <= set(cell)
    check = cell["checks"][0]
    assert {"ok", "mode", "entries", "forward", "diagnosis"} <= set(check)
    assert {"name", "status", "comparisons", "worst_index", "diagnosis"} <= set(check["entries"][0])


def test_quiet_directional_run(capsys):
    code = main(["--dtype", "float32", "--examples", "1", "--mode", "directional", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and text.strip().count("\n") == 0, text
    assert "(directional mode, seed 0)" in text


def test_a_users_model_through_a_factory(user_module, capsys):
    assert main(["model", "usermodels:good"]) == 0
    assert "Gradient check: PASS" in capsys.readouterr().out
    out = user_module / "several.json"
    assert main(["model", "usermodels:several", "--json", str(out), "--mode", "directional"]) == 0
    data = json.loads(out.read_text())
    assert data["ok"] and len(data["reports"]) == 3


def test_a_wrong_users_model_exits_1(user_module, capsys):
    assert main(["model", "usermodels:bad"]) == 1
    text = capsys.readouterr().out
    assert "Gradient check: FAIL" in text and "manual = 2 x truth: a factor of 2" in text
    assert "1 model(s) from usermodels:bad (full mode): 0 pass, 1 fail" in text


def test_derivatives_from_the_command_line(user_module, capsys):
    assert main(["derivative", "usermodels:cube", "usermodels:cube_prime"]) == 0
    assert main(["derivative", "usermodels:cube", "usermodels:cube_wrong"]) == 1
    assert "FAIL at x =" in capsys.readouterr().out


def test_a_derivative_of_a_function_that_is_not_elementwise_exits_2(user_module, capsys):
    """Softmax with its diagonal s (1 - s) passed the check once; now it is refused as bad input
    (exit 2, the message on stderr), not judged as a wrong or a right derivative."""
    for argv in (["usermodels:softmax", "usermodels:softmax_diagonal"], ["usermodels:softmax"]):
        assert main(["derivative", *argv]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert captured.err.startswith("gradcheck: error: usermodels:softmax: fn 'softmax': ")
        assert "perturbing x[" in captured.err and "fn is not elementwise" in captured.err
        assert "use reference.check_function(fn, x, vjp=...)" in captured.err


def test_a_function_from_the_command_line(user_module, capsys):
    base = ["function", "usermodels:softmax", "--inputs", "usermodels:logits"]
    assert main([*base, "--vjp", "usermodels:softmax_vjp"]) == 0
    assert main([*base, "--jvp", "usermodels:softmax_jvp", "--order", "2"]) == 0
    assert "Function check of softmax: PASS (order 2" in capsys.readouterr().out
    out = user_module / "function.json"
    code = main([*base, "--vjp", "usermodels:softmax_vjp_diagonal", "--json", str(out)])
    assert code == 1
    text = capsys.readouterr().out
    assert "Function check of softmax: FAIL" in text and "the diagonal of the true one" in text
    data = json.loads(out.read_text())
    assert data["command"] == "function" and data["ok"] is False and data["order"] == 1
    # A list from the factory is one input (a tuple would be several).
    assert main(["function", "usermodels:softmax", "--inputs", "usermodels:a_list"]) == 0


def test_function_and_derivative_end_with_a_summary_line_that_quiet_keeps(user_module, capsys):
    argv = ["function", "usermodels:softmax", "--inputs", "usermodels:logits"]
    assert main([*argv, "--vjp", "usermodels:softmax_vjp", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("function usermodels:softmax (full mode): PASS")
    assert main([*argv, "--vjp", "usermodels:softmax_vjp_diagonal", "--mode", "directional"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("function usermodels:softmax (directional mode): FAIL in ")
    assert main(["derivative", "usermodels:cube", "usermodels:cube_prime", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("derivative usermodels:cube: PASS in ")
    assert main(["derivative", "usermodels:cube", "usermodels:cube_wrong", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAIL at x =" in out
    assert out.splitlines()[-1].startswith("derivative usermodels:cube: FAIL in ")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--inputs", "usermodels:integers"], "inputs[0] has dtype int64"),
        (["--inputs", "usermodels:two_inputs"], "fn(x) got 2 inputs"),
        (["--inputs", "usermodels:logits", "--vjp", "usermodels:nothing"], "has no 'nothing'"),
    ],
)
def test_a_function_check_that_cannot_run_exits_2(user_module, capsys, argv, message):
    assert main(["function", "usermodels:softmax", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["model", "usermodels"], "MODULE:NAME"),
        (["model", "nosuchmodule:f"], "cannot import 'nosuchmodule'"),
        (["model", "usermodels:missing"], "has no 'missing'"),
        (["model", "usermodels:not_a_case"], "must return (model, X, y), or a list, tuple"),
    ],
)
def test_usage_errors_exit_2(user_module, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mode", "fast"], "invalid choice: 'fast'"),
        (["--examples", "0"], "--examples must be a positive integer, such as 3; got 0"),
        (["--seed", "-1"], "--seed must be a non-negative integer, such as 0; got -1"),
        (["--seed", "x"], "--seed must be an integer; got 'x'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["derivative"], "the following arguments are required"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_step_plot_is_a_png(user_module, capsys):
    png = user_module / "steps.png"
    assert main(["steps", "usermodels:good", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<- float64 step" in text and "<- float32 step" in text


def test_the_step_curve_is_v_shaped(user_module):
    """Truncation error falls with the step and rounding error grows as it shrinks: the harness's
    step sits near the bottom of the float64 curve, far below both ends."""
    import usermodels

    from reference._checks.steps import step_sweep

    model, X, y = usermodels.good()
    exponents = list(range(-40, -1))
    curves, chosen = step_sweep(model, X, y, exponents)
    f64 = curves["float64"]
    at = f64[exponents.index(chosen["float64"])]
    assert at < 1e-9 and at < f64[0] / 1e3 and at < f64[-1] / 1e3
    assert min(curves["float32"]) > min(f64) * 1e3


def test_python_dash_m_reference():
    proc = subprocess.run(
        [sys.executable, "-m", "reference", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "exit codes: 0 all checks pass" in proc.stdout


def test_the_matrix_fails_and_names_the_cells_of_a_planted_bug(monkeypatch, capsys):
    """tanh's derivative written 1 - z^2: every cell with tanh hidden layers fails, the run
    exits 1 and its summary counts them; the other cells pass."""
    import dataclasses
    from types import MappingProxyType

    import manual_backprop as mb

    record = mb.ACTIVATIONS["tanh"]
    wrong = dataclasses.replace(
        record, build=lambda: (tf.math.tanh, lambda z, a: 1.0 - z * z, None)
    )
    monkeypatch.setattr(
        mb.activations, "ACTIVATIONS", MappingProxyType({**mb.ACTIVATIONS, "tanh": wrong})
    )
    code = main(["--dtype", "float64", "--examples", "1", "--quiet"])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "168 cells, 168 checks (full mode, seed 0): 156 pass" in text and ", 12 fail in" in text
    failing_rows = [line for line in text.splitlines() if line.endswith("FAIL")]
    assert len(failing_rows) == 12 and all(row.startswith("tanh ") for row in failing_rows)


def test_options_before_the_subcommand_are_kept(user_module, capsys):
    out = user_module / "before.json"
    assert main(["--json", str(out), "--mode", "directional", "model", "usermodels:good"]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "directional" and data["ok"] is True
    out2 = user_module / "after.json"
    assert main(["--mode", "directional", "model", "usermodels:good", "--json", str(out2)]) == 0
    assert json.loads(out2.read_text())["mode"] == "directional"


def test_several_cases_are_labelled_by_factory_and_index(user_module, capsys):
    assert main(["model", "usermodels:several", "--mode", "directional"]) == 0
    text = capsys.readouterr().out
    assert "model: usermodels:several[2]" in text and "object at 0x" not in text


def test_a_factory_given_as_a_file_path(user_module, capsys):
    assert main(["model", str(user_module / "usermodels.py") + ":good"]) == 0
    assert "Gradient check: PASS" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", "usermodels:no_cases"], "usermodels:no_cases() returned no cases"),
        (["model", "usermodels:list_params"], "usermodels:list_params: model.params[0]"),
        (["model", "usermodels:no_params"], "usermodels:no_params: model must have params"),
        (["steps", "usermodels:good", "--plot", "plots"], "--plot must name a .png file"),
    ],
)
def test_what_keeps_a_check_from_running_exits_2_with_one_line(user_module, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_steps_writes_its_json(user_module, capsys):
    out = user_module / "steps.json"
    assert main(["steps", "usermodels:good", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["command"] == "steps" and set(data["chosen"]) == {"float32", "float64"}
    assert len(data["errors"]["float64"]) == len(data["exponents"])


def test_ctrl_c_prints_the_partial_summary_and_exits_130(user_module, capsys):
    out = user_module / "partial.json"
    assert main(["model", "usermodels:interrupted", "--json", str(out)]) == 130
    text = capsys.readouterr().out
    assert "interrupted after 1 of 3 model(s)" in text
    assert "1 model(s) from usermodels:interrupted (full mode): 1 pass, 0 fail" in text
    assert len(json.loads(out.read_text())["reports"]) == 1


def test_a_full_check_that_would_take_too_long_is_refused_with_the_cli_options(user_module, capsys):
    assert main(["model", "usermodels:good", "--max-seconds", "1e-9"]) == 2
    err = capsys.readouterr().err
    assert "would take about" in err and "--mode directional, or --max-seconds 0" in err
    assert main(["model", "usermodels:good", "--max-seconds", "0"]) == 0


def test_a_check_on_a_terminal_shows_its_progress(user_module, capsys, monkeypatch):
    import reference._cli as cli

    seen = []

    class Bar:
        def __init__(self, total):
            pass

        def set(self, done, total, description):
            seen.append((done, total, description))

        def stop(self):
            seen.append("stop")

    monkeypatch.setattr(cli, "_progress", Bar)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["model", "usermodels:good"]) == 0
    assert seen[-1] == "stop" and seen[-2][0] == seen[-2][1] > 0
    assert all(d == "usermodels:good" for *_, d in seen[:-1])


def test_the_users_own_exception_exits_2_with_its_traceback(user_module, capsys):
    assert main(["model", "usermodels:raises"]) == 2
    captured = capsys.readouterr()
    assert "return X.shape[5]" in captured.err and "IndexError" in captured.err
    assert (
        captured.err.rstrip()
        .splitlines()[-1]
        .startswith("gradcheck: error: usermodels:raises: model.gradients(X, y) raised IndexError")
    )
    argv = ["function", "usermodels:softmax", "--inputs", "usermodels:logits"]
    assert main([*argv, "--vjp", "usermodels:vjp_raises"]) == 2
    err = capsys.readouterr().err
    assert 'raise RuntimeError("my vjp is unfinished")' in err
    assert "the check could not run: RuntimeError: my vjp is unfinished" in err


def test_numpy_models_are_checked_by_finite_differences_alone(user_module, capsys):
    out = user_module / "numpy.json"
    assert main(["model", "usermodels:numpy_models", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert text.count("tape: cannot witness (the parameters are NumPy arrays") == 2
    assert "1 pass, 1 fail" in text and "manual = 1/2 x truth" in text
    reports = json.loads(out.read_text())["reports"]
    assert [r["ok"] for r in reports] == [True, False]
    assert all(r["tape_blind"] and r["entries"][0]["tape_missing"] for r in reports)


@pytest.mark.parametrize("factory", ["a_tuple_of_cases", "a_generator_of_cases"])
def test_a_tuple_or_a_generator_of_cases_is_a_list_of_them(user_module, capsys, factory):
    assert main(["model", f"usermodels:{factory}"]) == 1
    out = capsys.readouterr().out
    assert f"{factory}[0]" in out and f"{factory}[1]" in out and "1 pass, 1 fail" in out


def test_a_case_that_is_not_a_triple_is_named(user_module, capsys):
    assert main(["model", "usermodels:pairs"]) == 2
    err = capsys.readouterr().err
    assert "list, tuple or generator of such triples; case 0 is a 2-tuple" in err


@pytest.mark.parametrize("where", ["missing/out.json", "."])
def test_an_unwritable_json_path_is_refused_before_any_check(user_module, capsys, where):
    assert main(["model", "usermodels:numpy_models", "--json", where]) == 2
    captured = capsys.readouterr()
    assert "--json" in captured.err and "Gradient check" not in captured.out


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"gradcheck {metadata.version('gradient-harness')}\n"


@pytest.mark.parametrize("level", [None, "3"])
def test_tensorflows_start_up_lines_are_not_printed(tmp_path, level):
    """TensorFlow's C++ libraries print lines as they load whatever TF_CPP_MIN_LOG_LEVEL says;
    the command keeps them out of its output."""
    (tmp_path / "cube.py").write_text(
        "def f(x):\n    return x**3\n\ndef d(x):\n    return 3 * x**2\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    if level:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    proc = subprocess.run(
        [sys.executable, "-m", "reference", "derivative", "cube:f", "cube:d", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "line, start_up",
    [
        (
            "WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR",
            True,
        ),
        (
            "I0000 00:00:1796676063.480392   11472 port.cc:153] oneDNN custom operations are on.",
            True,
        ),
        (
            "W0000 00:00:1796676063.480684   11472 cudart_stub.cc:31] Could not find cuda drivers",
            True,
        ),
        (
            "E0000 00:00:1796676063.4 11472 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN",
            True,
        ),
        ("E0000 00:00:1796676063.4 11472 op_kernel.cc:12] something else went wrong", False),
        ("Traceback (most recent call last):", False),
        ("ImportError: libcudart.so.12: cannot open shared object file", False),
    ],
)
def test_only_tensorflows_start_up_lines_are_kept_out(line, start_up):
    from reference._cli import _STARTUP_LINE

    assert bool(_STARTUP_LINE.fullmatch(line)) == start_up
