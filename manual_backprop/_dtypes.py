"""Dtype names accepted across the package."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SUPPORTED_DTYPES = ("float32", "float64")


def canonical_dtype(dtype, *, argument: str = "dtype") -> tf.DType:
    """Return ``tf.float32`` or ``tf.float64`` for any common spelling of them.

    Accepts the strings ``"float32"``/``"float64"``, ``tf.float32``/``tf.float64``,
    ``np.float32``/``np.float64`` and their ``np.dtype`` objects. Anything else raises a
    ``ValueError`` (an unsupported float type) or ``TypeError`` (not a dtype at all).
    """
    if isinstance(dtype, tf.DType):
        name = dtype.name
    elif isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(
                f"{argument} must be one of {SUPPORTED_DTYPES} (a string, tf.DType or numpy "
                f"dtype); got {dtype!r} of type {type(dtype).__name__}."
            ) from None
    if name not in SUPPORTED_DTYPES:
        raise ValueError(f"Unknown {argument} {dtype!r}: expected one of {SUPPORTED_DTYPES}.")
    return tf.as_dtype(name)
