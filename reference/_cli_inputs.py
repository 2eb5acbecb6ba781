"""gradcheck's inputs and outputs: the user's code named as ``MODULE:NAME``, a factory's
cases, the --json file, and the usage errors they raise (exit code 2)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path

__all__ = ["UsageError", "load", "cases_from", "user_traceback", "write_json", "check_json_path"]


class UsageError(Exception):
    """A mistake in how gradcheck was called (exit code 2)."""


def write_json(path, data):
    try:
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
    except OSError as exc:
        raise UsageError(f"cannot write --json file {path!r}: {exc}") from exc


# --- user code: MODULE:NAME ---------------------------------------------------------------


def load(spec: str, what: str):
    """The object named by ``MODULE:NAME`` (MODULE importable from the current directory)."""
    if ":" not in spec:
        raise UsageError(f"{what} must be MODULE:NAME, such as mymodels:make_model; got {spec!r}")
    module_name, _, attr = spec.rpartition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if module_name.endswith(".py"):  # a file path: path/to/models.py:make
            module = _import_file(module_name)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"cannot import {module_name!r} for {what}: {type(exc).__name__}: {exc}"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no {attr!r} (from {what} {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec} is not callable")
    return obj


def _import_file(path: str):
    """The module in the file ``path`` (its folder importable, for its own imports)."""
    import importlib.util

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cases_from(factory_spec: str):
    factory = load(factory_spec, "FACTORY")
    try:
        made = factory()
    except Exception as exc:
        user_traceback(exc)
        raise UsageError(f"{factory_spec}() raised {type(exc).__name__}: {exc}") from exc
    # (model, X, y) is one case whatever the model lacks (the check says what it lacks).
    one_case = isinstance(made, tuple) and len(made) == 3 and not isinstance(made[0], tuple)
    if one_case or not isinstance(made, (list, tuple)) and not inspect.isgenerator(made):
        cases = [made]
    else:
        cases = list(made)  # a list, a tuple or a generator of cases
    if not cases:
        raise UsageError(f"{factory_spec}() returned no cases: return (model, X, y) or a list")
    for i, case in enumerate(cases):
        if not (isinstance(case, tuple) and len(case) == 3):
            what = f"a {len(case)}-tuple" if isinstance(case, tuple) else f"a {type(case).__name__}"
            raise UsageError(
                f"{factory_spec}() must return (model, X, y), or a list, tuple or generator of "
                f"such triples; case {i} is {what}"
            )
    return cases


def user_traceback(exc) -> None:
    """The traceback of an exception the user's code raised, on stderr."""
    if exc is not None:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def check_json_path(path) -> None:
    """Refuse a --json FILE that cannot be written before any check runs."""
    if not path:
        return
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"--json must name a file; {path!r} is a directory")
    if not folder.is_dir():
        raise UsageError(
            f"cannot write --json file {path!r}: the folder {str(folder)!r} does not exist"
        )
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"cannot write --json file {path!r}: permission denied")
