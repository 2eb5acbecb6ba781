"""Catch rate and false alarms on the corpus of user-style models (``tests/corpus.py``).

Every case of the corpus (each model's right twin, each planted bug, each random or impure
loss) is built at several drawn sizes and seeds and checked in both modes. A right twin that
fails is a false alarm; a bug or impure model that passes is a miss.

    python tools/corpus_rates.py                 # 10 variants per case
    python tools/corpus_rates.py --variants 20 --markdown FILE
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from corpus import CASES, MIN_HIDDEN, MIN_N  # noqa: E402

from reference import MODES, check_gradients  # noqa: E402


def variants(count: int):
    """(seed, hidden, n): sizes spread from the least the corpus accepts upwards."""
    return [(seed, MIN_HIDDEN + seed % 6, MIN_N + (3 * seed) % 9) for seed in range(count)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    # (model name, mode) -> [right passed, right total, wrong caught, wrong total]
    table = defaultdict(lambda: [0, 0, 0, 0])
    wrong_verdicts = []
    for case in CASES:
        for mode in MODES:
            row = table[(case.name, mode)]
            for seed, hidden, n in variants(args.variants):
                model, X, y = case.build(seed, hidden, n)
                ok = check_gradients(model, X, y, mode=mode).ok
                if case.expect == "pass":
                    row[0] += ok
                    row[1] += 1
                else:
                    row[2] += not ok
                    row[3] += 1
                if ok != (case.expect == "pass"):
                    wrong_verdicts.append(f"{case.id} {mode} seed={seed} hidden={hidden} n={n}")
    lines = [
        "| model | mode | right twins passed | bugs and impure losses caught |",
        "|---|---|---|---|",
    ]
    totals = {mode: [0, 0, 0, 0] for mode in MODES}
    for (name, mode), row in table.items():
        lines.append(f"| {name} | {mode} | {row[0]}/{row[1]} | {row[2]}/{row[3]} |")
        totals[mode] = [a + b for a, b in zip(totals[mode], row)]
    for mode, (rp, rt, wc, wt) in totals.items():
        lines.append(f"| **all** | {mode} | {rp}/{rt} | {wc}/{wt} |")
    text = "\n".join(lines)
    print(text)
    for mode, (rp, rt, wc, wt) in totals.items():
        print(
            f"{mode}: false alarms {rt - rp} of {rt} right-twin checks; "
            f"caught {wc} of {wt} wrong ones ({100.0 * wc / max(wt, 1):.1f}%)"
        )
    for line in wrong_verdicts:
        print("wrong verdict:", line)
    print(
        f"{len(CASES)} cases x {args.variants} variants x {len(MODES)} modes in "
        f"{time.perf_counter() - start:.0f} s"
    )
    if args.markdown:
        args.markdown.write_text(
            "# Catch rate and false alarms on the corpus of user-style models\n\n"
            "Measured with `python tools/corpus_rates.py --variants "
            f"{args.variants} --markdown {args.markdown}`: every case of `tests/corpus.py` at "
            f"{args.variants} drawn sizes and seeds, in both modes.\n\n" + text + "\n"
        )
    return 1 if wrong_verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
