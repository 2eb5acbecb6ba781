"""The multilayer perceptron with a hand-written backward pass.

Layer ``l`` (1-based) computes ``z_l = a_{l-1} @ W_l + b_l`` and ``a_l = act_l(z_l)``, with
``a_0 = X`` of shape ``(N, layer_sizes[0])``, ``W_l`` of shape ``(fan_in, fan_out)`` and ``b_l`` of
shape ``(fan_out,)``. The backward pass walks the layers from the output down:

    dz_L = act_L.backward(z_L, a_L, loss'(a_L))   (fused sigmoid/softmax + CE: from the logits)
    dW_l = a_{l-1}^T @ dz_l               db_l = sum over rows of dz_l
    da_{l-1} = dz_l @ W_l^T               dz_{l-1} = act_{l-1}.backward(z_{l-1}, a_{l-1}, da_{l-1})

and ``dL/dX = da_0``. Nothing here uses ``tf.GradientTape`` or any automatic differentiation.
"""

from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from ._dtypes import canonical_dtype
from ._validation import check_inputs, check_labels, check_layer_sizes
from .activations import Activation, get_activation
from .losses import Loss, get_loss
from .optimizers import Optimizer

__all__ = ["MLP", "INITIALIZERS"]


def _glorot_uniform(fan_in, fan_out, rng):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def _he_normal(fan_in, fan_out, rng):
    # A plain (not truncated) normal with standard deviation sqrt(2 / fan_in).
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def _normal(fan_in, fan_out, rng):
    return rng.normal(0.0, 1.0, size=(fan_in, fan_out))


INITIALIZERS = {"glorot_uniform": _glorot_uniform, "he_normal": _he_normal, "normal": _normal}


class MLP:
    """A fully connected network whose gradients are written out by hand.

    Args:
      layer_sizes: widths from input to output, e.g. ``[2, 4, 1]``: two inputs, one hidden layer
        of 4 units, one output.
      activations: one per layer (``len(layer_sizes) - 1``): names from the registry or
        :class:`~manual_backprop.Activation` objects.
      loss: a loss name or a :class:`~manual_backprop.Loss`.
      dtype: ``"float32"`` (default) or ``"float64"``; parameters and arithmetic use it.
      seed: seeds the initial weights (numpy's ``default_rng``); ``None`` draws fresh ones.
      initializer: ``"glorot_uniform"`` (default), ``"he_normal"`` or ``"normal"`` (standard
        normal, as many tutorials use) for the weights; biases start at zero.
      weight_scale: multiplies the initial weights (large values saturate the network, which is
        what a gradient check should also see).

    It implements every part of the model protocol that ``reference`` judges
    (``reference.GradientModel``): the required ``params``, ``loss(X, y)`` and
    ``gradients(X, y)``; the optional ``param_names``, ``input_gradient(X, y)``,
    ``astype(dtype)`` and ``batched_loss(X, y, replacements)``; and ``layer_sizes``,
    ``activations``, ``loss_function`` and ``fused``, from which ``reference`` rebuilds the
    network's loss independently.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activations,
        loss,
        *,
        dtype="float32",
        seed: Optional[int] = None,
        initializer: str = "glorot_uniform",
        weight_scale: float = 1.0,
    ):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        n_layers = len(self.layer_sizes) - 1
        if isinstance(activations, (str, Activation)):
            raise TypeError(
                f"activations must be a list with one entry per layer ({n_layers} "
                f"here); got the single value {activations!r}. For the same "
                f"activation everywhere pass [{activations!r}] * {n_layers}."
            )
        activations = list(activations)
        if len(activations) != n_layers:
            raise ValueError(
                f"activations has {len(activations)} entries but layer_sizes "
                f"{list(self.layer_sizes)} defines {n_layers} layers; give one "
                f"activation per layer."
            )
        self.activations = tuple(get_activation(a) for a in activations)
        self.loss_function: Loss = get_loss(loss)
        self.dtype = canonical_dtype(dtype)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(
                f"seed must be a non-negative integer or None; got {seed!r} of type "
                f"{type(seed).__name__}."
            )
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}.")
        self.seed = seed
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"Unknown initializer {initializer!r}. Valid names: {', '.join(INITIALIZERS)}."
            )
        self.initializer = initializer
        if (
            isinstance(weight_scale, bool)
            or not isinstance(weight_scale, (int, float))
            or not np.isfinite(weight_scale)
            or weight_scale <= 0
        ):
            raise ValueError(
                f"weight_scale must be a positive finite number; got {weight_scale!r}."
            )
        self.weight_scale = float(weight_scale)
        self._check_pairing()
        self._fused: Optional[Loss] = self._find_fused()

        rng = np.random.default_rng(seed)
        self.params: List[tf.Variable] = []
        for l, (fan_in, fan_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:]), 1):
            w = INITIALIZERS[initializer](fan_in, fan_out, rng) * self.weight_scale
            self.params.append(tf.Variable(w.astype(self.dtype.as_numpy_dtype), name=f"W{l}"))
            self.params.append(tf.Variable(tf.zeros([fan_out], self.dtype), name=f"b{l}"))
        self._train_step = None

    # --- construction helpers ---------------------------------------------------------------

    def _check_pairing(self):
        out, loss = self.activations[-1], self.loss_function
        if loss.probabilities and out.output_range is not None:
            lo, hi = out.output_range
            if lo < 0 or hi > 1:
                raise ValueError(
                    f"Loss {loss.name!r} takes probabilities, but the output activation "
                    f"{out.name!r} ranges over ({lo}, {hi}). Use a 'sigmoid' or 'softmax' output, "
                    f"or the loss '{loss.name}_from_logits' on a 'linear' output."
                )
        if loss.labels == "sparse" and self.layer_sizes[-1] < 2:
            raise ValueError(
                f"Loss {loss.name!r} needs at least 2 output units (one per class); "
                f"layer_sizes ends in {self.layer_sizes[-1]}."
            )

    def _find_fused(self) -> Optional[Loss]:
        out, loss = self.activations[-1], self.loss_function
        if out.builtin and loss.builtin:
            return loss.fused.get(out.name)
        return None

    @property
    def fused(self) -> Optional[str]:
        """``"sigmoid+binary_crossentropy"`` or ``"softmax+categorical_crossentropy"`` when the
        output layer and loss are computed together from the logits, else ``None``."""
        if self._fused is None:
            return None
        return f"{self.activations[-1].name}+{self.loss_function.name}"

    @property
    def param_names(self) -> List[str]:
        """``["W1", "b1", "W2", "b2", ...]``, aligned with ``params``."""
        return [f"{kind}{l}" for l in range(1, len(self.layer_sizes)) for kind in ("W", "b")]

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params))

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the parameters as numpy arrays, aligned with ``params``."""
        return [p.numpy().copy() for p in self.params]

    def set_weights(self, weights: Sequence) -> None:
        """Assign new values to every parameter (cast to the model's dtype); shapes must match."""
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(
                f"set_weights: got {len(weights)} arrays for {len(self.params)} "
                f"parameters ({', '.join(self.param_names)})."
            )
        arrays = []
        for name, p, w in zip(self.param_names, self.params, weights):
            arr = np.asarray(w.numpy() if isinstance(w, (tf.Tensor, tf.Variable)) else w)
            if arr.shape != tuple(p.shape):
                raise ValueError(
                    f"set_weights: {name} has shape {tuple(p.shape)}; got {arr.shape}."
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"set_weights: {name} contains NaN or inf.")
            arrays.append(arr.astype(self.dtype.as_numpy_dtype))
        for p, arr in zip(self.params, arrays):
            p.assign(arr)

    def astype(self, dtype) -> "MLP":
        """The same model (same structure, same weights cast to ``dtype``) as a new object."""
        clone = MLP(
            self.layer_sizes,
            self.activations,
            self.loss_function,
            dtype=dtype,
            seed=self.seed,
            initializer=self.initializer,
            weight_scale=self.weight_scale,
        )
        clone.set_weights([p.numpy() for p in self.params])
        return clone

    def __repr__(self) -> str:
        def show(spec):
            return spec if spec.startswith(("get_", "<")) else repr(spec)

        acts = ", ".join(show(a.spec) for a in self.activations)
        return (
            f"MLP({list(self.layer_sizes)}, [{acts}], {show(self.loss_function.spec)}, "
            f"dtype={self.dtype.name!r}, seed={self.seed!r}, "
            f"initializer={self.initializer!r}"
            + (f", weight_scale={self.weight_scale!r})" if self.weight_scale != 1.0 else ")")
        )

    # --- input checks -----------------------------------------------------------------------

    def _inputs(self, X) -> tf.Tensor:
        return check_inputs(X, self.layer_sizes[0], self.dtype)

    def _inputs_and_labels(self, X, y):
        X = self._inputs(X)
        y = check_labels(
            y,
            int(X.shape[0]),
            self.layer_sizes[-1],
            self.loss_function.labels,
            self.loss_function.name,
            self.dtype,
        )
        return X, y

    # --- forward and backward on checked tensors --------------------------------------------

    def _forward_all(self, X):
        """Every layer's (a_prev, z, a), from the input up."""
        cache = []
        a = X
        for l, act in enumerate(self.activations):
            W, b = self.params[2 * l], self.params[2 * l + 1]
            z = tf.matmul(a, W) + b
            a_next = act.fn(z)
            cache.append((a, z, a_next))
            a = a_next
        return cache

    def _loss_from_cache(self, cache, y):
        _, z_out, a_out = cache[-1]
        if self._fused is not None:
            return self._fused.fn(y, z_out)
        return self.loss_function.fn(y, a_out)

    def _backward(self, cache, y, with_input: bool = False):
        """(parameter gradients aligned with params, dL/dX or None).

        dL/dX costs one more matmul as large as the first layer's, so it is computed only when
        asked for.
        """
        _, z, a = cache[-1]
        if self._fused is not None:
            dz = self._fused.fused_gradient(y, z, a)
        else:
            dz = self.activations[-1].backward(z, a, self.loss_function.gradient(y, a))
        grads = [None] * len(self.params)
        dX = None
        for l in range(len(self.activations) - 1, -1, -1):
            a_prev = cache[l][0]
            W = self.params[2 * l]
            grads[2 * l] = tf.matmul(a_prev, dz, transpose_a=True)
            grads[2 * l + 1] = tf.reduce_sum(dz, axis=0)
            if l > 0:
                _, z_prev, a_prev_out = cache[l - 1]
                da_prev = tf.matmul(dz, W, transpose_b=True)
                dz = self.activations[l - 1].backward(z_prev, a_prev_out, da_prev)
            elif with_input:
                dX = tf.matmul(dz, W, transpose_b=True)
        return grads, dX

    # --- the public protocol ----------------------------------------------------------------

    def forward(self, X) -> tf.Tensor:
        """The network's output ``a_L`` (probabilities for sigmoid/softmax outputs)."""
        return self._forward_all(self._inputs(X))[-1][2]

    def loss(self, X, y) -> tf.Tensor:
        """The scalar batch-mean loss (from the logits when the pairing is fused)."""
        X, y = self._inputs_and_labels(X, y)
        return self._loss_from_cache(self._forward_all(X), y)

    def gradients(self, X, y) -> List[tf.Tensor]:
        """Hand-written ``dL/dparam`` for every parameter, aligned with ``params``."""
        X, y = self._inputs_and_labels(X, y)
        return self._backward(self._forward_all(X), y)[0]

    def input_gradient(self, X, y) -> tf.Tensor:
        """Hand-written ``dL/dX``, shape ``(N, layer_sizes[0])``."""
        X, y = self._inputs_and_labels(X, y)
        return self._backward(self._forward_all(X), y, with_input=True)[1]

    def loss_and_gradients(self, X, y):
        """``(loss, gradients)`` from one forward and one backward pass (what a training step
        needs; ``input_gradient`` gives dL/dX)."""
        X, y = self._inputs_and_labels(X, y)
        cache = self._forward_all(X)
        return self._loss_from_cache(cache, y), self._backward(cache, y)[0]

    def batched_loss(self, X, y, replacements) -> tf.Tensor:
        """The loss at K variants of the model at once, shape ``(K,)``.

        ``replacements`` maps a parameter index (into ``params``), or ``"X"``, to ``K`` stacked
        values of shape ``(K, *shape)``; everything not replaced keeps its current value, and the
        model itself is not modified. Layers below the lowest replaced one are computed once.
        This is what lets finite differences evaluate every perturbation of a tensor in one pass.
        """
        X, y = self._inputs_and_labels(X, y)
        stacks = {}
        for key, value in replacements.items():
            shape = tuple(X.shape) if key == "X" else tuple(self.params[key].shape)
            value = tf.convert_to_tensor(value, self.dtype)
            if tuple(value.shape[1:]) != shape:
                raise ValueError(
                    f"batched_loss: replacement for {key!r} has shape "
                    f"{tuple(value.shape)}; expected (K, *{shape})."
                )
            stacks[key] = value
        return self._batched_loss(X, y, stacks)

    def _batched_loss(self, X, y, stacks):
        # Until the first replaced layer, a stays (N, width): the layers below it run once.
        a = stacks.get("X", X)
        for l, act in enumerate(self.activations):
            W = stacks.get(2 * l, self.params[2 * l])
            b = stacks.get(2 * l + 1, self.params[2 * l + 1])
            if b.shape.rank == 2:  # (K, out) -> (K, 1, out)
                b = b[:, None, :]
            z = tf.matmul(a, W) + b  # broadcasts (N, in) @ (K, in, out)
            fused_output = self._fused is not None and l == len(self.activations) - 1
            a = z if fused_output else act.fn(z)
        return self._losses_of(y, a)

    def _losses_of(self, y, out):
        """The loss of each of K outputs stacked as (K, N, D) (or of one, (N, D)), shape (K,);
        ``out`` is the logits when the pairing is fused."""
        loss = self._fused if self._fused is not None else self.loss_function
        if out.shape.rank == 2:
            return loss.fn(y, out)[None]
        if loss.builtin:
            return loss.fn(y, out)  # built-in losses reduce over (N, D)
        return tf.vectorized_map(lambda one: loss.fn(y, one), out)

    def coordinate_losses(self, X, y, moves) -> Dict[int, np.ndarray]:
        """The loss with one element of one parameter moved, for many such moves at once.

        ``moves`` maps a parameter index (into ``params``) to ``(index, delta)``, two arrays of
        length K: row k moves the element at flat index ``index[k]`` by ``delta[k]``. Returns,
        per key, the K losses (float64). The model itself is not modified.

        This is what makes finite differences of every parameter cost about one batched forward
        pass in all: a move of ``W_l[i, j]`` (or ``b_l[j]``) changes only column ``j`` of the
        pre-activation ``z_l``, by ``delta * a_{l-1}[:, i]`` (or ``delta``), so only that column
        of the layer's output is recomputed; the next pre-activation changes by the rank-1
        ``(change of a_l[:, j]) x W_{l+1}[j, :]``; the layers above it run in full, batched, and
        the layers below it not at all.
        """
        X, y = self._inputs_and_labels(X, y)
        layers: Dict[int, list] = {}  # layer -> [(key, i, j, delta)], i == fan_in for a bias
        for key, (index, delta) in moves.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
                raise ValueError(
                    f"coordinate_losses: keys must be parameter indices into params; got {key!r}."
                )
            if not 0 <= key < len(self.params):
                raise ValueError(
                    f"coordinate_losses: parameter index {key} is out of range for "
                    f"{len(self.params)} params."
                )
            index = np.asarray(index, dtype=np.int64).reshape(-1)
            delta = np.asarray(delta, dtype=np.float64).reshape(-1)
            size = int(np.prod(self.params[key].shape))
            if index.shape != delta.shape or np.any((index < 0) | (index >= size)):
                raise ValueError(
                    f"coordinate_losses: {self.param_names[key]} needs as many deltas as flat "
                    f"indices, each in [0, {size}); got {index.size} indices and {delta.size} "
                    f"deltas."
                )
            l, is_bias = divmod(int(key), 2)
            fan_in, width = self.layer_sizes[l], self.layer_sizes[l + 1]
            i, j = (np.full_like(index, fan_in), index) if is_bias else np.divmod(index, width)
            layers.setdefault(l, []).append((key, i, j, delta))
        cache = self._forward_all(X)
        out: Dict[int, np.ndarray] = {}
        for l, parts in layers.items():
            values = self._layer_moves(
                cache,
                y,
                l,
                *(np.concatenate([part[n] for part in parts]) for n in (1, 2, 3)),
            )
            start = 0
            for key, i, _, _ in parts:
                out[key] = values[start : start + i.size]
                start += i.size
        return out

    # Rows of one coordinate_losses call are chunked so that K x N x width stays below this.
    _COORDINATE_BUDGET = 1 << 21

    def _layer_moves(self, cache, y, l, i, j, delta) -> np.ndarray:
        n = int(cache[l][1].shape[0])
        widest = max(self.layer_sizes[l + 1 :])
        per_call = max(1, self._COORDINATE_BUDGET // max(1, n * widest))
        values = np.empty(i.size)
        for start in range(0, i.size, per_call):
            stop = min(i.size, start + per_call)
            values[start:stop] = self._column_moves(
                cache, y, l, i[start:stop], j[start:stop], delta[start:stop]
            ).numpy()
        return values

    def _column_moves(self, cache, y, l, i, j, delta):
        """Losses with column j[k] of z_l moved by delta[k] * a_{l-1}[:, i[k]] (by delta[k]
        where i[k] is the fan-in: a bias), shape (K,).

        The gathers of columns, (K, N) at most, run in NumPy (a fraction of TensorFlow's time on
        tensors this small; products and sums round the same in both); the (K, N, width) work
        runs in TensorFlow.
        """
        a_prev, z, a = (t.numpy() for t in cache[l])
        d = np.asarray(delta).astype(z.dtype)
        ones = np.ones((a_prev.shape[0], 1), z.dtype)
        inputs = np.concatenate([a_prev, ones], axis=1)  # (N, fan_in + 1)
        dz = inputs[:, i].T * d[:, None]  # (K, N)
        last = l == len(self.activations) - 1
        act = self.activations[l]
        if last or not act.elementwise:
            onehot = tf.one_hot(j, z.shape[1], dtype=self.dtype)
            z_full = cache[l][1] + tf.expand_dims(dz, 2) * tf.expand_dims(onehot, 1)
            if last:
                return self._losses_of(y, self._output_of(l, z_full))
            z_next = tf.matmul(act.fn(z_full), self.params[2 * l + 2]) + self.params[2 * l + 3]
        else:
            da = act.fn(tf.constant(z[:, j].T + dz)).numpy() - a[:, j].T  # change of a_l[:, j]
            rows = self.params[2 * l + 2].numpy()[j]  # (K, next): W_{l+1}[j, :]
            z_next = cache[l + 1][1] + tf.expand_dims(da, 2) * tf.expand_dims(rows, 1)
        a_next = self._output_of(l + 1, z_next)
        for m in range(l + 2, len(self.activations)):
            z_next = tf.matmul(a_next, self.params[2 * m]) + self.params[2 * m + 1]
            a_next = self._output_of(m, z_next)
        return self._losses_of(y, a_next)

    def _output_of(self, m: int, z):
        """Layer m's output from its pre-activation (the logits themselves when fused)."""
        if self._fused is not None and m == len(self.activations) - 1:
            return z
        return self.activations[m].fn(z)

    # --- training ---------------------------------------------------------------------------

    def fit(
        self,
        X,
        y,
        optimizer: Optimizer,
        epochs: int = 1,
        batch_size: Optional[int] = None,
        *,
        shuffle: bool = True,
    ) -> List[float]:
        """Train in place with the hand-written gradients; return the loss of each epoch.

        An epoch's loss is the mean over its mini-batches (weighted by their sizes) of the loss
        computed before each update. ``batch_size=None`` trains on the whole batch at once;
        otherwise the rows are shuffled every epoch (seeded from the model's seed) unless
        ``shuffle=False``.
        """
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a manual_backprop optimizer such as mb.Adam(0.01); "
                f"got {optimizer!r}."
            )
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer; got {epochs!r}.")
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        X, y = self._inputs_and_labels(X, y)
        n = int(X.shape[0])
        batch = n if batch_size is None else min(int(batch_size), n)
        optimizer.build(self.params)
        step = self._compiled_step(optimizer)
        rng = np.random.default_rng(self.seed)
        history = []
        for _ in range(epochs):
            order = rng.permutation(n) if (shuffle and batch < n) else np.arange(n)
            total = 0.0
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                if batch < n:
                    xb, yb = tf.gather(X, idx), tf.gather(y, idx)
                else:
                    xb, yb = X, y
                total += float(step(xb, yb)) * len(idx)
            history.append(total / n)
        return history

    def _compiled_step(self, optimizer):
        if self._train_step is None or self._train_step[0] is not optimizer:

            def train_step(xb, yb):
                cache = self._forward_all(xb)
                loss = self._loss_from_cache(cache, yb)
                grads, _ = self._backward(cache, yb)
                optimizer.step(self.params, grads)
                return loss

            self._train_step = (optimizer, tf.function(train_step, reduce_retracing=True))
        return self._train_step[1]
