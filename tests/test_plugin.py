"""The pytest plugin, run the way a user runs it: pytest in a subprocess on a user's test file."""

import re
from pathlib import Path

import numpy as np  # imported before any pytester test: pytester forgets what a test imports
import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from reference import check_gradients
from reference.strategies import Case, batch_for, batches, cases, models

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


BUILDER = '''
import numpy as np
import tensorflow as tf


class Net:
    """A user's own network class, as a tutorial writes it: tanh hidden layers, a linear
    output, mean squared error, the backward pass by hand in NumPy."""

    def __init__(self, layer_sizes, seed=0, bug=False):
        rng = np.random.default_rng(seed)
        pairs = zip(layer_sizes[:-1], layer_sizes[1:])
        self.W = [tf.Variable(rng.normal(size=(a, b))) for a, b in pairs]
        self.b = [tf.Variable(np.zeros(b)) for b in layer_sizes[1:]]
        self.params = [p for pair in zip(self.W, self.b) for p in pair]
        self.bug = bug

    def loss(self, X, y):
        h = tf.constant(X)
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            h = h @ W + b if i == len(self.W) - 1 else tf.tanh(h @ W + b)
        return tf.reduce_mean((h - y) ** 2)

    def gradients(self, X, y):
        hs = [np.asarray(X)]
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = hs[-1] @ W.numpy() + b.numpy()
            hs.append(z if i == len(self.W) - 1 else np.tanh(z))
        d = 2 * (hs[-1] - y) / np.size(y)
        grads = []
        for i in reversed(range(len(self.W))):
            db = d.sum(axis=0) * (1.5 if self.bug and i == 0 else 1.0)
            grads = [hs[i].T @ d, db] + grads
            d = (d @ self.W[i].numpy().T) * (1 - hs[i] ** 2)
        return grads


class Buggy(Net):
    """The same network with the first layer's bias gradient 1.5 times too large."""

    def __init__(self, layer_sizes, seed=0):
        super().__init__(layer_sizes, seed, bug=True)
'''

BUILDER_TEST = """
import pytest
from builder import {name}

@pytest.mark.gradcheck_models(build={name}, losses=["mse"], dtypes=["float64"], max_examples=25)
def test_every_drawn_net(gradcheck_case, gradcheck):
    gradcheck(*gradcheck_case)
"""


def test_the_marker_draws_the_users_own_model_from_its_builder(pytester):
    pytester.makepyfile(builder=BUILDER)
    result = run(pytester, BUILDER_TEST.format(name="Net"))
    result.assert_outcomes(passed=1)


def test_a_planted_bug_in_the_users_model_shrinks_to_a_pasteable_call(pytester):
    pytester.makepyfile(builder=BUILDER)
    result = run(pytester, BUILDER_TEST.format(name="Buggy"))
    result.assert_outcomes(failed=1)
    # The case as hypothesis printed it (each line of pytest's report starts with "E       ").
    lines = [re.sub(r"^E {7}", "", line) for line in result.stdout.lines]
    first = next(i for i, line in enumerate(lines) if "gradcheck_case=Case(model=" in line)
    last = lines.index(")", first)
    call = "\n".join(lines[first:last]).split("gradcheck_case=", 1)[1].rstrip(",")
    assert "Buggy(" in call and "layer_sizes=[" in call and "batch_for(n_inputs=" in call
    # Pasted back into Python, it is the failing case.
    pytester.syspathinsert()
    import builder

    case = eval(call, {"Case": Case, "Buggy": builder.Buggy, "batch_for": batch_for})
    report = check_gradients(*case)
    assert not report.ok and report.failing[0].name == "param1", str(report)


def test_a_builder_that_takes_no_layer_sizes_is_refused_by_name():
    def build(width, seed=0):
        return None

    for strategy in (models, cases):
        with pytest.raises(InvalidArgument, match=r"build=build must take layer_sizes.*width"):
            strategy(build=build).example()
    with pytest.raises(InvalidArgument, match="takes no loss: name the one its model computes"):
        cases(build=lambda layer_sizes: None).example()
    with pytest.raises(InvalidArgument, match=r"\['weight_scales'\] apply to the manual_backprop"):
        cases(build=lambda layer_sizes, loss: None, weight_scales=[1.0]).example()


def test_batches_for_a_model_of_ones_own_take_its_sizes_and_loss():
    class Own:  # no layer_sizes, no loss_function: batch_for cannot read them off it
        pass

    with pytest.raises(InvalidArgument, match="for Own, give n_inputs=, n_outputs= and loss="):
        batches(Own())

    @settings(max_examples=5, database=None)
    @given(batches(Own(), n_inputs=3, n_outputs=4, loss="categorical_crossentropy"))
    def drawn(batch):
        X, y = batch
        assert X.shape[1] == 3 and y.shape[1] == 4 and np.all(y.sum(axis=1) == 1)
        assert repr(batch).startswith("batch_for(n_inputs=3, n_outputs=4, loss='categorical_")

    drawn()


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
SNAPSHOT_FILE = ("gradcheck_snapshots", "test_user", "test_snapshot--two_layer.npz")


@pytest.fixture
def local(monkeypatch):
    """Runs outside CI: a missing snapshot is written."""
    monkeypatch.delenv("CI", raising=False)


def snapshot_file(pytester):
    return pytester.path.joinpath(*SNAPSHOT_FILE)


def test_snapshots_catch_a_changed_backward_pass(pytester, local):
    first = run(pytester, SNAPSHOT_TEST.format(bug=None))
    first.assert_outcomes(failed=1)  # as pytest-regressions does: written, and failed once
    first.stdout.fnmatch_lines(
        [
            "*snapshot 'two_layer' was missing and is now written: *test_snapshot--two_layer.npz",
            "*rerun the test to compare against it, and commit the file*",
        ]
    )
    with np.load(snapshot_file(pytester), allow_pickle=False) as stored:
        assert int(stored["gradcheck:format"]) == 2 and str(stored["gradcheck:dtype"]) == "float64"
        assert {"W1", "W2", "gradcheck:loss", "gradcheck:fingerprint"} <= set(stored.files)

    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(passed=1)

    changed = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"))
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*gradients differ from snapshot 'two_layer'*",
            "*Values are not sufficiently close*",
            "*W1:*",
            "*--gradcheck-update-snapshots*",
        ]
    )
    text = changed.stdout.str()
    assert text.count("Values are not sufficiently close") == 1, text  # the table printed once
    assert "During handling of the above exception" not in text
    assert "--force-regen" not in text  # one way to update is named, not two

    updated = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"), "--gradcheck-update-snapshots")
    updated.assert_outcomes(passed=1, warnings=1)
    updated.stdout.fnmatch_lines(
        ["*gradcheck snapshot 'two_layer' rewritten: *test_snapshot--two_layer.npz*"]
    )
    run(pytester, SNAPSHOT_TEST.format(bug="missing_2")).assert_outcomes(passed=1)
    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(failed=1)


@pytest.mark.parametrize(
    "how, why",
    [
        ("--gradcheck-strict-snapshots", "with strict snapshots"),
        ("ini", "with strict snapshots"),
        ("CI", "under CI"),
    ],
)
def test_a_missing_snapshot_fails_under_ci_without_being_written(pytester, monkeypatch, how, why):
    monkeypatch.delenv("CI", raising=False)
    args = [how] if how.startswith("--") else []
    if how == "CI":
        monkeypatch.setenv("CI", "true")
    if how == "ini":
        pytester.makeini("[pytest]\ngradcheck_strict_snapshots = true\n")
    result = run(pytester, SNAPSHOT_TEST.format(bug=None), *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*snapshot 'two_layer' is missing*{why} a missing*commit the file*"]
    )
    assert not snapshot_file(pytester).exists()


def test_a_snapshot_of_another_model_is_refused(pytester, local):
    run(pytester, SNAPSHOT_TEST.format(bug=None))
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


def test_a_changed_architecture_says_so(pytester, local):
    run(pytester, SNAPSHOT_TEST.format(bug=None))
    wider = run(
        pytester,
        """
import numpy as np
import tensorflow as tf
from usermodel import TwoLayer, X, y

def test_snapshot(gradcheck):
    model = TwoLayer()
    model.W1 = tf.Variable(np.ones((3, 5)) * 0.1)
    model.W2 = tf.Variable(np.ones((5, 2)) * 0.1)
    model.params = [model.W1, model.W2]
    gradcheck.snapshot("two_layer", model, X, y)
""",
    )
    wider.assert_outcomes(failed=1)
    wider.stdout.fnmatch_lines(["*the architecture changed*W1 (3, 4)*W1 (3, 5)*"])


def _corrupt(path, how):
    with np.load(path, allow_pickle=False) as f:
        data = dict(f)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "json":
        path.write_text('{"format": 1}')
    elif how == "no metadata":
        np.savez(path, W1=data["W1"], W2=data["W2"])
    elif how == "strings":
        np.savez(path, **{**data, "W1": np.array("edited by hand")})
    elif how == "nan":
        data["W2"][0, 0] = np.nan
        np.savez(path, **data)
    elif how == "inf loss":
        np.savez(path, **{**data, "gradcheck:loss": np.array(np.inf)})
    elif how == "a key dropped":
        np.savez(path, **{k: v for k, v in data.items() if k != "W2"})
    elif how == "old format":
        np.savez(path, **{**data, "gradcheck:format": np.array(1)})


CORRUPTIONS = [
    ("truncated", "is not a readable snapshot"),
    ("empty", "is not a readable snapshot"),
    ("json", "is not a readable snapshot"),
    ("no metadata", "is not a gradcheck snapshot (no gradcheck:format"),
    ("strings", "'W1' holds <U14 values, not floats"),
    ("nan", "'W2' holds NaN or inf"),
    ("inf loss", "'gradcheck:loss' holds NaN or inf"),
    ("old format", "is a snapshot of format array(1), not 2"),
    ("a key dropped", "the architecture changed: the snapshot holds W1 (3, 4); the model now"),
]


def test_a_corrupt_or_edited_snapshot_fails_with_its_path_and_the_fix(pytester, local):
    """Each corruption in a test of its own, all in one session: each fails with its message,
    its path and the fix (no raw exception), and one update rewrites them all."""
    source = "from usermodel import TwoLayer, X, y\n" + "".join(
        f"\ndef test_snapshot_{i}(gradcheck):\n"
        f"    gradcheck.snapshot('two_layer', TwoLayer(), X, y)\n"
        for i in range(len(CORRUPTIONS))
    )
    run(pytester, source).assert_outcomes(failed=len(CORRUPTIONS))  # written, failed once
    folder = snapshot_file(pytester).parent
    paths = [folder / f"test_snapshot_{i}--two_layer.npz" for i in range(len(CORRUPTIONS))]
    for path, (how, _) in zip(paths, CORRUPTIONS):
        _corrupt(path, how)
    result = run(pytester, source)
    result.assert_outcomes(failed=len(CORRUPTIONS))
    parts = re.split(r"^_{3,} (test_snapshot_\d+) _{3,}$", result.stdout.str(), flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    for i, (path, (how, message)) in enumerate(zip(paths, CORRUPTIONS)):
        text = sections[f"test_snapshot_{i}"].split("short test summary info")[0]
        assert message in text and text.count(str(path)) == 1, (how, text)
        assert "--gradcheck-update-snapshots" in text, (how, text)
        for raw in ("JSONDecodeError", "KeyError", "AttributeError", "Traceback"):
            assert raw not in text, (how, text)
        if how == "a key dropped":
            assert "the snapshot has no W2" in text, text
    run(pytester, source, "--gradcheck-update-snapshots").assert_outcomes(passed=len(CORRUPTIONS))
    run(pytester, source).assert_outcomes(passed=len(CORRUPTIONS))


def test_non_finite_gradients_never_pass_nor_are_stored(pytester, local):
    result = run(
        pytester,
        """
import numpy as np
from usermodel import TwoLayer, X, y

class Broken(TwoLayer):
    def gradients(self, X, y):
        g = [np.array(t) for t in super().gradients(X, y)]
        g[0][0, 0] = np.nan
        return g

def test_snapshot(gradcheck):
    gradcheck.snapshot("two_layer", Broken(), X, y)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NaN or inf in W1: a snapshot never stores or passes*"])
    assert not snapshot_file(pytester).exists()


def test_parametrized_tests_get_a_snapshot_each(pytester, local):
    source = """
import pytest
from usermodel import TwoLayer, X, y

@pytest.mark.parametrize("scale", ["a-b", "a_b", "c"])
def test_snapshot(gradcheck, scale):
    gradcheck.snapshot("two_layer", TwoLayer(scale={"a-b": 1.0, "a_b": 2.0, "c": 3.0}[scale]), X, y)
"""
    run(pytester, source).assert_outcomes(failed=3)
    files = sorted(p.name for p in pytester.path.joinpath(*SNAPSHOT_FILE[:2]).iterdir())
    assert len(files) == 3 and "test_snapshot_c_-" in " ".join(files), files
    run(pytester, source).assert_outcomes(passed=3)


TAKEN_TWICE = """
from usermodel import TwoLayer, X, y

def test_snapshot(gradcheck):
    gradcheck.snapshot("two_layer", TwoLayer(), X, y)
    gradcheck.snapshot("two_layer", TwoLayer(scale=2.0), X, y)
"""


@pytest.mark.parametrize("update", [True, False])
def test_one_name_twice_in_one_test_is_refused_in_its_first_run(pytester, local, update):
    """Also where the first call writes the missing snapshot: the test fails at the second
    call, naming it, not on the run after."""
    result = run(pytester, TAKEN_TWICE, *(["--gradcheck-update-snapshots"] if update else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*snapshot('two_layer') was taken twice*its own name*"])
    assert "is now written" not in result.stdout.str()


def test_a_test_that_writes_several_missing_snapshots_names_each(pytester, local):
    test = """
from usermodel import TwoLayer, X, y

def test_snapshot(gradcheck):
    gradcheck.snapshot("first", TwoLayer(), X, y)
    gradcheck.snapshot("second", TwoLayer(scale=2.0), X, y)
"""
    result = run(pytester, test)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*snapshot 'first' was missing and is now written*", "*snapshot 'second' was missing*"]
    )
    run(pytester, test).assert_outcomes(passed=1)


LEGACY_WRITER = """
import hashlib, json, pathlib
import numpy as np
from usermodel import TwoLayer, X, y

model = TwoLayer()
digest = hashlib.sha256()
for p in model.params:
    digest.update(np.ascontiguousarray(p.numpy()).tobytes())
for arr in (X, y):
    digest.update(str(arr.dtype).encode())
    digest.update(np.ascontiguousarray(arr).tobytes())
data = {
    "format": 1,
    "model": repr(model),
    "dtype": "float64",
    "fingerprint": digest.hexdigest(),
    "loss": float(model.loss(X, y)),
    "gradients": {
        n: {"shape": list(g.shape), "values": g.numpy().tolist()}
        for n, g in zip(["W1", "W2"], model.gradients(X, y))
    },
}
path = pathlib.Path("gradcheck_snapshots/test_user/two_layer.json")
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(data, indent=1))
"""


def _legacy_snapshot(pytester):
    """The file format 1 wrote for TwoLayer (gradcheck_snapshots/test_user/two_layer.json), as
    its code wrote it."""
    pytester.makepyfile(usermodel=USER_MODEL, write_legacy=LEGACY_WRITER)
    assert pytester.runpython(pytester.path / "write_legacy.py").ret == 0
    return pytester.path / "gradcheck_snapshots" / "test_user" / "two_layer.json"


def test_a_format_1_snapshot_is_compared_then_rewritten(pytester, local):
    legacy = _legacy_snapshot(pytester)
    result = run(pytester, SNAPSHOT_TEST.format(bug=None), "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*matched its format-1 file*rewritten as*delete the old one*"])
    assert snapshot_file(pytester).exists() and legacy.exists()
    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(passed=1)


def test_a_format_1_snapshot_still_catches_a_change(pytester, local):
    _legacy_snapshot(pytester)
    result = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*differ from snapshot 'two_layer'*format 1*", "*W1: changed by 0.5 of its largest*"]
    )
    assert not snapshot_file(pytester).exists()


def test_snapshots_compare_to_the_gradcheck_rtol_option(pytester, local):
    run(pytester, SNAPSHOT_TEST.format(bug=None))
    run(pytester, SNAPSHOT_TEST.format(bug="tiny")).assert_outcomes(failed=1)
    run(pytester, SNAPSHOT_TEST.format(bug="tiny"), "--gradcheck-rtol=1e-4").assert_outcomes(
        passed=1
    )


def test_pytest_regressions_own_options_apply(pytester, local):
    run(pytester, SNAPSHOT_TEST.format(bug=None))
    regen = run(pytester, SNAPSHOT_TEST.format(bug="missing_2"), "--force-regen")
    regen.assert_outcomes(failed=1)
    regen.stdout.fnmatch_lines(["*--force-regen set, regenerating*"])
    run(pytester, SNAPSHOT_TEST.format(bug="missing_2")).assert_outcomes(passed=1)
    run(pytester, SNAPSHOT_TEST.format(bug=None), "--regen-all").assert_outcomes(passed=1)
    run(pytester, SNAPSHOT_TEST.format(bug=None)).assert_outcomes(passed=1)


def test_a_numpy_model_has_snapshots_too(pytester, local):
    source = """
import numpy as np

class Linear:
    def __init__(self):
        self.W = np.array([[0.5, -0.25], [0.125, 1.0]])
        self.params = [self.W]

    def loss(self, X, y):
        return np.mean((X @ self.W - y) ** 2)

    def gradients(self, X, y):
        return [X.T @ (2 * (X @ self.W - y) / y.size)]

X = np.array([[1.0, 2.0], [3.0, -1.0]])
y = np.array([[0.5, 0.0], [1.0, 2.0]])

def test_snapshot(gradcheck):
    gradcheck.snapshot("linear", Linear(), X, y)
"""
    run(pytester, source).assert_outcomes(failed=1)
    run(pytester, source).assert_outcomes(passed=1)


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
    start-up log lines), nor anything of the package ``reference``, until a check runs."""
    pytester.makepyfile(
        test_unrelated="""
import sys

def test_nothing_of_ours(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("gradcheck")
    assert "tensorflow" not in sys.modules
    assert not [name for name in sys.modules if name.split(".")[0] == "reference"]
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
    """The misused marker fails its own test, without a traceback; the others run."""
    result = run(
        pytester,
        f"""
import pytest

@pytest.mark.{marker}
def test_drawn(gradcheck_case):
    pass

def test_other():
    pass
""",
    )
    result.assert_outcomes(failed=1, passed=1)
    assert "test_user.py::test_drawn: " in result.stdout.str()
    assert message in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() and "Traceback" not in result.stdout.str()


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


SHADOWED = """
import pytest
import reference

def test_their_own_module():
    assert reference.ANSWER == 42

def test_the_fixture(gradcheck):
    pass

@pytest.mark.gradcheck_models(max_examples=2)
def test_the_marker(gradcheck_case):
    pass
"""


def test_a_projects_own_reference_module_breaks_only_the_harnesss_tests(pytester):
    """A project's ``reference.py`` shadows the harness's package: the plugin still loads,
    the project's tests run, and the fixture and the marker name the file in the way."""
    pytester.makepyfile(reference="ANSWER = 42\n", test_theirs=SHADOWED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    shadow = str(pytester.path / "reference.py")
    out = result.stdout.str().split("short test summary info")[0]  # each said once, above
    assert out.count(f"the module named 'reference' is {shadow}, not the gradient harness") == 2
    assert "Rename that module" in out and "Traceback" not in out
    # an option of the harness given on the command line says so too, when pytest starts
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheck-rtol=1e-3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--gradcheck-rtol: the module named 'reference' is {shadow}*"])


INI_TEST = """
from usermodel import TwoLayer, X, y

def test_gradients(gradcheck):
    report = gradcheck(TwoLayer(), X, y)
    print("MODE", report.mode, "ENTRIES", len(report.entries), "RTOL", gradcheck.rtol,
          "PROBES", gradcheck.probes, "STRICT", gradcheck.strict)
"""


@pytest.mark.parametrize(
    "ini, args, expected",
    [
        (
            "gradcheck_mode = directional\ngradcheck_probes = 2\ngradcheck_rtol = 1e-7",
            [],
            "MODE directional ENTRIES 2 RTOL 1e-07",
        ),
        (
            "gradcheck_mode = directional\ngradcheck_rtol = 1e-7",
            ["--gradcheck-mode=full", "--gradcheck-rtol=1e-8"],
            "MODE full ENTRIES 2 RTOL 1e-08",
        ),
    ],
    ids=["ini", "command line over ini"],
)
def test_ini_options_set_the_defaults_and_the_command_line_wins(pytester, ini, args, expected):
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = run(pytester, INI_TEST, "-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}*"])


def test_the_readmes_ini_options_work_as_shown(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"```toml\n(\[tool\.pytest\.ini_options\].*?)```", readme, re.S)
    pytester.makefile(".toml", pyproject=block.group(1))
    result = run(pytester, INI_TEST, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MODE directional ENTRIES 2 RTOL 1e-08 PROBES 4 STRICT True*"])


@pytest.mark.parametrize(
    "ini, message",
    [
        (
            "gradcheck_mode = diagonal",
            "ini option gradcheck_mode = 'diagonal': gradcheck_mode must "
            "be one of 'full', 'directional'",
        ),
        ("gradcheck_rtol = tight", "ini option gradcheck_rtol = 'tight': must be a number"),
        (
            "gradcheck_probes = 0",
            "ini option gradcheck_probes = '0': gradcheck_probes must be a positive integer",
        ),
    ],
)
def test_bad_ini_options_are_refused_when_pytest_starts(pytester, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = run(pytester, "def test_nothing():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_an_input_error_in_a_test_shows_the_test_line_and_the_message(pytester):
    """pytest prints neither the harness's frames nor their arguments (the whole X and y)."""
    result = run(
        pytester,
        """
import numpy as np
from usermodel import TwoLayer, X, y

class Mixed(TwoLayer):
    def __init__(self):
        super().__init__()
        self.params = [self.W1, np.ones(2)]

def test_gradients(gradcheck):
    gradcheck(Mixed(), X, y)
""",
        "-l",
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["E *TypeError: model.params mixes tf.Variables and NumPy arrays*"])
    assert "gradcheck(Mixed(), X, y)" in out
    assert "adapter.py" not in out and "_param_kind" not in out and "def check_gradients" not in out
