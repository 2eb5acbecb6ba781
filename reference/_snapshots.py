"""Regression snapshots: the gradients of a fixed model and batch, stored with pytest-regressions.

A later change to the backward pass that alters any gradient beyond rounding fails the
comparison. A snapshot is a NumPy ``.npz`` file (no pickle) holding each tensor's hand-written
gradient under its name, the loss, and, under ``gradcheck:`` keys, the format, the model's dtype
and a fingerprint of the weights and the batch, so that a snapshot is never compared against
another model or batch by accident. The comparison itself, its table of differing elements and
its ``--force-regen`` / ``--regen-all`` options are pytest-regressions' ``ndarrays_regression``;
this module makes the file and says, before any value is compared, what would make the
comparison mislead: a file that is not a snapshot, non-finite values, another architecture,
dtype, model or batch. Snapshots of format 1 (``gradcheck_snapshots/<file>/<name>.json``) are
read for migration (``legacy_path``, ``legacy_problems``).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ._core.adapter import Adapter

__all__ = [
    "take",
    "read",
    "write",
    "mismatch",
    "nonfinite",
    "tolerances",
    "check_name",
    "file_stem",
    "legacy_path",
    "legacy_problems",
    "SnapshotError",
    "FORMAT",
    "DIRECTORY",
]

FORMAT = 2
DIRECTORY = "gradcheck_snapshots"
_META = "gradcheck:"
_FORMAT_KEY, _DTYPE_KEY, _FINGERPRINT_KEY = (_META + k for k in ("format", "dtype", "fingerprint"))
LOSS_KEY = _META + "loss"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SnapshotError(Exception):
    """A stored snapshot that cannot be compared (its message says why and what to do)."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        raise ValueError(
            f"snapshot name must be letters, digits, '_', '-' or '.' (a file name); got {name!r}."
        )
    return name


def file_stem(test_name: str, name: str) -> str:
    """The file name (without suffix) of snapshot ``name`` taken by the test ``test_name`` (its
    node id within the file, such as ``TestModel::test_grads[float32]``): the test's name made a
    file name, and, when that changed it, 8 hex digits of its hash, so that two tests never share
    a file (``test[a-b]`` and ``test[a_b]`` both read ``test_a_b_``)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", test_name.replace("::", "."))
    if safe != test_name.replace("::", "."):
        safe += "-" + hashlib.sha1(test_name.encode()).hexdigest()[:8]
    return f"{safe}--{check_name(name)}"


def _fingerprint(adapter: Adapter) -> str:
    digest = hashlib.sha256()
    for i in range(len(adapter.params)):
        digest.update(np.ascontiguousarray(adapter.read(i)).tobytes())
    for arr in (adapter.X, adapter.y):
        value = arr.numpy() if hasattr(arr, "numpy") else np.asarray(arr)
        digest.update(str(value.dtype).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def take(model, X, y) -> Dict[str, np.ndarray]:
    """The snapshot of a model's hand-written gradients (and dL/dX if it has one) at X, y: each
    tensor's name to its gradient (float64), the loss, and the metadata."""
    adapter = Adapter(model, X, y)
    grads = adapter.manual()
    out = {adapter.name(k): grads[k] for k in adapter.keys}
    out[LOSS_KEY] = np.asarray(adapter.loss_value(), dtype=np.float64)
    out[_FORMAT_KEY] = np.asarray(FORMAT)
    out[_DTYPE_KEY] = np.asarray(adapter.dtype.name)
    out[_FINGERPRINT_KEY] = np.asarray(_fingerprint(adapter))
    return out


def tensors(snap: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The gradients of a snapshot, by tensor name (the metadata left out)."""
    return {k: v for k, v in snap.items() if not k.startswith(_META)}


def write(path: Path, snap: Dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **snap)


# How to take a snapshot anew, said after what is wrong with its file.
_REGENERATE = (
    "delete it and run the test again to take it anew, or rerun with --gradcheck-update-snapshots"
)


def read(path: Path) -> Dict[str, np.ndarray]:
    """The snapshot stored at ``path``; SnapshotError (what is wrong with the file and how to
    regenerate it; the caller names the path) when the file is not a complete gradcheck
    snapshot of this format."""
    try:
        with open(path, "rb") as f:
            data = dict(np.load(f, allow_pickle=False))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise SnapshotError(
            f"the file is not a readable snapshot ({type(exc).__name__}: {exc}); {_REGENERATE}"
        ) from exc
    missing = [k for k in (_FORMAT_KEY, _DTYPE_KEY, _FINGERPRINT_KEY, LOSS_KEY) if k not in data]
    if missing:
        raise SnapshotError(
            f"the file is not a gradcheck snapshot (no {', '.join(missing)}); {_REGENERATE}"
        )
    fmt = data[_FORMAT_KEY]
    if fmt.shape != () or fmt.dtype.kind not in "iu" or int(fmt) != FORMAT:
        raise SnapshotError(
            f"the file is a snapshot of format {fmt!r}, not {FORMAT}; {_REGENERATE}"
        )
    for key in (_DTYPE_KEY, _FINGERPRINT_KEY):
        if data[key].shape != () or data[key].dtype.kind != "U":
            raise SnapshotError(f"the file's {key} is not a string; {_REGENERATE}")
    for key, value in data.items():
        if key in (_FORMAT_KEY, _DTYPE_KEY, _FINGERPRINT_KEY):
            continue
        if value.dtype.kind != "f":
            raise SnapshotError(
                f"the file's {key!r} holds {value.dtype} values, not floats; {_REGENERATE}"
            )
        if not np.all(np.isfinite(value)):
            raise SnapshotError(
                f"the file's {key!r} holds NaN or inf, which no gradient can match; {_REGENERATE}"
            )
    if not tensors(data):
        raise SnapshotError(f"the file holds no gradients; {_REGENERATE}")
    return data


def nonfinite(current: Dict[str, np.ndarray]) -> Optional[str]:
    """What is not finite in a snapshot just taken, or None."""
    bad = [k for k, v in current.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if not bad:
        return None
    names = ["the loss" if k == LOSS_KEY else k for k in bad]
    return f"NaN or inf in {', '.join(names)}: a snapshot never stores or passes a non-finite value"


def mismatch(stored: Dict[str, np.ndarray], current: Dict[str, np.ndarray]) -> List[str]:
    """Why ``current`` is not comparable with ``stored`` at all (empty when it is): another
    architecture (tensors or shapes), dtype, or model and batch."""
    old, new = tensors(stored), tensors(current)
    if list(old) != list(new) or any(old[k].shape != new[k].shape for k in old):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in old.items())
        now = ", ".join(f"{k} {tuple(v.shape)}" for k, v in new.items())
        missing = [k for k in new if k not in old]
        extra = [k for k in old if k not in new]
        which = []
        if missing:
            which.append(f"the snapshot has no {', '.join(missing)}")
        if extra:
            which.append(f"the model has no {', '.join(extra)}")
        which = f" ({'; '.join(which)}: a tensor added, removed or renamed, or the file edited)"
        return [
            f"the architecture changed: the snapshot holds {shapes}; the model now has {now}"
            f"{which if missing or extra else ''} (rerun with --gradcheck-update-snapshots if "
            f"the change is intended)"
        ]
    if str(stored[_DTYPE_KEY]) != str(current[_DTYPE_KEY]):
        return [
            f"the snapshot is of a {stored[_DTYPE_KEY]} model; this one is "
            f"{current[_DTYPE_KEY]} (a snapshot per dtype needs a name per dtype)"
        ]
    if str(stored[_FINGERPRINT_KEY]) != str(current[_FINGERPRINT_KEY]):
        return [
            "the model's weights or the batch are not the ones the snapshot was taken with; a "
            "snapshot needs a fixed model and batch (seed them; rerun with "
            "--gradcheck-update-snapshots if the change is intended)"
        ]
    return []


def tolerances(stored: Dict[str, np.ndarray], rtol: float) -> Dict[str, Dict[str, float]]:
    """Per key, ``numpy.isclose``'s tolerances for ``ndarrays_regression``: each tensor to
    ``rtol`` of its largest stored gradient (absolute, so that the zeros of a dead unit are
    held to the tensor's scale), the loss to ``rtol`` of itself."""
    out = {}
    for key, value in tensors(stored).items():
        scale = float(np.max(np.abs(value), initial=0.0)) or 1.0
        out[key] = {"atol": rtol * scale, "rtol": 0.0}
    loss = abs(float(stored[LOSS_KEY]))
    out[LOSS_KEY] = {"atol": rtol * max(loss, np.finfo(float).tiny), "rtol": 0.0}
    return out


# --- format 1: one JSON file per name and test file ---------------------------------------------


def legacy_path(test_file: Path, name: str) -> Path:
    """Where format 1 kept snapshot ``name`` of the tests in ``test_file``."""
    return test_file.parent / DIRECTORY / test_file.stem / f"{check_name(name)}.json"


def legacy_problems(path: Path, current: Dict[str, np.ndarray], rtol: float) -> List[str]:
    """How ``current`` differs from the format-1 snapshot at ``path`` (empty when it does not,
    to ``rtol`` of each tensor's largest stored gradient); SnapshotError for a file that is not
    one."""
    try:
        data = json.loads(path.read_text())
        old = {k: np.asarray(v["values"], np.float64) for k, v in data["gradients"].items()}
        stored = {
            **old,
            LOSS_KEY: np.asarray(float(data["loss"])),
            _DTYPE_KEY: np.asarray(str(data["dtype"])),
            _FINGERPRINT_KEY: np.asarray(str(data["fingerprint"])),
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(
            f"the file is not a readable format-1 snapshot ({type(exc).__name__}: {exc}); "
            f"{_REGENERATE}"
        ) from exc
    problems = mismatch(stored, current)
    if problems:
        return problems
    limits = tolerances(stored, rtol)
    for key, value in tensors(current).items():
        with np.errstate(invalid="ignore"):
            diff = np.abs(value - stored[key])
        if not np.all(diff <= limits[key]["atol"]):
            worst = np.unravel_index(int(np.nanargmax(np.nan_to_num(diff, nan=np.inf))), diff.shape)
            problems.append(
                f"{key}: changed by {float(diff[worst]) / limits[key]['atol'] * rtol:.3g} of its "
                f"largest gradient (tolerance {rtol:g}); worst at {tuple(map(int, worst))}"
            )
    if abs(float(current[LOSS_KEY]) - float(stored[LOSS_KEY])) > limits[LOSS_KEY]["atol"]:
        problems.append("the loss changed (the forward changed)")
    return problems
