"""The book's gradient-alignment studies (chapter 8): tune each optimizer's learning rate on one seed, track it on
others, summarize runs, count preconditioned alignments. Built on :mod:`pinnkit.alignment`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..alignment import PreconditionedAlignment, Study, Tuning, _late_mean, track
from ..train import TrainingDiverged, train

__all__ = ["tune", "study", "RunSummary", "summarize", "count_positive"]


def tune(make: Callable[[int], Any], method: str, lrs: Sequence[float], steps: int, seed: int,
         **options: Any) -> Tuning:
    """Sweep ``lrs`` for ``method`` on the model ``make(seed)`` and choose the lr with the lowest final loss
    (a diverged run counts as infinite loss).

    Args:
        make: ``seed -> model`` (e.g. a :class:`~pinnkit.PINN` built with that seed).
        method: a :data:`pinnkit.train.STEPPERS` name.
        lrs: candidate learning rates.
        steps: steps per run (the same budget as the comparison).
        seed: the tuning seed (keep it out of the evaluation seeds).
        **options: passed to :func:`pinnkit.train`.
    """
    losses = []
    for lr in lrs:
        try:
            run = train(make(seed), method, steps, lr=lr, log_every=steps, quiet=True, **options)
            losses.append(run.loss if math.isfinite(run.loss) else math.inf)
        except TrainingDiverged:
            losses.append(math.inf)
    best = min(zip(losses, lrs))[1]
    return Tuning(method=method, lrs=tuple(float(x) for x in lrs), losses=tuple(losses), best=float(best))



def study(make: Callable[[int], Any], methods: Sequence[str], lrs: Sequence[float], steps: int,
          seeds: Sequence[int], tune_seed: int, log_every: int = 10, tunings: Mapping[str, Tuning] | None = None,
          resample: bool = False, **options: Any) -> Study:
    """For each method: :func:`tune` the lr on ``tune_seed``, then :func:`track` it on every seed in ``seeds``.

    Args:
        make: ``seed -> model``; the seed sets the initialisation and the collocation points.
        methods: optimizer names, e.g. ``("adam", "soap")``.
        lrs: the learning-rate grid, the same for every method.
        steps: steps per run (equal budget for every method).
        seeds: evaluation seeds (at least 3 for a claim).
        tune_seed: the seed used only for tuning.
        log_every: steps between log points of :func:`track`.
        tunings: results of :func:`tune` to reuse (methods missing from it are tuned here, on fixed points).
        resample: new residual points every step in the tracked runs (see :func:`track`).
    """
    tunings = {m: (tunings or {}).get(m) or tune(make, m, lrs, steps, tune_seed, **options) for m in methods}
    traces = {m: tuple(track(make(s), m, steps, lr=tunings[m].best, log_every=log_every, seed=s, resample=resample,
                             **options)
                       for s in seeds) for m in methods}
    return Study(tunings=tunings, traces=traces)



@dataclass(frozen=True)
class RunSummary:
    """A :func:`pinnkit.train` run in four numbers: final loss and L2RE, and the mean intra- and inter-step
    alignment over the late part of training (the ``log`` entries ``"intra"`` / ``"inter"``).
    """

    loss: float
    l2re: float
    intra: float
    inter: float

    def __str__(self) -> str:
        return (f"loss {self.loss:.1e}  L2RE {self.l2re:.1e}  intra-step A (late) {self.intra:+.2f}  "
                f"inter-step A (late) {self.inter:+.2f}")



def summarize(run: Any, fraction: float = 0.5) -> RunSummary:
    """:class:`RunSummary` of a :func:`pinnkit.train` result logged with ``IntraStep`` and ``InterStep``; the
    alignments are averaged over the last ``fraction`` of the logged entries (NaN entries, such as the first
    ``InterStep`` value, are skipped).

    Raises:
        ValueError: ``fraction`` outside (0, 1], or the run has no ``intra`` / ``inter`` logs.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h = run.history
    missing = {"intra", "inter"} - set(h.extra)
    if missing:
        raise ValueError(f"the run has no {sorted(missing)} logs; train with log={{'intra': IntraStep(terms), "
                         f"'inter': InterStep()}}")
    return RunSummary(loss=run.loss, l2re=run.l2re, intra=_late_mean(h.extra["intra"], fraction),
                      inter=_late_mean(h.extra["inter"], fraction))



def count_positive(results: Iterable[PreconditionedAlignment], preconditioner: str, lo: float, hi: float) -> int:
    """How many of ``results`` reach a positive alignment score with ``preconditioner`` (``"newton"``,
    ``"saddle_free"`` or ``"gauss_newton"``) at some relative damping in ``[lo, hi]``.
    """
    if preconditioner not in ("newton", "saddle_free", "gauss_newton"):
        raise ValueError(f"unknown preconditioner {preconditioner!r}; valid: newton, saddle_free, gauss_newton")
    return sum(any(x > 0 for d, x in zip(r.dampings, getattr(r, preconditioner)) if lo <= d <= hi) for r in results)
