"""Threshold mutants, generated from the code: every named constant the verdict depends on is
planted times 10 and divided by 10, and every ordering comparison of the judging modules is
flipped at its boundary (``<`` to ``<=``, ``>=`` to ``>``, and back).

Constants are found by reading the modules' syntax trees: module- and class-level assignments
to an UPPER_CASE name whose value is a number, a number expression (``2.0**-20``,
``math.sqrt(70.0)``, ``10 * _BATCHED_MOVE``), a tuple of numbers or a dict of them (each entry
planted on its own). A constant that does not bear on any verdict is left out by name in
``NOT_VERDICT``, with the reason; a name there that no longer exists is reported by ``stale``,
so the list cannot silently drift from the code.

Why not mutmut or cosmic-ray: their number operators add or subtract one (cosmic-ray's
NumberReplacer offsets +1 and -1; mutmut turns n into n + 1), which makes a tolerance of 1e-10
into 1.0000000001 or -0.9999999999: gross breakage that any test catches, not the drift by a
factor of ten these mutants stand for. Their relational operators do replace ``<`` by ``<=``;
the flips here are that operator, restricted to the judging modules and run with the staged
test selection of ``tools/mutation.py`` (the boundary tests first, the whole suite for the
survivors), which a single test command per mutant would lose.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent

# The modules whose named constants and comparisons decide a verdict (a status, a note, an
# exit code, a snapshot's comparison).
JUDGING = (
    "reference/_core/policy.py",
    "reference/_core/evidence.py",
    "reference/_core/verdict.py",
    "reference/_core/fd.py",
    "reference/_core/refinement.py",
    "reference/_core/stencils.py",
    "reference/_core/function.py",
    "reference/_core/report.py",
    "reference/_core/render.py",
    "reference/_checks/modes.py",
    "reference/_checks/passes.py",
    "reference/_checks/moves.py",
    "reference/_checks/twins.py",
    "reference/_checks/trust.py",
    "reference/_checks/gradients.py",
    "reference/_checks/derivative.py",
    "reference/_checks/function.py",
    "reference/_checks/problem.py",
    "reference/_core/lines.py",
    "reference/_core/tape.py",
    "reference/_checks/purity.py",
    "reference/_snapshots.py",
    "reference/_cli.py",
)
# Modules whose constants are read here only to say why none of them is planted.
NOT_JUDGING = {
    "reference/_checks/diagnosis.py": "names the bug in a failure; reads statuses, never sets one",
    "reference/_checks/function_diagnosis.py": (
        "names the bug in a failed function check; reads statuses, never sets one"
    ),
    "reference/_checks/cost.py": (
        "the cost guard and the choice of evaluation path: refuses a check before it runs, or "
        "picks a path that is shown to compute the same loss (trust.py) before it is used"
    ),
    "reference/_checks/steps.py": "the `gradcheck steps` study of step sizes: judges nothing",
    "reference/_catalogue/matrix.py": "what the CLI matrix draws, not how it is judged",
    "reference/_catalogue/strategies.py": "what the strategies draw, not how it is judged",
    "reference/_core/compiled.py": "a cache size",
    "reference/_core/numpy_twin.py": (
        "how deep the float64 copy of a NumPy model is searched for its arrays; whether the "
        "copy is used is judged by trust.twin_agreement"
    ),
}

# Named constants of the judging modules that bear on no verdict, and why.
NOT_VERDICT: Dict[str, str] = {
    "reference/_core/stencils.py:_BUDGET": "memory bound: the same evaluations in other chunks",
    "reference/_core/stencils.py:_MAX_LINES_PER_CALL": (
        "memory bound: the same evaluations in other chunks"
    ),
    "reference/_core/stencils.py:_MAX_ROWS_ONE_CALL": (
        "memory bound: one call or one per tensor, the same evaluations"
    ),
    "reference/_core/function.py:_BUDGET": "memory bound: the same evaluations in other chunks",
    "reference/_checks/trust.py:_DENSE_BUDGET": "memory bound: one call or one per tensor, the "
    "same evaluations",
    "reference/_checks/gradients.py:_MAX_REPR": "how much of the model's repr a report prints",
    "reference/_checks/derivative.py:_LISTED": "how many failing points a report prints",
    "reference/_checks/derivative.py:_SEED": "a seed, not a threshold",
    "reference/_checks/derivative.py:_NOT_ELEMENTWISE_HINT": "a message",
    "reference/_snapshots.py:FORMAT": "the snapshot file format's version",
    "reference/_cli.py:EXIT_OK": "an exit code's value, not a threshold",
    "reference/_cli.py:EXIT_FAIL": "an exit code's value, not a threshold",
    "reference/_cli.py:EXIT_USAGE": "an exit code's value, not a threshold",
    "reference/_cli.py:EXIT_INTERRUPTED": "an exit code's value, not a threshold",
    "reference/_cli.py:_WIDTHS": "column widths of the printed table",
    "reference/_cli.py:_PLOT_FLOOR": "the lowest value a plot of `gradcheck steps` draws",
}
# Functions of the judging modules whose comparisons bear on no verdict, and why (a comparison
# that reads a constant of NOT_VERDICT is left out with it).
NOT_VERDICT_FUNCTIONS: Dict[str, str] = {
    "reference/_checks/problem.py:_input_names": "names the inputs in the report",
    "reference/_checks/derivative.py:DerivativeReport.__str__": "the printed report",
    "reference/_checks/gradients.py:_short": "the model's repr in the report",
    "reference/_core/render.py:summary": "the one-line summary's wording",
}

_ALLOWED_CALLS = {"sqrt"}  # math.sqrt, np.sqrt of numbers


@dataclass(frozen=True)
class Site:
    """One place to plant: ``span`` (start, end offsets into the file's text) of ``old``."""

    rel: str
    line: int
    label: str  # what is planted: "TAPE_RTOL['float32']", "fd.py:412 a <= b"
    start: int
    end: int
    old: str


def _offsets(text: str) -> List[int]:
    starts, pos = [0], 0
    for line in text.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _span(node: ast.AST, starts: List[int]) -> Tuple[int, int]:
    # ast offsets count UTF-8 bytes; the judging modules are ASCII in their code.
    return (
        starts[node.lineno - 1] + node.col_offset,
        starts[node.end_lineno - 1] + node.end_col_offset,
    )


def _numeric(node: ast.AST) -> bool:
    """A number, or an expression of numbers, sqrt calls and other constants."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in _ALLOWED_CALLS and all(_numeric(a) for a in node.args)
    return False


def _is_int(node: ast.AST) -> bool:
    """An integer literal or an expression of integer literals (no division, no floats)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _is_int(node.operand)
    if isinstance(node, ast.BinOp):
        return not isinstance(node.op, ast.Div) and _is_int(node.left) and _is_int(node.right)
    return False


def _constant_name(name: str) -> bool:
    core = name.lstrip("_")
    return bool(core) and core.replace("_", "").isalnum() and core.upper() == core


def _assignments(tree: ast.Module) -> Iterator[Tuple[str, ast.AST]]:
    """(name, value) of module-level and class-level constant assignments; a class's are named
    ``Class.NAME``."""

    def scan(body, prefix):
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                yield from scan(stmt.body, prefix + stmt.name + ".")
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name) and _constant_name(target.id):
                    yield prefix + target.id, stmt.value
                elif (
                    isinstance(target, ast.Tuple)
                    and isinstance(stmt.value, ast.Tuple)
                    and len(target.elts) == len(stmt.value.elts)
                ):
                    for t, v in zip(target.elts, stmt.value.elts):
                        if isinstance(t, ast.Name) and _constant_name(t.id):
                            yield prefix + t.id, v
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if stmt.value is not None and _constant_name(stmt.target.id):
                    yield prefix + stmt.target.id, stmt.value

    yield from scan(tree.body, "")


def constant_sites(rel: str) -> Iterator[Site]:
    """The plantable constants of one module: (label, the value's span)."""
    text = (ROOT / rel).read_text()
    starts = _offsets(text)
    for name, value in _assignments(ast.parse(text)):
        if f"{rel}:{name}" in NOT_VERDICT:
            continue
        if isinstance(value, ast.Dict):
            for key, item in zip(value.keys, value.values):
                if isinstance(key, ast.Constant) and _numeric(item):
                    a, b = _span(item, starts)
                    yield Site(rel, item.lineno, f"{name}[{key.value!r}]", a, b, text[a:b])
        elif (
            isinstance(value, ast.Tuple)
            and value.elts
            and all(_numeric(e) or isinstance(e, ast.Tuple) for e in value.elts)
        ):
            a, b = _span(value, starts)
            yield Site(rel, value.lineno, name, a, b, text[a:b])
        elif _numeric(value):
            a, b = _span(value, starts)
            yield Site(rel, value.lineno, name, a, b, text[a:b])


_FLIP = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def comparison_sites(rel: str) -> Iterator[Tuple[Site, str]]:
    """Each ordering operator of one module that can bear on a verdict: its site (the
    operator's text) and the flip."""
    text = (ROOT / rel).read_text()
    starts = _offsets(text)
    skipped = {key.split(":")[1] for key in NOT_VERDICT if key.startswith(rel + ":")}

    def visit(node, scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = f"{scope}.{node.name}" if scope else node.name
            if f"{rel}:{scope}" in NOT_VERDICT_FUNCTIONS:
                return
        if isinstance(node, ast.Compare):
            yield from _flips(node, text, starts, rel, skipped)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, scope)

    yield from visit(ast.parse(text), "")


def _flips(node: ast.Compare, text: str, starts, rel: str, skipped) -> Iterator[Tuple[Site, str]]:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    if names & skipped:
        return
    a0, b0 = _span(node, starts)
    expr = " ".join(text[a0:b0].split())
    left = node.left
    for op, right in zip(node.ops, node.comparators):
        if type(op) in _FLIP:
            a = starts[left.end_lineno - 1] + left.end_col_offset
            b = starts[right.lineno - 1] + right.col_offset
            symbol = _SYMBOL[type(op)]
            at = a + text[a:b].index(symbol)
            yield Site(rel, node.lineno, expr, at, at + len(symbol), symbol), _FLIP[type(op)]
        left = right


def _scaled(site: Site, node_is_int: bool, up: bool) -> str:
    """The constant's text times 10 (``up``) or divided by 10."""
    if site.old.startswith("(") and site.old.endswith(")") and "," in site.old:
        return _scaled_tuple(site.old, up)
    if up:
        return f"({site.old}) * 10"
    return f"int(({site.old}) / 10)" if node_is_int else f"({site.old}) / 10"


def _scaled_tuple(text: str, up: bool) -> str:
    """Every number of a tuple (of tuples) of numbers scaled together."""
    value = ast.literal_eval(text)

    def scale(v):
        if isinstance(v, tuple):
            return tuple(scale(x) for x in v)
        if isinstance(v, int):
            return v * 10 if up else int(v / 10)
        return v * 10.0 if up else v / 10.0

    return repr(scale(value))


@dataclass(frozen=True)
class Planted:
    """A generated mutant: one replacement in one file, with a name and a kind."""

    kind: str  # "x10", "/10" or "flip"
    site: Site
    new: str

    @property
    def name(self) -> str:
        where = f"{Path(self.site.rel).name}:{self.site.line}"
        if self.kind == "flip":
            return f"{where} `{self.site.label}`: {self.site.old} -> {self.new}"
        return f"{where} {self.site.label} {self.kind}"

    def apply(self, text: str) -> str:
        s = self.site
        if text[s.start : s.end] != s.old:
            raise ValueError(f"{self.name}: the code changed since the mutants were generated")
        return text[: s.start] + self.new + text[s.end :]


def key(p: Planted) -> str:
    """A mutant's name without its line number (which moves as the code around it changes):
    the key of ``ARGUED``."""
    return f"{Path(p.site.rel).name} {p.site.label} {p.kind}"


# The survivors argued equivalent (or no weakening), one line each: why no test can tell them
# from the code as it is. Keyed by ``key``.
_POSITIVE = (
    "equal only at exact equality of a measured float with a bound that is strictly positive here"
)
ARGUED: Dict[str, str] = {
    "fd.py jump > KINK_SPREAD * spread + noise flip": (
        f"{_POSITIVE} (the noise term is 10 sigma over the step, sigma at least 4 ulps of the loss)"
    ),
    "stencils.py values.size < 2 flip": (
        "16 losses are drawn a few ulps from a point where the loss is finite; the two differ "
        "only when exactly 2 of them are finite"
    ),
    "fd.py np.abs(candidate - self.value) <= self.error + slack flip": (
        f"{_POSITIVE} (an error estimate holds 6 sigma of a noise of at least 4 ulps of the loss)"
    ),
    "fd.py candidate >= self.lower - self.kink_error - slack flip": (
        f"{_POSITIVE} (a kink's error holds 6 sigma of the noise)"
    ),
    "fd.py candidate <= self.upper + self.kink_error + slack flip": (
        f"{_POSITIVE} (a kink's error holds 6 sigma of the noise)"
    ),
    "fd.py np.abs(a.value - b.value) <= a.error + b.error flip": (
        f"{_POSITIVE} (two error estimates, each with 6 sigma of the noise)"
    ),
    "fd.py np.abs(a.lower - b.lower) <= slack flip": f"{_POSITIVE} (two kinks' errors)",
    "fd.py np.abs(a.upper - b.upper) <= slack flip": f"{_POSITIVE} (two kinks' errors)",
    "refinement.py np.abs(manual - tape) <= (slack if apart is None else apart) flip": (
        "where manual equals the tape and the tolerance is 0 (every gradient 0), the line is "
        "only differenced again at smaller steps, which agree: no verdict changes"
    ),
    "function.py gap <= bound flip": f"{_POSITIVE} (64 ulps of the outputs, at least 1e-300)",
    "function.py np.abs(at_point) <= max(bound, 1e-300) flip": (
        f"{_POSITIVE} (at least 1e-300; a move by 0 changes nothing, exactly)"
    ),
    "report.py self.rel_error <= self.tolerance flip": (
        f"{_POSITIVE} (64 ulps of 1 + the largest output, at least)"
    ),
    "passes.py gaps[k] <= evidence[k].resolution flip": f"{_POSITIVE} (256 ulps of the loss)",
    "passes.py gaps[k] <= bounds[k] flip": f"{_POSITIVE} (256 ulps of the loss at least)",
    "passes.py flat <= 1.0 flip": (
        f"{_POSITIVE} (a ratio of measured gradients to a resolution of 256 ulps of the loss)"
    ),
    "passes.py ev.scale > 0 flip": (
        "a scale of 0 means every gradient 0, where manual and tape agree exactly and nothing is "
        "undecided: the line is never reached"
    ),
    "passes.py moved >= ERRATIC flip": f"{_POSITIVE} (0.25)",
    "policy.py np.asarray(moved) >= ERRATIC flip": f"{_POSITIVE} (0.25)",
    "evidence.py s <= ev.resolution flip": (
        "equal only at exact equality of a tensor's scale (its largest gradient, or the floor) "
        "with the resolution (256 ulps of the loss over the parameter's magnitude, always above "
        "0): two floats computed from unrelated values"
    ),
    "evidence.py fd.error_bar + ev.slack >= s flip": (
        "equal only at exact equality of a measured error bar plus slack with the tensor's "
        "scale: no test or corpus model lands on it"
    ),
    "evidence.py nd.error_bar + probes.slack >= span flip": (
        "equal only at exact equality of a probe's measured error bar plus slack with the scale "
        "carried along its direction: no test or corpus model lands on it"
    ),
    "passes.py moved >= _SMOOTH_FACTOR * own flip": (
        "equal only when both are 0 (then the other condition, moved >= 0.25, fails) or at "
        "exact equality of two measured floats"
    ),
    "moves.py moved >= ERRATIC flip": f"{_POSITIVE} (0.25)",
    "moves.py again >= ERRATIC flip": f"{_POSITIVE} (0.25)",
    "moves.py moved >= _SMOOTH_FACTOR * shift flip": (
        "equal only when both are 0 (then the other condition, moved >= 0.25, fails) or at "
        "exact equality of two measured floats"
    ),
    "passes.py count > best_count flip": (
        "two pushes that match as many failing elements: whichever is kept, the same number of "
        "elements stays failing, and the tensor fails either way unless they match the same set"
    ),
    "passes.py np.abs(ev.manual - tiny[k]) <= ev.tape_tol flip": (
        f"{_POSITIVE} (the region test runs only on failing elements, so some gradient is not 0)"
    ),
    "passes.py nd.error <= _FD_REGION_RESOLUTION * scale flip": (
        f"{_POSITIVE} (the region test runs only on failing elements, so some gradient is not 0)"
    ),
    "passes.py off <= evidence[k].tape_tol + _LADDER_SLACK * np.abs(d) / 4.0 flip": (
        f"{_POSITIVE} (the tape tolerance of a tensor with a failing element)"
    ),
    "passes.py np.abs(ev.manual - tape[k]) <= ev.tape_tol flip": (
        f"{_POSITIVE} (the tape tolerance of a tensor with a failing element)"
    ),
    "policy.py np.asarray(bend) >= BEND_FRACTION * np.asarray(gap) flip": (
        f"{_POSITIVE} (the element fails, so manual and finite differences differ)"
    ),
    "twins.py dev <= tol flip": f"{_POSITIVE} (the float32 tolerance, 1e-5 at least)",
    "twins.py dev > tol flip": f"{_POSITIVE} (the float32 tolerance, 1e-5 at least)",
    "trust.py self.deviation[k] <= self.tolerance[k] flip": (
        f"{_POSITIVE} (256 ulps of the loss at least)"
    ),
    "trust.py np.abs(batched - eager) <= tol flip": f"{_POSITIVE} (1024 ulps of at least 1)",
    "trust.py np.abs(got - dense) <= tol flip": f"{_POSITIVE} (1024 ulps of at least 1)",
    "gradients.py resolution <= FD_COARSE flip": f"{_POSITIVE} (1e-3)",
    "function.py gap > tol flip": f"{_POSITIVE} (at least 1e-300 x rtol)",
    "purity.py spread > LOSS_REPEAT_ULPS * adapter.eps * max(abs(losses[0]), "
    "np.finfo(float).tiny) flip": (
        f"{_POSITIVE} (16 ulps of the loss, or of the smallest normal float)"
    ),
    '_snapshots.py diff <= limits[key]["atol"] flip': (
        f"{_POSITIVE} (TAPE_RTOL of the stored tensor's largest gradient, or of 1)"
    ),
    "_snapshots.py abs(float(current[LOSS_KEY]) - float(stored[LOSS_KEY])) > "
    'limits[LOSS_KEY]["atol"] flip': f"{_POSITIVE} (TAPE_RTOL of the loss, at least tiny)",
    "modes.py len(leaves) < self.MAX_ELEMENTS flip": (
        "no weakening: at exactly 256 leaves bisection may add one more block, so more "
        "elements are differenced one by one"
    ),
    "modes.py idx.size <= self.LEAF flip": (
        "a block of exactly 16 elements is halved once more before its elements are "
        "differenced: the elements of the halves that still disagree are differenced, as they "
        "would have been"
    ),
    "refinement.py truncation > wide flip": (
        f"{_POSITIVE} (REFINE_WIDE of the tensor's scale, or of 1, times the probe's span)"
    ),
    "refinement.py excess > 0 flip": (
        "equal only where a line's own noise equals the noise its error was computed with "
        "exactly, or is unknown (counted as no excess): the error is widened by 0 and the "
        "default step's estimate written back as it was"
    ),
    "refinement.py np.where(smaller.kink, kink_error, error) < anchor.error_bar flip": (
        "equal only at exact equality of two measured error bars, or where both are infinite "
        "(an anchor that accepts everything replaced by another that does)"
    ),
    "refinement.py error < here.error flip": (
        "equal only at exact equality of two measured error bars, where the two estimates "
        "agree within that bar: either kept accepts within the same width"
    ),
    "tape.py dropped_max <= eps**_STOP_EPS_POWER * kept_max flip": (
        f"{_POSITIVE} (a power of eps times the tape's largest gradient), or where both are 0: "
        "a stop that drops nothing from a loss whose gradient is 0, where nothing disagrees and "
        "the tape's independence is never asked"
    ),
    "tape.py gap <= WOBBLE_FACTOR * w flip": (
        f"{_POSITIVE} (four times the tape's own measured rounding), or where both are 0: a "
        "gap of 0 is no suspect"
    ),
    "tape.py np.maximum(gap, w) <= bounds[k] flip": (
        f"{_POSITIVE} (the rounding bound, 256 ulps of the loss at least)"
    ),
    "tape.py w > 0 flip": (
        "the ratio is only printed; where the tape's rounding is 0 the gap must be 0 to be "
        "excused, and a gap of 0 is no suspect"
    ),
    "problem.py len(self.variables) > 4 flip": (
        "no verdict: whether a note's list of the variables fn reads ends with ', ...' at "
        "exactly four of them"
    ),
    # Constants: a tenfold drift that moves no verdict, and why.
    "tape.py _RESCALES /10": (
        "0.3, 0.07, 0.7 and 0.03 are no powers of two either: every value of the backward pass "
        "is scaled and rounds anew, and the rounding sampled is the same"
    ),
    "tape.py _RESCALES x10": "as _RESCALES /10: 30, 7, 70 and 3 are no powers of two",
    "policy.py REFINE_WIDE /10": (
        "no weakening: more lines are differenced again with smaller steps, whose estimate is "
        "kept only where it agrees with the default step's (a sharper bar within the old one)"
    ),
    "fd.py ALONE_KINK_SIGMAS /10": (
        "where finite differences judge alone a jump called a kink only widens what they accept "
        "by the noise (the one-sided derivatives stay measured); no wrong element found that it "
        "admits (16 elements off by 2.5x their error: the same fail)"
    ),
    "fd.py _SQRT70 /10": (
        "raises the pooled noise tenfold; the smaller of it and the noise measured directly is "
        "used, and the pooled one is the smaller only where it is inflated by no more than "
        "that measure (no loss found whose lines are quieter than a tenth of its direct noise)"
    ),
    "fd.py _Q25_ABS_NORMAL /10": "as _SQRT70 /10: it divides the same pooled estimate",
    "stencils.py _JITTER_ULPS /10": (
        "the direct noise is the spread of the loss a few ulps from the point, which is its "
        "rounding: moving each parameter by 0.4 ulps (as a standard deviation; most move by one "
        "ulp or more) measures the same spread"
    ),
    "stencils.py _JITTER_ULPS x10": (
        "moving each parameter by 40 ulps measures the same rounding spread; the gradient's own "
        "share, |g| |theta| 40 eps, stays below it"
    ),
    "stencils.py _UNIFORM_SPAN /10": "as _JITTER_ULPS /10: it scales the same move",
    "stencils.py _UNIFORM_SPAN x10": "as _JITTER_ULPS x10: it scales the same move",
    "stencils.py _JITTER_SAMPLES x10": (
        "no weakening: 160 samples measure the same spread as 16, more precisely"
    ),
    "stencils.py _SPREAD_LINES x10": (
        "no weakening: 40 lines through every weight measure the same rounding of the loss as "
        "4, more precisely"
    ),
    "stencils.py _JITTER_MARGIN x10": (
        "the direct noise bounds the pooled one where lines crossing kinks inflate it (4e7 "
        "times in the corpus case); at 20x instead of 2x it bounds every such case found"
    ),
    "modes.py DirectionalMode.MAX_ELEMENTS x10": (
        "no weakening: up to 2560 elements a tensor differenced one by one instead of 256"
    ),
    "modes.py DirectionalMode.LEAF /10": (
        "bisection goes down to single elements instead of blocks of 16: more probe "
        "evaluations, the same elements differenced"
    ),
    "modes.py DirectionalMode.LEAF x10": (
        "no weakening: blocks of up to 160 elements are differenced whole instead of halved"
    ),
    "passes.py NUDGE /10": (
        "a systematic difference moves by about a tenth of a millionth of itself, rounding is "
        "still drawn anew (the weights still move by an ulp or more in float64 and, mostly, in "
        "float32): the same verdicts"
    ),
    "passes.py NUDGE x10": (
        "a systematic difference moves by about 1e-5 of itself, far below a quarter; rounding "
        "is drawn anew as under 1e-6"
    ),
    "passes.py NUDGES x10": (
        "no weakening shown: 40 nudges instead of 4; a systematic difference moves by about "
        "1e-6 of itself under every one of them"
    ),
    "passes.py _REGION_LARGEST /10": (
        "pushes ten times smaller (the last 2^-63) still push each unit at its kink off it and "
        "move no gradient measurably"
    ),
    "passes.py _REGION_LARGEST x10": (
        "pushes ten times larger (the last 2^-57) still move no gradient measurably (1e-17 of "
        "its curvature) and push each unit at its kink off it"
    ),
    "passes.py _LADDER x10": (
        "no weakening: 126 more pushes below 2^-40, where the gradient's change from the tiny "
        "push's is far below the tape tolerance: every one agrees, and the reach is the same"
    ),
    "derivative.py _PROBE_PICKS x10": (
        "no weakening: every element of the probe's inputs (20 and 8) is moved instead of 4 of them"
    ),
    "derivative.py _PROBE_STEPS x10": (
        "moves of +-10 make the moved element the largest or the smallest of inputs in "
        "[0.2, 0.9], as moves of +-1 do, and move its own output clearly: the same couplings show"
    ),
    "passes.py _LADDER_SLACK /10": (
        "stricter only: a gradient bent by the loss's own curvature ends the ladder sooner, and "
        "the finite differences at the smaller reach must still resolve 1e-6 (a right model may "
        "go unverifiable; a wrong one never passes)"
    ),
    "passes.py _HIDDEN_KINKS_MAX /10": (
        "stricter only: 6 failing lines per tensor looked at for hidden kinks instead of 64; "
        "the others stay failed"
    ),
    "passes.py _HIDDEN_KINKS_MAX x10": (
        "no weakening: up to 640 lines looked at, each excused only by its own bend (the model's "
        "own gradient jumping within the step by half the disagreement)"
    ),
    "passes.py _REGION_RATIO x10": (
        "pushes growing 640 times per tensor still end at 2^-60 and push each layer's units "
        "off their kinks further than the layer below moves them"
    ),
    "trust.py _BATCHED_POINTS x10": (
        "no weakening: batched_loss compared at 20 points around the point instead of 2"
    ),
    "trust.py _BATCHED_MOVE x10": (
        "no weakening: the points compared lie 1e-1 away instead of 1e-2, where a term "
        "batched_loss leaves out shows at least as much"
    ),
    "trust.py _COORDINATE_SAMPLES x10": (
        "no weakening: coordinate_losses compared at 80 elements of each parameter instead of 8"
    ),
    "trust.py _COORDINATE_MOVE /10": (
        "the moved elements move by 1e-2 instead of 1e-1: a coordinate_losses that differs from "
        "batched_loss differs at either move, and every line that decides anything is "
        "differenced again through batched_loss"
    ),
    "trust.py _COORDINATE_MOVE x10": "no weakening: the moves are larger, as _BATCHED_MOVE x10",
    "derivative.py _RANDOM_POINTS x10": (
        "no weakening: 640 random points instead of 64, the first 64 the same"
    ),
    "function.py COTANGENTS x10": "no weakening: 30 random cotangents and tangents instead of 3",
    "function.py KINK_PAIRS x10": "no weakening: up to 640 pairs of kinked coordinates",
    "function.py PROBES_FULL x10": "no weakening: 20 joint directions per input in full mode",
    "function.py PROBES_FULL /10": (
        "in full mode every element is differenced one by one, and a random joint direction "
        "through a kink judges nothing (it crosses the kink); the pairs of kinked coordinates, "
        "which do judge there, remain"
    ),
    "function.py MAX_ELEMENTS x10": (
        "no weakening: up to 2560 elements an entry differenced one by one in directional mode"
    ),
}


def generated(modules: Sequence[str] = JUDGING) -> List[Planted]:
    """Every threshold mutant of the judging modules, in file and line order."""
    out = []
    for rel in modules:
        text = (ROOT / rel).read_text()
        int_spans = set()
        tree = ast.parse(text)
        starts = _offsets(text)
        for _, value in _assignments(tree):
            if _is_int(value):
                int_spans.add(_span(value, starts))
        sites = list(constant_sites(rel))
        for site in sites:
            is_int = (site.start, site.end) in int_spans
            for up in (True, False):
                out.append(Planted("x10" if up else "/10", site, _scaled(site, is_int, up)))
        for site, flipped in comparison_sites(rel):
            out.append(Planted("flip", site, flipped))
    out.sort(key=lambda p: (JUDGING.index(p.site.rel), p.site.start, p.kind))
    return out


def _scopes(tree: ast.Module) -> set:
    out = set()

    def visit(node, scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = f"{scope}.{node.name}" if scope else node.name
            out.add(scope)
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, "")
    return out


def stale() -> List[str]:
    """Names in NOT_VERDICT, NOT_VERDICT_FUNCTIONS, NOT_JUDGING and ARGUED that no longer
    exist."""
    out = []
    for where in NOT_VERDICT_FUNCTIONS:
        rel, name = where.split(":")
        path = ROOT / rel
        if not path.exists() or name not in _scopes(ast.parse(path.read_text())):
            out.append(f"{where}: no such function")
    for where in NOT_VERDICT:
        rel, name = where.split(":")
        path = ROOT / rel
        if not path.exists():
            out.append(f"{where}: no such module")
            continue
        names = {n for n, _ in _assignments(ast.parse(path.read_text()))}
        if name not in names:
            out.append(f"{where}: no such constant")
    out.extend(f"{rel}: no such module" for rel in NOT_JUDGING if not (ROOT / rel).exists())
    keys = {key(p) for p in generated()}
    out.extend(f"ARGUED: no mutant {k!r}" for k in ARGUED if k not in keys)
    return out


def unlisted() -> List[str]:
    """Modules of the package that hold constants and are in neither list (so that a new
    module's thresholds are not left out by accident)."""
    out = []
    for path in sorted((ROOT / "reference").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in JUDGING or rel in NOT_JUDGING:
            continue
        tree = ast.parse(path.read_text())
        numeric = [n for n, v in _assignments(tree) if _numeric(v)]
        if numeric:
            out.append(f"{rel}: {', '.join(numeric)}")
    return out


def describe(planted: Optional[Sequence[Planted]] = None) -> str:
    planted = generated() if planted is None else planted
    return "\n".join(f"{i}. {p.name}" for i, p in enumerate(planted, 1))


if __name__ == "__main__":
    print(describe())
    for line in stale() + unlisted():
        print("!", line)
