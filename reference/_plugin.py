"""The pytest plugin's fixtures and marker, built on first use by the entry point module
``_gradient_harness_pytest`` (which imports nothing of this package before a gradcheck fixture,
marker or option is used): ``GradCheck`` (the ``gradcheck`` fixture), the option values with
their ini twins (``options``), snapshots, and the marker's hypothesis test (``marked_test``).
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import pytest

from ._core import validate


def _ini_value(config, name: str, convert, validator):
    """The ini option ``name`` converted and checked, or None where it is not set."""
    text = config.getini(name)
    if text in (None, ""):
        return None
    try:
        return validator(convert(text.strip()), name)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"ini option {name} = {text!r}: {exc}") from None


def options(config) -> dict:
    """The options of the gradcheck fixture: the command line's, else the ini file's, else the
    built-in defaults. A bad ini value is a usage error naming the ini option."""
    opt = config.getoption
    mode = opt("--gradcheck-mode") or _ini_value(
        config, "gradcheck_mode", str, lambda v, a: validate.choice(v, ("full", "directional"), a)
    )
    rtol = opt("--gradcheck-rtol")
    if rtol is None:
        rtol = _ini_value(config, "gradcheck_rtol", _number(float), validate.rtol)
    probes = opt("--gradcheck-probes")
    if probes is None:
        probes = _ini_value(config, "gradcheck_probes", _number(int), validate.probes)
    strict = opt("--gradcheck-strict-snapshots")
    if strict is None:
        strict = bool(config.getini("gradcheck_strict_snapshots"))
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return {
        "mode": mode or "full",
        "rtol": rtol,
        "probes": 3 if probes is None else probes,
        "update": opt("--gradcheck-update-snapshots"),
        "strict": strict or ci,
        "why_strict": "under CI" if ci and not strict else "with strict snapshots",
    }


def _number(convert):
    """``convert`` (int or float) with the message the command line gives."""

    def parse(text: str):
        try:
            return convert(text)
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise ValueError(f"must be {kind}") from None

    return parse


class GradCheck:
    """What the ``gradcheck`` fixture gives a test."""

    def __init__(self, request):
        self._request = request
        chosen = options(request.config)
        self.mode, self.rtol, self.probes = chosen["mode"], chosen["rtol"], chosen["probes"]
        self.update, self.strict = chosen["update"], chosen["strict"]
        self._why_strict = chosen["why_strict"]

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
        pytest-regressions does, when the test has run to its end (every snapshot it takes is
        written, and a name taken twice refused, in that one run); under CI (``CI`` set) or with
        ``--gradcheck-strict-snapshots`` it fails without being written.
        ``--gradcheck-update-snapshots`` (or pytest-regressions' ``--regen-all``) rewrites it.
        Returns the snapshot's path."""
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
            warnings.warn(f"gradcheck snapshot {name!r} rewritten: {path}", stacklevel=2)
            return path
        if not path.exists():
            legacy = snapshots.legacy_path(Path(str(item.path)), name)
            if legacy.exists():
                return self._migrate(name, legacy, path, current, rtol)
            if self.strict:
                pytest.fail(
                    f"snapshot {name!r} is missing ({path}); {self._why_strict} a missing "
                    f"snapshot fails instead of being written: run the test locally once to "
                    f"take it and commit the file (or pass --gradcheck-update-snapshots)",
                    pytrace=False,
                )
            snapshots.write(path, current)
            _running().setdefault("written", []).append((name, path))
            return path
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
            pytest.fail(f"snapshot {name!r} ({legacy}): {exc}", pytrace=False)
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
        # Its own advice (--force-regen) is left out: the message ends with one way to update.
        differences = str(exc).replace("To update values, use --force-regen option.\n", "")
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


def _running() -> dict:
    """The running test and the snapshot names it has taken, kept by the entry point module."""
    from _gradient_harness_pytest import RUNNING

    return RUNNING


def _running_item(request):
    item = _running().get("item")
    if item is None:
        raise pytest.UsageError("gradcheck.snapshot can be taken inside a running test only")
    return item


def _claim(item, name: str, path: Path) -> None:
    """Each snapshot name is taken once per test run: a second call (a loop, a hypothesis test)
    would compare another model with the first one's file."""
    claims = _running().setdefault("claims", {})
    if name in claims:
        pytest.fail(
            f"gradcheck.snapshot({name!r}) was taken twice in {item.nodeid}; a snapshot is of one "
            f"fixed model and batch: give each its own name (and take none in a hypothesis test)",
            pytrace=False,
        )
    claims[name] = path


# The marker's keywords: the strategy's own (reference.strategies.cases and models) and
# max_examples; anything else is refused at collection with this list.
_MARKER_OPTIONS = ("max_examples",)


def marked_test(collector, name: str, obj, marker):
    """The test marked ``gradcheck_models``, as hypothesis's own ``@given`` test drawing its
    ``gradcheck_case`` argument: fixtures, health checks, the example database (a key per
    test) and settings then behave as hypothesis documents. A marker used wrongly is a
    ValueError saying how."""
    from hypothesis import given, is_hypothesis_test, settings

    if marker.args:
        raise ValueError("gradcheck_models takes keyword options only")
    if "gradcheck_case" not in inspect.signature(obj).parameters:
        raise ValueError(
            "the test is marked gradcheck_models but has no gradcheck_case argument to receive "
            "the drawn cases"
        )
    if is_hypothesis_test(obj):
        raise ValueError(
            "use @pytest.mark.gradcheck_models or @given, not both (the marker is "
            "given(gradcheck_case=reference.strategies.cases(...)))"
        )
    if any(m.name == "parametrize" for m in getattr(obj, "pytestmark", [])):
        raise ValueError(
            "gradcheck_models does not combine with parametrize; draw the varying value with "
            "hypothesis instead (@given on a test of your own, with reference.strategies.cases())"
        )
    options = dict(marker.kwargs)
    max_examples = options.pop("max_examples", None)
    strategy = _marker_strategy(options)
    overrides = {"deadline": None}  # TensorFlow's first calls are slow to warm up
    if max_examples is not None:
        overrides["max_examples"] = validate.positive_integer(max_examples, "max_examples")
    test = given(gradcheck_case=strategy)(obj)
    if not getattr(obj, "_hypothesis_internal_settings_applied", False):
        test = settings(**overrides)(test)  # the user's own @settings, when given, wins
    return test


def _marker_strategy(options: dict):
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
        raise ValueError(
            f"gradcheck_models got unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(sorted(allowed))}"
        )
    try:
        return strategies.cases(**options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"gradcheck_models: {exc}") from None
