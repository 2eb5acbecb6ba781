"""The pytest plugin (entry point ``pytest11``): check hand-written gradients with no glue.

- the ``gradcheck`` fixture: ``gradcheck(model, X, y)`` asserts that the gradients match (the
  report's table is the failure message) and returns the report;
  ``gradcheck.function(fn, *inputs, vjp=...)`` does the same for any function's derivative;
  ``gradcheck.snapshot(name, model, X, y)`` compares against a stored regression snapshot;
- the ``gradcheck_models`` marker: ``@pytest.mark.gradcheck_models(max_examples=20, **options)``
  runs the test over drawn models and batches, passed as its ``gradcheck_case`` argument
  (``model, X, y = gradcheck_case``); the options are those of ``reference.strategies.cases``;
- options in the ``gradcheck`` group: ``--gradcheck-mode``, ``--gradcheck-rtol``,
  ``--gradcheck-probes``, ``--gradcheck-update-snapshots``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest

from ._core import validate

SNAPSHOT_DIR = "gradcheck_snapshots"


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
        from ._snapshots import check_name

        test_file = Path(str(self._request.path))
        return test_file.parent / SNAPSHOT_DIR / test_file.stem / f"{check_name(name)}.json"

    def snapshot(self, name: str, model, X, y, *, rtol=None) -> Path:
        """Compare the model's gradients at ``X, y`` with the snapshot ``name`` (a JSON file in
        ``gradcheck_snapshots/<test file>/`` beside the test), to ``rtol`` (default
        ``--gradcheck-rtol``, else the dtype's tape tolerance). A missing snapshot is written
        (with a warning); ``--gradcheck-update-snapshots`` rewrites it."""
        from . import _snapshots as snapshots

        __tracebackhide__ = True
        path = self.snapshot_path(name)
        current = snapshots.take(model, X, y)
        if self.update or not path.exists():
            snapshots.save(path, current)
            if not self.update:
                warnings.warn(f"gradcheck snapshot {name!r} created at {path}", stacklevel=2)
            return path
        if rtol is not None:
            rtol = validate.rtol(rtol)
        problems = snapshots.compare(
            snapshots.load(path), current, self.rtol if rtol is None else rtol
        )
        if problems:
            pytest.fail(
                f"gradients differ from snapshot {name!r} ({path}):\n  "
                + "\n  ".join(problems)
                + "\n(rerun with --gradcheck-update-snapshots "
                "if the change is intended)",
                pytrace=False,
            )
        return path


@pytest.fixture
def gradcheck(request) -> GradCheck:
    """``gradcheck(model, X, y)`` asserts the gradients; ``gradcheck.snapshot(...)`` compares
    them with a stored regression snapshot."""
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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("gradcheck_models")
    if marker is None:
        return None
    from hypothesis import given, settings

    from ._catalogue.strategies import cases

    options = dict(marker.kwargs)
    max_examples = options.pop("max_examples", None)
    if marker.args:
        raise pytest.UsageError("gradcheck_models takes keyword options only")
    strategy = cases(**options)
    testfunction = pyfuncitem.obj
    names = inspect.signature(testfunction).parameters
    if "gradcheck_case" not in names:
        raise pytest.UsageError(
            f"{pyfuncitem.name} is marked gradcheck_models but has no "
            f"gradcheck_case argument to receive the drawn cases"
        )
    funcargs = {n: pyfuncitem.funcargs[n] for n in names if n in pyfuncitem.funcargs}
    overrides = {"deadline": None}  # TensorFlow's first calls are slow to warm up
    if max_examples is not None:
        overrides["max_examples"] = max_examples

    @settings(**overrides)
    @given(case=strategy)
    def run_over_cases(case):
        testfunction(**{**funcargs, "gradcheck_case": case})

    run_over_cases()
    return True
