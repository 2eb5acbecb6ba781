"""The gradient harness's pytest plugin (the ``pytest11`` entry point ``gradcheck``).

- the ``gradcheck`` fixture: ``gradcheck(model, X, y)`` asserts that the gradients match (the
  report's table is the failure message) and returns the report;
  ``gradcheck.function(fn, *inputs, vjp=...)`` does the same for any function's derivative;
  ``gradcheck.snapshot(name, model, X, y)`` compares against a stored regression snapshot;
- the ``gradcheck_models`` marker: ``@pytest.mark.gradcheck_models(max_examples=20, **options)``
  makes the test hypothesis's own ``@given(gradcheck_case=cases(**options))`` test, over drawn
  models and batches (``model, X, y = gradcheck_case``);
- options in the ``gradcheck`` group (``--gradcheck-mode``, ``--gradcheck-rtol``,
  ``--gradcheck-probes``, ``--gradcheck-strict-snapshots``, ``--gradcheck-update-snapshots``),
  the first four also as ini options (``gradcheck_mode = directional``); the command line wins.

This module has a name no project picks and imports nothing of the ``reference`` package until
a gradcheck fixture, marker or option is used: a project whose own ``reference.py`` comes first
on ``sys.path`` runs all its other tests, and the harness's fixtures name the file in the way.
The fixtures and the marker's test are built in ``reference._plugin``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

# The running test (set around each test's protocol), the snapshot names it has taken, and
# the missing snapshots it wrote (its failure, once it has run to its end).
RUNNING: dict = {}

# The options that have an ini twin: the ini file sets the default, the command line wins.
INI = {
    "--gradcheck-mode": ("gradcheck_mode", "string", "full or directional (default full)"),
    "--gradcheck-rtol": ("gradcheck_rtol", "string", "a positive number"),
    "--gradcheck-probes": ("gradcheck_probes", "string", "a positive integer (default 3)"),
    "--gradcheck-strict-snapshots": ("gradcheck_strict_snapshots", "bool", "true or false"),
}


class NotTheHarness(Exception):
    """``reference`` resolves to another module than the gradient harness's package."""


def harness(module: str):
    """``reference.<module>`` of the gradient harness; NotTheHarness, naming the file, when the
    name ``reference`` is taken by another module (a project's own ``reference.py``)."""
    try:
        spec = importlib.util.find_spec("reference")
    except ValueError:  # imported already, without a spec
        spec = None
    folders = list(getattr(spec, "submodule_search_locations", None) or [])
    if not any((Path(f) / "_checks" / "gradients.py").is_file() for f in folders):
        where = getattr(spec, "origin", None) or (folders[0] if folders else "an unknown place")
        raise NotTheHarness(
            f"the module named 'reference' is {where}, not the gradient harness: a module of "
            f"that name earlier on sys.path (the test's folder, or the current one under "
            f"`python -m pytest`) hides the harness's package 'reference'. Rename that module "
            f"(for example to reference_data.py) to use the gradcheck fixtures and marker."
        )
    return importlib.import_module(f"reference.{module}")


def _typed(option: str, check: str, convert=None):
    """The ``type=`` of a command-line option: checked by ``reference._core.validate`` (imported
    only when the option is given)."""

    def parse(text):
        import argparse

        try:
            validate = harness("_core.validate")
        except NotTheHarness as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return validate.option(getattr(validate, check), option, convert)(text)

    return parse


def pytest_addoption(parser):
    group = parser.getgroup("gradcheck", "gradient checks of hand-written backward passes")
    group.addoption(
        "--gradcheck-mode",
        choices=("full", "directional"),
        default=None,
        help="how the gradcheck fixture differences: every element (full, default) "
        "or random probes per tensor (directional, for large models)",
    )
    group.addoption(
        "--gradcheck-rtol",
        type=_typed("--gradcheck-rtol", "rtol", float),
        default=None,
        metavar="RTOL",
        help="manual-vs-tape tolerance, relative to each tensor's largest gradient, "
        "for the model's own dtype (default 1e-10 float64, 1e-5 float32)",
    )
    group.addoption(
        "--gradcheck-probes",
        type=_typed("--gradcheck-probes", "probes", int),
        default=None,
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
        default=None,
        help="a missing gradcheck snapshot fails instead of being written (the default when "
        "the CI environment variable is set)",
    )
    for option, (ini, kind, what) in INI.items():
        parser.addini(ini, f"the default of {option}: {what}", type=kind, default=None)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gradcheck_models(max_examples=None, **options): run the test over manual_backprop "
        "models and batches drawn by hypothesis (options of reference.strategies.cases); the "
        "test takes them as its gradcheck_case argument: model, X, y = gradcheck_case",
    )
    if any(config.getini(ini) not in (None, "") for ini, _, _ in INI.values()):
        try:  # the ini file's values are checked when pytest starts, as the command line's
            harness("_plugin").options(config)
        except NotTheHarness:
            pass  # the fixtures say so


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    RUNNING["item"] = item
    RUNNING["claims"] = {}
    try:
        yield
    finally:
        RUNNING.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that wrote missing snapshots fails once they are all written (as
    pytest-regressions fails a test that writes its file), unless it failed already."""
    outcome = yield
    written = RUNNING.pop("written", None) if call.when == "call" else None
    report = outcome.get_result()
    if written and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            "\n".join(
                f"snapshot {name!r} was missing and is now written: {path}"
                for name, path in written
            )
            + "\n(rerun the test to compare against it, and commit the file)"
        )


def _plugin():
    """``reference._plugin``, or the test fails here naming the module in the way."""
    __tracebackhide__ = True
    try:
        return harness("_plugin")
    except NotTheHarness as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: pytest would print it twice


@pytest.fixture(scope="module")
def gradcheck(request):
    """``gradcheck(model, X, y)`` asserts the gradients; ``gradcheck.function(fn, *inputs,
    vjp=...)`` a function's derivative; ``gradcheck.snapshot(...)`` compares them with a stored
    regression snapshot. Module-scoped: it holds the options and the test file's path only, so
    hypothesis's examples may share it (its function-scoped-fixture health check stays quiet
    for it, and fires for the user's own function-scoped fixtures)."""
    return _plugin().GradCheck(request)


@pytest.fixture
def gradcheck_case(request):
    """Filled in by ``@pytest.mark.gradcheck_models``: one drawn ``(model, X, y)`` per example."""
    if request.node.get_closest_marker("gradcheck_models") is None:
        raise pytest.UsageError(
            f"{request.node.name} takes gradcheck_case but is not marked: add "
            f"@pytest.mark.gradcheck_models(...) so that cases are drawn for it"
        )
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """A test marked ``gradcheck_models`` becomes hypothesis's own ``@given`` test (see
    ``reference._plugin.marked_test``). A marker used wrongly, or a harness that cannot be
    imported, makes that one test fail with the reason; the others are collected and run."""
    marks = [m for m in getattr(obj, "pytestmark", []) if m.name == "gradcheck_models"]
    if not marks or not inspect.isfunction(obj) or not collector.istestfunction(obj, name):
        return None
    try:
        test = harness("_plugin").marked_test(collector, name, obj, marks[0])
    except (NotTheHarness, ValueError, TypeError) as exc:
        test = _refused(f"{collector.nodeid}::{name}: {exc}")
    return pytest.Function.from_parent(collector, name=name, callobj=test)


def _refused(message: str):
    """A test that fails with ``message`` and no traceback."""

    def refused():
        pytest.fail(message, pytrace=False)

    return refused
