"""manual_backprop: a multilayer perceptron whose backward pass is written out by hand.

    import manual_backprop as mb
    model = mb.MLP([2, 4, 1], ["sigmoid", "sigmoid"], "binary_crossentropy", dtype="float64")
    history = model.fit(X, y, optimizer=mb.Adam(0.05), epochs=1500)
    grads = model.gradients(X, y)          # dL/dW1, dL/db1, dL/dW2, dL/db2

Nothing in this package uses tf.GradientTape: it is the thing under test.
"""

from .activations import ACTIVATIONS, Activation, ActivationRecord, activation_names, get_activation
from .losses import LOSSES, Loss, LossRecord, get_loss, loss_names
from .model import INITIALIZERS, MLP
from .optimizers import SGD, Adam, Momentum, Optimizer

__all__ = [
    "MLP",
    "Activation",
    "Loss",
    "get_activation",
    "get_loss",
    "activation_names",
    "loss_names",
    "Optimizer",
    "SGD",
    "Momentum",
    "Adam",
    "INITIALIZERS",
    "ACTIVATIONS",
    "LOSSES",
    "ActivationRecord",
    "LossRecord",
]
__version__ = "0.1.0"
