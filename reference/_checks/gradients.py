"""check_gradients and assert_gradients_match: the evidence gathered, judged, and passed over.

The pipeline: the model's gradients and the tape's; a mode (full or directional) gathers the
finite-difference evidence; the policy judges each element; the rounding pass decides what only
the tape could separate; the policy assembles each tensor's verdict; then the independent
forward, the diagnosis and the float32 comparison each run as a pass of their own.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from .._core import validate
from .._core.adapter import INPUT, Adapter, ModelError, guarded
from .._core.compiled import NotCompiled, cached, compiled_loss, forget
from .._core.numpy_twin import HOW as NUMPY_TWIN
from .._core.policy import (
    SCALE_FLOOR,
    TAPE_RTOL,
    classify,
    floors,
    magnitude,
    resolutions,
    vacuous,
)
from .._core.report import GradientMismatch, GradientReport, Note, NoteCode
from .._core.tape import tape_witness
from .._core.validate import InputTypeError, InputValueError, short_input_errors
from .._core.verdict import assemble
from .cost import MAX_SECONDS, evaluations, too_slow, worth_compiling
from .diagnosis import diagnosis_pass, problem_sizes
from .modes import MODES, DirectionalMode, FullMode, Gathered, with_rounding_floor
from .moves import ModelMoves
from .passes import (
    fd_against_pass,
    hidden_kinks_pass,
    probe_bends_pass,
    region_pass,
    rounding_pass,
    tape_independence,
)
from .purity import Point, purity_problem
from .trust import batched_problem, coordinate_problem, coordinate_samples, twin_agreement
from .twins import float32_pass, forward_pass

__all__ = ["check_gradients", "assert_gradients_match", "MODES"]

# The longest model repr a report carries.
_MAX_REPR = 300


def _rtol_for(dtype_name: str, rtol) -> float:
    """The tolerance for a model of ``dtype_name``: ``rtol`` (a number for the model's own dtype,
    or a dict dtype name -> number), else ``TAPE_RTOL``."""
    if isinstance(rtol, dict):
        unknown = set(rtol) - set(TAPE_RTOL)
        if unknown:
            raise InputValueError(
                f"rtol's keys must be dtype names from {sorted(TAPE_RTOL)}; got "
                f"{sorted(map(repr, unknown))}."
            )
        for key, value in rtol.items():
            validate.rtol(value, f"rtol[{key!r}]")
        rtol = rtol.get(dtype_name)
    if rtol is not None:
        return validate.rtol(rtol)
    if dtype_name not in TAPE_RTOL:
        raise InputValueError(
            f"the model's dtype {dtype_name} has no tolerance; the harness checks "
            f"{sorted(TAPE_RTOL)} models."
        )
    return TAPE_RTOL[dtype_name]


@short_input_errors
def check_gradients(
    model,
    X,
    y,
    *,
    mode: str = "full",
    rtol=None,
    probes: int = 3,
    seed: int = 0,
    include_input: Optional[bool] = None,
    independent: bool = True,
    max_seconds: Optional[float] = MAX_SECONDS,
    progress: Optional[Callable[[int, int], None]] = None,
) -> GradientReport:
    """Check a model's hand-written gradients against the tape, finite differences and (for
    catalogue models) an independent forward.

    Args:
      model: any object with the model protocol (``params``, ``loss(X, y)``,
        ``gradients(X, y)``; see :class:`reference.GradientModel`).
      X, y: the batch to check on.
      mode: ``"full"`` differences every element; ``"directional"`` uses ``probes`` random
        directions per tensor and differences elements only where something disagrees.
      rtol: the manual-vs-tape tolerance, a positive number (for the model's own dtype) or
        ``{"float32": ..., "float64": ...}``; default ``TAPE_RTOL``.
      probes: random directions per tensor in directional mode (an integer >= 1).
      seed: seeds the probes and the rounding test (an integer >= 0).
      include_input: check ``dL/dX`` too (default: when the model has ``input_gradient``).
      independent: run the independent forward when the model can be rebuilt.
      max_seconds: a full check estimated (loss evaluations x one timed evaluation) to take
        longer is refused with a ``ValueError`` that advises directional mode; ``None`` runs it
        whatever it costs.
      progress: called as ``progress(done, total)`` with the loss evaluations made so far and
        the number expected (``total`` grows if the check needs more).

    First the model is asked the same things twice: a loss that changes between evaluations at
    the same parameters, or a loss or ``gradients()`` that changes the parameters, makes the
    report not ok (``report.impure``) and nothing is judged.

    A float32 model whose ``astype("float64")`` returns an object of its own type whose
    gradients agree with the float32 ones to float32 rounding is judged through that twin: the
    same code in float64 must match the tape and finite differences there, which is where the
    math is right or wrong; values finite in float64 only are an overflow (a failure). Any other
    float32 model is judged as it is, against its own float32 tape, and the report says why.

    Returns a :class:`GradientReport`; the model's parameters are left bit-identical.
    """
    mode = validate.choice(mode, MODES, "mode")
    probes = validate.probes(probes)
    seed = validate.seed(seed)
    if max_seconds is not None:
        max_seconds = validate.positive_number(max_seconds, "max_seconds")
    if progress is not None and not callable(progress):
        raise InputTypeError(
            f"progress must be callable as progress(done, total); got {progress!r}."
        )
    budget = _Budget(mode, probes, max_seconds, progress)
    adapter = Adapter(model, X, y, include_input=include_input)
    own_rtol = _rtol_for(adapter.dtype.name, rtol)
    gatherer = FullMode() if mode == "full" else DirectionalMode(probes, seed)
    report = GradientReport(mode, adapter.dtype.name, adapter.dtype.name, model=_short(model))
    if not getattr(model, "param_names", None):
        report.notes.append(
            "the model has no param_names: its tensors are named param0, param1, ... in the "
            "order of model.params (give it param_names = ['W1', 'b1', ...] to name them)"
        )
    before = adapter.snapshot()
    try:
        found = purity_problem(adapter)
        report.impure = found if isinstance(found, str) else None
        if report.impure is None:
            point = found if isinstance(found, Point) else None
            _judge(report, adapter, gatherer, own_rtol, rtol, seed, independent, budget, point)
            budget.finish()
    except ModelError as exc:
        report.error = str(exc)
        report.cause = exc.__cause__
    finally:
        adapter.restore(before)
    return report


class _Budget:
    """The cost guard and the progress callback of one check (see ``cost``)."""

    def __init__(self, mode, probes, max_seconds, progress):
        self.mode, self.probes, self.max_seconds, self.progress = (
            mode,
            probes,
            max_seconds,
            progress,
        )
        self.done = self.total = 0  # loss evaluations made, and expected

    def apply(self, twin: Adapter) -> None:
        """Refuse the check when it would take too long; count its evaluations for progress."""
        full = self.mode == "full"
        if not (self.progress or (full and self.max_seconds is not None)):
            return
        keys = list(twin.keys)
        slow = None
        if full and self.max_seconds is not None:
            slow = too_slow(twin, keys, self.probes, self.max_seconds)
        if slow is not None:
            raise InputValueError(
                f"a full check of this model would take {slow.text()}, more than max_seconds="
                f"{self.max_seconds:g}; use mode='directional' (random probes per tensor, "
                f"seconds even for millions of parameters), or pass max_seconds=None to run it "
                f"anyway."
            )
        if self.progress is not None:
            self.total = evaluations(twin, keys, full, self.probes)

            def counted(count):
                self.done += count
                self.total = max(self.total, self.done)
                self.progress(self.done, self.total)

            twin.on_evaluated = counted

    def finish(self) -> None:
        """The last call: done == total (the estimate was an estimate)."""
        if self.progress is not None and self.done:
            self.progress(self.done, self.done)


def _judge(report, adapter, gatherer, own_rtol, rtol, seed, independent, budget, point) -> None:
    """The verdict on the model, through its float64 twin when the twin is the same code; the
    purity pass's ``point`` (the loss and manual gradients there) is reused when the model is
    judged as it is."""
    twin, agreement, asked = _twin(report, adapter, own_rtol)
    point = point if twin is adapter else None
    f0 = None if point is None else point.loss
    report.fd_dtype = twin.dtype.name
    judge_rtol = (
        own_rtol
        if twin is adapter
        else _rtol_for(twin.dtype.name, rtol if isinstance(rtol, dict) else None)
    )
    if twin.computes_in_float32():
        twin.precision = np.dtype(np.float32)
        report.fd_dtype = "float32"
        report.notes.append(
            "the model's float64 parameters are computed in float32 (its loss is a float32 "
            "value wherever they move): it is judged to float32's precision (make the "
            "parameters float32, or compute in float64, to make that plain)"
        )
        if not isinstance(rtol, (int, float)):
            judge_rtol = _rtol_for("float32", rtol if isinstance(rtol, dict) else None)
    if twin.batched:
        problem = batched_problem(twin, seed, f0)
        if problem is not None:
            twin.use_batched = False
            report.notes.append(problem)
    if not twin.batched:
        _compile(report, twin, budget, seed, f0)
    budget.apply(twin)
    gathered = _ask_the_witnesses(twin, judge_rtol, asked, point)
    if twin.has_coordinates and budget.mode == "full":  # only full mode differences elements
        gathered.samples = coordinate_samples(twin, seed)
    evidence = gatherer.gather(gathered)
    if gatherer.sampled:
        problem = coordinate_problem(twin, gathered.samples, gatherer.sampled)
        gathered.samples = None
        if problem is not None:  # gathered again, by whole stacks
            twin.use_coordinates = False
            report.notes.append(problem)
            evidence = gatherer.gather(gathered)
    verdicts = {k: classify(evidence[k]) for k in adapter.keys}
    verdicts = with_rounding_floor(gathered, evidence, verdicts, seed)
    region_pass(twin, verdicts, evidence)
    tape_independent = _tape_independence(report, twin, verdicts, evidence, gathered.blind)
    moves = ModelMoves(twin)
    fd_against_pass(moves, verdicts, evidence, seed, tape_independent)
    probe_bends_pass(moves, verdicts, evidence, seed)
    hidden_kinks_pass(moves, verdicts, evidence)
    rounding_pass(twin, verdicts, evidence, seed, None if agreement is None else agreement.own)
    report.entries.extend(assemble(evidence[k], verdicts[k]) for k in adapter.keys)
    _record_the_tape(report, twin, evidence, gathered.blind)
    if independent:
        forward_pass(report, adapter, twin, gathered.f0)
    values = {k: twin.value(k) for k in twin.keys if k != INPUT}
    diagnosis_pass(report, evidence, adapter.keys, problem_sizes(adapter), values)
    if agreement is not None:
        float32_pass(report, adapter.keys, agreement)


def _tape_independence(report, twin: Adapter, verdicts, evidence, blind) -> bool:
    """Is the tape an independent witness of the loss (``passes.tape_independence``)? Where it
    is not, ``report.tape_dependent`` names what makes its gradient the user's own claim."""
    if blind is not None:
        return True
    X = twin.X
    if not isinstance(X, tf.Tensor) and np.issubdtype(np.asarray(X).dtype, np.floating):
        X = tf.convert_to_tensor(np.asarray(X, dtype=twin.dtype.as_numpy_dtype))
    report.tape_dependent = tape_independence(
        verdicts, evidence, lambda: twin.model.loss(X, twin.y)
    )
    return report.tape_dependent is None


def _compile(report, twin: Adapter, budget: "_Budget", seed: int, f0=None) -> None:
    """The model's loss compiled into a batched graph for finite differences, when that pays
    for itself and the graph is shown to compute the loss; otherwise a note says why the
    evaluations ran eagerly (where compiling was worth trying)."""
    full = budget.mode == "full"
    if cached(twin.model) is None and not worth_compiling(twin, twin.keys, full, budget.probes):
        return
    try:
        twin.compiled = compiled_loss(twin)
    except NotCompiled as exc:
        report.notes.append(
            f"finite differences evaluated model.loss eagerly, one point at a time (slower): "
            f"it could not be compiled into a graph ({exc})"
        )
        return
    mismatch = batched_problem(twin, seed, f0)
    if mismatch is not None:
        forget(twin.model, twin.compiled)
        twin.compiled = None
        report.notes.append(mismatch)
    elif twin.include_input and not twin.compiled.has_input:
        report.notes.append(
            f"finite differences evaluated dL/dX eagerly, one point at a time (slower): "
            f"model.loss could not be compiled with X as a graph input "
            f"({twin.compiled.input_problem}); its parameters were compiled"
        )


def _record_the_tape(report, twin: Adapter, evidence, blind) -> None:
    """Say where the tape could not witness: in the header when it saw nothing (NumPy
    parameters, a loss that is not a tensor or not connected on the tape), as a note on each
    tensor it alone could not see; those tensors' tape columns show n/a."""
    report.tape_blind = blind
    model_largest = max(magnitude(evidence[k].manual) for k in twin.keys)
    for entry, k in zip(report.entries, twin.keys):
        ev = evidence[k]
        if ev.tape is None:
            entry.tape_missing = True
            if blind is None:
                entry.add_note(Note(NoteCode.NO_TAPE, 1))
            _note_coarse(entry, ev, model_largest, report.fd_dtype)


def _note_coarse(entry, ev, model_largest: float, dtype: str) -> None:
    """A tensor finite differences alone resolve more coarsely than ``FD_COARSE`` gets a note
    with the figure and what would help."""
    resolution = _resolution(ev, model_largest)
    if resolution <= FD_COARSE:
        return
    advice = (
        "check the model in float64, where they resolve about 1e-9"
        if dtype != "float64"
        else "the loss is rounded coarsely here, or the steps cross kinks: check it on a batch "
        "with inputs and weights of ordinary size"
    )
    values = {"resolution": resolution, "dtype": dtype, "advice": advice}
    entry.add_note(Note(NoteCode.FD_COARSE, 0, values))


# Where finite differences judge alone, a tensor they resolve more coarsely than this fraction
# of its largest gradient gets a note (float32 does; float64 resolves about 1e-9).
FD_COARSE = 1e-3


def _resolution(ev, model_largest: float) -> float:
    """The largest error finite differences allow on a tensor's elements (at a kink, beyond
    its one-sided derivatives), relative to the tensor's largest gradient (at least
    ``SCALE_FLOOR`` of the model's largest: a tensor of all but zero gradients is not held to
    its own scale)."""
    fd = ev.fd
    scale = max(magnitude(ev.manual), SCALE_FLOOR * model_largest)
    if fd is None or not np.any(fd.measured) or scale <= 0:
        return 0.0
    # The elements they accept anything at have their own note (unwitnessed, unverifiable).
    allowed = fd.error_bar[fd.measured & ~vacuous(ev)]
    return float(np.nanmax(allowed, initial=0.0)) / scale


def _twin(report, adapter: Adapter, rtol32: float):
    """(the adapter judged, the float32-vs-twin agreement or None, the twin's (manual, tape)
    when already asked). The twin is used only when it is the model's own type and its
    gradients agree with the model's float32 ones to float32 rounding."""
    twin = adapter.twin64()
    if twin is adapter:
        if adapter.dtype != tf.float64:
            report.notes.append(
                f"judged as it is, in {adapter.dtype.name} (its own tape; finite differences in "
                f"{adapter.dtype.name}, which resolve less): the model has no "
                f"astype('float64')"
                + (", and a copy of it took no float64 arrays" if adapter.numpy_params else "")
                + "; give it one that returns the same model in float64 to be judged through "
                "that twin"
            )
        return adapter, None, None
    own, other = type(adapter.model).__name__, type(twin.model).__name__
    if type(twin.model) is not type(adapter.model):
        report.notes.append(
            f"model.astype('float64') returned a {other}, not a {own}: not the same code, so "
            f"the model is judged as it is, in {adapter.dtype.name} (its own tape; finite "
            f"differences in {adapter.dtype.name}, which resolve less)"
        )
        return adapter, None, None
    asked = (twin.manual(), *tape_witness(twin))
    agreement = twin_agreement(adapter, twin, rtol32, asked[0], asked[1])
    if not agreement.same_code:
        k = agreement.worst()
        report.notes.append(
            f"the float64 twin's gradient for {adapter.name(k)} differs from the model's own "
            f"{adapter.dtype.name} one by {agreement.deviation[k]:.3g} (float32 rounding allows "
            f"{agreement.tolerance[k]:.3g}): not the same code, so the model is judged as it "
            f"is, in {adapter.dtype.name}"
        )
        return adapter, None, None
    if not callable(getattr(adapter.model, "astype", None)):
        report.notes.append(NUMPY_TWIN)
    return twin, agreement, asked


def _ask_the_witnesses(twin: Adapter, rtol: float, asked=None, point=None) -> Gathered:
    """The manual and tape gradients (``asked`` already: manual, tape, why the tape is blind),
    the loss (the purity pass's ``point``, when it is the model judged), and the scale each
    tensor is judged on."""
    if asked is None:
        asked = (twin.manual() if point is None else point.manual, *tape_witness(twin))
    manual, tape, blind = asked
    f0 = None if point is None else point.loss
    if f0 is None:
        f0 = guarded("model.loss(X, y)", twin.loss_value)
    if not np.isfinite(f0):
        raise ModelError(f"the loss is not finite at this X, y ({f0}); nothing can be checked.")
    return Gathered(
        twin,
        list(twin.keys),
        f0,
        manual,
        tape,
        rtol,
        floors(twin.keys, manual, tape),
        resolutions(twin, twin.keys, f0),
        blind,
    )


def _short(model) -> str:
    text = repr(model)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


@short_input_errors
def assert_gradients_match(model, X, y, **kwargs) -> GradientReport:
    """``check_gradients`` that raises :class:`GradientMismatch` (an AssertionError carrying the
    table) unless the verdict is a pass; returns the report when it is."""
    __tracebackhide__ = True
    report = check_gradients(model, X, y, **kwargs)
    if not report.ok:
        raise GradientMismatch(report) from report.cause  # the user's own traceback, shown
    return report
