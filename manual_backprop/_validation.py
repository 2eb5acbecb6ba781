"""Checks on user input, run before any arithmetic. Each error names the argument and the fix."""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

# Rows of categorical labels must sum to 1 within this (float32 one-hot sums are exact; soft
# labels written in float32 are off by a few ulps).
_ROW_SUM_TOLERANCE = 1e-5


def _as_numpy(value, argument: str) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise TypeError(
            f"{argument} must be an array of numbers; could not convert it: {exc}"
        ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{argument} must hold numbers; got an array of dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"{argument} must be real; got complex dtype {arr.dtype}.")
    return arr


def _require_finite(arr: np.ndarray, argument: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{argument} contains NaN or inf (first at index {tuple(int(i) for i in bad)}, "
            f"value {arr[tuple(bad)]}); remove or impute those values."
        )


def check_layer_sizes(layer_sizes) -> tuple:
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(
            f"layer_sizes must be a list of positive integers such as [2, 4, 1]; "
            f"got {layer_sizes!r}."
        )
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes needs at least an input and an output width, such as "
            f"[2, 1]; got {sizes!r}."
        )
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(
                f"layer_sizes[{i}] must be a positive integer; got {s!r} of type "
                f"{type(s).__name__}."
            )
        if s < 1:
            raise ValueError(f"layer_sizes[{i}] must be a positive integer; got {s}.")
    return tuple(int(s) for s in sizes)


def check_inputs(X, n_inputs: int, dtype: tf.DType) -> tf.Tensor:
    """X as a ``(N, n_inputs)`` tensor of ``dtype``; N >= 1, all finite."""
    arr = _as_numpy(X, "X")
    if arr.ndim != 2:
        raise ValueError(
            f"X must be 2-D with shape (batch, {n_inputs}); got shape {arr.shape}. "
            f"Reshape a single example with X.reshape(1, -1)."
        )
    if arr.shape[0] == 0:
        raise ValueError("X is an empty batch (0 rows); pass at least one example.")
    if arr.shape[1] != n_inputs:
        raise ValueError(
            f"X has {arr.shape[1]} columns but the model's input width "
            f"(layer_sizes[0]) is {n_inputs}."
        )
    _require_finite(arr, "X")
    if isinstance(X, (tf.Tensor, tf.Variable)) and X.dtype.is_floating:
        # Keep the tensor itself, so a tape watching X sees the loss depend on it.
        return X if X.dtype == dtype else tf.cast(X, dtype)
    return tf.convert_to_tensor(arr.astype(dtype.as_numpy_dtype, copy=False))


def check_labels(
    y, n_rows: int, n_outputs: int, label_kind: str, loss_name: str, dtype: tf.DType
) -> tf.Tensor:
    """y as a tensor valid for ``label_kind``: ``(N, D)`` of ``dtype``, or ``(N,)`` int64 (sparse).

    A 1-D ``y`` of length N is accepted for a single output unit and read as ``(N, 1)``; every
    other shape mismatch is an error, since broadcasting ``(N,)`` against ``(N, 1)`` would give a
    silent ``(N, N)`` loss.
    """
    arr = _as_numpy(y, "y")
    if arr.ndim == 0 or arr.shape[0] != n_rows:
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} rows"
        raise ValueError(f"y has {got} but X has {n_rows}; X and y must have the same batch size.")
    _require_finite(arr, "y")
    if label_kind == "sparse":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(
                f"Loss {loss_name!r} takes integer class indices of shape (batch,); "
                f"got y of shape {arr.shape}. For one-hot rows use "
                f"'categorical_crossentropy_from_logits'."
            )
        if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
            raise ValueError(
                f"Loss {loss_name!r} takes integer class indices; y holds "
                f"non-integer values such as {arr[arr != np.round(arr)][0]}."
            )
        if np.any(arr < 0) or np.any(arr >= n_outputs):
            bad = arr[(arr < 0) | (arr >= n_outputs)][0]
            raise ValueError(
                f"Loss {loss_name!r}: class index {bad} in y is out of range; the "
                f"model has {n_outputs} outputs, so labels must lie in "
                f"[0, {n_outputs - 1}]."
            )
        return tf.convert_to_tensor(arr.astype(np.int64))

    if arr.ndim == 1 and n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(
            f"y must have shape (batch, {n_outputs}) to match the model's output; got {arr.shape}."
        )
    if label_kind == "binary" and (np.any(arr < 0) or np.any(arr > 1)):
        bad = arr[(arr < 0) | (arr > 1)][0]
        raise ValueError(f"Loss {loss_name!r} takes labels in [0, 1]; y holds {bad}.")
    if label_kind == "categorical":
        if np.any(arr < 0):
            raise ValueError(
                f"Loss {loss_name!r} takes rows of non-negative class weights; "
                f"y holds {arr[arr < 0][0]}."
            )
        sums = arr.sum(axis=1, dtype=np.float64)
        off = np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE
        if np.any(off):
            row = int(np.argmax(off))
            raise ValueError(
                f"Loss {loss_name!r} takes one-hot or probability rows summing to 1; "
                f"row {row} of y sums to {sums[row]}. For integer class indices "
                f"use 'sparse_categorical_crossentropy_from_logits'."
            )
    return tf.convert_to_tensor(arr.astype(dtype.as_numpy_dtype, copy=False))
