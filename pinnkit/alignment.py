r"""Gradient alignment between loss terms (Wang, Bhartari, Li, Perdikaris 2025).

The **alignment score** of :math:`n \ge 2` non-zero vectors is

.. math:: \mathcal{A}(v_1, \dots, v_n) = 2\,\Big\|\frac1n \sum_{i=1}^n \frac{v_i}{\|v_i\|}\Big\|^2 - 1
          \;\in\; [-1, 1],

the cosine similarity when :math:`n = 2`. It is 1 when all vectors point the same way and -1 when their unit
vectors cancel (two opposite vectors, three at 120 degrees, any :math:`n` spread evenly around a circle);
:math:`n` orthonormal vectors score :math:`2/n - 1`. It ignores lengths: a *magnitude* imbalance between the
terms (Wang et al.'s type I conflict) is invisible to it; it measures *directional* conflict (type II).

- **Intra-step alignment** at step :math:`k`: :math:`\mathcal{A}(\nabla L_1(\theta_k), \dots, \nabla L_n(\theta_k))`,
  the per-term gradients (residual, initial, boundary) at the same :math:`\theta_k`.
- **Inter-step alignment** at step :math:`k` (the book's reading of Wang et al., who describe it as the alignment
  of consecutive steps' update directions): :math:`\mathcal{A}(\Delta_{k-1}, \Delta_k) = \cos(\Delta_{k-1},
  \Delta_k)` of two *consecutive* updates :math:`\Delta_k = \theta_{k+1} - \theta_k`. :func:`track` logs it at
  lag 1 at every log point, together with the cosine of consecutive total gradients
  :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`. A negative score means the step reversed direction
  (oscillation, zig-zag across a valley): a conflict between steps, not progress.

>>> round(cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])), 6)        # cos 45 degrees
0.707107
>>> alignment_score([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])])
-1.0
>>> round(alignment_score(torch.eye(3)), 6)                                       # three orthonormal: 2/3 - 1
-0.333333
"""
from __future__ import annotations

import inspect
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .objective import Loss, TermsFn, as_terms, resolve, total

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["count_positive", "alignment_score", "cosine", "term_gradients", "intra_step_alignment", "IntraStep", "InterStep",
           "optimizer_directions", "track", "Trace", "tune", "Tuning", "study", "Study", "RunSummary", "summarize",
           "seed_spread", "Spread", "precondition", "preconditioned_alignment", "PreconditionedAlignment", "fan",
           "plot_score_geometry", "plot_vectors", "plot_alignment_history", "plot_study", "plot_preconditioned"]


# --- the score ---------------------------------------------------------------------------------------
def _stack(vectors: Sequence[Tensor] | Mapping[str, Tensor] | Tensor) -> Tensor:
    if isinstance(vectors, Mapping):
        vectors = list(vectors.values())
    if isinstance(vectors, Tensor):
        if vectors.dim() < 2:
            raise ValueError(f"pass n >= 2 vectors as a sequence or as the rows of a 2-D tensor; got a tensor of "
                             f"shape {tuple(vectors.shape)}")
        rows = list(vectors.reshape(vectors.shape[0], -1))
    else:
        rows = list(vectors)
        if not all(isinstance(v, Tensor) for v in rows):
            raise TypeError("alignment_score takes tensors (a sequence, a dict or the rows of a 2-D tensor)")
        shapes = {tuple(v.shape) for v in rows}
        if len(shapes) > 1:
            raise ValueError(f"vectors must all have the same shape, got {sorted(shapes)}")
        rows = [v.reshape(-1) for v in rows]
    if len(rows) < 2:
        raise ValueError(f"alignment needs at least 2 vectors, got {len(rows)}")
    V = torch.stack(rows)
    norms = torch.linalg.vector_norm(V, dim=1)
    bad = [i for i, n in enumerate(norms.tolist()) if not (n > 0 and math.isfinite(n))]
    if bad:
        raise ValueError(f"vector(s) {bad} have zero or non-finite norm, so their direction (and the alignment) is "
                         f"undefined; drop those terms (e.g. a loss term that is identically zero)")
    return V / norms[:, None]


def alignment_score(vectors: Sequence[Tensor] | Mapping[str, Tensor] | Tensor) -> float:
    r""":math:`\mathcal{A} = 2\|\frac1n\sum_i v_i/\|v_i\|\|^2 - 1`.

    Args:
        vectors: ``n >= 2`` non-zero tensors of one shape: a sequence, a dict (such as :func:`term_gradients`'
            output) or the rows of a 2-D tensor.

    Returns:
        The score in :math:`[-1, 1]`.

    Raises:
        ValueError: fewer than 2 vectors, mismatched shapes, or a zero / non-finite vector.
    """
    U = _stack(vectors)
    return float(2.0 * torch.linalg.vector_norm(U.mean(0)) ** 2 - 1.0)


def cosine(a: Tensor, b: Tensor) -> float:
    r"""Cosine similarity :math:`a\cdot b / (\|a\|\|b\|)` of two non-zero tensors of the same shape (any shape;
    they are flattened), i.e. :func:`alignment_score` of the pair.
    """
    U = _stack([a, b])
    return float(U[0] @ U[1])


def _cosine_or_nan(a: Tensor, b: Tensor) -> float:
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    return cosine(a, b) if na > 0 and nb > 0 and math.isfinite(na * nb) else math.nan


# --- per-term gradients ----------------------------------------------------------------------------
def term_gradients(objective: Any, theta: Tensor) -> dict[str, Tensor]:
    r"""Per-term gradients :math:`\{\text{name}: \nabla_\theta L_\text{name}(\theta)\}` at one ``theta``.

    Args:
        objective: a terms function (``pinn.terms``), a scalar loss (one term, ``"loss"``) or a model with
            ``.terms`` (a :class:`~pinnkit.PINN`).
        theta: flat parameter vector; not modified.

    Returns:
        ``{name: gradient}``, each of ``theta``'s shape. One :func:`torch.func.jacrev` of the term dict.
    """
    terms_fn = as_terms(objective.terms if hasattr(objective, "terms") else objective)
    th = theta.detach()
    jac = torch.func.jacrev(terms_fn)(th)
    return {k: v.detach().reshape(th.shape) for k, v in jac.items()}


def intra_step_alignment(objective: Any, theta: Tensor) -> float:
    """Alignment score of the per-term gradients at ``theta`` (see the module docstring)."""
    return alignment_score(term_gradients(objective, theta))


class IntraStep:
    """Logger for ``pk.train(..., log={"intra": IntraStep(pinn.terms)})``: intra-step alignment at each logged step."""

    def __init__(self, terms_fn: TermsFn):
        self.terms_fn = terms_fn

    def __call__(self, theta: Tensor, grad: Tensor | None = None) -> float:
        return intra_step_alignment(self.terms_fn, theta)


class InterStep:
    r"""Logger for ``pk.train(..., log={"inter": InterStep()})``: :math:`\cos(g_{k'}, g_k)` of the total-loss
    gradient at this and the previous *logged* step :math:`k'`.

    With ``log_every=1`` that is consecutive steps; with ``log_every=10`` it compares gradients 10 steps apart,
    which is *not* the lag-1 inter-step alignment. :func:`track` measures lag 1 at every log point whatever the
    logging interval; prefer it. The first call returns NaN (no previous step); use a fresh instance per run.
    """

    def __init__(self) -> None:
        self.previous: Tensor | None = None

    def reset(self) -> None:
        self.previous = None

    def __call__(self, theta: Tensor, grad: Tensor) -> float:
        prev, self.previous = self.previous, grad.detach().clone()
        return math.nan if prev is None else cosine(prev, grad)


# --- the optimizer's own preconditioner ------------------------------------------------------------
def optimizer_directions(stepper: Any, vectors: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    r"""Apply the optimizer's *current* diagonal / Kronecker preconditioner :math:`P` to each vector.

    Adam: :math:`P g = g / (\sqrt{v} + \epsilon)` with its second moment :math:`v`. SOAP:
    :math:`P G = Q_L\,[(Q_L^\top G Q_R) / (\sqrt{v} + \epsilon)]\,Q_R^\top` per weight matrix with its eigenbases
    and rotated second moment (plain Adam on biases). Linear in the vector, so :math:`\sum_i P g_i = P\,\nabla L`;
    momentum is left out (it mixes past gradients, which have no per-term split). Bias-correction factors are a
    common scale and do not change directions.

    Args:
        stepper: the ``"adam"`` stepper of :mod:`pinnkit.train` or the ``"soap"`` stepper of :mod:`pinnkit.soap`.
        vectors: ``{name: flat vector}`` of ``theta``'s shape (e.g. :func:`term_gradients`).

    Returns:
        ``{name: P v}``, or ``None`` before the optimizer has a second moment (its first step).

    Raises:
        TypeError: an optimizer other than Adam or SOAP.
    """
    from .soap import SOAPStepper

    opt = getattr(stepper, "opt", None)
    if isinstance(stepper, SOAPStepper):
        out: dict[str, list[Tensor]] = {k: [] for k in vectors}
        assert opt is not None
        for p, b in zip(stepper.params, stepper.blocks):
            st = opt.state.get(p, {})
            if "exp_avg_sq" not in st or st.get("step", 0) == 0:
                return None
            Q, denom = st["Q"], st["exp_avg_sq"].sqrt() + opt.param_groups[0]["eps"]
            for k, v in vectors.items():
                x = v[b.start:b.stop].reshape(p.shape)
                out[k].append(opt.project_back(opt.project(x, Q) / denom, Q).reshape(-1))
        return {k: torch.cat(parts) for k, parts in out.items()}
    if isinstance(opt, torch.optim.Adam):
        st = opt.state.get(stepper.param, {})
        if "exp_avg_sq" not in st:
            return None
        denom = st["exp_avg_sq"].sqrt() + opt.param_groups[0]["eps"]
        return {k: v / denom.reshape(v.shape) for k, v in vectors.items()}
    raise TypeError(f"optimizer_directions knows Adam and SOAP steppers, got {type(stepper).__name__}")


# --- tracking a run --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Trace:
    r"""Alignment along one training run, one entry per log point :math:`k` (see :func:`track`).

    ``intra``: :math:`\mathcal{A}(g_1, \dots, g_n)` of the term gradients at :math:`\theta_k`;
    ``inter``: :math:`\cos(\Delta_{k-1}, \Delta_k)` of consecutive updates (NaN where an update is zero, e.g.
    SOAP's first step); ``inter_grad``: :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`;
    ``intra_precond``: :math:`\mathcal{A}(P g_1, \dots, P g_n)` with the optimizer's own preconditioner
    (:func:`optimizer_directions`; NaN before it exists); ``imbalance``: :math:`\max_i\|g_i\| / \min_i\|g_i\|`
    (the type I conflict the score cannot see). ``snapshots`` maps a few steps to :math:`\theta` there.
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


def _factory(method: str) -> Callable[..., Any]:
    from .train import STEPPERS

    if method not in STEPPERS:
        raise ValueError(f"unknown optimizer {method!r}; valid: {', '.join(STEPPERS)}")
    return STEPPERS[method]


def track(objective: Any, method: str, steps: int, *, lr: float, log_every: int = 10, seed: int = 0,
          snapshots: Sequence[float] = (0.25, 0.5, 1.0), **options: Any) -> Trace:
    r"""Train ``objective`` with ``method`` and log the alignments of :class:`Trace` at lag 1.

    At every log point :math:`k` (every ``log_every`` steps) it records the intra-step alignment at
    :math:`\theta_k`, takes the step :math:`k \to k+1`, and records :math:`\cos(\Delta_{k-1}, \Delta_k)` and
    :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`: consecutive steps whatever ``log_every`` is.

    Args:
        objective: a model with ``terms`` and ``theta0`` (a :class:`~pinnkit.PINN`; ``blocks`` and ``l2re`` used
            when present).
        method: a :data:`pinnkit.train.STEPPERS` name with a preconditioner :func:`optimizer_directions` knows
            (``"adam"``, ``"soap"``); other steppers run, with ``intra_precond`` NaN.
        steps: optimizer steps.
        lr: learning rate.
        log_every: steps between log points.
        seed: recorded in the trace (the model's own seed sets the initialisation).
        snapshots: fractions of ``steps`` at which to keep :math:`\theta` (the nearest log point; 1.0 = the end).
        **options: passed to the stepper factory when it accepts them (e.g. ``precondition_frequency``).

    Returns:
        A :class:`Trace`.

    Raises:
        ValueError: ``steps`` or ``log_every`` not positive, or an unknown ``method``.
    """
    if steps <= 0 or log_every <= 0:
        raise ValueError(f"steps and log_every must be positive, got steps={steps}, log_every={log_every}")
    factory = _factory(method)
    terms_fn, theta0 = resolve(objective, None)
    loss_fn = total(terms_fn)
    kw = dict(options, lr=lr)
    if getattr(objective, "blocks", None) is not None:
        kw.setdefault("blocks", objective.blocks)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    stepper = factory(terms_fn, theta0.detach().clone(), **kw)
    keep = {min(steps - 1, int(round(f * steps)) // log_every * log_every) for f in snapshots if f < 1}
    rec: dict[str, list[float]] = {k: [] for k in ("step", "loss", "intra", "inter", "inter_grad", "pre", "imb")}
    snaps: dict[int, Tensor] = {}
    theta_prev, grad = None, torch.func.grad(loss_fn)
    for k in range(steps):
        theta = stepper.theta.detach().clone()
        log = k % log_every == 0
        if log:
            g = term_gradients(terms_fn, theta)
            norms = [float(torch.linalg.vector_norm(v)) for v in g.values()]
            pre = optimizer_directions(stepper, g) if method in ("adam", "soap") else None
            rec["step"].append(k)
            rec["loss"].append(float(loss_fn(theta)))
            rec["intra"].append(alignment_score(g) if len(g) > 1 else math.nan)
            rec["pre"].append(alignment_score(pre) if pre is not None and len(g) > 1 else math.nan)
            rec["imb"].append(max(norms) / min(norms) if min(norms) > 0 else math.inf)
            g_total = cast(Tensor, sum(g.values()))
            if k in keep:
                snaps[k] = theta
        stepper.step()
        if log:
            theta_next = stepper.theta.detach()
            step_now = theta_next - theta
            rec["inter"].append(math.nan if theta_prev is None else _cosine_or_nan(theta - theta_prev, step_now))
            rec["inter_grad"].append(_cosine_or_nan(g_total, grad(theta_next)))
        theta_prev = theta
    theta = stepper.theta.detach().clone()
    snaps[steps] = theta
    l2re = float(objective.l2re(theta)) if getattr(objective, "u_exact", None) is not None else math.nan
    return Trace(method=method, lr=float(lr), seed=int(seed), step=tuple(int(s) for s in rec["step"]),
                 loss_history=tuple(rec["loss"]), intra=tuple(rec["intra"]), inter=tuple(rec["inter"]),
                 inter_grad=tuple(rec["inter_grad"]), intra_precond=tuple(rec["pre"]), imbalance=tuple(rec["imb"]),
                 loss=float(loss_fn(theta)), l2re=l2re, theta=theta, snapshots=snaps)


# --- tuning and seeds ------------------------------------------------------------------------------
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
    from .train import TrainingDiverged, train

    losses = []
    for lr in lrs:
        try:
            run = train(make(seed), method, steps, lr=lr, log_every=steps, quiet=True, **options)
            losses.append(run.loss if math.isfinite(run.loss) else math.inf)
        except TrainingDiverged:
            losses.append(math.inf)
    best = min(zip(losses, lrs))[1]
    return Tuning(method=method, lrs=tuple(float(x) for x in lrs), losses=tuple(losses), best=float(best))


@dataclass(frozen=True)
class Study:
    """Optimizers compared over seeds, each at its own tuned learning rate: ``traces[method]`` one per seed."""

    tunings: Mapping[str, Tuning]
    traces: Mapping[str, tuple[Trace, ...]]
    fraction: float = 0.5

    def summary(self, method: str) -> "Spread":
        return seed_spread(self.traces[method], self.fraction)


def study(make: Callable[[int], Any], methods: Sequence[str], lrs: Sequence[float], steps: int,
          seeds: Sequence[int], tune_seed: int, log_every: int = 10, tunings: Mapping[str, Tuning] | None = None,
          **options: Any) -> Study:
    """For each method: :func:`tune` the lr on ``tune_seed``, then :func:`track` it on every seed in ``seeds``.

    Args:
        make: ``seed -> model``; the seed sets the initialisation and the collocation points.
        methods: optimizer names, e.g. ``("adam", "soap")``.
        lrs: the learning-rate grid, the same for every method.
        steps: steps per run (equal budget for every method).
        seeds: evaluation seeds (at least 3 for a claim).
        tune_seed: the seed used only for tuning.
        log_every: steps between log points of :func:`track`.
        tunings: results of :func:`tune` to reuse (methods missing from it are tuned here).
    """
    tunings = {m: (tunings or {}).get(m) or tune(make, m, lrs, steps, tune_seed, **options) for m in methods}
    traces = {m: tuple(track(make(s), m, steps, lr=tunings[m].best, log_every=log_every, seed=s, **options)
                       for s in seeds) for m in methods}
    return Study(tunings=tunings, traces=traces)


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


# --- summaries of pk.train runs --------------------------------------------------------------------
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


# --- preconditioned term gradients (dense) ---------------------------------------------------------
@dataclass(frozen=True)
class PreconditionedAlignment:
    r"""Alignment of the term gradients :math:`g_i` (``raw``) and of :math:`(M + \delta I)^{-1} g_i` for
    Newton (:math:`M = H`, the Hessian of the total loss; *indefinite*, so for :math:`\delta < |\lambda_{\min}|`
    the inverse is not positive definite and can flip directions), saddle-free Newton (:math:`M = |H|`, the
    eigenvalues replaced by their absolute values; positive definite) and Gauss–Newton
    (:math:`M = 2J^\top J`), one score per relative damping :math:`\delta / \max_j|\lambda_j(M)|`.
    ``cancel`` is :math:`\|\sum_i g_i\| / \sum_i \|g_i\|`: near 0 the term gradients nearly cancel.
    """

    raw: float
    dampings: tuple[float, ...]
    newton: tuple[float, ...]
    saddle_free: tuple[float, ...]
    gauss_newton: tuple[float, ...]
    terms: tuple[str, ...]
    cancel: float = math.nan


def precondition(M: Tensor, vectors: Mapping[str, Tensor], damping: float = 1e-6,
                 absolute: bool = False) -> dict[str, Tensor]:
    r""":math:`(M + \delta I)^{-1} v` for each vector, with symmetric ``M`` and
    :math:`\delta = \text{damping}\cdot\max_j |\lambda_j(M)|` (solved through ``eigh``).

    Args:
        M: symmetric ``P x P`` matrix.
        vectors: ``{name: vector of length P}``.
        damping: relative damping, positive.
        absolute: use :math:`|M|` (eigenvalues replaced by their absolute values: saddle-free Newton).

    Raises:
        ValueError: ``damping`` not positive.
    """
    return _precondition_eig(torch.linalg.eigh(0.5 * (M + M.T)), vectors, damping, absolute)


def _precondition_eig(eig: tuple[Tensor, Tensor], vectors: Mapping[str, Tensor], damping: float,
                      absolute: bool = False) -> dict[str, Tensor]:
    if not damping > 0:
        raise ValueError(f"damping must be positive (the PINN Hessian is singular or indefinite), got {damping}")
    lam, V = eig
    shifted = (lam.abs() if absolute else lam) + damping * lam.abs().max()
    return {k: V @ ((V.T @ v) / shifted) for k, v in vectors.items()}


def preconditioned_alignment(terms_fn: Loss, residual_fn: Callable[[Tensor], Tensor], theta: Tensor,
                             dampings: Sequence[float] = (1e-6,)) -> PreconditionedAlignment:
    r"""Intra-step alignment of the raw, Newton-, saddle-free- and Gauss–Newton-preconditioned term gradients.

    For a PINN: ``preconditioned_alignment(pinn.terms, pinn.residual_vector, theta)``. Dense matrices
    (:func:`pinnkit.curvature.hessian`, :func:`pinnkit.curvature.gauss_newton`, one ``eigh`` each): small
    networks only. Note :math:`\sum_i M^{-1} g_i = M^{-1} \nabla L`: where the total gradient nearly vanishes
    (``cancel`` small, e.g. at the end of training) the preconditioned term gradients still nearly cancel,
    whatever the preconditioner; measure along the trajectory as well.
    """
    from .curvature import gauss_newton, hessian

    g = term_gradients(terms_fn, theta)
    H = hessian(total(terms_fn), theta)
    G = gauss_newton(residual_fn, theta)
    eH, eG = torch.linalg.eigh(H), torch.linalg.eigh(0.5 * (G + G.T))
    ds = tuple(float(d) for d in dampings)
    cancel = float(torch.linalg.vector_norm(sum(g.values())) / sum(torch.linalg.vector_norm(v) for v in g.values()))
    return PreconditionedAlignment(
        raw=alignment_score(g), dampings=ds,
        newton=tuple(alignment_score(_precondition_eig(eH, g, d)) for d in ds),
        saddle_free=tuple(alignment_score(_precondition_eig(eH, g, d, absolute=True)) for d in ds),
        gauss_newton=tuple(alignment_score(_precondition_eig(eG, g, d)) for d in ds), terms=tuple(g),
        cancel=cancel)


# --- geometry and figures ----------------------------------------------------------------------------
def fan(n: int, spread: float, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""``n`` unit vectors in the plane at equally spaced angles from 0 to ``spread`` radians (rows of an
    ``n x 2`` tensor). With ``spread = 2\pi (n-1)/n`` they are spread evenly around the circle and cancel.
    """
    if n < 2:
        raise ValueError(f"a fan needs n >= 2 vectors, got {n}")
    ang = torch.linspace(0.0, float(spread), n, dtype=dtype)
    return torch.stack([ang.cos(), ang.sin()], dim=1)


def plot_score_geometry(ns: Sequence[int] = (2, 3, 5), points: int = 181) -> "Figure":
    """Alignment score of a fan of ``n`` unit vectors against its spread (first to last vector), for each ``n``;
    the spread runs up to an even spacing around the circle, where the vectors cancel. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for n in ns:
        top = 2 * math.pi * (n - 1) / n
        phis = torch.linspace(0.0, top, points, dtype=torch.float64)
        ax.plot(torch.rad2deg(phis), [alignment_score(fan(n, float(p))) for p in phis], label=f"n = {n}")
    phis = torch.linspace(0.0, math.pi, points, dtype=torch.float64)
    ax.plot(torch.rad2deg(phis), phis.cos(), "k:", label="cos(spread)")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set(xlabel="spread of the fan of unit vectors (degrees)", ylabel="alignment score A",
           title="alignment score of n evenly fanned unit vectors")
    ax.legend()
    return fig


def plot_vectors(panels: Mapping[str, Mapping[str, Tensor]], title: str = "") -> "Figure":
    """2-D vectors as arrows from the origin (normalised to unit length), one panel per entry, the alignment
    score in each panel's title. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), layout="constrained", squeeze=False)
    for ax, (name, vecs) in zip(axes[0], panels.items()):
        for i, (label, v) in enumerate(vecs.items()):
            u = (v / torch.linalg.vector_norm(v)).detach().cpu().double()
            ax.annotate("", xy=(float(u[0]), float(u[1])), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=f"C{i}", lw=2))
            ax.plot([], [], color=f"C{i}", lw=2, label=label)
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", xlabel=r"$\theta_1$ direction",
               ylabel=r"$\theta_2$ direction", title=f"{name}\nA = {alignment_score(vecs):.2f}")
        ax.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_alignment_history(runs: Mapping[str, Any], intra: str = "intra", inter: str = "inter",
                           title: str = "") -> "Figure":
    """Loss, L2RE, intra-step and inter-step alignment against optimizer step for several :func:`pinnkit.train`
    runs logged with ``log={intra: IntraStep(...), inter: InterStep()}``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3), layout="constrained")
    for i, (name, run) in enumerate(runs.items()):
        h = run.history
        axes[0].semilogy(h.step, h.loss, color=f"C{i}", label=name)
        if h.l2re:
            axes[1].semilogy(h.step, h.l2re, color=f"C{i}", label=name)
        axes[2].plot(h.step, h.extra[intra], color=f"C{i}", label=name)
        axes[3].plot(h.step, h.extra[inter], color=f"C{i}", label=name, lw=0.8)
    for ax, ylabel in zip(axes, ["loss", "L2RE", "intra-step alignment", "inter-step alignment"]):
        ax.set(xlabel="optimizer step", ylabel=ylabel)
        ax.legend(fontsize=8)
    for ax in axes[2:]:
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="0.7", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig


def _smooth(xs: Sequence[float], width: int) -> list[float]:
    out = []
    for i in range(len(xs)):
        w = [x for x in xs[max(0, i - width + 1):i + 1] if math.isfinite(x)]
        out.append(sum(w) / len(w) if w else math.nan)
    return out


def plot_study(result: Study, title: str = "", smooth: int = 5) -> "Figure":
    """Loss and the four alignments of :class:`Study` traces against optimizer step: one thin line per seed,
    colour per optimizer. The alignment curves are running means over ``smooth`` log points (a smoothing that
    hides step-to-step noise but not a sustained sign). Returns the figure.
    """
    import matplotlib.pyplot as plt

    panels = [("loss_history", "loss"), ("intra", "intra-step A(g_i)"), ("intra_precond", "A(P g_i), own P"),
              ("inter", "inter-step cos(Δ_k-1, Δ_k)"), ("inter_grad", "cos(∇L_k, ∇L_k+1)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), layout="constrained")
    for i, (method, traces) in enumerate(result.traces.items()):
        for j, t in enumerate(traces):
            for ax, (attr, _ylabel) in zip(axes, panels):
                ys = getattr(t, attr)
                label = f"{method} (lr {t.lr:.0e})" if j == 0 else None
                if attr == "loss_history":
                    ax.semilogy(t.step, ys, color=f"C{i}", lw=0.9, label=label)
                else:
                    ax.plot(t.step, _smooth(ys, smooth), color=f"C{i}", lw=0.9, label=label)
    for ax, (attr, ylabel) in zip(axes, panels):
        ax.set(xlabel="optimizer step", title=ylabel)
        if attr != "loss_history":
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0.0, color="0.7", lw=0.8)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_preconditioned(results: Mapping[str, PreconditionedAlignment], title: str = "") -> "Figure":
    """Alignment of Newton-, saddle-free- and Gauss–Newton-preconditioned term gradients against the relative
    damping, one panel per point (the raw score dashed). Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.3), layout="constrained",
                             squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        ax.semilogx(r.dampings, r.newton, "o-", label=r"Newton $(H+\delta I)^{-1} g_i$")
        ax.semilogx(r.dampings, r.saddle_free, "^-", label=r"saddle-free $(|H|+\delta I)^{-1} g_i$")
        ax.semilogx(r.dampings, r.gauss_newton, "s-", label=r"Gauss–Newton $(G+\delta I)^{-1} g_i$")
        ax.axhline(r.raw, color="k", ls="--", label=r"raw $g_i$")
        ax.set(xlabel=r"relative damping $\delta / \max|\lambda|$", ylabel="alignment score", title=name,
               ylim=(-1.05, 1.05))
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def count_positive(results: Iterable[PreconditionedAlignment], preconditioner: str, lo: float, hi: float) -> int:
    """How many of ``results`` reach a positive alignment score with ``preconditioner`` (``"newton"``,
    ``"saddle_free"`` or ``"gauss_newton"``) at some relative damping in ``[lo, hi]``.
    """
    if preconditioner not in ("newton", "saddle_free", "gauss_newton"):
        raise ValueError(f"unknown preconditioner {preconditioner!r}; valid: newton, saddle_free, gauss_newton")
    return sum(any(x > 0 for d, x in zip(r.dampings, getattr(r, preconditioner)) if lo <= d <= hi) for r in results)
