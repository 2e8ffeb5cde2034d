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

import copy
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .objective import Loss, TermsFn, as_terms, resolve, total
from .train import train

__all__ = ["alignment_score", "cosine", "term_gradients", "intra_step_alignment", "IntraStep", "InterStep",
           "optimizer_directions", "track", "Trace", "Tuning", "Study", "seed_spread", "Spread", "precondition",
           "preconditioned_alignment", "PreconditionedAlignment", "fan"]


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
    return cast(Tensor, V / norms[:, None])


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
        """The intra-step alignment score of the term gradients at ``theta``."""
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
        """Forget the previous gradient (start a new run)."""
        self.previous = None

    def __call__(self, theta: Tensor, grad: Tensor) -> float:
        """The cosine of ``grad`` with the previous call's gradient (NaN at the first call)."""
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


class _Lag1:
    r"""The :func:`track` observer: ``pinnkit.train``'s ``on_step`` hook, called after every step ``k -> k+1``.

    With ``redraw`` (residual points resampled every step) the gradients at :math:`\theta_k` use step
    :math:`k`'s points and those at :math:`\theta_{k+1}` step :math:`k+1`'s: each is the gradient the optimizer
    is given at that step.
    """

    def __init__(self, terms_fn: TermsFn, method: str, log_every: int, keep: set[int],
                 redraw: Callable[[int], None] | None = None):
        self.terms_fn, self.grad, self.redraw = terms_fn, torch.func.grad(total(terms_fn)), redraw
        self.precondition = method in ("adam", "soap")
        self.log_every, self.keep = log_every, keep
        self.rec: dict[str, list[float]] = {k: [] for k in ("step", "intra", "inter", "inter_grad", "pre", "imb")}
        self.snaps: dict[int, Tensor] = {}
        self.previous: Tensor | None = None                   # the update Delta_{k-1}
        self.next_g: dict[str, Tensor] | None = None           # term gradients at theta_{k+1}, when a log point
        self.next_pre = math.nan                               # ... preconditioned with the state before that step

    def __call__(self, k: int, theta: Tensor, theta_next: Tensor, stepper: Any) -> None:
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
            pre = optimizer_directions(stepper, self.next_g) if self.precondition else None
            self.next_pre = alignment_score(pre) if pre is not None and len(self.next_g) > 1 else math.nan


def track(objective: Any, method: str, steps: int, *, lr: float, log_every: int = 10, seed: int = 0,
          snapshots: Sequence[float] = (0.25, 0.5, 1.0), resample: bool = False, **options: Any) -> Trace:
    r"""Train ``objective`` with :func:`pinnkit.train` and log the alignments of :class:`Trace` at lag 1.

    At every log point :math:`k` (every ``log_every`` steps) it records the intra-step alignment at
    :math:`\theta_k` and, after the step :math:`k \to k+1` (``train``'s ``on_step`` hook),
    :math:`\cos(\Delta_{k-1}, \Delta_k)` and :math:`\cos(\nabla L(\theta_k), \nabla L(\theta_{k+1}))`:
    consecutive steps whatever ``log_every`` is. The preconditioned score uses the optimizer's state before step
    :math:`k` (NaN at :math:`k = 0`). A run that diverges stops there (``on_diverge="stop"``).

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
    observe = _Lag1(terms_fn, method, log_every, keep, redraw)
    run = train(objective, method, steps, lr=lr, log_every=log_every, on_diverge="stop", quiet=True,
                on_step=observe, **options)
    rec, theta, h = observe.rec, run.theta, run.history
    loss_at = dict(zip(h.step, h.loss))          # train logs the loss at the same log points
    snaps = {**observe.snaps, steps: theta}
    l2re = h.l2re[-1] if h.l2re else math.nan
    return Trace(method=method, lr=float(lr), seed=int(seed), step=tuple(int(s) for s in rec["step"]),
                 loss_history=tuple(loss_at[int(k)] for k in rec["step"]), intra=tuple(rec["intra"]), inter=tuple(rec["inter"]),
                 inter_grad=tuple(rec["inter_grad"]), intra_precond=tuple(rec["pre"]), imbalance=tuple(rec["imb"]),
                 loss=run.loss, l2re=l2re, theta=theta, snapshots=snaps)


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


# --- summaries of pk.train runs --------------------------------------------------------------------


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


