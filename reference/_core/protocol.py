"""The model protocol: what ``check_gradients`` (and the fixture, the CLI, snapshots) judge."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

__all__ = ["GradientModel"]


@runtime_checkable
class GradientModel(Protocol):
    """Any object the harness can judge: its hand-written gradients against its own loss.

    Required members:

    ``params: Sequence[tf.Variable] or Sequence[numpy.ndarray]``
        The trainable tensors, in a fixed order, all of one float dtype (float32 or float64),
        and all of one kind. Finite differences assign perturbed values to them (NumPy arrays
        in place, so ``params`` must return the model's own arrays, not copies) and restore them
        bit for bit.
    ``loss(X, y) -> tf.Tensor, or a NumPy or Python float``
        The scalar batch loss. Written in TensorFlow ops and returned as a tensor, the tape
        witnesses it; computed in NumPy (or returned through ``float(...)``/``.numpy()``), the
        tape cannot, the report says so, and finite differences judge alone, with the same
        rules for kinks, determinism and rounding. It must be deterministic and leave
        ``params`` unchanged (the check evaluates it several times at the same point, before
        and after ``gradients``, and compares the parameters: a random loss or a side effect
        is reported, not judged).
    ``gradients(X, y) -> Sequence[tensor or ndarray]``
        The hand-written ``dL/dparam`` for every tensor in ``params``, aligned with it, each of
        the parameter's shape (copied on receipt, so a backward may reuse its buffers). It must
        not update the parameters, in place or by binding new arrays to them.

    Optional members, used when present:

    ``param_names: Sequence[str]``
        Names for the report, aligned with ``params`` (default ``param0, param1, ...``).
    ``input_gradient(X, y) -> tensor or ndarray``
        The hand-written ``dL/dX``, of ``X``'s shape; checked like a parameter.
    ``astype(dtype) -> model``
        The same model (same code, same weights) in ``"float64"``. A float32 model is judged
        through it (finite differences in float64) when it is of the model's own type and its
        gradients agree with the float32 ones to float32 rounding; otherwise the model is
        judged as it is, in float32, and the report says why.
    ``batched_loss(X, y, replacements) -> tensor of shape (K,)``
        The losses of K variants at once: ``replacements`` maps a parameter index (or ``"X"``)
        to K stacked values. Without it, a TF model's loss is compiled into one batched graph
        (when the check is long enough to pay for the compilation, about 0.1 s, and the loss
        can be traced: else finite differences assign, evaluate and restore, and the report
        says why). Either is compared with ``loss`` at the point and near it before it is
        used, at every check, and not used (the report says so) when they differ.
    ``coordinate_losses(X, y, moves) -> {key: array of shape (K,)}``
        The losses with one element moved per row: ``moves`` maps a parameter index to
        ``(flat_indices, deltas)``, two arrays of length K. With it (and ``batched_loss``) a
        full check differences every parameter in about one batched forward pass
        (``MLP.coordinate_losses`` recomputes only what a move changes). It is compared with
        ``batched_loss`` at random elements of every parameter before it is used, and every
        line where finite differences decide anything is differenced again through
        ``batched_loss``, so a wrong one cannot pass a wrong gradient.
    ``batch_axis: int``
        The axis of ``X`` that holds the examples (0 for examples as rows, 1 for the column
        layout, features x examples); the diagnosis names the batch size N from it. Without
        it, N is inferred from the shapes of ``X`` and ``y`` (the report says which).
    ``layer_sizes``, ``activations``, ``loss_function``, ``fused``
        A description in the terms of ``manual_backprop``'s catalogue; with it the loss is
        recomputed independently from ``tf.nn``/``tf.math`` primitives.

    What the harness passes: ``gradients`` and ``input_gradient`` receive ``X`` and ``y`` as you
    gave them. The tape witness (for tf.Variable parameters) calls ``loss(X, y)`` with a float
    ``X`` converted to a ``tf.Tensor`` of the model's dtype (so the tape can watch it; integer
    inputs such as token ids as given, and without dL/dX; where ``loss`` raises on a tensor,
    as NumPy code does, and no ``dL/dX`` is checked, ``X`` as given) and ``y`` as given. Finite
    differences call ``loss(X, y)`` (or ``batched_loss``) with ``X`` and ``y`` as given, and,
    when checking ``dL/dX``, with perturbed copies of ``X`` as NumPy arrays of the model's
    dtype.
    """

    params: Sequence[Any]

    def loss(self, X, y) -> Any: ...

    def gradients(self, X, y) -> Sequence[Any]: ...
