"""The pytest plugin (entry point ``pytest11``): check hand-written gradients with no glue.

- the ``gradcheck`` fixture: ``gradcheck(model, X, y)`` asserts that the gradients match (the
  report's table is the failure message) and returns the report;
  ``gradcheck.function(fn, *inputs, vjp=...)`` does the same for any function's derivative;
  ``gradcheck.snapshot(name, model, X, y)`` compares against a stored regression snapshot;
- the ``gradcheck_models`` marker: ``@pytest.mark.gradcheck_models(max_examples=20, **options)``
  makes the test hypothesis's own ``@given(gradcheck_case=cases(**options))`` test, over drawn
  models and batches (``model, X, y = gradcheck_case``); the options are those of
  ``reference.strategies.cases`` and ``models`` (an allow-list, checked at collection);
- options in the ``gradcheck`` group: ``--gradcheck-mode``, ``--gradcheck-rtol``,
  ``--gradcheck-probes``, ``--gradcheck-update-snapshots``.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import pytest

from ._core import validate


def pytest_addoption(parser):
    group = parser.getgroup("gradcheck", "gradient checks of hand-written backward passes")
    group.addoption(
        "--gradcheck-mode",
        choices=("full", "directional"),
        default="full",
        help="how the gradcheck fixture differences: every element (full, default) "
        "or random probes per tensor (directional, for large models)",
    )
    group.addoption(
        "--gradcheck-rtol",
        type=validate.option(validate.rtol, "--gradcheck-rtol", float),
        default=None,
        metavar="RTOL",
        help="manual-vs-tape tolerance, relative to each tensor's largest gradient, "
        "for the model's own dtype (default 1e-10 float64, 1e-5 float32)",
    )
    group.addoption(
        "--gradcheck-probes",
        type=validate.option(validate.probes, "--gradcheck-probes"),
        default=3,
        metavar="N",
        help="probe directions per tensor in directional mode (default 3)",
    )
    group.addoption(
        "--gradcheck-update-snapshots",
        action="store_true",
        default=False,
        help="rewrite gradcheck snapshots instead of comparing against them",
    )
    group.addoption(
        "--gradcheck-strict-snapshots",
        action="store_true",
        default=False,
        help="a missing gradcheck snapshot fails instead of being written (the default when "
        "the CI environment variable is set)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gradcheck_models(max_examples=None, **options): run the test over manual_backprop "
        "models and batches drawn by hypothesis (options of reference.strategies.cases); the "
        "test takes them as its gradcheck_case argument: model, X, y = gradcheck_case",
    )


class GradCheck:
    """What the ``gradcheck`` fixture gives a test."""

    def __init__(self, request):
        self._request = request
        opt = request.config.getoption
        self.mode = opt("--gradcheck-mode")
        self.rtol = opt("--gradcheck-rtol")
        self.probes = opt("--gradcheck-probes")
        self.update = opt("--gradcheck-update-snapshots")
        self.strict = _strict(request.config)

    def __call__(self, model, X, y, **kwargs):
        """Assert that ``model``'s hand-written gradients are right at ``X, y``; returns the
        report. Keyword arguments override the command-line options (see check_gradients)."""
        from ._checks.gradients import assert_gradients_match

        __tracebackhide__ = True
        return assert_gradients_match(model, X, y, **self._options(kwargs))

    def _options(self, kwargs: dict) -> dict:
        """The keyword arguments of a check: the caller's, else the command-line options."""
        kwargs.setdefault("mode", self.mode)
        kwargs.setdefault("probes", self.probes)
        if self.rtol is not None:
            kwargs.setdefault("rtol", self.rtol)
        return kwargs

    def function(self, fn, *inputs, **kwargs):
        """Assert that the hand-written derivative of ``fn`` is right at ``inputs``
        (``vjp=``, ``jvp=``, ``order=``; see reference.check_function); returns the report.
        ``--gradcheck-mode`` and ``--gradcheck-rtol`` apply unless given here."""
        from ._checks.function import assert_function_gradients

        __tracebackhide__ = True
        return assert_function_gradients(fn, *inputs, **self._options(kwargs))

    def snapshot_path(self, name: str) -> Path:
        """Where snapshot ``name`` of the running test is kept:
        ``gradcheck_snapshots/<test file>/<test>--<name>.npz`` beside the test file."""
        from ._snapshots import DIRECTORY, file_stem

        item = _running_item(self._request)
        test_file = Path(str(item.path))
        test_name = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name
        return test_file.parent / DIRECTORY / test_file.stem / f"{file_stem(test_name, name)}.npz"

    def snapshot(self, name: str, model, X, y, *, rtol=None) -> Path:
        """Compare the model's gradients at ``X, y`` with the snapshot ``name`` of this test (see
        ``snapshot_path``), to ``rtol`` of each tensor's largest gradient (default
        ``--gradcheck-rtol``, else the dtype's tape tolerance), with pytest-regressions'
        ``ndarrays_regression``. A missing snapshot is written and the test fails once, as
        pytest-regressions does; under CI (``CI`` set) or with ``--gradcheck-strict-snapshots`` it
        fails without being written. ``--gradcheck-update-snapshots`` (or pytest-regressions'
        ``--regen-all``) rewrites it. Returns the snapshot's path."""
        from . import _snapshots as snapshots
        from ._core.policy import TAPE_RTOL

        __tracebackhide__ = True
        path = self.snapshot_path(name)
        item = _running_item(self._request)
        _claim(item, name, path)
        current = snapshots.take(model, X, y)
        bad = snapshots.nonfinite(current)
        if bad:
            pytest.fail(f"snapshot {name!r}: {bad}.", pytrace=False)
        dtype = str(current["gradcheck:dtype"])
        if rtol is not None:
            rtol = validate.rtol(rtol)
        elif self.rtol is not None:
            rtol = self.rtol
        elif dtype in TAPE_RTOL:
            rtol = TAPE_RTOL[dtype]
        else:
            raise ValueError(
                f"a snapshot of a {dtype} model needs an explicit rtol; the default tolerances "
                f"are for {sorted(TAPE_RTOL)}."
            )
        if self.update or _option(item, "regen_all"):
            snapshots.write(path, current)
            return path
        if not path.exists():
            legacy = snapshots.legacy_path(Path(str(item.path)), name)
            if legacy.exists():
                return self._migrate(name, legacy, path, current, rtol)
            if self.strict:
                pytest.fail(
                    f"snapshot {name!r} is missing ({path}); under CI a missing snapshot fails "
                    f"instead of being written: run the test locally once to take it and commit "
                    f"the file (or pass --gradcheck-update-snapshots)",
                    pytrace=False,
                )
            stored = current
        else:
            try:
                stored = snapshots.read(path)
                problems = snapshots.mismatch(stored, current)
            except snapshots.SnapshotError as exc:
                problems = [str(exc)]
            if problems and _option(item, "force_regen"):
                snapshots.write(path, current)
                pytest.fail(
                    f"snapshot {name!r} could not be compared ({problems[0]}) and --force-regen "
                    f"is set: regenerated at {path}",
                    pytrace=False,
                )
            if problems:
                pytest.fail(
                    f"snapshot {name!r} ({path}) cannot be compared: " + "; ".join(problems),
                    pytrace=False,
                )
        _regression_check(item, name, path, current, snapshots.tolerances(stored, rtol))
        return path

    def _migrate(self, name, legacy: Path, path: Path, current, rtol) -> Path:
        """A format-1 snapshot: compared as it is; when the gradients match it is rewritten in
        this format (outside CI) and the old file may be deleted."""
        from . import _snapshots as snapshots

        __tracebackhide__ = True
        try:
            problems = snapshots.legacy_problems(legacy, current, rtol)
        except snapshots.SnapshotError as exc:
            pytest.fail(f"snapshot {name!r}: {exc}", pytrace=False)
        if problems:
            pytest.fail(
                f"gradients differ from snapshot {name!r} ({legacy}, format 1):\n  "
                + "\n  ".join(problems)
                + "\n(rerun with --gradcheck-update-snapshots if the change is intended)",
                pytrace=False,
            )
        if self.strict:
            warnings.warn(
                f"gradcheck snapshot {name!r} matched its format-1 file {legacy}; run the tests "
                f"once outside CI to rewrite it as {path.name}",
                stacklevel=3,
            )
            return legacy
        snapshots.write(path, current)
        warnings.warn(
            f"gradcheck snapshot {name!r} matched its format-1 file {legacy} and was rewritten as "
            f"{path}; commit the new file and delete the old one",
            stacklevel=3,
        )
        return path


def _strict(config) -> bool:
    """Missing snapshots fail instead of being written: under CI, or when asked."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or bool(config.getoption("--gradcheck-strict-snapshots"))


def _regression_check(item, name: str, path: Path, data, tolerances) -> None:
    """pytest-regressions' ndarrays_regression on ``data`` against the file at ``path``."""
    from types import SimpleNamespace

    from pytest_regressions.ndarrays_regression import NDArraysRegressionFixture

    __tracebackhide__ = True
    for option in ("force_regen", "regen_all", "with_test_class_names"):
        if _option(item, option) is None:
            pytest.fail(
                "gradcheck snapshots compare with pytest-regressions, whose plugin is disabled "
                "here (-p no:regressions): enable it to use gradcheck.snapshot",
                pytrace=False,
            )
    # What pytest-regressions reads of the request: the test's node and the options.
    request = SimpleNamespace(node=item, config=item.config)
    fixture = NDArraysRegressionFixture(_obtained_dir(), path.parent, request)
    default = {"atol": 0.0, "rtol": 0.0}
    try:
        fixture.check(dict(data), fullpath=path, tolerances=tolerances, default_tolerance=default)
        return
    except AssertionError as exc:
        differences = str(exc)
    # Outside the except block: pytest would print pytest-regressions' table twice otherwise.
    pytest.fail(
        f"gradients differ from snapshot {name!r} ({path}):\n{differences}\n(rerun with "
        f"--gradcheck-update-snapshots if the change is intended)",
        pytrace=False,
    )


def _option(item, name: str):
    """pytest-regressions' option ``name``, or None when its plugin is not loaded."""
    return item.config.getoption(name, None)


_OBTAINED: dict = {}


def _obtained_dir() -> Path:
    """Where pytest-regressions writes the values obtained by a failing comparison."""
    if "dir" not in _OBTAINED:
        import tempfile

        _OBTAINED["dir"] = Path(tempfile.mkdtemp(prefix="gradcheck-obtained-"))
    return _OBTAINED["dir"]


# The running test (set around each test's protocol), and the snapshot names each has taken.
_RUNNING: dict = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _RUNNING["item"] = item
    _RUNNING["claims"] = {}
    try:
        yield
    finally:
        _RUNNING.clear()


def _running_item(request):
    item = _RUNNING.get("item")
    if item is None:
        raise pytest.UsageError("gradcheck.snapshot can be taken inside a running test only")
    return item


def _claim(item, name: str, path: Path) -> None:
    """Each snapshot name is taken once per test run: a second call (a loop, a hypothesis test)
    would compare another model with the first one's file."""
    claims = _RUNNING.setdefault("claims", {})
    if name in claims:
        pytest.fail(
            f"gradcheck.snapshot({name!r}) was taken twice in {item.nodeid}; a snapshot is of one "
            f"fixed model and batch: give each its own name (and take none in a hypothesis test)",
            pytrace=False,
        )
    claims[name] = path


@pytest.fixture(scope="module")
def gradcheck(request) -> GradCheck:
    """``gradcheck(model, X, y)`` asserts the gradients; ``gradcheck.snapshot(...)`` compares
    them with a stored regression snapshot. Module-scoped: it holds the options and the test
    file's path only, so hypothesis's examples may share it (its function-scoped-fixture
    health check stays quiet for it, and fires for the user's own function-scoped fixtures)."""
    return GradCheck(request)


@pytest.fixture
def gradcheck_case(request):
    """Filled in by ``@pytest.mark.gradcheck_models``: one drawn ``(model, X, y)`` per example."""
    if request.node.get_closest_marker("gradcheck_models") is None:
        raise pytest.UsageError(
            f"{request.node.name} takes gradcheck_case but is not marked: add "
            f"@pytest.mark.gradcheck_models(...) so that cases are drawn for it"
        )
    return None


# The marker's keywords: the strategy's own (reference.strategies.cases and models) and
# max_examples; anything else is refused at collection with this list.
_MARKER_OPTIONS = ("max_examples",)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """A test marked ``gradcheck_models`` becomes hypothesis's own ``@given`` test, drawing its
    ``gradcheck_case`` argument: fixtures, health checks, the example database (a key per
    test) and settings then behave as hypothesis documents."""
    marks = [m for m in getattr(obj, "pytestmark", []) if m.name == "gradcheck_models"]
    if not marks or not inspect.isfunction(obj) or not collector.istestfunction(obj, name):
        return None
    from hypothesis import given, is_hypothesis_test, settings

    where = f"{collector.nodeid}::{name}"
    marker = marks[0]
    if marker.args:
        raise pytest.UsageError(f"{where}: gradcheck_models takes keyword options only")
    if "gradcheck_case" not in inspect.signature(obj).parameters:
        raise pytest.UsageError(
            f"{where} is marked gradcheck_models but has no gradcheck_case argument to "
            f"receive the drawn cases"
        )
    if is_hypothesis_test(obj):
        raise pytest.UsageError(
            f"{where}: use @pytest.mark.gradcheck_models or @given, not both (the marker is "
            f"given(gradcheck_case=reference.strategies.cases(...)))"
        )
    if any(m.name == "parametrize" for m in getattr(obj, "pytestmark", [])):
        raise pytest.UsageError(
            f"{where}: gradcheck_models does not combine with parametrize; draw the varying "
            f"value with hypothesis instead (@given on a test of your own, with "
            f"reference.strategies.cases())"
        )
    options = dict(marker.kwargs)
    max_examples = options.pop("max_examples", None)
    strategy = _marker_strategy(options, where)
    overrides = {"deadline": None}  # TensorFlow's first calls are slow to warm up
    if max_examples is not None:
        overrides["max_examples"] = validate.positive_integer(max_examples, "max_examples")
    test = given(gradcheck_case=strategy)(obj)
    if not getattr(obj, "_hypothesis_internal_settings_applied", False):
        test = settings(**overrides)(test)  # the user's own @settings, when given, wins
    return pytest.Function.from_parent(collector, name=name, callobj=test)


def _marker_strategy(options: dict, where: str):
    """``reference.strategies.cases(**options)``, its keywords checked against the allow-list
    (the keywords of ``cases`` and ``models``)."""
    from ._catalogue import strategies

    allowed = set(_MARKER_OPTIONS)
    for fn in (strategies.cases, strategies.models):
        allowed |= {
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise pytest.UsageError(
            f"{where}: gradcheck_models got unknown option(s) {', '.join(unknown)}; the options "
            f"are {', '.join(sorted(allowed))}"
        )
    try:
        return strategies.cases(**options)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"{where}: gradcheck_models: {exc}") from None
