"""The book's gradient-alignment studies (chapter 8): track the alignments along a run, tune each optimizer's
learning rate on one seed, track it on others, summarize runs, count preconditioned alignments. Built on
:mod:`pinnkit.alignment`.
"""
from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence, cast

import torch
from torch import Tensor

from ..alignment import PreconditionedAlignment, alignment_score, cosine, optimizer_directions, term_gradients
from ..objective import TermsFn, resolve, total
from ..training import Callback, TrainingDiverged, train

__all__ = ["track", "Trace", "Tuning", "Study", "seed_spread", "Spread", "fan", "tune", "study", "RunSummary",
           "summarize", "count_positive"]


def _cosine_or_nan(a: Tensor, b: Tensor) -> float:
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    return cosine(a, b) if na > 0 and nb > 0 and math.isfinite(na * nb) else math.nan


@dataclass(frozen=True, eq=False)
class Trace:
    r"""Alignment along one training run, one entry per log point :math:`k` (see :func:`track`).

    ``intra``: :math:`\mathcal{A}(g_1, \dots, g_n)` of the term gradients at :math:`\theta_k`;
    ``inter``: :math:`\cos(\Delta_{k-1}, \Delta_k)` of consecutive updates (NaN where an update is zero, e.g.
    SOAP's first step); ``inter_grad``: :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`;
    ``intra_precond``: :math:`\mathcal{A}(P g_1, \dots, P g_n)` with the optimizer's own preconditioner
    (:func:`~pinnkit.alignment.optimizer_directions`; NaN before it exists); ``imbalance``:
    :math:`\max_i\|g_i\| / \min_i\|g_i\|` (the type I conflict the score cannot see). ``snapshots`` maps a few
    steps to :math:`\theta` there.
    """

    method: str
    lr: float
    seed: int
    step: tuple[int, ...]
    loss_history: tuple[float, ...]
    intra: tuple[float, ...]
    inter: tuple[float, ...]
    inter_grad: tuple[float, ...]
    intra_precond: tuple[float, ...]
    imbalance: tuple[float, ...]
    loss: float
    l2re: float
    theta: Tensor
    snapshots: Mapping[int, Tensor] = field(default_factory=dict)


class _Redraw:
    """Fresh residual points for every step: ``redraw(k)`` gives ``model`` (a private copy of the user's PINN) the
    uniform random residual points of step ``k``, seeded by ``(seed, k)``; the initial and boundary points stay.
    """

    def __init__(self, model: Any, seed: int):
        points = model.points["residual"]
        self.model, self.seed, self.n, self.like = model, seed, points.shape[0], points

    def __call__(self, k: int) -> None:
        fresh = self.model.problem.sample(self.n, 1, 1, seed=1_000_003 * self.seed + k, method="random")
        self.model.points = {**self.model.points, "residual": fresh.points["residual"].to(self.like)}


class _Lag1(Callback):
    r"""The :func:`track` observer: a :class:`pinnkit.training.Callback` called after every step ``k -> k+1``.

    With ``redraw`` (residual points resampled every step) the gradients at :math:`\theta_k` use step
    :math:`k`'s points and those at :math:`\theta_{k+1}` step :math:`k+1`'s: each is the gradient the optimizer
    is given at that step.
    """

    def __init__(self, terms_fn: TermsFn, log_every: int, keep: set[int],
                 redraw: Callable[[int], None] | None = None):
        self.terms_fn, self.grad, self.redraw = terms_fn, torch.func.grad(total(terms_fn)), redraw
        self.log_every, self.keep = log_every, keep
        self.rec: dict[str, list[float]] = {k: [] for k in ("step", "intra", "inter", "inter_grad", "pre", "imb")}
        self.snaps: dict[int, Tensor] = {}
        self.previous: Tensor | None = None                   # the update Delta_{k-1}
        self.next_g: dict[str, Tensor] | None = None           # term gradients at theta_{k+1}, when a log point
        self.next_pre = math.nan                               # ... preconditioned with the state before that step

    def stepped(self, k: int, theta: Tensor, theta_next: Tensor, stepper: Any) -> None:
        """Record step ``k``'s alignments (at a log point) and prepare those of step ``k + 1``."""
        update = theta_next - theta
        g = None
        if k % self.log_every == 0:
            g = self.next_g if self.next_g is not None else term_gradients(self.terms_fn, theta)
        if self.redraw is not None:
            self.redraw(k + 1)             # the points of step k + 1, before the step's gradients are computed
        if g is not None:
            norms = [float(torch.linalg.vector_norm(v)) for v in g.values()]
            self.rec["step"].append(k)
            self.rec["intra"].append(alignment_score(g) if len(g) > 1 else math.nan)
            self.rec["pre"].append(self.next_pre if k > 0 else math.nan)   # no second moment before step 0
            self.rec["imb"].append(max(norms) / min(norms) if min(norms) > 0 else math.inf)
            self.rec["inter"].append(math.nan if self.previous is None else _cosine_or_nan(self.previous, update))
            self.rec["inter_grad"].append(_cosine_or_nan(cast(Tensor, sum(g.values())), self.grad(theta_next)))
            if k in self.keep:
                self.snaps[k] = theta
        self.previous = update
        self.next_g, self.next_pre = None, math.nan
        if (k + 1) % self.log_every == 0:      # the optimizer's preconditioner as it stands before step k+1
            self.next_g = term_gradients(self.terms_fn, theta_next)
            has_p = callable(getattr(stepper, "precondition", None))
            pre = optimizer_directions(stepper, self.next_g) if has_p else None
            self.next_pre = alignment_score(pre) if pre is not None and len(self.next_g) > 1 else math.nan


def track(objective: Any, method: str, steps: int, *, lr: float, log_every: int = 10, seed: int = 0,
          snapshots: Sequence[float] = (0.25, 0.5, 1.0), resample: bool = False, **options: Any) -> Trace:
    r"""Train ``objective`` with :func:`pinnkit.train` and log the alignments of :class:`Trace` at lag 1.

    At every log point :math:`k` (every ``log_every`` steps) it records the intra-step alignment at
    :math:`\theta_k` and, after the step :math:`k \to k+1` (a :class:`pinnkit.training.Callback`),
    :math:`\cos(\Delta_{k-1}, \Delta_k)` and :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`:
    consecutive steps whatever ``log_every`` is. The preconditioned score uses the optimizer's state before step
    :math:`k` (NaN at :math:`k = 0`). A run that diverges stops there (``on_diverge="stop"``).

    Args:
        objective: a model with ``terms`` and ``theta0`` (a :class:`~pinnkit.PINN`; ``blocks`` and ``l2re`` used
            when present).
        method: a :data:`pinnkit.training.STEPPERS` name; ``intra_precond`` is NaN for a stepper without
            ``precondition(v)`` (only ``"adam"`` and ``"soap"`` have one).
        steps: optimizer steps.
        lr: learning rate.
        log_every: steps between log points.
        seed: recorded in the trace (the model's own seed sets the initialisation).
        snapshots: fractions of ``steps`` at which to keep :math:`\theta` (the nearest log point; 1.0 = the end).
        resample: draw new residual points (uniform in the domain, as many as the model has) before every step,
            as Wang et al. train (stochastic batches); the run uses a copy of ``objective``, which is left as it
            is. Needs a :class:`~pinnkit.PINN`-like model (``points``, ``problem``).
        **options: passed to :func:`pinnkit.train` (e.g. ``precondition_frequency`` for SOAP); an option the
            optimizer does not accept raises a ``TypeError``.

    Returns:
        A :class:`Trace`.

    Raises:
        ValueError: ``steps`` or ``log_every`` not positive, or an unknown ``method``.
        TypeError: an option that ``method`` does not accept.
    """
    if steps <= 0 or log_every <= 0:
        raise ValueError(f"steps and log_every must be positive, got steps={steps}, log_every={log_every}")
    redraw = None
    if resample:
        if not (hasattr(objective, "points") and hasattr(objective, "problem")):
            raise TypeError("resample=True needs a PINN-like model with `points` and `problem`, "
                            f"got {type(objective).__name__}")
        objective = copy.copy(objective)
        redraw = _Redraw(objective, seed)
        redraw(0)
    terms_fn, theta0 = resolve(objective, None)
    keep = {min(steps - 1, int(round(f * steps)) // log_every * log_every) for f in snapshots if f < 1}
    observe = _Lag1(terms_fn, log_every, keep, redraw)
    run = train(objective, method, steps, lr=lr, log_every=log_every, on_diverge="stop", quiet=True,
                callbacks=[observe], **options)
    rec, theta, h = observe.rec, run.theta, run.history
    loss_at = dict(zip(h.step, h.loss))          # train logs the loss at the same log points
    snaps = {**observe.snaps, steps: theta}
    l2re = h.l2re[-1] if h.l2re else math.nan
    return Trace(method=method, lr=float(lr), seed=int(seed), step=tuple(int(s) for s in rec["step"]),
                 loss_history=tuple(loss_at[int(k)] for k in rec["step"]), intra=tuple(rec["intra"]), inter=tuple(rec["inter"]),
                 inter_grad=tuple(rec["inter_grad"]), intra_precond=tuple(rec["pre"]), imbalance=tuple(rec["imb"]),
                 loss=run.loss, l2re=l2re, theta=theta, snapshots=snaps)


@dataclass(frozen=True)
class Tuning:
    """Learning-rate sweep of one optimizer on a tuning seed: final loss per lr and the chosen (lowest) lr."""

    method: str
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    best: float

    def __str__(self) -> str:
        cells = "  ".join(f"lr {lr:.0e}: {loss:.1e}" for lr, loss in zip(self.lrs, self.losses))
        return f"{self.method:5s} {cells}  -> lr {self.best:.0e}"


@dataclass(frozen=True)
class Study:
    """Optimizers compared over seeds, each at its own tuned learning rate: ``traces[method]`` one per seed."""

    tunings: Mapping[str, Tuning]
    traces: Mapping[str, tuple[Trace, ...]]
    fraction: float = 0.5

    def summary(self, method: str) -> "Spread":
        """The :class:`Spread` of ``method`` over the seeds."""
        return seed_spread(self.traces[method], self.fraction)


def _late_mean(xs: Sequence[float], fraction: float) -> float:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    start = min(int(len(xs) * (1 - fraction)), len(xs) - 1)
    vals = [x for x in xs[start:] if math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


@dataclass(frozen=True)
class Spread:
    """Per-seed values of one optimizer (final loss, L2RE, and the late-training means of the alignments)."""

    method: str
    lr: float
    loss: tuple[float, ...]
    l2re: tuple[float, ...]
    intra: tuple[float, ...]
    inter: tuple[float, ...]
    inter_grad: tuple[float, ...]
    intra_precond: tuple[float, ...]
    imbalance: tuple[float, ...]

    def __str__(self) -> str:
        def rng(xs: Sequence[float], f: str) -> str:
            return f"{statistics.median(xs):{f}} [{min(xs):{f}}, {max(xs):{f}}]"
        return (f"{self.method:5s} lr {self.lr:.0e}  loss {rng(self.loss, '.1e')}  L2RE {rng(self.l2re, '.1e')}\n"
                f"      intra {rng(self.intra, '+.2f')}  inter (updates) {rng(self.inter, '+.2f')}  "
                f"inter (gradients) {rng(self.inter_grad, '+.2f')}\n"
                f"      intra of P g_i {rng(self.intra_precond, '+.2f')}  "
                f"max/min |g_i| {rng(self.imbalance, '.2g')}")


def seed_spread(traces: Sequence[Trace], fraction: float = 0.5) -> Spread:
    """:class:`Spread` of several seeds; alignments averaged over the last ``fraction`` of each run's log
    points (NaN entries skipped). Printed as median [min, max] over the seeds.
    """
    if not traces:
        raise ValueError("seed_spread needs at least one trace")
    def m(attr: str) -> tuple[float, ...]:
        return tuple(_late_mean(getattr(t, attr), fraction) for t in traces)
    imb = tuple(statistics.median(t.imbalance[min(int(len(t.imbalance) * (1 - fraction)), len(t.imbalance) - 1):])
                for t in traces)
    return Spread(method=traces[0].method, lr=traces[0].lr, loss=tuple(t.loss for t in traces),
                  l2re=tuple(t.l2re for t in traces), intra=m("intra"), inter=m("inter"), inter_grad=m("inter_grad"),
                  intra_precond=m("intra_precond"), imbalance=imb)


def fan(n: int, spread: float, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""``n`` unit vectors in the plane at equally spaced angles from 0 to ``spread`` radians (rows of an
    ``n x 2`` tensor). With ``spread = 2\pi (n-1)/n`` they are spread evenly around the circle and cancel.
    """
    if n < 2:
        raise ValueError(f"a fan needs n >= 2 vectors, got {n}")
    ang = torch.linspace(0.0, float(spread), n, dtype=dtype)
    return torch.stack([ang.cos(), ang.sin()], dim=1)


def tune(make: Callable[[int], Any], method: str, lrs: Sequence[float], steps: int, seed: int,
         **options: Any) -> Tuning:
    """Sweep ``lrs`` for ``method`` on the model ``make(seed)`` and choose the lr with the lowest final loss
    (a diverged run counts as infinite loss).

    Args:
        make: ``seed -> model`` (e.g. a :class:`~pinnkit.PINN` built with that seed).
        method: a :data:`pinnkit.training.STEPPERS` name.
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
