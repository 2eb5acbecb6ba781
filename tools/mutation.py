"""``make mutants``: plant bugs in the harness itself, one at a time, and require the test suite
to catch each.

Every entry below is a real way the judges could be weakened (a tolerance loosened, a rule
switched off, a witness skipped). For each, the repository is copied to a temporary folder, the
bug is applied there, and the tests most likely to catch it run first; when they all pass, the
whole suite runs. A bug is killed when some test fails. The table and the kill rate are printed
(and, with ``--markdown FILE``, written as a Markdown table).

    python tools/mutation.py               # every planted bug, then every threshold mutant
    python tools/mutation.py 3 7           # only bugs 3 and 7 (1-based)
    python tools/mutation.py --thresholds  # only the threshold mutants (tools/thresholds.py)
    python tools/mutation.py --list        # the numbered list, planting nothing

The threshold mutants (every named constant of the verdict x10 and /10, every comparison of
the judging modules flipped at its boundary) are generated from the code by
``tools/thresholds.py`` and numbered after the hand-written bugs; ``tests/test_thresholds.py``
runs first for each, then the tests of the judge its module belongs to (``MODULE_TESTS``; the
whole suite with ``--whole-suite``). A survivor's line in the table carries the argument, from
``thresholds.ARGUED``, that it is equivalent or no weakening. A run of the tests that takes
longer than ``--timeout`` seconds counts as a kill (a mutant that makes the checks run away),
and is marked so in the table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import thresholds  # noqa: E402  (tools/ is not a package)


@dataclass
class Bug:
    """A planted harness bug: ``edits`` are (file, old text, new text), each old text found
    exactly once; ``tests`` are run first."""

    name: str
    edits: Sequence[Tuple[str, str, str]]
    tests: Sequence[str]


POLICY, FD, MODES = (
    "reference/_core/policy.py",
    "reference/_core/fd.py",
    "reference/_checks/modes.py",
)
EVIDENCE = "reference/_core/evidence.py"
PASSES, GRADIENTS = "reference/_checks/passes.py", "reference/_checks/gradients.py"
TWINS = "reference/_checks/twins.py"
TRUST = "reference/_checks/trust.py"
GUARDS, JUDGES = "tests/test_judge_guards.py", "tests/test_judges.py"
FINDINGS, CORPUS = "tests/test_findings.py", "tests/test_corpus.py"
DIAGNOSIS = "reference/_checks/diagnosis.py"
FUNCTION, FUNCTION_TESTS = "reference/_checks/function.py", "tests/test_function.py"
NUMPY, PURITY = "tests/test_numpy_models.py", "reference/_checks/purity.py"
FAST = "tests/test_fast_paths.py"
THRESHOLDS = "tests/test_thresholds.py"
WITNESSES, TAPE = "tests/test_witnesses.py", "reference/_core/tape.py"
STENCILS = "reference/_core/stencils.py"
REFINEMENT = "reference/_core/refinement.py"
PLUGIN = "_gradient_harness_pytest.py"

BUGS: List[Bug] = [
    Bug(
        "tape tolerance x1000",
        [
            (
                POLICY,
                'TAPE_RTOL = {"float64": 1e-10, "float32": 1e-5}',
                'TAPE_RTOL = {"float64": 1e-7, "float32": 1e-2}',
            )
        ],
        [GUARDS],
    ),
    Bug(
        "any value accepted at a kink",
        [
            (
                FD,
                "return np.where(self.kink, inside, smooth) & self.measured",
                "return np.where(self.kink, True, smooth) & self.measured",
            )
        ],
        [GUARDS],
    ),
    Bug(
        "directional mode without bisection",
        [(MODES, "if not np.all(judge_probes(ev).fd_ok_manual):", "if False:")],
        [GUARDS],
    ),
    Bug(
        "float32 overflow and rounding comparison always passing",
        [
            (TWINS, "        if overflow.any():", "        if False:"),
            (TWINS, "        elif dev > tol:", "        elif False:"),
        ],
        [GUARDS],
    ),
    Bug(
        "the CLI matrix exits 0 with 0 fail when a cell fails",
        [
            (
                "reference/_cli.py",
                'failing = [c for c in cells if c.verdict == "FAIL"]',
                "failing = []",
            )
        ],
        ["tests/test_cli.py"],
    ),
    Bug(
        "finite-difference error estimate x1000",
        [
            (
                FD,
                "error = TRUNCATION_SAFETY * np.abs(d2 - d1) + rounding_error(sigma_f, h)",
                "error = 1000.0 * (TRUNCATION_SAFETY * np.abs(d2 - d1) + "
                "rounding_error(sigma_f, h))",
            )
        ],
        [GUARDS],
    ),
    Bug(
        "directional probes 3 -> 1", [(GRADIENTS, "probes: int = 3,", "probes: int = 1,")], [GUARDS]
    ),
    Bug(
        "no scale floor (SCALE_FLOOR = 0)",
        [(POLICY, "SCALE_FLOOR = 1e-2", "SCALE_FLOOR = 0.0")],
        [THRESHOLDS, JUDGES],
    ),
    Bug(
        "scale floor too high (SCALE_FLOOR = 1): small tensors judged on the largest gradient",
        [(POLICY, "SCALE_FLOOR = 1e-2", "SCALE_FLOOR = 1.0")],
        [GUARDS],
    ),
    Bug(
        "no loss-resolution floor (LOSS_ULPS = 0)",
        [(POLICY, "LOSS_ULPS = 256", "LOSS_ULPS = 0")],
        [THRESHOLDS, GUARDS],
    ),
    Bug(
        "kinks never detected (KINK_SPREAD huge)",
        [(FD, "KINK_SPREAD = 4.0", "KINK_SPREAD = 1e6")],
        [JUDGES],
    ),
    Bug(
        "every line taken for a kink",
        [
            (
                FD,
                "return np.nan_to_num(jump > KINK_SPREAD * spread + noise, nan=False)",
                "return np.ones(len(jump), bool)",
            )
        ],
        [JUDGES],
    ),
    Bug(
        "no Richardson extrapolation (central difference at h/2)",
        [(FD, "value = d2 + (d2 - d1) / 3.0", "value = d2")],
        [JUDGES],
    ),
    Bug(
        "the tape overruled without finite differences agreeing with the manual value",
        [
            (
                POLICY,
                "tape_unfaithful = ~tape_ok & fd_ok_m & ~fd_ok_t & ~kink",
                "tape_unfaithful = ~tape_ok & ~fd_ok_t & ~kink",
            )
        ],
        [GUARDS, JUDGES],
    ),
    Bug(
        "finite differences judge the tape's value in place of the manual one",
        [
            (
                POLICY,
                "fd_ok_m = finite & fd.accepts(m, tol)",
                "fd_ok_m = finite & fd.accepts(t, tol)",
            )
        ],
        [GUARDS, JUDGES],
    ),
    Bug(
        "the rounding test excuses everything",
        [
            (
                PASSES,
                "                if moved >= ERRATIC and moved >= _SMOOTH_FACTOR * own:",
                "                if True:",
            )
        ],
        [GUARDS],
    ),
    Bug(
        "the independent forward never runs",
        [(TWINS, "reason = why_not(adapter.model)", 'reason = "skipped"')],
        [JUDGES],
    ),
    Bug(
        "independent forward tolerance x1e10",
        [(TWINS, "FORWARD_RTOL = 1e-9", "FORWARD_RTOL = 10.0")],
        [JUDGES],
    ),
    Bug(
        "the verdict ignores the independent forward",
        [
            (
                "reference/_core/report.py",
                "if self.forward is not None and not self.forward.ok:",
                "if False:",
            )
        ],
        [JUDGES],
    ),
    Bug(
        "finite differences leave a perturbed parameter behind",
        [
            (
                "reference/_core/adapter.py",
                "        finally:\n            self.write(key, original)",
                "        finally:\n            pass",
            )
        ],
        [JUDGES],
    ),
    Bug(
        "directional mode passes the elements past its cap",
        [
            (
                POLICY,
                "        if tape_at_fault:",
                "        if True:",
            )
        ],
        [GUARDS],
    ),
    Bug(
        "a float32 model is never judged through its float64 twin",
        [
            (
                "reference/_core/adapter.py",
                'if self.dtype != tf.float64 and callable(getattr(self.model, "astype", None)):',
                "if False:",
            )
        ],
        [GUARDS, JUDGES],
    ),
    Bug(
        "rounding noise estimate x1e6",
        [
            (
                FD,
                "sigma = np.nan_to_num(np.asarray(q) / QUARTILE_UNIT, nan=0.0)",
                "sigma = 1e6 * np.nan_to_num(np.asarray(q) / QUARTILE_UNIT, nan=0.0)",
            )
        ],
        [GUARDS, JUDGES, FUNCTION_TESTS],
    ),
    Bug(
        "the diagnosis forgets the batch size N",
        [("reference/_checks/diagnosis.py", "    if n_rows and n_rows > 1:\n", "    if False:\n")],
        [JUDGES],
    ),
    Bug(
        "check_derivative's tolerance x1e5",
        [
            (
                "reference/_checks/derivative.py",
                "tol = rtol * np.maximum(",
                "tol = 1e5 * rtol * np.maximum(",
            )
        ],
        ["tests/test_derivative.py"],
    ),
    Bug(
        "snapshots compared to 1e5 x their tolerance",
        [
            (
                "reference/_snapshots.py",
                'out[key] = {"atol": rtol * scale, "rtol": 0.0}',
                'out[key] = {"atol": 1e5 * rtol * scale, "rtol": 0.0}',
            )
        ],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "the fixture ignores --gradcheck-mode",
        [("reference/_plugin.py", '        kwargs.setdefault("mode", self.mode)\n', "")],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "float32 rounding beyond the tape's never noted",
        [(TRUST, "TAPE_DEVIATION_FACTOR = 4.0", "TAPE_DEVIATION_FACTOR = 4e6")],
        [GUARDS, JUDGES],
    ),
    Bug(
        "a random loss or a side effect is judged anyway (no purity check)",
        [
            (
                GRADIENTS,
                "report.impure = found if isinstance(found, str) else None",
                "report.impure = None",
            )
        ],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "any astype result trusted as the float64 twin",
        [(GRADIENTS, "if type(twin.model) is not type(adapter.model):", "if False:")],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "a twin of the model's own type trusted without comparing its gradients",
        [(GRADIENTS, "if not agreement.same_code:", "if False:")],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "batched_loss trusted without the spot check",
        [(GRADIENTS, "problem = batched_problem(twin, seed, f0)", "problem = None")],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "the region test excuses every failing element",
        [
            (
                PASSES,
                "out[k] = mask & (np.abs(ev.manual - tape[k]) <= ev.tape_tol)",
                "out[k] = mask",
            )
        ],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "no region test where several kinks meet",
        [(GRADIENTS, "    region_pass(twin, verdicts, evidence)\n", "")],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "no smaller steps near other kinks",
        [(FD, "REFINE_LEVELS = 3", "REFINE_LEVELS = 0")],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "rounding excused at any size",
        [(POLICY, "ROUNDING_ULPS = 256", "ROUNDING_ULPS = 1e12")],
        [FINDINGS, GUARDS],
    ),
    Bug(
        "the layer diagnosis claims an error flowing down whatever the verdicts",
        [(DIAGNOSIS, "    if flows_down:\n", "    if True:\n")],
        [FINDINGS, JUDGES],
    ),
    Bug(
        "the batch size always from the rows of X",
        [(DIAGNOSIS, "axis, how = _infer_axis(X_shape, y_shape)", 'axis, how = 0, "rows of X"')],
        [FINDINGS, JUDGES],
    ),
    Bug(
        "few-elements counted on the diagnosis's own tolerance",
        [(DIAGNOSIS, "wrong=entry.elements.fail", "wrong=None")],
        [FINDINGS, JUDGES],
    ),
    Bug(
        "finite differences trust the noise pooled over lines that cross kinks",
        [
            (
                STENCILS,
                "    return max(_JITTER_MARGIN * float(",
                "    return 1e300 * max(_JITTER_MARGIN * float(",
            )
        ],
        [FINDINGS, CORPUS],
    ),
    Bug(
        "check_derivative accepts a function that is not elementwise",
        [
            (
                "reference/_checks/derivative.py",
                "    _require_elementwise(fn, name, dtype)\n",
                "",
            )
        ],
        ["tests/test_derivative.py"],
    ),
    Bug(
        "check_function: cotangents of ones (a gradient that ignores dy passes)",
        [
            (
                FUNCTION,
                "C = self._cotangents(self.n_out, p.out_dtype.as_numpy_dtype)",
                "C = np.ones((COTANGENTS, self.n_out))",
            )
        ],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: joint directions never differenced",
        [
            (
                FUNCTION,
                "            entry.probes, entry.probe_lines = self._probes(f, a, C, n_probes, "
                "pairs, t is None)",
                "            entry.probes, entry.probe_lines = None, None",
            )
        ],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: no pairs of kinked coordinates",
        [
            (
                STENCILS,
                "    pairs = list(dict.fromkeys(pairs))[:most]  # the consecutive ones first",
                "    pairs = []",
            )
        ],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: the whole Jacobian never checked",
        [(FUNCTION, "JACOBIAN_MAX = 4096", "JACOBIAN_MAX = 0")],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: the second order never judged",
        [(FUNCTION, "            self._order2_entries(C[0])", "            pass")],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: the tape's rounding allowance x1e6",
        [
            (
                FUNCTION,
                "e.output_scale / e.reach, e.rounding)",
                "e.output_scale / e.reach, 1e6 * e.rounding)",
            )
        ],
        [FUNCTION_TESTS],
    ),
    Bug(
        "check_function: finite differences in the inputs' dtype (float32), not float64",
        [
            (
                "reference/_core/function.py",
                "        if all(t.dtype == tf.float64 for t in out)",
                "        if False and all(t.dtype == tf.float64 for t in out)",
            )
        ],
        [FUNCTION_TESTS],
    ),
    Bug(
        "no tape: a disconnected tape's zeros taken as its gradient",
        [
            (
                "reference/_core/tape.py",
                "    elif all(g is None for g in grads):\n        blind = _DISCONNECTED",
                "    elif False:\n        blind = _DISCONNECTED",
            ),
            (
                "reference/_core/tape.py",
                "        k: None if g is None else np.asarray(g.numpy(), dtype=np.float64)",
                "        k: np.zeros(adapter.shape(k)) if g is None else np.asarray(g.numpy())",
            ),
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: the region test trusts the push without the model's value at a tiny push",
        [
            (
                PASSES,
                "            same[k] = mask & (np.abs(ev.manual - tiny[k]) <= ev.tape_tol)",
                "            same[k] = mask",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: the region test without finite differences inside the region",
        [
            (
                PASSES,
                "            ok = nd.accepts(inside[k].reshape(-1)[idx], "
                "tolerance_at(ev.slack, idx)) & ~nd.kink",
                "            ok = np.ones(idx.size, bool)",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "a disagreeing probe never fails the elements it alone saw",
        [
            (
                POLICY,
                "    return ev.probes is not None and bool(np.any(probe_failures(ev, v)))",
                "    return False",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: elements not differenced one by one pass whatever the probes say",
        [
            (
                POLICY,
                "    if ev.probes is not None and np.all(judge_probes(ev).fd_ok_manual):\n"
                "        unverifiable = unverifiable & fd.measured",
                "    if ev.probes is not None:\n        unverifiable = unverifiable & fd.measured",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: the noise of a small loss taken as ulps of itself",
        [
            (
                MODES,
                "        return fdm.FLOOR_ULPS * self.twin.eps * max(abs(self.f0), 1.0)",
                "        return 0.0",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: the refinement keeps the largest consistent step, its error as it is",
        [
            (
                REFINEMENT,
                "    lines = np.asarray(lines, dtype=np.int64)\n    if lines.size == 0:",
                "    alone = False\n    lines = np.asarray(lines, dtype=np.int64)\n"
                "    if lines.size == 0:",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: the kink test as strict as with a tape",
        [(FD, "ALONE_KINK_SIGMAS = 3.0", "ALONE_KINK_SIGMAS = KINK_SIGMAS")],
        [NUMPY],
    ),
    Bug(
        "no tape: no note where finite differences resolve coarsely",
        [(GRADIENTS, "FD_COARSE = 1e-3", "FD_COARSE = 1e9")],
        [NUMPY],
    ),
    Bug(
        "no tape: the region test without its ladder (the push taken as linear)",
        [
            (
                PASSES,
                "    reach = _region_reach(twin, original, sign, order, tiny, evidence)\n",
                "    reach = _FD_REGION_BASE\n",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "no tape: every failing element taken for hidden kinks",
        [(POLICY, "BEND_FRACTION = 0.5", "BEND_FRACTION = 0.0")],
        [NUMPY],
    ),
    Bug(
        "no tape: hidden kinks never looked for",
        [
            (
                PASSES,
                "        hidden = confounded(gap, bend)\n",
                "        hidden = np.zeros(len(lines), bool)\n",
            )
        ],
        [NUMPY, WITNESSES],
    ),
    Bug(
        "NumPy models: the hand-written gradients kept without a copy",
        [
            (
                "reference/_core/adapter.py",
                'np.array(g.numpy() if hasattr(g, "numpy") else g, dtype=np.float64, copy=True)',
                'np.asarray(g.numpy() if hasattr(g, "numpy") else g, dtype=np.float64)',
            )
        ],
        [NUMPY],
    ),
    Bug(
        "NumPy models: a params property that returns copies accepted",
        [
            (
                "reference/_core/adapter.py",
                "    if len(again) != len(params) or not all(",
                "    if False and not all(",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "NumPy models: a parameter rebound inside gradients() not seen",
        [
            (
                PURITY,
                "    changed = _changes(adapter, before) or _rebound(adapter)\n"
                "    if changed:\n        return (",
                "    changed = _changes(adapter, before)\n    if changed:\n        return (",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "snapshots: non-finite gradients stored and compared",
        [
            (
                "reference/_plugin.py",
                "        if bad:\n            pytest.fail(",
                "        if False:\n            pytest.fail(",
            )
        ],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "snapshots: a stored NaN or inf accepted",
        [
            (
                "reference/_snapshots.py",
                "        if not np.all(np.isfinite(value)):",
                "        if False:",
            )
        ],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "snapshots: a missing snapshot written under CI",
        [("reference/_plugin.py", '"strict": strict or ci,', '"strict": strict,')],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "snapshots: one name taken twice in a test",
        [("reference/_plugin.py", "    if name in claims:", "    if False:")],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "the compiled loss trusted without the spot check",
        [(GRADIENTS, "mismatch = batched_problem(twin, seed, f0)", "mismatch = None")],
        [FAST],
    ),
    Bug(
        "coordinate_losses trusted without the spot check",
        [
            (
                GRADIENTS,
                "problem = coordinate_problem(twin, gathered.samples, gatherer.sampled)",
                "problem = None",
            )
        ],
        [FAST],
    ),
    Bug(
        "suspect lines refined through coordinate_losses (not through batched_loss)",
        [
            (
                STENCILS,
                "    base, idx, steps = _coordinate_plan("
                "adapter, key, indices, exponent, shrink)\n",
                "    base, idx, steps = _coordinate_plan("
                "adapter, key, indices, exponent, shrink)\n"
                "    if adapter.has_coordinates and key != INPUT:\n"
                "        return _by_coordinates(adapter, {key: (base, idx, steps)}, f0)[key]\n",
            )
        ],
        [FAST],
    ),
    Bug(
        "finite differences alone: the larger step never tried",
        [
            (
                MODES,
                "        if ev.tape is not None or nd is None or lines.size == 0:\n",
                "        if True:\n",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "finite differences alone: the larger step kept where it rejects the manual value",
        [
            (
                MODES,
                "        pick = np.flatnonzero(keep)\n",
                "        pick = np.arange(lines.size)\n",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "compiled path: a parameter used other than by its value fed anyway",
        [("reference/_core/compiled.py", "        if other:\n", "        if False:\n")],
        [FAST],
    ),
    Bug(
        "a blind tape counted as a witness (check_function, a NumPy forward)",
        [
            (
                FUNCTION,
                "            if tape is not None and a not in blind:",
                "            if tape is not None:",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "finite differences against manual and tape alike never fail",
        [
            (
                POLICY,
                "    fd_against = against & resolved & ~fd.kink",
                "    fd_against = against & False",
            )
        ],
        [WITNESSES, JUDGES],
    ),
    Bug(
        "an unfaithful tape trusted: a custom gradient is never found in the traced loss",
        [(TAPE, '            found.append("tf.custom_gradient")', "            pass")],
        [WITNESSES, JUDGES],
    ),
    Bug(
        "an excuse granted without its evidence: finite differences against both always confounded",
        [
            (
                PASSES,
                "        moved = None if nudged is None else nudged.moved\n"
                "        excused = confounded(gap, bend, moved) | still",
                "        moved = None if nudged is None else nudged.moved\n"
                "        excused = (gap >= 0) | confounded(gap, bend, moved) | still",
            )
        ],
        [WITNESSES, JUDGES],
    ),
    Bug(
        "a tie's pair never probed: no partners of equal value",
        [
            (
                STENCILS,
                "        partners = np.flatnonzero(values == values[i])",
                "        partners = np.array([i])",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_derivative: the worst point is the first failing one",
        [
            (
                "reference/_checks/derivative.py",
                "    worst = int(np.argmax(np.where(fail, rel, -1.0) if np.any(fail) else rel))",
                "    worst = int(np.argmax(fail)) if np.any(fail) else int(np.argmax(rel))",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "printed errors relative to the manual gradient's own largest value",
        [
            (
                EVIDENCE,
                "        return truth if truth > 0 else (self.scale if self.scale > 0 else 1.0)",
                "        return self.scale if self.scale > 0 else 1.0",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a probe across hidden kinks taken as evidence (the probes' bend never looked at)",
        [
            (
                PASSES,
                "        bend = np.array([subject.bend(k, dirs[p], nd.step[p], ev) for p in "
                "failing])\n",
                "        bend = np.zeros(len(failing))\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_function: a function's own bend never measured (kinks inside the step fail it)",
        [
            (
                "reference/_checks/moves.py",
                "        if deltas is None:  # not one line through the inputs: no evidence",
                "        if True:  # not one line through the inputs: no evidence",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_function: a custom gradient in the forward never named (manual == tape trusted)",
        [
            (
                FUNCTION,
                "        self.report.tape_dependent = dependent\n",
                "        self.report.tape_dependent = dependent = None\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_derivative: the derivative's own bend never measured",
        [
            (
                "reference/_checks/moves.py",
                "        return bend_of(values.get, direction, ev)\n",
                "        return 0.0\n",
            )
        ],
        ["tests/test_derivative.py", WITNESSES],
    ),
    Bug(
        "a probe's rounding never looked at (no nudge along the probes)",
        [
            (
                PASSES,
                "        nudged = subject.moved_probes(k, failing, ev, rng)\n",
                "        nudged = None\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a steady 0 excused in any model, not only where the loss shows no gradient",
        [
            (
                PASSES,
                "    if flat <= 1.0:\n        for k, mask in rest.items():\n",
                "    if True:\n        for k, mask in rest.items():\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "any steady difference excused where the loss shows no gradient, not only a 0",
        [
            (
                PASSES,
                "            zeros = mask & ((manual[k] == 0) | (tape[k] == 0))\n",
                "            zeros = mask\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "the loss's noise floored on the scale of its terms only where no tape witnesses",
        [
            (
                "reference/_checks/modes.py",
                "        return fdm.FLOOR_ULPS * self.twin.eps * max(abs(self.f0), 1.0)\n",
                "        if all(self.tape[k] is not None for k in self.keys):\n"
                "            return 0.0\n"
                "        return fdm.FLOOR_ULPS * self.twin.eps * max(abs(self.f0), 1.0)\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a line along which the loss did not move at all taken as evidence against the tape",
        [
            (
                PASSES,
                "        excused = confounded(gap, bend, moved) | still\n",
                "        excused = confounded(gap, bend, moved)\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "finite differences that accept anything counted as a witness (no element vacuous)",
        [
            (
                EVIDENCE,
                "    out = fd.measured & fd.accepts(m, ev.slack) & wide\n",
                "    out = fd.measured & False\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "an element passed on the tape's word alone where the tape is the user's own",
        [
            (
                PASSES,
                "        if not independent:\n            tape_alone(v)\n",
                "",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "without a tape, an element that finite differences accept anything at is passed",
        [
            (
                POLICY,
                "        unverifiable=unverifiable | unwitnessed | rounded,\n",
                "        unverifiable=unverifiable | rounded,\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "the quantization ops' straight-through gradient taken as TensorFlow's derivative",
        [
            (
                TAPE,
                "        elif node.op in _OVERRIDING_OPS:\n"
                "            found.append(_OVERRIDING_OPS[node.op])\n",
                "        elif node.op in _PY_OPS:\n            found.append(_PY_OPS[node.op])\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "the interval between a kink's one-sided derivatives taken for a missing witness",
        [
            (
                EVIDENCE,
                "        wide = fd.error_bar + ev.slack >= s\n",
                "        wide = np.where(fd.kink, (fd.upper - fd.lower) / 2, 0) + fd.error_bar "
                "+ ev.slack >= s\n",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "check_derivative passes the points no witness could judge",
        [
            (
                "reference/_checks/derivative.py",
                "    return Status.UNVERIFIABLE if np.any(v.unverifiable & keep) else "
                "Status.PASS\n",
                "    return Status.PASS\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a disagreement steady under 1e-6 is never nudged by 1e-3 (a loss rounded in stairs)",
        [("reference/_checks/moves.py", "    if steady.size:\n", "    if False:\n")],
        [WITNESSES],
    ),
    Bug(
        "a disagreement that moves under 1e-3 only as much as the gradient is taken for rounding",
        [
            (
                "reference/_checks/moves.py",
                "moved = np.where(moved >= _SMOOTH_FACTOR * shift, moved, 0.0)",
                "moved = np.where(moved >= 0.0 * shift, moved, 0.0)",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_function judges a float32 computation given float64 inputs to float64's precision",
        [
            (
                "reference/_core/function.py",
                "        if self.fd_dtype == np.float64 and computes_in_float32(",
                "        if False and computes_in_float32(",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_derivative judges a float32 computation to float64's precision",
        [
            (
                "reference/_checks/derivative.py",
                "    if computes_in_float32(lambda xs:",
                "    if False and computes_in_float32(lambda xs:",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "check_gradients judges a float64 model that computes in float32 to float64's precision",
        [(GRADIENTS, "    if twin.computes_in_float32():\n", "    if False:\n")],
        [WITNESSES],
    ),
    Bug(
        "a probe's disagreement within the outputs' rounding at its step taken as evidence",
        [
            (
                FUNCTION,
                "            e.probes.fd_floor = fdm.carried_rounding(",
                "            e.probes.fd_floor = None and fdm.carried_rounding(",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a probe's disagreement excused beyond the outputs' rounding (up to the tensor's scale)",
        [
            (
                POLICY,
                "fd.accepts(probes.manual, probes.slack + floor)",
                "fd.accepts(probes.manual, probes.slack + floor + ev.scale * np.sum(np.abs("
                "ev.probes.directions), axis=1))",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "without a tape, an element rejected by less than the outputs' rounding fails",
        [
            (
                POLICY,
                "        rounded &= fd.accepts(m, ev.slack + ev.fd_floor)",
                "        rounded &= False",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "without a tape, every element finite differences reject taken for rounding",
        [(POLICY, "        rounded &= fd.accepts(m, ev.slack + ev.fd_floor)", "        pass")],
        [WITNESSES],
    ),
    Bug(
        "without a tape, an element excused beyond the outputs' rounding (up to its scale)",
        [
            (
                POLICY,
                "        rounded &= fd.accepts(m, ev.slack + ev.fd_floor)",
                "        rounded &= fd.accepts(m, ev.slack + ev.fd_floor + ev.scale)",
            )
        ],
        [WITNESSES, "tests/test_function.py"],
    ),
    Bug(
        "a tape through tf.stop_gradient trusted as TensorFlow's derivative of the forward",
        [("reference/_core/tape.py", '    "StopGradient": "tf.stop_gradient",\n', "")],
        [WITNESSES],
    ),
    Bug(
        "a flat float32 model's own zeros never looked at (only its float64 twin's 0 excused)",
        [
            (
                PASSES,
                "            if owned is not None and np.any(owned):\n",
                "            if False:\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a flat float32 model's steady difference excused whatever its own float32 value",
        [
            (
                PASSES,
                "            owned = mask & (own[k] == 0) & ~zeros if own is not None else None\n",
                "            owned = mask & ~zeros if own is not None else None\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a tensor with no gradient but rounding measured against its own scale (vacuous)",
        [
            (
                EVIDENCE,
                "    if fd is None or s <= ev.resolution:\n",
                "    if fd is None or s <= 0:\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "finite differences' bound taken as the witness up to a million times the resolution",
        [
            (
                EVIDENCE,
                "    if fd is None or s <= ev.resolution:\n",
                "    if fd is None or s <= 1e6 * ev.resolution:\n",
            )
        ],
        [WITNESSES, "tests/test_numpy_models.py"],
    ),
    Bug(
        "a tape shown unfaithful in a tensor still decides its elements finite differences cannot",
        [(POLICY, " & ~kink & np.any(tape_unfaithful)\n", " & ~kink & False\n")],
        [WITNESSES],
    ),
    Bug(
        "elements finite differences cannot decide taken from them without the tape shown "
        "unfaithful",
        [(POLICY, " & ~kink & np.any(tape_unfaithful)\n", " & ~kink\n")],
        [WITNESSES],
    ),
    Bug(
        "a flat model's tape of exactly 0 never excused (only a manual 0)",
        [
            (
                PASSES,
                "            zeros = mask & ((manual[k] == 0) | (tape[k] == 0))\n",
                "            zeros = mask & (manual[k] == 0)\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "every tf.stop_gradient taken to drop part of the gradient (tf.nn.moments' too)",
        [
            (
                "reference/_core/tape.py",
                "    if top and not inner and not _stops_that_matter(call):\n",
                "    if False:\n",
            )
        ],
        ["tests/test_function_properties.py::test_layer_norm"],
    ),
    Bug(
        "a tf.stop_gradient that drops part of the gradient taken to drop nothing",
        [
            (
                "reference/_core/tape.py",
                "    return not dropped_max <= eps**_STOP_EPS_POWER * kept_max",
                "    return False",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "finite differences alone: an estimate widened by a step across a kink never refined",
        [(REFINEMENT, "            bad |= ~nd.kink & (truncation > wide)", "            pass")],
        [NUMPY],
    ),
    Bug(
        "finite differences alone: the larger step kept whatever its error",
        [(REFINEMENT, "        safe &= error < here.error", "        pass")],
        [NUMPY],
    ),
    Bug(
        "a NumPy loss over tf.Variables given X only as a tensor",
        [(TAPE, "            if include_input or Xt is X:", "            if True:")],
        [NUMPY],
    ),
    Bug(
        "finite differences alone: a wide estimate refined onto a coarse loss's stairs kept",
        [
            (
                REFINEMENT,
                "        nd.fill(lines[wide_only[back]], before.take(back))",
                "        pass",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "a step joins the refinement chain on its smaller neighbour's word alone",
        [
            (
                REFINEMENT,
                "        chain &= consistent(levels[j], levels[j + 1]) & consistent(levels[j], "
                "anchor)",
                "        chain &= consistent(levels[j], levels[j + 1])",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "a refined line's own rounding never measured (the noise pooled over lines for all)",
        [
            (
                REFINEMENT,
                "    widened = _own_rounding(levels)\n",
                "    widened = np.zeros(lines.size, bool)\n",
            )
        ],
        [NUMPY],
    ),
    Bug(
        "a flat model's steady difference never compared with the tape's own rounding",
        [
            (
                PASSES,
                "    rest = {k: m for k, m in rest.items() if np.any(m)}\n",
                "    rest = {k: m for k, m in rest.items() if np.any(m) and flat > 1.0}\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "the plugin's entry point imports the package reference when pytest loads it",
        [(PLUGIN, "import pytest\n", "import pytest\nimport reference._plugin\n")],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "a project's own module named reference taken for the harness",
        [(PLUGIN, "    if not any((Path(f)", "    if False and any((Path(f)")],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "the ini file's rtol wins over the command line's",
        [("reference/_plugin.py", '    rtol = opt("--gradcheck-rtol")\n', "    rtol = None\n")],
        ["tests/test_plugin.py"],
    ),
    Bug(
        "finite differences' steady miss on a saturated softmax taken as evidence (the loss's "
        "rounding where every weight moves never measured)",
        [(MODES, "    if not disputed:\n        return verdicts\n", "    return verdicts\n")],
        [WITNESSES],
    ),
    Bug(
        "the tape called unfaithful by finite differences that reject it within the loss's "
        "rounding",
        [
            (
                POLICY,
                "    beyond_t = True if ev.loss_rounding is None else _beyond_floor(ev, t)\n",
                "    beyond_t = True\n",
            )
        ],
        [WITNESSES],
    ),
    Bug(
        "snapshots: a missing one written and the test passed, as if compared",
        [
            (
                "reference/_plugin.py",
                '            _running().setdefault("written", []).append((name, path))\n'
                "            return path\n",
                "            stored = current\n",
            )
        ],
        ["tests/test_plugin.py"],
    ),
]


def stale() -> List[str]:
    """The planted bugs whose text no longer occurs exactly once in the code."""
    out = []
    for i, bug in enumerate(BUGS, 1):
        for rel, old, _ in bug.edits:
            count = (ROOT / rel).read_text().count(old)
            if count != 1:
                out.append(f"{i}. {bug.name}: found {count} times in {rel}: {old!r}")
    return out


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def _apply(copy: Path, bug: Union[Bug, "thresholds.Planted"]) -> dict:
    """Plant the bug in the copy; returns the files' original texts."""
    if isinstance(bug, thresholds.Planted):
        rel = bug.site.rel
        original = (copy / rel).read_text()
        (copy / rel).write_text(bug.apply(original))
        return {rel: original}
    originals = {}
    for rel, old, new in bug.edits:
        originals.setdefault(rel, (copy / rel).read_text())
        current = (copy / rel).read_text()
        if current.count(old) != 1:
            raise SystemExit(
                f"bug {bug.name!r}: {old!r} occurs {current.count(old)} times in "
                f"{rel}; the planted-bug list is out of date"
            )
        (copy / rel).write_text(current.replace(old, new))
    return originals


def _pytest(copy: Path, targets: Sequence[str], timeout: float) -> Tuple[bool, Optional[str]]:
    """Run the tests in the copy; (killed, first failing test, or "timeout")."""
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
    }
    # The tests that the planted bugs fit the code fail on any planted bug: they prove nothing.
    fits = [
        f"{GUARDS}::test_the_planted_harness_bugs_still_fit_the_code",
        f"{THRESHOLDS}::test_the_threshold_mutants_are_generated_from_the_code",
    ]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "-p", "no:cacheprovider"]
    for test in fits:
        cmd += ["--deselect", test]
    cmd += list(targets)
    try:
        proc = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return True, "timeout"
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", proc.stdout, re.M)
    # The suite's own tests first: a pytester test prints its inner run's failures before them.
    failed = [f for f in failed if f.startswith("tests/")] or failed
    return proc.returncode != 0, (failed[0] if failed else None)


def _check_isolation(copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    where = subprocess.run(
        [sys.executable, "-c", "import reference; print(reference.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not where.startswith(str(copy)):
        raise SystemExit(f"the copy's reference is not the one imported ({where})")


def everything() -> List[Union[Bug, "thresholds.Planted"]]:
    """The hand-written bugs, then the threshold mutants, numbered from 1 in that order."""
    return [*BUGS, *thresholds.generated()]


# The tests of the judges' verdicts, run second for a threshold mutant that the boundary tests
# did not kill (the property suites and the tests of manual_backprop alone come last, with
# --whole-suite: a threshold mutant changes what the judges decide, which these tests pin).
JUDGE_TESTS = [
    THRESHOLDS,
    GUARDS,
    JUDGES,
    FINDINGS,
    NUMPY,
    FAST,
    FUNCTION_TESTS,
    "tests/test_derivative.py",
    CORPUS,
    "tests/test_plugin.py",
    "tests/test_cli.py",
    "tests/test_bad_input.py",
]


def _targets(bug) -> Sequence[str]:
    return [THRESHOLDS] if isinstance(bug, thresholds.Planted) else bug.tests


# For a threshold mutant the boundary tests did not kill: the tests of the judge its module
# belongs to (the whole suite with --whole-suite).
_MODEL_JUDGE = [GUARDS, NUMPY, FINDINGS]
MODULE_TESTS = {
    POLICY: _MODEL_JUDGE + [WITNESSES],
    EVIDENCE: _MODEL_JUDGE + [WITNESSES],
    "reference/_core/verdict.py": _MODEL_JUDGE + [WITNESSES],
    FD: _MODEL_JUDGE,
    STENCILS: _MODEL_JUDGE + [WITNESSES],
    MODES: _MODEL_JUDGE + [WITNESSES],
    PASSES: _MODEL_JUDGE + [WITNESSES],
    "reference/_checks/moves.py": _MODEL_JUDGE + [WITNESSES],
    TWINS: _MODEL_JUDGE,
    TRUST: [FAST, FINDINGS],
    GRADIENTS: _MODEL_JUDGE,
    "reference/_core/report.py": [JUDGES, GUARDS],
    "reference/_core/render.py": [JUDGES, GUARDS],
    "reference/_core/function.py": [FUNCTION_TESTS],
    FUNCTION: [FUNCTION_TESTS, WITNESSES],
    "reference/_checks/derivative.py": ["tests/test_derivative.py"],
    PURITY: [FINDINGS, NUMPY],
    "reference/_snapshots.py": ["tests/test_plugin.py"],
    "reference/_cli.py": ["tests/test_cli.py"],
    "reference/_core/tape.py": [WITNESSES, "tests/test_function_properties.py"],
}


def _second(bug, whole_suite: bool) -> Sequence[str]:
    if isinstance(bug, thresholds.Planted) and not whole_suite:
        return MODULE_TESTS.get(bug.site.rel, JUDGE_TESTS)
    return ["tests"]


def run(
    selected: Sequence[int], timeout: float, quick: bool = False, whole_suite: bool = False
) -> List[Tuple[int, object, bool, str, float]]:
    planted = everything()
    results = []
    with tempfile.TemporaryDirectory(prefix="harness-mutants-") as tmp:
        copy = Path(tmp)
        _copy_repo(copy)
        _check_isolation(copy)
        for i in selected:
            bug = planted[i - 1]
            start = time.perf_counter()
            originals = _apply(copy, bug)
            try:
                killed, by = _pytest(copy, _targets(bug), timeout)
                if not killed and not quick:
                    killed, by = _pytest(copy, _second(bug, whole_suite), timeout)
            finally:
                for rel, text in originals.items():
                    (copy / rel).write_text(text)
            seconds = time.perf_counter() - start
            results.append((i, bug, killed, by or "-", seconds))
            print(
                f"{i:>3}. {'KILLED  ' if killed else 'SURVIVED'} {bug.name} "
                f"({by or 'no test failed'}; {seconds:.0f} s)",
                flush=True,
            )
    return results


def table(results) -> str:
    rows = ["| # | planted harness bug | killed by |", "|---|---|---|"]
    survivors, argued = [], []
    for i, bug, killed, by, _ in results:
        if killed:
            cell = "**timed out** (counted as killed)" if by == "timeout" else by
        else:
            why = _argued(bug)
            cell = f"**survived**: {why}" if why else "**survived**"
            survivors.append(i)
            if why:
                argued.append(i)
        rows.append(f"| {i} | {bug.name.replace('|', '/')} | {cell.replace('|', '/')} |")
    killed = sum(r[2] for r in results)
    rows.append(f"\nkilled {killed} of {len(results)} ({100.0 * killed / len(results):.0f}%)")
    if survivors:
        rows.append(f"survivors: {' '.join(map(str, survivors))}")
        rest = len(results) - len(argued)
        rows.append(
            f"argued equivalent or no weakening: {len(argued)}; killed {killed} of the other "
            f"{rest} ({100.0 * killed / max(rest, 1):.0f}%)"
        )
    return "\n".join(rows)


def _argued(bug) -> Optional[str]:
    """Why a surviving generated mutant moves no verdict (``thresholds.ARGUED``), if argued."""
    return thresholds.ARGUED.get(thresholds.key(bug)) if hasattr(bug, "site") else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bugs", nargs="*", type=int, help="1-based numbers of the bugs to plant")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table here")
    parser.add_argument(
        "--thresholds", action="store_true", help="only the generated threshold mutants"
    )
    parser.add_argument("--list", action="store_true", help="list the bugs, plant nothing")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run only the tests each bug names first (a survivor there may still be killed by "
        "the whole suite): for working on those tests",
    )
    parser.add_argument(
        "--whole-suite",
        action="store_true",
        help="run the whole suite (not only its judge's tests) on a threshold mutant that the "
        "boundary tests did not kill",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one run of the tests may take before it counts as a kill (default 1800)",
    )
    args = parser.parse_args(argv)
    planted = everything()
    if args.list:
        for i, bug in enumerate(planted, 1):
            print(f"{i}. {bug.name}")
        return 0
    if args.bugs:
        selected = args.bugs
    elif args.thresholds:
        selected = list(range(len(BUGS) + 1, len(planted) + 1))
    else:
        selected = list(range(1, len(planted) + 1))
    bad = [i for i in selected if not 1 <= i <= len(planted)]
    if bad:
        parser.error(f"no planted bug numbered {bad}; there are {len(planted)}")
    results = run(selected, args.timeout, args.quick, args.whole_suite)
    text = table(results)
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0 if all(r[2] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
