"""The pytest plugin, run the way a user runs it: pytest in a subprocess on a user's test file."""

import json

import pytest

USER_MODEL = '''
import numpy as np
import tensorflow as tf


class TwoLayer:
    """A user's hand-written two-layer network (tanh hidden layer, mse)."""

    def __init__(self, bug=None, scale=1.0):
        rng = np.random.default_rng(0)
        self.W1 = tf.Variable(rng.normal(size=(3, 4)))
        self.W2 = tf.Variable(rng.normal(size=(4, 2)) * scale)
        self.params = [self.W1, self.W2]
        self.param_names = ["W1", "W2"]
        self.bug = bug

    def loss(self, X, y):
        h = tf.tanh(tf.matmul(X, self.W1))
        return tf.reduce_mean((tf.matmul(h, self.W2) - y) ** 2)

    def gradients(self, X, y):
        X = tf.constant(X)
        h = tf.tanh(X @ self.W1)
        d_out = 2 * (h @ self.W2 - y) / tf.cast(tf.size(y), tf.float64)
        if self.bug == "missing_2":
            d_out = d_out / 2
        if self.bug == "tiny":
            d_out = d_out * (1 + 1e-6)
        dz = (d_out @ tf.transpose(self.W2)) * (1 - h * h)
        return [tf.transpose(X) @ dz, tf.transpose(h) @ d_out]


rng = np.random.default_rng(1)
X = rng.normal(size=(5, 3))
y = rng.normal(size=(5, 2))
'''


def run(pytester, source, *args):
    pytester.makepyfile(usermodel=USER_MODEL, test_user=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", *args)


def test_a_correct_model_passes(pytester):
    result = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def test_gradients(gradcheck):
    report = gradcheck(TwoLayer(), X, y)
    assert report.ok and report.mode == "full"
""",
    )
    result.assert_outcomes(passed=1)


def test_a_planted_bug_fails_with_the_table(pytester):
    result = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def test_gradients(gradcheck):
    gradcheck(TwoLayer(bug="missing_2"), X, y)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientMismatch*",
            "*Gradient check: FAIL*",
            "*tensor*shape*verdict*manual~tape*",
            "*W2*fail*",
            "*manual = 1/2 x truth: a factor of 1/2*",
        ]
    )


def test_the_fixture_checks_a_custom_derivative(pytester):
    result = run(
        pytester,
        """
import numpy as np
import tensorflow as tf

def softmax(x):
    return tf.nn.softmax(x, axis=-1)

def vjp(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return s * (dy - tf.reduce_sum(dy * s, axis=-1, keepdims=True))

def vjp_diagonal(dy, x):
    s = tf.nn.softmax(x, axis=-1)
    return dy * s * (1.0 - s)

x = np.random.default_rng(0).normal(size=(3, 4))

def test_right(gradcheck):
    report = gradcheck.function(softmax, x, vjp=vjp)
    assert report.ok and report.mode == "directional"

def test_wrong(gradcheck):
    gradcheck.function(softmax, x, vjp=vjp_diagonal)
""",
        "--gradcheck-mode=directional",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*GradientMismatch*", "*Function check of softmax: FAIL*", "*vjp: x*fail*"]
    )


def test_options_reach_the_fixture(pytester):
    result = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def test_gradients(gradcheck):
    report = gradcheck(TwoLayer(), X, y)
    print("MODE", report.mode, "ENTRIES", len(report.entries))
""",
        "-s",
        "--gradcheck-mode=directional",
        "--gradcheck-probes=2",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MODE directional ENTRIES 2*"])


def test_the_marker_runs_over_drawn_models(pytester):
    result = run(
        pytester,
        """
import pytest

@pytest.mark.gradcheck_models(max_examples=6, dtypes=["float64"], max_depth=2, max_size=4)
def test_every_drawn_model(gradcheck_case, gradcheck):
    model, X, y = gradcheck_case
    gradcheck(model, X, y)
    print("DRAWN", type(model).__name__, X.shape)
""",
        "-s",
    )
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("DRAWN MLP") >= 2


def test_the_marker_prints_a_copy_pasteable_failing_case(pytester):
    result = run(
        pytester,
        """
import pytest

@pytest.mark.gradcheck_models(max_examples=20, dtypes=["float64"])
def test_batches_are_never_single_rows(gradcheck_case):
    model, X, y = gradcheck_case
    assert X.shape[0] > 1
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_batches_are_never_single_rows(*",
            "*gradcheck_case=Case(model=MLP(*batch=batch_for(model, n=1, *",
        ]
    )


def test_gradcheck_case_without_the_marker_is_a_usage_error(pytester):
    result = run(
        pytester,
        """
def test_forgot_the_marker(gradcheck_case):
    pass
""",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*add @pytest.mark.gradcheck_models*"])


SNAPSHOT_TEST = """
from usermodel import TwoLayer, X, y

def test_snapshot(gradcheck):
    gradcheck.snapshot("two_layer", TwoLayer(bug={bug!r}), X, y)
"""


def test_snapshots_catch_a_changed_backward_pass(pytester):
    first = run(pytester, SNAPSHOT_TEST.format(bug=None), "-W", "default")
    first.assert_outcomes(passed=1, warnings=1)
    path = pytester.path / "gradcheck_snapshots" / "test_user" / "two_layer.json"
    stored = json.loads(path.read_text())
    assert stored["format"] == 1 and list(stored["gradients"]) == ["W1", "W2"]
    assert "pickle" not in path.read_text()

    same = run(pytester, SNAPSHOT_TEST.format(bug=None))
    same.assert_outcomes(passed=1)

    changed = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"))
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*gradients differ from snapshot 'two_layer'*",
            "*W1: changed by 0.5 of its largest gradient*",
            "*--gradcheck-update-snapshots*",
        ]
    )

    updated = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"), "--gradcheck-update-snapshots")
    updated.assert_outcomes(passed=1)
    run(pytester, SNAPSHOT_TEST.format(bug="missing_2")).assert_outcomes(passed=1)


def test_a_snapshot_of_another_model_is_refused(pytester):
    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(passed=1)
    other = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def test_snapshot(gradcheck):
    gradcheck.snapshot("two_layer", TwoLayer(scale=2.0), X, y)
""",
    )
    other.assert_outcomes(failed=1)
    other.stdout.fnmatch_lines(["*not the ones the snapshot was taken with*"])


def test_snapshots_compare_to_the_gradcheck_rtol_option(pytester):
    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(passed=1)
    run(pytester, SNAPSHOT_TEST.format(bug="tiny")).assert_outcomes(failed=1)
    run(pytester, SNAPSHOT_TEST.format(bug="tiny"), "--gradcheck-rtol=1e-4").assert_outcomes(
        passed=1
    )


@pytest.mark.parametrize(
    "option,message",
    [
        ("--gradcheck-rtol=inf", "--gradcheck-rtol must be a positive finite number"),
        ("--gradcheck-rtol=0", "--gradcheck-rtol must be a positive finite number"),
        ("--gradcheck-rtol=tight", "--gradcheck-rtol must be a number; got 'tight'"),
        ("--gradcheck-probes=0", "--gradcheck-probes must be a positive integer"),
        ("--gradcheck-probes=1.5", "--gradcheck-probes must be an integer; got '1.5'"),
    ],
)
def test_bad_options_are_refused_when_pytest_starts(pytester, option, message):
    result = run(pytester, "def test_nothing():\n    pass\n", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_snapshot_names_are_file_names(name):
    from reference._snapshots import check_name

    with pytest.raises(ValueError, match="snapshot name"):
        check_name(name)


def test_loading_the_plugin_imports_no_tensorflow(pytester):
    """An unrelated project's pytest run loads the plugin and imports no TensorFlow (nor its
    start-up log lines) until a check runs."""
    pytester.makepyfile(
        test_unrelated="""
import sys

def test_nothing_of_ours(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("gradcheck")
    assert "tensorflow" not in sys.modules
    assert "reference._checks.gradients" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert "oneDNN" not in result.stderr.str() and "cuda" not in result.stderr.str()


def test_import_reference_imports_no_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, reference; assert 'tensorflow' not in sys.modules; print(reference.__all__[0])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "check_gradients"


MARKED_TWICE = """
import pytest

@pytest.mark.gradcheck_models(max_examples=3, dtypes=["float64"], max_depth=1, max_size=3)
def test_first(gradcheck_case):
    assert gradcheck_case.model is not None

@pytest.mark.gradcheck_models(max_examples=3, dtypes=["float64"], max_depth=1, max_size=3)
def test_second(gradcheck_case, gradcheck):
    gradcheck(*gradcheck_case)
"""


def test_marked_tests_are_hypothesis_tests_of_their_own(pytester):
    """Each marked test is hypothesis's own @given test under its own name (so its own
    example-database key), taking its fixtures as arguments."""
    from hypothesis import is_hypothesis_test

    items = pytester.getitems(MARKED_TWICE)
    assert [item.name for item in items] == ["test_first", "test_second"]
    assert all(is_hypothesis_test(item.obj) for item in items)
    assert [item.obj.__name__ for item in items] == ["test_first", "test_second"]
    assert "gradcheck_case" not in items[1].fixturenames and "gradcheck" in items[1].fixturenames


def test_a_function_scoped_fixture_gets_hypothesis_health_check(pytester):
    result = run(
        pytester,
        """
import pytest

@pytest.mark.gradcheck_models(max_examples=3, dtypes=["float64"], max_depth=1)
def test_writes_files(gradcheck_case, tmp_path):
    (tmp_path / "x").write_text("1")
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*uses a function-scoped fixture 'tmp_path'*"])


def test_the_users_own_settings_apply_to_a_marked_test(pytester):
    result = run(
        pytester,
        """
import pytest
from hypothesis import HealthCheck, settings

@pytest.mark.gradcheck_models(dtypes=["float64"], max_depth=1)
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_writes_files(gradcheck_case, tmp_path):
    print("EXAMPLE")
""",
        "-s",
    )
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("EXAMPLE") == 4


@pytest.mark.parametrize(
    "marker, message",
    [
        ("gradcheck_models(max_exampels=3)", "unknown option(s) max_exampels; the options are"),
        ("gradcheck_models(3)", "takes keyword options only"),
        ('gradcheck_models(dtypes=["float16"])', "dtypes"),
    ],
)
def test_bad_marker_options_are_refused_by_name(pytester, marker, message):
    result = run(
        pytester,
        f"""
import pytest

@pytest.mark.{marker}
def test_drawn(gradcheck_case):
    pass
""",
    )
    assert result.ret != 0
    assert message in result.stdout.str() + result.stderr.str()


def test_the_summary_line_names_the_failing_tensor_and_the_diagnosis(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough for the whole line
    result = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def test_gradients(gradcheck):
    gradcheck(TwoLayer(bug="missing_2"), X, y)
""",
        "-rf",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_user.py::test_gradients - reference.GradientMismatch: "
            "W1 fail (and 1 more): manual = 1/2 x truth: a factor of 1/2"
        ]
    )


def test_the_users_own_exception_is_shown_with_its_traceback(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = run(
        pytester,
        """
from usermodel import TwoLayer, X, y

def backward_helper(X):
    return 1 / 0

class Broken(TwoLayer):
    def gradients(self, X, y):
        return backward_helper(X)

def test_gradients(gradcheck):
    gradcheck(Broken(), X, y)
""",
        "-rf",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*return 1 / 0*",
            "*ZeroDivisionError*",
            "*direct cause of the following exception*",
            "FAILED test_user.py::test_gradients - *the check could not run: "
            "model.gradients(X, y) raised ZeroDivisionError*",
        ]
    )
