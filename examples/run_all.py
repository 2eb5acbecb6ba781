"""Train the three example networks and print their losses and final accuracies."""

import sys
import time

import softmax_3class
import two_relu_layers
import xor_sigmoid

EXAMPLES = (xor_sigmoid, two_relu_layers, softmax_3class)


def main() -> int:
    failures = 0
    for module in EXAMPLES:
        start = time.perf_counter()
        result = module.main()
        print(f"  ({time.perf_counter() - start:.1f} s)\n")
        failures += result["accuracy"] < 1.0
    print(f"{len(EXAMPLES) - failures} of {len(EXAMPLES)} examples reached 100% training accuracy")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
