"""Regression snapshots: the gradients of a fixed model and batch, kept in a readable JSON file.

A later change to the backward pass that alters any gradient beyond rounding fails the
comparison. The file also records a fingerprint of the weights and the batch, so a snapshot is
never compared against a different model by accident, and the loss, so a forward change shows
too. JSON only (floats round-trip exactly); no pickle.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from ._core.adapter import Adapter
from ._core.policy import TAPE_RTOL

__all__ = ["take", "compare", "load", "save", "check_name", "FORMAT"]

FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        raise ValueError(
            f"snapshot name must be letters, digits, '_', '-' or '.' (a file name); got {name!r}."
        )
    return name


def _fingerprint(adapter: Adapter) -> str:
    digest = hashlib.sha256()
    for p in adapter.params:
        digest.update(np.ascontiguousarray(p.numpy()).tobytes())
    for arr in (adapter.X, adapter.y):
        value = arr.numpy() if isinstance(arr, tf.Tensor) else np.asarray(arr)
        digest.update(str(value.dtype).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def take(model, X, y) -> Dict:
    """The snapshot of a model's hand-written gradients (and dL/dX if it has one) at X, y."""
    adapter = Adapter(model, X, y)
    grads = adapter.manual()
    return {
        "format": FORMAT,
        "model": repr(model),
        "dtype": adapter.dtype.name,
        "fingerprint": _fingerprint(adapter),
        "loss": adapter.loss_value(),
        "gradients": {
            adapter.name(k): {"shape": list(adapter.shape(k)), "values": grads[k].tolist()}
            for k in adapter.keys
        },
    }


def save(path: Path, snap: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snap, indent=1) + "\n")


def load(path: Path) -> Dict:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gradcheck snapshot of format {FORMAT}.")
    return data


def compare(stored: Dict, current: Dict, rtol: Optional[float] = None) -> List[str]:
    """What changed, one line per problem; empty when the gradients are the same to rounding
    (``rtol`` of each tensor's largest stored gradient; default ``TAPE_RTOL[dtype]``)."""
    if rtol is None:
        if current["dtype"] not in TAPE_RTOL:
            raise ValueError(
                f"a snapshot of a {current['dtype']} model needs an explicit rtol; "
                f"the default tolerances are for {sorted(TAPE_RTOL)}."
            )
        rtol = TAPE_RTOL[current["dtype"]]
    problems = []
    if stored["fingerprint"] != current["fingerprint"]:
        return [
            "the model's weights or the batch are not the ones the snapshot was taken with; "
            "a snapshot needs a fixed model and batch (rerun with "
            "--gradcheck-update-snapshots if the change is intended)"
        ]
    old_loss, new_loss = stored["loss"], current["loss"]
    if abs(new_loss - old_loss) > rtol * max(abs(old_loss), np.finfo(float).tiny):
        problems.append(f"loss changed: {old_loss!r} -> {new_loss!r} (the forward changed)")
    old, new = stored["gradients"], current["gradients"]
    if list(old) != list(new):
        problems.append(f"tensors changed: {list(old)} -> {list(new)}")
    for name in [n for n in old if n in new]:
        a = np.asarray(old[name]["values"], dtype=np.float64)
        b = np.asarray(new[name]["values"], dtype=np.float64)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} -> {b.shape}")
            continue
        scale = float(np.max(np.abs(a), initial=0.0)) or 1.0
        with np.errstate(invalid="ignore"):
            diff = np.where(np.isfinite(b), np.abs(b - a), np.inf)
        if np.max(diff, initial=0.0) > rtol * scale:
            worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), a.shape))
            problems.append(
                f"{name}: changed by {np.max(diff) / scale:.3g} of its largest "
                f"gradient (tolerance {rtol:g}); worst at {worst}: "
                f"{a[worst]!r} -> {b[worst]!r}"
            )
    return problems
