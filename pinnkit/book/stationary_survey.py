r"""The book's stationary-point surveys (chapters 6-7): run Newton-family finders from many starts, classify where
they end (:func:`pinnkit.stationary.classify`), tabulate, and kick off saddles; the residual geometry of an endpoint
(tangent alignment, Gauss–Newton/residual curvature split, best last-layer fit). Built on :mod:`pinnkit.stationary`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import torch
from torch import Tensor

from ..curvature import hessian, jacobian
from ..objective import Loss
from ..stationary import StationaryPoint, classify
from ..training import TrainResult, train

__all__ = ["tangent_alignment", "CurvatureSplit", "curvature_split", "BasisFit", "basis_fit", "EscapeDirection",
           "escape_direction", "Endpoint", "run", "index_range", "table", "Checkpoint", "checkpoints", "survey",
           "endpoint_table", "Escape", "escape"]


def tangent_alignment(residual: Callable[[Tensor], Tensor], theta: Tensor) -> float:
    r"""How much of the residual the network's tangent space sees: :math:`\|J^\top r\| / (\|J\|_2 \|r\|) \in [0, 1]`
    (:math:`J = \partial r/\partial\theta`, :math:`\|J\|_2` its largest singular value).

    It is 0 exactly when :math:`J^\top r = 0` — the residual orthogonal to the tangent space of the approximation
    manifold, i.e. a stationary point of :math:`\|r\|^2` — however large :math:`r` is.

    >>> r = lambda th: torch.stack([th[0], torch.ones_like(th[0])])   # the line {(a, 1)}: r(0) = (0, 1) is normal
    >>> tangent_alignment(r, torch.zeros(1, dtype=torch.float64))
    0.0

    Raises:
        ValueError: the dense Jacobian would be too large (:func:`pinnkit.curvature.jacobian` guards its size).
    """
    r = residual(theta.detach()).detach()
    J = jacobian(residual, theta)
    denom = torch.linalg.matrix_norm(J, ord=2) * torch.linalg.vector_norm(r)
    return float(torch.linalg.vector_norm(J.T @ r) / denom.clamp_min(torch.finfo(r.dtype).tiny))


@dataclass(frozen=True)
class CurvatureSplit:
    r"""The Hessian of :math:`L = \|r\|^2` split as :math:`H = G + R`, :math:`G = 2J^\top J` (Gauss–Newton, positive
    semi-definite, rank :math:`\le m`) and :math:`R = 2\sum_i r_i \nabla^2 r_i` (residual curvature, indefinite,
    of size :math:`O(\|r\|)`).

    ``null_dim`` is the dimension of the null space of :math:`J` (numerical, cut-off ``rcond`` times
    :math:`\sigma_{\max}`); on it :math:`H = R`. ``index_on_null`` counts the negative eigenvalues of :math:`H`
    restricted to that null space, ``index`` those of :math:`H` and ``index_R`` those of :math:`R` (all with the
    zero threshold ``zero_tol``). Since :math:`G \succeq 0`, :math:`\lambda_k(H) \ge \lambda_k(R)`, so
    ``index <= index_R`` and :math:`\lambda_{\min}(H) \ge -\|R\|_2`.
    """

    n_params: int
    n_residuals: int
    rank_J: int
    null_dim: int
    index: int
    index_R: int
    index_on_null: int
    norm_G: float
    norm_R: float
    min_eig: float
    zero_tol: float


def curvature_split(residual: Callable[[Tensor], Tensor], theta: Tensor, *, rcond: float = 1e-10,
                    eig_rtol: float = 1e-9) -> CurvatureSplit:
    r"""Split the Hessian of :math:`\|r(\theta)\|^2` into its Gauss–Newton and residual-curvature parts.

    Args:
        residual: ``theta -> r`` with loss :math:`\|r\|^2` (e.g. ``model.residual_vector``).
        theta: the point (not modified).
        rcond: singular values of :math:`J` below ``rcond`` times the largest count as zero (numerical rank).
        eig_rtol: eigenvalues below ``eig_rtol`` times :math:`\max|\lambda(H)|` in size count as zero.

    Returns:
        A :class:`CurvatureSplit`.

    Raises:
        ValueError: negative tolerances, or dense matrices too large (see :func:`pinnkit.curvature.jacobian`).

    A linear residual has :math:`R = 0`: no negative eigenvalue anywhere.

    >>> A = torch.tensor([[1., 2., 0.], [0., 1., 1.]], dtype=torch.float64)
    >>> s = curvature_split(lambda th: A @ th - 1.0, torch.zeros(3, dtype=torch.float64))
    >>> s.rank_J, s.null_dim, s.index, s.norm_R
    (2, 1, 0, 0.0)
    """
    if rcond < 0 or eig_rtol < 0:
        raise ValueError(f"rcond and eig_rtol must be >= 0, got rcond={rcond}, eig_rtol={eig_rtol}")
    th = theta.detach()
    J = jacobian(residual, th)
    H = hessian(lambda t: (residual(t) ** 2).sum(), th)
    G = 2.0 * (J.T @ J)
    R = H - G
    _, S, Vh = torch.linalg.svd(J, full_matrices=True)
    rank = int((S > rcond * S.max().clamp_min(torch.finfo(S.dtype).tiny)).sum()) if S.numel() else 0
    N = Vh[rank:].T                                              # (P, P - rank): orthonormal basis of null(J)
    lam = torch.linalg.eigvalsh(H)
    tol = eig_rtol * float(lam.abs().max())
    lam_null = torch.linalg.eigvalsh(N.T @ H @ N) if N.shape[1] else lam[:0]
    lam_R = torch.linalg.eigvalsh(0.5 * (R + R.T))
    return CurvatureSplit(n_params=th.numel(), n_residuals=J.shape[0], rank_J=rank, null_dim=N.shape[1],
                          index=int((lam < -tol).sum()), index_R=int((lam_R < -tol).sum()),
                          index_on_null=int((lam_null < -tol).sum()),
                          norm_G=float(torch.linalg.matrix_norm(G, ord=2)),
                          norm_R=float(torch.linalg.matrix_norm(R, ord=2)), min_eig=float(lam[0]), zero_tol=tol)


@dataclass(frozen=True)
class BasisFit:
    r"""The network as a nonlinear discretisation :math:`u = \sum_j c_j \varphi_j(x; W)`: ``c`` the last layer's
    weights and bias (``n_basis`` coefficients), :math:`\varphi_j` the last hidden layer's features and 1.

    ``residual_norm`` is :math:`\|r\|` at ``theta`` and ``best_in_span`` the smallest :math:`\|r\|` over all
    coefficients with the basis :math:`W` held fixed (a linear least-squares problem, since :math:`r` is affine in
    :math:`c`). They are equal exactly when :math:`\Phi^\top r = 0` with :math:`\Phi = \partial r / \partial c`:
    the residual is orthogonal to every basis function (Galerkin orthogonality; for a PINN, to the differential
    operator applied to each basis function).
    """

    n_basis: int
    residual_norm: float
    best_in_span: float


def basis_fit(model: Any, theta: Tensor) -> BasisFit:
    """How far the coefficients of the last layer are from the best ones for the current basis.

    Args:
        model: a model with ``blocks`` (the last two: the last layer's weight and bias) and ``residual_vector``.
        theta: the point (not modified).

    Returns:
        A :class:`BasisFit`.
    """
    th = theta.detach()
    start = model.blocks[-2].start
    rest = th[:start]

    def r_of_c(c: Tensor) -> Tensor:
        return cast(Tensor, model.residual_vector(torch.cat([rest, c])))

    c = th[start:]
    r = r_of_c(c).detach()
    Phi = torch.func.jacrev(r_of_c)(c)                              # (m, n_basis): r(c + d) = r + Phi d exactly
    d = torch.linalg.lstsq(Phi, -r[:, None], driver="gelsd").solution[:, 0]
    return BasisFit(n_basis=c.numel(), residual_norm=float(torch.linalg.vector_norm(r)),
                    best_in_span=float(torch.linalg.vector_norm(r + Phi @ d)))


@dataclass(frozen=True)
class EscapeDirection:
    """The most negative Hessian eigenvalue ``lam_min`` and its unit eigenvector ``v_min`` (the way down)."""

    lam_min: float
    v_min: Tensor = field(repr=False)


def escape_direction(f: Loss, theta: Tensor) -> EscapeDirection:
    """The most negative Hessian eigenvalue of ``f`` at ``theta`` and its unit eigenvector.

    Raises:
        ValueError: the Hessian has no negative eigenvalue (nothing to escape along).
    """
    lam, vmin = _eig_pair(f, theta)
    if float(lam[0]) >= 0:
        raise ValueError(f"the smallest eigenvalue is {float(lam[0]):.3g} >= 0: no descent direction to escape along")
    return EscapeDirection(float(lam[0]), vmin)


def _eig_pair(f: Loss, theta: Tensor) -> tuple[Tensor, Tensor]:
    lam, V = torch.linalg.eigh(hessian(f, theta.detach()))
    return lam, V[:, 0]


@dataclass(frozen=True)
class Endpoint:
    """Where one optimizer run from one start ended: the run, its classification, and the residual geometry.

    ``residual_norm`` is :math:`\\|r\\|` (so ``loss == residual_norm**2``) and ``tangent_align`` is
    :func:`tangent_alignment`: 0 when :math:`J^\\top r = 0` however large :math:`r` is. ``start`` names the
    starting point (``"init"`` for the model's ``theta0``).
    """

    name: str
    seed: int
    run: Any  # the pinnkit.train result (status, final_loss, history, theta)
    point: StationaryPoint
    residual_norm: float
    tangent_align: float
    start: str = "init"



def run(objective: Any, method: str = "newton", steps: int = 50, *, theta0: Tensor | None = None,
        grad_tol: float = 1e-10, diverge: float = 1e8, log_every: int = 1, **options: Any) -> TrainResult:
    """:func:`pinnkit.train` with a Newton study's defaults: iterate until ``||grad|| <= grad_tol`` or ``steps``.

    The same as ``pk.train(objective, method, steps, theta0=theta0, grad_tol=1e-10, diverge=1e8, log_every=1,
    on_diverge="stop", quiet=True)``: it logs every step, has no progress bar, and reports divergence as
    ``status="diverged"`` (``theta`` = the last finite logged iterate) instead of raising.

    Args:
        objective: a model with ``terms``/``theta0`` (``PINN``, ``Regression``) or a function ``theta -> loss``.
        method: any name in :data:`pinnkit.training.STEPPERS` (``"newton"``, ``"lbfgs"``, ...; case-insensitive).
        steps: at most this many steps (0 only evaluates ``theta0``).
        theta0: the starting point (default ``objective.theta0``).
        grad_tol: stop (``status="converged"``) when the gradient norm of a logged iterate is at most this.
        diverge: ``status="diverged"`` when ``loss - loss0 > diverge * max(|loss0|, 1)``.
        log_every: log (and test ``grad_tol``) every this many steps, and after the last.
        **options: the stepper's options (``residual=``, ``damping=``, ``rcond=``, ``lr=``, ...).

    Returns:
        A :class:`pinnkit.training.TrainResult` (``status``, ``final_loss``, ``final_grad_norm``, ``history``).

    Raises:
        ValueError: unknown method or bad sizes. TypeError: an option no phase accepts.

    >>> import torch
    >>> res = run(lambda th: (th ** 2).sum(), "newton", 5, theta0=torch.ones(2, dtype=torch.float64))
    >>> res.status, res.steps
    ('converged', 1)
    """
    return train(objective, method, steps, theta0=theta0, grad_tol=grad_tol, diverge=diverge, log_every=log_every,
                 on_diverge="stop", quiet=True, **options)


def index_range(points: Sequence[StationaryPoint], eig_rtol: float) -> tuple[int, int]:
    """The smallest and largest index of ``points`` at the relative zero tolerance ``eig_rtol``
    (:meth:`StationaryPoint.index_at`): how much a set's index depends on where "zero" is drawn.
    """
    if not points:
        raise ValueError("index_range() needs at least one point")
    xs = [p.index_at(eig_rtol) for p in points]
    return min(xs), max(xs)



def table(points: dict[str, StationaryPoint]) -> str:
    """A fixed-width text table (2 significant digits) of loss, gradient norm, index and label."""
    name_w = max([4, *map(len, points)])
    lines = [f"{'run':<{name_w}}  {'loss':>8}  {'|grad|':>8}  {'index':>5}  {'fraction':>8}  {'min eig':>8}  label"]
    for name, p in points.items():
        lines.append(f"{name:<{name_w}}  {p.loss:8.1e}  {p.grad_norm:8.1e}  {p.index:5d}  {p.index_fraction:8.2f}  "
                     f"{p.min_eig:8.1e}  {p.label}")
    return "\n".join(lines)



@dataclass(frozen=True)
class Checkpoint:
    """A point along a training run: the step count, the loss there and ``theta``."""

    step: int
    loss: float
    theta: Tensor = field(repr=False)



def checkpoints(model: Any, method: str, steps: int, *, every: int, **options: Any) -> list[Checkpoint]:
    """Train ``model`` with :func:`pinnkit.train` and keep ``theta`` every ``every`` steps (and the last).

    These are the starting points Dauphin et al. (2014) give their critical-point finders, so that the finders
    sample stationary points at every loss level the training passes, not only near the initialisation.

    Args:
        model: a model with ``terms`` and ``theta0``.
        method, steps: passed to :func:`pinnkit.train` (e.g. ``"adam"``, 1000).
        every: keep a checkpoint every this many steps.
        **options: the optimizer's options (``lr=``...).

    Returns:
        The checkpoints in step order, the first one ``theta0``.
    """
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    res = train(model, method, steps, log_every=every, log={"theta": lambda th, g: th.detach().clone()},
                quiet=True, **options)
    h = res.history
    return [Checkpoint(int(k), float(loss), th) for k, loss, th in zip(h.step, h.loss, h.extra["theta"])]



def survey(make_model: Callable[[int], Any], seeds: Sequence[int], methods: dict[str, tuple[str, int, dict]], *,
           starts: Callable[[Any], Sequence[tuple[str, Tensor]]] | None = None, grad_tol: float = 1e-8,
           eig_rtol: float = 1e-9, global_below: float | None = None, flat_ok: bool = False) -> list[Endpoint]:
    """Run every ``methods[name] = (method, steps, options)`` of :func:`run` from every start of
    every seed's model (``make_model(seed)``, exposing ``loss``, ``theta0`` and ``residual_vector``) and classify
    the endpoint with :func:`classify`.

    Args:
        make_model: ``seed -> model``.
        seeds: the seeds.
        methods: ``name -> (method, steps, options)``; ``options["residual"] = True`` passes the model's
            ``residual_vector`` (Gauss–Newton, Levenberg–Marquardt).
        starts: ``model -> [(name, theta), ...]`` starting points (default: ``[("init", model.theta0)]``), e.g.
            from :func:`checkpoints`.
        grad_tol, eig_rtol, global_below, flat_ok: passed to :func:`classify`.

    Returns:
        One :class:`Endpoint` per seed, start and method, in that order.
    """
    out = []
    for seed in seeds:
        model = make_model(seed)
        points = [("init", model.theta0)] if starts is None else list(starts(model))
        for start, theta0 in points:
            for name, (method, steps, options) in methods.items():
                opts = {k: (model.residual_vector if k == "residual" and v is True else v) for k, v in options.items()}
                res = run(model, method, steps, theta0=theta0, **opts)
                point = classify(model.loss, res.theta, grad_tol=grad_tol, eig_rtol=eig_rtol,
                                 global_below=global_below, flat_ok=flat_ok)
                r = model.residual_vector(res.theta).detach()
                out.append(Endpoint(name, int(seed), res, point, float(torch.linalg.vector_norm(r)),
                                    tangent_alignment(model.residual_vector, res.theta), start))
    return out



def endpoint_table(endpoints: Sequence[Endpoint]) -> str:
    """One line per endpoint (2 significant digits): loss, ‖grad‖, index, index fraction, smallest eigenvalue,
    ‖r‖, :func:`tangent_alignment`, max|theta|, label (and the start when not ``"init"``).
    """
    w = max([6, *(len(e.name) for e in endpoints)])
    ws = max([0, *(len(e.start) for e in endpoints if e.start != "init")])
    head = f"{'start':<{ws}}  " if ws else ""
    lines = [f"{'method':<{w}}  seed  {head}{'loss':>7}  {'|grad|':>7}  index  {'frac':>4}  {'min eig':>8}  "
             f"{'|r|':>7}  {'J^T r/|J||r|':>12}  {'max|th|':>7}  label"]
    for e in endpoints:
        p = e.point
        st = f"{e.start:<{ws}}  " if ws else ""
        lines.append(f"{e.name:<{w}}  {e.seed:4d}  {st}{p.loss:7.1e}  {p.grad_norm:7.1e}  {p.index:5d}  "
                     f"{p.index_fraction:4.2f}  {p.min_eig:8.1e}  {e.residual_norm:7.1e}  {e.tangent_align:12.1e}  "
                     f"{float(e.run.theta.abs().max()):7.0e}  {p.label}")
    return "\n".join(lines)



@dataclass(frozen=True)
class Escape:
    """Leaving a saddle: the loss there, after ``steps`` of ``method`` started *at* it (``stay``) and started
    ``eps`` along its most negative eigenvector (``escaped``); ``slice_drop`` is
    :math:`L(\\theta + \\epsilon v) - L(\\theta)` and ``predicted_drop`` its quadratic model
    :math:`\\tfrac12\\lambda_{\\min}\\epsilon^2`.
    """

    lam_min: float
    loss_saddle: float
    slice_drop: float
    predicted_drop: float
    loss_stay: float
    loss_escaped: float



def escape(model: Any, theta: Tensor, *, eps: float = 1e-2, method: str = "lbfgs", steps: int = 20,
           **options: Any) -> Escape:
    """Run ``method`` (:func:`run`) from the saddle ``theta`` and from ``theta + eps v_min``.

    Args:
        model: a model with ``loss`` and ``terms``.
        theta: the saddle (not modified).
        eps: the length of the kick along the most negative eigenvector (the sign that descends more is used).
        method, steps, options: the optimizer run from both points.

    Returns:
        An :class:`Escape`.

    Raises:
        ValueError: ``eps <= 0``, or no negative eigenvalue at ``theta``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    f = model.loss
    d = escape_direction(f, theta)
    th = theta.detach()
    L0 = float(f(th))
    # either sign of v descends to second order; take the one that descends more
    drops = [float(f(th + s * eps * d.v_min)) - L0 for s in (1.0, -1.0)]
    sign = 1.0 if drops[0] <= drops[1] else -1.0
    stay = run(model, method, steps, theta0=th, **options).final_loss
    moved = run(model, method, steps, theta0=th + sign * eps * d.v_min, **options).final_loss
    return Escape(d.lam_min, L0, min(drops), 0.5 * d.lam_min * eps ** 2, stay, moved)
