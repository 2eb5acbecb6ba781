"""The property suite's throughput: full checks per second under the ``ci`` hypothesis profile.

    python benchmarks/throughput.py            (the three property tests that call check_gradients)

Runs the property tests that check whole models (``tests/test_properties.py``) in this process,
one worker, with the derandomized ``ci`` profile, and counts the ``check_gradients`` calls and
the seconds spent inside them. Prints one line per test and the total; ``--json`` appends the
figures to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["HYPOTHESIS_PROFILE"] = "ci"

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "test_manual_gradients_agree_with_every_witness",
    "test_directional_mode_agrees",
    "test_users_right_models_pass",
]


class Counter:
    """A pytest plugin that times every check_gradients call, per test."""

    def __init__(self):
        self.per_test = {}
        self.current = None

    def pytest_runtest_setup(self, item):
        self.current = item.name
        self.per_test.setdefault(item.name, {"checks": 0, "check_s": 0.0, "test_s": 0.0})
        self._start = time.perf_counter()

    def pytest_runtest_teardown(self, item):
        self.per_test[item.name]["test_s"] += time.perf_counter() - self._start

    def wrap(self):
        from reference._checks import gradients

        original = gradients.check_gradients

        def counted(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                entry = self.per_test[self.current]
                entry["checks"] += 1
                entry["check_s"] += time.perf_counter() - start

        gradients.check_gradients = counted
        import reference

        reference.check_gradients = counted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="append the figures, under --label, to this JSON file")
    parser.add_argument("--label", default="now")
    args = parser.parse_args(argv)
    import pytest

    counter = Counter()
    counter.wrap()
    selection = " or ".join(TESTS)
    code = pytest.main(
        [
            str(ROOT / "tests" / "test_properties.py"),
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
        ],
        plugins=[counter],
    )
    total_checks = sum(e["checks"] for e in counter.per_test.values())
    total_s = sum(e["test_s"] for e in counter.per_test.values())
    for name, e in counter.per_test.items():
        print(
            f"{name}: {e['checks']} checks in {e['test_s']:.1f} s "
            f"({e['checks'] / e['test_s']:.1f} checks/s; {e['check_s']:.1f} s inside them)"
        )
    print(f"total: {total_checks} checks in {total_s:.1f} s ({total_checks / total_s:.1f}/s)")
    if args.json:
        path = Path(args.json)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[args.label] = {
            "per_test": counter.per_test,
            "checks": total_checks,
            "seconds": total_s,
        }
        path.write_text(json.dumps(data, indent=1))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
