"""A tf.custom_gradient with a classic bug (softmax's gradient written with the diagonal of its
Jacobian only), and the report check_function gives on it. The README's example output comes
from this script."""

import numpy as np
import tensorflow as tf

from reference import check_function


@tf.custom_gradient
def my_softmax(logits):
    s = tf.nn.softmax(logits, axis=-1)

    def grad(dy):
        return dy * s * (1.0 - s)  # the bug: the right one is s * (dy - sum(dy * s))

    return s, grad


def main():
    logits = np.random.default_rng(0).normal(size=(4, 5))
    report = check_function(my_softmax, logits)
    print(report)
    return report


if __name__ == "__main__":
    main()
