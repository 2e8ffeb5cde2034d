"""Where and why an L-BFGS run stood still: the stop reason of every step, the step from which the run froze, and
summaries of the stored paper-setting runs (medians and ranges over seeds, failures, evaluations).

torch's L-BFGS ends a step silently when a tolerance test fires (:data:`pinnkit.training.LBFGS_REASONS`);
:func:`pinnkit.train` logs each step's loss evaluations and reason in :attr:`~pinnkit.training.History.stops`.
A run is *frozen* from the first step after which every step ended on a tolerance test (no step ran its
``max_iter`` iterations or used up its evaluations again):

>>> from pinnkit.training import History
>>> h = History(stops={"step": [0, 1, 2, 3], "phase": ["lbfgs"] * 4, "evals": [25, 21, 3, 1],
...                    "reason": ["max_iter", "max_iter", "tolerance_change:loss", "tolerance_change:gd"]})
>>> frozen_step(h), reason_counts(h), tolerance_stops(h)
(2, {'max_iter': 2, 'tolerance_change:loss': 1, 'tolerance_change:gd': 1}, 2)
"""
from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["frozen_step", "reason_counts", "tolerance_stops", "ENDS_ON_TOLERANCE", "frozen_iteration",
           "records_summary", "records_rows", "seconds_per_evaluation", "FAILED_L2RE", "late_change", "precision_pairs",
           "l2re_by_method", "NNCGPhase", "nncg_phase", "phase_stops", "TINY_STEP", "phase_l2re"]

#: stop reasons that are a tolerance test, not the normal end of a step (``max_iter``, ``max_eval``)
ENDS_ON_TOLERANCE = ("tolerance_grad:start", "tolerance_change:gd", "tolerance_grad", "tolerance_change:step",
                     "tolerance_change:loss")

FAILED_L2RE = 0.5   #: a run with a relative L2 error above this is a failed fit (Rathore et al.'s failures: 0.7-1)
TINY_STEP = 1e-9    #: an accepted Armijo step below this (30 halvings from 1) is what NNCGPhase.tiny_steps counts


def phase_stops(history: Any, phase: str = "lbfgs") -> Mapping[str, list[Any]]:
    """The entries of ``history.stops`` made by phases whose name starts with ``phase`` (``"lbfgs"``: L-BFGS and
    ``"lbfgs64"``); a run that goes on with another stepper that reports its steps (NNCG) logs those in the same
    lists. A history without phase names is returned whole.
    """
    stops = history.stops if hasattr(history, "stops") else history.get("stops", {}) or {}
    phases = stops.get("phase")
    if not phases:
        return stops
    keep = [i for i, p in enumerate(phases) if str(p).startswith(phase)]
    return {key: [values[i] for i in keep] for key, values in stops.items()}


def reason_counts(history: Any) -> dict[str, int]:
    """How many L-BFGS steps ended for each reason (keys of :data:`pinnkit.training.LBFGS_REASONS`), in the order
    the reasons first occur. ``history``: a :class:`~pinnkit.training.History` or a stored record's history dict.
    """
    return dict(Counter(phase_stops(history).get("reason", [])))


def tolerance_stops(history: Any) -> int:
    """How many L-BFGS steps ended on a tolerance test (:data:`ENDS_ON_TOLERANCE`), not on their iteration or
    evaluation cap.
    """
    return sum(reason in ENDS_ON_TOLERANCE for reason in phase_stops(history).get("reason", []))


def frozen_step(history: Any) -> int | None:
    """Index into ``history.stops`` of the first step from which every later step ended on a tolerance test
    (:data:`ENDS_ON_TOLERANCE`); ``None`` when the last step ran normally (or no step reported a reason).
    """
    reasons = phase_stops(history).get("reason", [])
    first = None
    for i in range(len(reasons) - 1, -1, -1):
        if reasons[i] not in ENDS_ON_TOLERANCE:
            break
        first = i
    return first


def frozen_iteration(history: Mapping[str, Any], rtol: float = 1e-6) -> int | None:
    """For a stored history without stop reasons: the first logged iteration from which the loss never changed by
    more than ``rtol`` (relative to the final loss) again; ``None`` if it changed at the last log point.
    """
    its, loss = history.get("iteration", []), history.get("loss", [])
    if len(loss) < 2:
        return None
    last, first = loss[-1], None
    for i in range(len(loss) - 1, -1, -1):
        if abs(loss[i] - last) > rtol * abs(last):
            break
        first = i
    return None if first is None or first == len(loss) - 1 else int(its[first])


def _group(name: str) -> str:
    return re.sub(r"/seed=\d+$", "", name)


def _spread(xs: Sequence[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.1e}"
    return f"{statistics.median(xs):.1e} [{min(xs):.1e}, {max(xs):.1e}]"


def records_rows(records: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of :func:`records_summary` as cells, one row per run family (its name without
    ``/seed=N``), for a table that fits the page: ``pk.plots.table(*records_rows(records))``. The last column
    counts the records of runs that raised (they have no numbers).
    """
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(_group(r.name), []).append(r)
    header = ["runs", "seeds", "loss: median [min, max]", "L2RE: median [min, max]", "failed", "evals", "ms/eval",
              "frozen from it.", "tol. stops", "raised"]
    rows = []
    for name in sorted(groups):
        rs = [r for r in groups[name] if r.status != "error"]
        errors = len(groups[name]) - len(rs)
        if not rs:
            rows.append([name, "0", "", "", "", "", "", "", "", str(errors)])
            continue
        failed = sum(1 for r in rs if not r.l2re <= FAILED_L2RE)
        evals = [r.evals for r in rs if r.evals]
        per = [1e3 * r.seconds / r.evals for r in rs if r.evals]
        frozen, tol, steps = [], 0, 0
        for r in rs:
            stops = phase_stops(r.history)
            reasons = stops.get("reason", [])
            if not reasons:
                continue
            tol += tolerance_stops(r.history)
            steps += len(reasons)
            k = frozen_step(r.history)
            if k is not None:   # the iteration count of that step: look it up in the logged steps
                step = stops["step"][k]
                its = dict(zip(r.history.get("step", []), r.history.get("iteration", [])))
                before = [s for s in its if s <= step]
                frozen.append(its[max(before)] if before else math.nan)
        rows.append([name, str(len(rs)), _spread([r.loss for r in rs]), _spread([r.l2re for r in rs]), str(failed),
                     f"{statistics.median(evals):.0f}" if evals else "-",
                     f"{statistics.median(per):.0f}" if per else "-",
                     f"{statistics.median(frozen):.0f}" if frozen else "-",
                     f"{tol}/{steps}" if steps else "-", str(errors)])
    return header, rows


def records_summary(records: Sequence[Any]) -> str:
    """One line per stored run family (its name without ``/seed=N``): how many seeds, the final loss and L2RE
    (median [min, max] over seeds, two significant digits), failures (L2RE above :data:`FAILED_L2RE`), the median
    loss evaluations and wall milliseconds per evaluation, and for runs with L-BFGS the median iteration from which
    every step ended on a tolerance test, with the share of L-BFGS steps that did. Records of runs that raised are
    counted but have no numbers. Reads whatever records exist, so it stays correct as more arrive.
    (:func:`records_rows` gives the same cells for a table.)
    """
    header, rows = records_rows(records)
    widths = (38, 6, 28, 28, 7, 8, 8, 16, 11)
    lines = [f"{header[0]:38s}" + "".join(f"{h:>{w}s}" for h, w in zip(header[1:9], widths[1:]))]
    for row in rows:
        errors = int(row[-1])
        if row[1] == "0":
            lines.append(f"{row[0]:38s}{0:>6d}  ({errors} runs raised)")
            continue
        lines.append(f"{row[0]:38s}" + "".join(f"{c:>{w}s}" for c, w in zip(row[1:9], widths[1:]))
                     + (f"  ({errors} raised)" if errors else ""))
    return "\n".join(lines)


def seconds_per_evaluation(run: Any, phase: str | None = None) -> float:
    """Wall seconds per loss evaluation of a :class:`~pinnkit.training.TrainResult` (within one ``phase`` if given):
    the optimizer time between log points over the evaluations counted there (NaN when none were counted).
    """
    h = run.history
    pairs = [(h.evals[i] - h.evals[i - 1], h.time[i] - h.time[i - 1]) for i in range(1, len(h.step))
             if (phase is None or h.phase[i - 1] == phase) and h.evals[i] is not None and h.evals[i - 1] is not None]
    n = sum(p[0] for p in pairs)
    return sum(p[1] for p in pairs) / n if n else math.nan


def late_change(history: Mapping[str, Any], fraction: float = 0.25) -> float:
    r"""How much a stored run's loss fell over the last ``fraction`` of its logged iterations,
    :math:`1 - L_\mathrm{end} / L_\mathrm{start}` (0: flat; negative: it rose), :math:`L_\mathrm{start}` the loss at the
    last log point at or before iteration :math:`(1 - \text{fraction})\,n`.

    >>> late_change({"iteration": [0, 50, 75, 100], "loss": [4.0, 2.0, 1.0, 0.5]})
    0.5
    """
    its, loss = history.get("iteration", []), history.get("loss", [])
    if len(loss) < 2 or not 0 < fraction <= 1:
        raise ValueError(f"need two or more logged losses and 0 < fraction <= 1, got {len(loss)} and {fraction}")
    start = max(i for i, it in enumerate(its) if it <= (1 - fraction) * its[-1])
    return 1.0 - loss[-1] / loss[start]


def precision_pairs(records: Sequence[Any]) -> dict[tuple[str, str], list[tuple[int, Any, Any]]]:
    """The runs made in both precisions: ``{(problem, method): [(seed, float32 record, float64 record), ...]}``,
    seeds ascending, from record names ``family/problem/method/seed=N`` (the family may differ: the float64 runs
    are a family of their own) and each record's ``config.dtype``. Records of runs that raised are left out.
    """
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        parts = r.name.split("/")
        if r.status == "error" or len(parts) < 4 or not parts[-1].startswith("seed="):
            continue
        runs.setdefault((parts[-3], parts[-2], int(parts[-1][5:])), {})[r.config.dtype] = r
    out: dict[tuple[str, str], list[tuple[int, Any, Any]]] = {}
    for (problem, method, seed), by in sorted(runs.items()):
        if "float32" in by and "float64" in by:
            out.setdefault((problem, method), []).append((seed, by["float32"], by["float64"]))
    return out


def l2re_by_method(records: Sequence[Any]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """The final L2RE of every stored run, grouped for an ordering of optimizers:
    ``{(family, problem): {method: [L2RE per seed, seeds ascending]}}`` from record names
    ``family/problem/method/seed=N``. Records of runs that raised, or without ``/seed=N``, are left out.

    >>> from types import SimpleNamespace as R
    >>> l2re_by_method([R(name="t/conv/adam/seed=2", status="max_steps", l2re=0.5),
    ...                 R(name="t/conv/adam/seed=1", status="max_steps", l2re=0.7)])
    {('t', 'conv'): {'adam': [0.7, 0.5]}}
    """
    runs: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = {}
    for r in records:
        parts = r.name.split("/")
        if r.status == "error" or len(parts) != 4 or not parts[3].startswith("seed="):
            continue
        runs.setdefault((parts[0], parts[1]), {}).setdefault(parts[2], []).append((int(parts[3][5:]), r.l2re))
    return {key: {m: [e for _, e in sorted(v)] for m, v in by.items()} for key, by in sorted(runs.items())}


def phase_l2re(history: Mapping[str, Any], phase: str = "nncg") -> dict[int, float]:
    """The L2RE at every log point from the first one of ``phase`` on, keyed by the steps made since that point (0:
    the switch to ``phase``), from a stored record's history dict.

    >>> phase_l2re({"step": [0, 10, 12, 14], "phase": ["adam", "nncg", "nncg", "nncg"], "l2re": [1.0, 0.5, 0.4, 0.2]})
    {0: 0.5, 2: 0.4, 4: 0.2}
    """
    phases = history.get("phase", [])
    if phase not in phases:
        raise ValueError(f"no {phase!r} phase was logged; the history has {sorted(set(phases))}")
    i = phases.index(phase)
    return {s - history["step"][i]: e for s, e in zip(history["step"][i:], history["l2re"][i:])}


@dataclass(frozen=True)
class NNCGPhase:
    """What the NNCG phase of one stored Adam -> L-BFGS -> NNCG run did (Rathore et al.'s Table 2).

    ``loss_start``/``l2re_start``: at the switch to NNCG (where L-BFGS left the run); ``loss_end``/``l2re_end``: at
    the run's last log point; ``gain`` their loss ratio (above 1: NNCG lowered the loss); ``steps`` the NNCG steps
    made (to the last log point, or to the last step that reported how it ended where a run diverged after it);
    ``logged`` how many of them reported how they ended (a run resumed from a checkpoint made by code that did not
    report it covers fewer), ``accepted`` how many of those took a step (the Armijo search found a point),
    ``ascent`` how many had a direction with :math:`g^\\top d \\le 0`, ``capped`` how many CG solves ended on their
    iteration cap, ``evals`` their median loss evaluations per step and ``hvps`` their median Hessian-vector
    products per step (NaN when the run's code did not log them); ``late_gain`` the loss ratio over the last quarter
    of its logged NNCG steps (above 1: the loss was still falling at the end); ``frozen_from`` the NNCG step (counted
    from the switch) from which every logged loss equals the last one, bit for bit (``None`` when the last two log
    points differ): a run whose steps move nothing; ``tiny_steps`` the NNCG steps (1: the first after the switch)
    that took a step of size :math:`0 < t <` :data:`TINY_STEP` (code before the Armijo search refused a trial that
    rounds to :math:`\\theta` logged such null steps as taken).
    """

    problem: str
    mu: str
    seed: int
    status: str
    message: str
    loss_start: float
    loss_end: float
    l2re_start: float
    l2re_end: float
    steps: int
    logged: int
    accepted: int
    ascent: int
    capped: int
    evals: float
    hvps: float = math.nan
    late_gain: float = math.nan
    frozen_from: int | None = None
    tiny_steps: tuple[int, ...] = ()

    @property
    def gain(self) -> float:
        """``loss_start / loss_end``."""
        return self.loss_start / self.loss_end


def nncg_phase(record: Any, phase: str = "nncg") -> NNCGPhase:
    """The :class:`NNCGPhase` of a stored run named ``family/problem/method[/mu=M]/seed=N`` (``mu`` ``""`` when the
    name has none); ``phase="gd_armijo"`` summarises the same way the gradient-descent phase of NNCG's control.

    >>> from types import SimpleNamespace as R
    >>> h = {"step": [0, 10, 12, 14], "phase": ["adam", "nncg", "nncg", "nncg"], "loss": [1.0, 0.1, 0.05, 0.01],
    ...      "l2re": [1.0, 0.5, 0.4, 0.2], "stops": {"step": [10, 11, 12, 13], "phase": ["nncg"] * 4,
    ...      "evals": [3, 42, 3, 4], "t": [1.0, 0.0, 2.0 ** -33, 0.5], "reason": ["max_iter:descent:step",
    ...      "max_iter:ascent:no_step", "tolerance:descent:step", "max_iter:descent:step"]}}
    >>> p = nncg_phase(R(name="t/reaction/a+n/mu=1e-2/seed=1", status="max_steps", message="", history=h))
    >>> p.gain, p.steps, p.logged, p.accepted, p.ascent, p.capped, p.evals, p.hvps, p.late_gain, p.tiny_steps
    (10.0, 4, 4, 3, 1, 3, 3.5, nan, 5.0, (3,))
    >>> p.frozen_from is None, nncg_phase(R(name="t/reaction/a+n/seed=1", status="max_steps", message="",
    ...     history={**h, "loss": [1.0, 0.1, 0.05, 0.05]})).frozen_from
    (True, 2)
    >>> h["stops"]["hvps"] = [None, 160, 101, 101]
    >>> nncg_phase(R(name="t/reaction/a+n/mu=1e-2/seed=1", status="max_steps", message="", history=h)).hvps
    101
    """
    parts, h = record.name.split("/"), record.history
    mu = parts[-2][3:] if len(parts) >= 5 and parts[-2].startswith("mu=") else ""
    if len(parts) < (5 if mu else 4) or not parts[-1].startswith("seed="):
        raise ValueError(f"expected a name family/problem/method[/mu=M]/seed=N, got {record.name!r}")
    phases = h.get("phase", [])
    if phase not in phases:
        raise ValueError(f"{record.name}: no {phase!r} phase was logged (status {record.status!r})")
    i = phases.index(phase)
    stops = phase_stops(h, phase) if (h.get("stops") or {}).get("phase") else {}
    reasons, evals = stops.get("reason", []), stops.get("evals", [])
    hvps = [n for n in stops.get("hvps", []) if n is not None]
    start, end = h["step"][i], h["step"][-1]
    quarter = max(j for j in range(i, len(h["step"])) if h["step"][j] - start <= 0.75 * (end - start))
    same = len(h["loss"]) - 1  # the first log point of the phase from which the loss stays at its last value
    while same > i and h["loss"][same - 1] == h["loss"][-1]:
        same -= 1
    return NNCGPhase(problem=parts[-4 if mu else -3], mu=mu, seed=int(parts[-1][5:]), status=record.status,
                     message=record.message or "", loss_start=h["loss"][i], loss_end=h["loss"][-1],
                     l2re_start=h["l2re"][i], l2re_end=h["l2re"][-1], steps=max(end - start, len(reasons)),
                     logged=len(reasons), accepted=sum(r.rsplit(":", 1)[-1] == "step" for r in reasons),
                     ascent=sum(":ascent:" in r for r in reasons), capped=sum(r.startswith("max_iter:") for r in reasons),
                     evals=statistics.median(evals) if evals else math.nan,
                     hvps=statistics.median(hvps) if hvps else math.nan, late_gain=h["loss"][quarter] / h["loss"][-1],
                     frozen_from=h["step"][same] - start if same < len(h["loss"]) - 1 else None,
                     tiny_steps=tuple(k + 1 for k, t in enumerate(stops.get("t", []))
                                      if t is not None and 0 < t < TINY_STEP))
