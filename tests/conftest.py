import json
import os

pytest_plugins = ["pytester"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# thorough: random examples each run, so a failure prints the blob that replays it
# (@reproduce_failure) as well as the falsifying example.
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Worst relative error per kind of comparison seen by the tests that record one.
_WORST = {}


@pytest.fixture
def record_error():
    """``record_error(kind, value, where)`` keeps the worst error per kind for the summary."""

    def record(dtype_name, value, where):
        if value > _WORST.get(dtype_name, (-1.0, ""))[0]:
            _WORST[dtype_name] = (float(value), where)

    return record


def pytest_sessionfinish(session):
    # Under pytest-xdist each worker hands its worst errors to the controller.
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["worst_errors"] = json.dumps(_WORST)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for kind, (value, where) in json.loads(node.workeroutput.get("worst_errors", "{}")).items():
        if value > _WORST.get(kind, (-1.0, ""))[0]:
            _WORST[kind] = (value, where)


def pytest_terminal_summary(terminalreporter):
    if _WORST:
        terminalreporter.section("worst relative errors measured by this run")
        for dtype_name, (value, where) in sorted(_WORST.items()):
            terminalreporter.write_line(f"{dtype_name}: {value:.3g} ({where})")
