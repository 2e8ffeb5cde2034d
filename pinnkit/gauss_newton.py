r"""Gauss–Newton in function space: energy natural gradient (ENGD) and Levenberg–Marquardt (LM) for PINNs.

A PINN loss is a sum of mean squares, :math:`L(\theta) = \sum_k \frac{1}{N_k}\|r_k(\theta)\|^2 = \|r(\theta)\|^2`
with the stacked residual :math:`r = (r_k/\sqrt{N_k})_k` (``pinn.residual_vector``). With its Jacobian
:math:`J = \partial r/\partial\theta` the gradient is :math:`\nabla L = 2J^\top r` and the Gauss–Newton matrix
(chapter 6; :func:`pinnkit.curvature.gauss_newton`) is

.. math::  G = 2J^\top J = \sum_k \tfrac{2}{N_k} J_k^\top J_k ,\qquad H = G + R,\quad
           R = 2\textstyle\sum_i r_i \nabla^2 r_i .

* ``"engd"`` — energy natural gradient descent (Müller & Zeinhofer 2023): :math:`\theta \leftarrow \theta - \eta\,
  G^{+}\nabla L` with :math:`\eta` the best point of a grid (default :math:`2^{-j}`, :math:`j = 0..29`, all
  evaluated in one :func:`torch.func.vmap`). For a linear PDE, :math:`G` is their energy Gramian (their loss has a
  factor :math:`\tfrac12`, their Gramian none: the same step). With :math:`\eta = 1` it is the Gauss–Newton step, which
  solves a *linear* least-squares problem exactly.
* ``"lm"`` — Levenberg–Marquardt: :math:`\theta \leftarrow \theta - (G + \mu I)^{-1}\nabla L`, the step accepted when
  the gain ratio :math:`\rho = (L(\theta) - L(\theta_+)) / (L(\theta) - \|r + J s\|^2)` (actual over predicted
  decrease, :math:`s` the step) is positive; :math:`\mu` is then multiplied by :math:`\max(\tfrac13, 1 - (2\rho-1)^3)`,
  else by :math:`\nu` (doubling each rejection) and the step retried (Nielsen 1999; Madsen, Nielsen & Tingleff 2004).

Two solvers (``solver=``): ``"dense"`` forms :math:`J` (``jacrev``) and :math:`G`, and solves through ``eigh`` —
**pseudo-inverse cut-off**: eigenvalues :math:`\lambda_i \le` ``rcond`` :math:`\cdot\lambda_{\max}` are dropped
(default ``rcond`` :math:`= 5\epsilon`, i.e. :math:`1.1\times10^{-15}` in float64: just above the rounding
noise of ``eigh``; a PINN's :math:`J` is rank deficient, :math:`\mathrm{cond}(J) \sim 10^{18}`, so the step depends
on this number: on the 2D Poisson problem of chapter 12, ``rcond`` 1e-9, 1e-12 and the default stall at relative L2
errors of about 5e-5, 5e-6 and 6e-8); it refuses above :data:`pinnkit.curvature.DENSE_LIMIT` parameters (or a Jacobian
above ``DENSE_LIMIT**2`` entries) unless ``force=True``. ``"cg"`` is matrix-free: :math:`Gv = 2J^\top(Jv)` with
the linearisation (:func:`torch.func.linearize` for :math:`Jv`, :func:`torch.func.vjp` for :math:`J^\top u`) built
once per step, and conjugate gradients from zero (:func:`pinnkit.nncg.pcg`); since :math:`\nabla L` lies in the range
of :math:`G`, CG tends to the same minimum-norm step, and its iteration cap is the cut-off. ``"auto"`` (default)
is dense below the size limits, CG above.

>>> import torch
>>> A = torch.tensor([[1., 2.], [3., 4.], [5., 6.]], dtype=torch.float64); b = torch.tensor([1., 0., 2.],
...     dtype=torch.float64)
>>> r = lambda th: A @ th - b                       # a linear least-squares problem: one step with eta = 1
>>> s = engd(lambda th: {"loss": (r(th) ** 2).sum()}, torch.zeros(2, dtype=torch.float64), residual=r)
>>> s.step(); bool(torch.allclose(s.theta, torch.linalg.lstsq(A, b).solution)), s.last.eta
(True, 1.0)

In :func:`pinnkit.train` a :class:`~pinnkit.PINN` or :class:`~pinnkit.regression.Regression` needs no
``residual=``: its ``residual_vector`` is found from the loss (:func:`find_residual`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, cast

import torch
from torch import Tensor

from .curvature import DENSE_LIMIT, jacobian
from .nncg import pcg
from .objective import TermsFn, total

__all__ = ["GNSystem", "GNStep", "GaussNewtonStepper", "engd", "lm", "find_residual", "find_model",
           "rowwise_jacobian", "gn_system",
           "dense_direction", "cg_direction", "grid_line_search", "default_etas", "step_cost", "METHODS"]

Residual = Callable[[Tensor], Tensor]
Solver = Literal["auto", "dense", "cg"]


def find_residual(terms_fn: Any) -> Residual | None:
    """The ``residual_vector`` of the model behind a loss, or ``None``.

    ``terms_fn`` is the model itself, its bound ``terms`` method, or a wrapper of it
    (:func:`pinnkit.objective.as_terms` closes over the bound method): the function, its ``__self__`` and the
    callables it closes over (two levels) are searched for an object with ``residual_vector``.
    """
    model = find_model(terms_fn)
    return None if model is None else cast(Callable[[Tensor], Tensor], model.residual_vector)


def find_model(terms_fn: Any) -> Any:
    """The object with a ``residual_vector`` behind a loss (see :func:`find_residual`), or ``None``."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(terms_fn, 0)]
    while todo:
        obj, depth = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for cand in (obj, getattr(obj, "__self__", None)):
            if callable(getattr(cand, "residual_vector", None)):
                return cand
        if depth < 2:
            for cell in getattr(obj, "__closure__", None) or ():
                try:
                    todo.append((cell.cell_contents, depth + 1))
                except ValueError:   # an empty cell
                    pass
    return None


def rowwise_jacobian(model: Any, theta: Tensor) -> Tensor | None:
    r"""The Jacobian of ``model.residual_vector`` (a :class:`~pinnkit.PINN`) built point by point, or ``None``.

    ``jacrev`` of the whole residual pulls each of the :math:`m` rows back through the graph of all :math:`N`
    points (cost :math:`\propto mN`); a PINN's residual is row-wise (row :math:`i` of a term depends on row
    :math:`i` of its point sets only), so ``vmap`` over the points of ``jacrev`` of one point's residuals costs
    :math:`\propto N` (40x faster on the 2D Poisson problem with 1,020 points). A term may hold :math:`c` values
    per point, stacked part after part (the wave problem's initial term is :math:`u - g` then :math:`u_t`, see
    :func:`~pinnkit.problems.sum_of_mean_squares`). Row-wise is *checked*: the per-point residuals must reproduce
    ``residual_vector``; where they do not, ``None`` is returned and the caller falls back to ``jacrev``.
    """
    problem, points = getattr(model, "problem", None), getattr(model, "points", None)
    if problem is None or not isinstance(points, Mapping) or not hasattr(model, "u"):
        return None
    th = theta.detach()
    with torch.no_grad():
        full = problem.residuals(model.u(th), points)
    names = list(full)
    M = max(int(v.shape[0]) for v in points.values())
    rows = {k: v[torch.arange(M, device=v.device) % v.shape[0]] for k, v in points.items()}
    with torch.no_grad():
        one = problem.residuals(model.u(th), {k: v[:1] for k, v in rows.items()})
    per = [one[k].numel() for k in names]  # values per point of each term
    if any(c < 1 or full[k].numel() % c or full[k].numel() // c > M for k, c in zip(names, per)):
        return None

    def per_point(t: Tensor, row: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = problem.residuals(model.u(t), {k: v[None] for k, v in row.items()})
        vec = torch.cat([out[k].reshape(-1) for k in names])
        return vec, vec

    Jr, values = torch.func.vmap(torch.func.jacrev(per_point, has_aux=True), in_dims=(None, 0))(th, rows)
    blocks, at = [], 0
    for k, c in zip(names, per):
        size = full[k].numel()
        n = size // c
        # point-major (n, c) -> part-major (c * n): part j of every point, then part j + 1
        vals = values[:n, at:at + c].T.reshape(-1)
        if not torch.allclose(vals, full[k].reshape(-1), rtol=1e-9, atol=1e-12 * (1 + float(full[k].abs().max()))):
            return None
        blocks.append(Jr[:n, at:at + c].transpose(0, 1).reshape(size, -1) / math.sqrt(size))
        at += c
    return torch.cat(blocks)


@dataclass(frozen=True)
class GNSystem:
    r"""The Gauss–Newton model at one ``theta``: residual ``r``, loss :math:`\|r\|^2`, gradient :math:`2J^\top r`,
    and the products ``Jv`` (:math:`J v`), ``JTu`` (:math:`J^\top u`) from one linearisation (``J`` dense or None).
    """

    r: Tensor
    loss: float
    grad: Tensor
    Jv: Callable[[Tensor], Tensor]
    JTu: Callable[[Tensor], Tensor]
    J: Tensor | None = None

    def G(self, v: Tensor) -> Tensor:
        r""":math:`G v = 2J^\top (J v)`."""
        return 2.0 * self.JTu(self.Jv(v))


def gn_system(residual: Residual, theta: Tensor, *, dense: bool = False, force: bool = False,
              model: Any = None) -> GNSystem:
    """Linearise ``residual`` at ``theta`` once: if ``dense``, the Jacobian ``J`` (point by point for a ``model``
    whose residual is row-wise, :func:`rowwise_jacobian`; else ``jacrev``), otherwise ``linearize``/``vjp``.

    Raises:
        ValueError: ``dense`` and a Jacobian above ``DENSE_LIMIT**2`` entries without ``force``.
    """
    th = theta.detach()
    if dense:
        J = rowwise_jacobian(model, th) if model is not None else None
        J = jacobian(residual, th, force=force) if J is None else J
        r = residual(th).detach()
        return GNSystem(r, float(r @ r), 2.0 * (J.T @ r), lambda v: J @ v, lambda u: J.T @ u, J)
    r, vjp_fn = torch.func.vjp(residual, th)  # type: ignore[misc]  # torch stubs
    with warnings.catch_warnings():   # torch.fx's constant folding warns about an internal detail of linearize
        warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node", category=UserWarning)
        _, jvp_fn = torch.func.linearize(residual, th)
    r = r.detach()
    return GNSystem(r, float(r @ r), 2.0 * vjp_fn(r)[0].detach(), lambda v: jvp_fn(v).detach(),
                    lambda u: vjp_fn(u)[0].detach())


def dense_direction(J: Tensor, g: Tensor, *, damping: float = 0.0, rcond: float | None = None) -> tuple[Tensor, int]:
    r"""The step :math:`d = (G + \mu I)^{+} g` with :math:`G = 2J^\top J`, by ``eigh``, and the rank kept.

    Eigenvalues :math:`\lambda_i \le` ``rcond`` :math:`\cdot\lambda_{\max}` of :math:`G` are dropped (with
    :math:`\mu > 0` nothing is: :math:`G + \mu I` is invertible). Cut-off on the eigenvalues of :math:`G`, i.e. on
    the squared singular values of :math:`J`: ``rcond=1e-12`` keeps singular values above :math:`10^{-6}\sigma_{\max}`.
    Default :math:`5\epsilon` of the dtype.

    >>> J = torch.tensor([[1., 0.], [0., 1e-8]], dtype=torch.float64)      # rank 1 at the cut-off
    >>> dense_direction(J, torch.tensor([2., 2.], dtype=torch.float64))
    (tensor([1., 0.], dtype=torch.float64), 1)
    """
    rcond = 5 * torch.finfo(J.dtype).eps if rcond is None else rcond
    lam, V = torch.linalg.eigh(2.0 * (J.T @ J))
    top = float(lam.max().clamp_min(0.0))
    keep = lam > rcond * top if damping == 0.0 else torch.ones_like(lam, dtype=torch.bool)
    inv = torch.where(keep, 1.0 / (lam.clamp_min(0.0) + damping).where(keep, torch.ones_like(lam)),
                      torch.zeros_like(lam))
    return V @ (inv * (V.T @ g)), int(keep.sum())


def cg_direction(system: GNSystem, g: Tensor, *, damping: float = 0.0, tol: float = 1e-10,
                 max_iter: int = 200) -> tuple[Tensor, int]:
    r"""The step :math:`d \approx (G + \mu I)^{+} g` by conjugate gradients from zero, matrix-free; returns ``d``
    and the CG iterations. CG stops at ``tol`` (relative residual), ``max_iter`` or zero curvature.
    """
    cg = pcg(lambda v: system.G(v) + damping * v, g, tol=tol, max_iter=max_iter, stop_on_negative_curvature=True)
    return cg.x, cg.iters


def default_etas(n: int = 30) -> Tensor:
    r"""The line-search grid :math:`\eta \in \{1, 2^{-1}, \dots, 2^{-(n-1)}\}` (float64)."""
    return 2.0 ** -torch.arange(n, dtype=torch.float64)


def grid_line_search(loss: Callable[[Tensor], Tensor], theta: Tensor, d: Tensor, etas: Tensor, *,
                     vmap: bool = True) -> tuple[float, float]:
    r"""The :math:`\eta` of the grid ``etas`` with the lowest finite :math:`L(\theta - \eta d)`, and that loss.

    All trial points in one :func:`torch.func.vmap` (``vmap=False``: a loop; the same numbers). Returns
    ``(nan, nan)`` when no trial loss is finite.
    """
    etas = etas.to(theta.dtype)
    trials = theta.detach()[None, :] - etas[:, None] * d[None, :]
    with torch.no_grad():
        values = torch.func.vmap(loss)(trials) if vmap else torch.stack([loss(t) for t in trials])
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, math.inf))
    i = int(torch.argmin(values))
    if not math.isfinite(float(values[i])):
        return math.nan, math.nan
    return float(etas[i]), float(values[i])


@dataclass(frozen=True)
class GNStep:
    """One step: the loss before and after, ``eta`` (ENGD; LM: 1 when accepted, 0 when not), the damping ``mu``
    used, the ``rank`` kept by the dense pseudo-inverse (None for CG), the CG iterations (0 for dense), the loss
    evaluations of the step (the linearisation counts one, each trial one) and the LM gain ratio ``rho``.
    """

    step: int
    loss_before: float
    loss_after: float
    eta: float
    mu: float
    rank: int | None
    cg_iters: int
    evals: int
    rho: float = math.nan


class GaussNewtonStepper:
    """ENGD (``variant="engd"``) or Levenberg–Marquardt (``"lm"``) on a flat ``theta``; see the module docstring.

    ``evals`` counts loss evaluations (the residual and its Jacobian or linearisation at ``theta``: one; each line
    search / LM trial point: one); ``stalled`` is True after a step that found no lower loss; ``diagnostics`` holds
    one :class:`GNStep` per step, ``last`` the latest.
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, variant: Literal["engd", "lm"] = "engd", *,
                 residual: Residual | None = None, solver: Solver = "auto", rcond: float | None = None,
                 damping: float | str | None = None, etas: Tensor | None = None, cg_iters: int = 200,
                 cg_tol: float = 1e-10, max_tries: int = 30, vmap: bool = True, force: bool = False):
        if variant not in ("engd", "lm"):
            raise ValueError(f"unknown Gauss-Newton variant {variant!r}; valid: 'engd', 'lm'")
        if solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'cg', got {solver!r}")
        if (rcond is not None and not rcond >= 0) or (isinstance(damping, (int, float)) and not damping >= 0) \
                or cg_iters < 1 \
                or max_tries < 1:
            raise ValueError(f"need rcond >= 0, damping >= 0, cg_iters >= 1, max_tries >= 1; got rcond={rcond}, "
                             f"damping={damping}, cg_iters={cg_iters}, max_tries={max_tries}")
        self.model = find_model(terms_fn) if residual is None else None
        residual = residual if residual is not None else find_residual(terms_fn)
        if residual is None:
            raise ValueError(f"{variant} needs the residual vector r(theta) with loss == ||r||^2: pass residual= "
                             "(e.g. residual=pinn.residual_vector), or train a PINN / Regression, whose "
                             "residual_vector is found automatically")
        self.variant, self.residual, self.loss = variant, residual, total(terms_fn)
        self._theta = theta.detach().clone()
        r0, l0 = float((residual(self._theta) ** 2).sum()), float(self.loss(self._theta))
        if not math.isclose(r0, l0, rel_tol=1e-5, abs_tol=1e-12):
            raise ValueError(f"residual does not match the loss: ||r||^2 = {r0:.6g} but loss = {l0:.6g}; pass the "
                             "residual vector whose squared norm is the loss (pinn.residual_vector)")
        P, m = self._theta.numel(), int(residual(self._theta).numel())
        small = P <= DENSE_LIMIT and m * P <= DENSE_LIMIT ** 2
        if solver == "dense" and not small and not force:
            raise ValueError(f"a dense Gauss-Newton step with {P} parameters and {m} residuals is above "
                             f"DENSE_LIMIT = {DENSE_LIMIT} (or a Jacobian above DENSE_LIMIT**2 entries); use "
                             "solver='cg' (matrix-free) or pass force=True")
        self.dense = solver == "dense" or (solver == "auto" and small)
        self.rcond = 5 * torch.finfo(self._theta.dtype).eps if rcond is None else float(rcond)
        self.force, self.cg_iters, self.cg_tol = force, int(cg_iters), float(cg_tol)
        self.etas = default_etas() if etas is None else torch.as_tensor(etas, dtype=torch.float64).flatten()
        self.max_tries, self.vmap = int(max_tries), bool(vmap)
        self.damp_by_loss = isinstance(damping, str)
        if self.damp_by_loss and (damping != "loss" or variant != "engd"):
            raise ValueError(f"damping must be a number >= 0 (or 'loss' for engd), got {damping!r}")
        self.mu: float | None = None if damping is None or self.damp_by_loss else float(damping)
        if variant == "engd" and self.mu is None:
            self.mu = 0.0
        self.nu = 2.0
        self.k, self.evals, self.stalled = 0, 0, False
        self.diagnostics: list[GNStep] = []

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self._theta

    @property
    def last(self) -> GNStep | None:
        """The latest step's :class:`GNStep` (None before the first)."""
        return self.diagnostics[-1] if self.diagnostics else None

    def state_dict(self) -> dict[str, Any]:
        """The damping and its growth factor (LM), the step and evaluation counts (for :class:`~pinnkit.TrainState`)."""
        return {"mu": self.mu, "nu": self.nu, "k": self.k, "evals": self.evals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.mu = None if state["mu"] is None else float(state["mu"])
        self.nu, self.k, self.evals = float(state["nu"]), int(state["k"]), int(state["evals"])

    def _direction(self, sys: GNSystem, mu: float) -> tuple[Tensor, int | None, int]:
        if sys.J is not None:
            d, rank = dense_direction(sys.J, sys.grad, damping=mu, rcond=self.rcond)
            return d, rank, 0
        d, its = cg_direction(sys, sys.grad, damping=mu, tol=self.cg_tol, max_iter=self.cg_iters)
        return d, None, its

    def step(self) -> None:
        """One ENGD or LM step.

        Raises:
            FloatingPointError: the loss or gradient is not finite at ``theta`` (``theta`` is left unchanged).
        """
        th = self._theta
        sys = gn_system(self.residual, th, dense=self.dense, force=self.force, model=self.model)
        self.evals += 1
        if not (math.isfinite(sys.loss) and bool(torch.isfinite(sys.grad).all())):
            raise FloatingPointError(f"{self.variant} step {self.k}: the loss or gradient is not finite at theta")
        if self.variant == "engd":
            info = self._engd(sys)
        else:
            info = self._lm(sys)
        self.diagnostics.append(info)
        self.k += 1

    def _engd(self, sys: GNSystem) -> GNStep:
        mu = sys.loss if self.damp_by_loss else float(self.mu or 0.0)
        d, rank, its = self._direction(sys, mu)
        eta, value = grid_line_search(self.loss, self._theta, d, self.etas, vmap=self.vmap)
        self.evals += int(self.etas.numel())
        self.stalled = not (math.isfinite(value) and value < sys.loss)
        if not self.stalled:
            self._theta = (self._theta - eta * d).detach()
        else:
            eta, value = 0.0, sys.loss
        return GNStep(self.k, sys.loss, value, eta, mu, rank, its, 1 + int(self.etas.numel()))

    def _lm(self, sys: GNSystem) -> GNStep:
        if self.mu is None:                 # Nielsen's start: tau * max diag(G), tau = 1e-3
            diag = 2.0 * (sys.J ** 2).sum(0) if sys.J is not None else None
            self.mu = 1e-3 * float(diag.max()) if diag is not None else 1e-3 * float(sys.grad.abs().max())
            self.mu = self.mu or 1e-3
        evals, rank, its, rho, value = 1, None, 0, math.nan, sys.loss
        eig = None
        if sys.J is not None:
            eig = torch.linalg.eigh(2.0 * (sys.J.T @ sys.J))
        self.stalled = True
        for _ in range(self.max_tries):
            mu = float(self.mu)
            if eig is not None:
                lam, V = eig
                d, rank = V @ ((V.T @ sys.grad) / (lam.clamp_min(0.0) + mu)), int(lam.numel())
            else:
                d, its = cg_direction(sys, sys.grad, damping=mu, tol=self.cg_tol, max_iter=self.cg_iters)
            trial = self._theta - d
            with torch.no_grad():
                value = float(self.loss(trial))
            evals += 1
            Jd = sys.Jv(d)
            predicted = sys.loss - float(((sys.r - Jd) ** 2).sum())
            rho = (sys.loss - value) / predicted if predicted > 0 else -math.inf
            if math.isfinite(value) and rho > 0:
                self._theta = trial.detach()
                self.mu = mu * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                self.nu = 2.0
                self.stalled = False
                break
            self.mu, self.nu = mu * self.nu, self.nu * 2.0
        self.evals += evals - 1
        if self.stalled:
            value = sys.loss
        return GNStep(self.k, sys.loss, value, 0.0 if self.stalled else 1.0, mu, rank, its, evals, rho)


def engd(terms_fn: TermsFn, theta: Tensor, *, residual: Residual | None = None, solver: Solver = "auto",
         rcond: float | None = None, damping: float | str = 0.0, etas: Tensor | None = None, cg_iters: int = 200,
         cg_tol: float = 1e-10, vmap: bool = True, force: bool = False) -> GaussNewtonStepper:
    r"""Energy natural gradient / Gauss–Newton with a grid line search, :math:`\theta - \eta(G+\mu I)^{+}\nabla L`.

    Args:
        terms_fn: the loss (terms dict or scalar) with ``loss == ||residual||^2``.
        theta: the starting point (copied).
        residual: ``theta -> r`` (default: the model's ``residual_vector``, :func:`find_residual`).
        solver: ``"dense"`` (eigh of :math:`G`), ``"cg"`` (matrix-free) or ``"auto"`` (dense below the size limit).
        rcond: dense pseudo-inverse cut-off, relative to :math:`\lambda_{\max}(G)` (used when ``damping == 0``;
            default :math:`5\epsilon` of ``theta``'s dtype).
        damping: :math:`\mu \ge 0` added to :math:`G` (0: the pseudo-inverse, as Müller & Zeinhofer), or
            ``"loss"``: :math:`\mu = L(\theta)` at every step (Levenberg's damping by the residual, Yamashita &
            Fukushima: large while the fit is poor, vanishing at a zero-residual solution, where the step becomes
            the Gauss–Newton step).
        etas: the line-search grid (default :func:`default_etas`: :math:`2^{-j}`, :math:`j < 30`).
        cg_iters, cg_tol: CG limits (``solver="cg"``).
        vmap: evaluate the grid in one :func:`torch.func.vmap` (else a loop).
        force: allow the dense solver above :data:`~pinnkit.curvature.DENSE_LIMIT`.

    Returns:
        A :class:`GaussNewtonStepper`.
    """
    return GaussNewtonStepper(terms_fn, theta, "engd", residual=residual, solver=solver, rcond=rcond,
                              damping=damping, etas=etas, cg_iters=cg_iters, cg_tol=cg_tol, vmap=vmap, force=force)


def lm(terms_fn: TermsFn, theta: Tensor, *, residual: Residual | None = None, solver: Solver = "auto",
       damping: float | None = None, max_tries: int = 30, cg_iters: int = 200, cg_tol: float = 1e-10,
       force: bool = False) -> GaussNewtonStepper:
    r"""Levenberg–Marquardt, :math:`\theta - (G + \mu I)^{-1}\nabla L`, :math:`\mu` adapted by the gain ratio.

    Args:
        terms_fn: the loss (terms dict or scalar) with ``loss == ||residual||^2``.
        theta: the starting point (copied).
        residual: ``theta -> r`` (default: the model's ``residual_vector``).
        solver: ``"dense"``, ``"cg"`` or ``"auto"``.
        damping: the initial :math:`\mu` (default :math:`10^{-3}\max_i G_{ii}`, Nielsen's).
        max_tries: trial steps (each rejection multiplies :math:`\mu` by :math:`\nu = 2, 4, 8, \dots`) per step.
        cg_iters, cg_tol: CG limits (``solver="cg"``).
        force: allow the dense solver above :data:`~pinnkit.curvature.DENSE_LIMIT`.

    Returns:
        A :class:`GaussNewtonStepper`.
    """
    return GaussNewtonStepper(terms_fn, theta, "lm", residual=residual, solver=solver, damping=damping,
                              max_tries=max_tries, cg_iters=cg_iters, cg_tol=cg_tol, force=force)


def step_cost(model: Any, theta: Tensor, *, repeat: int = 3) -> dict[str, float]:
    """Process seconds (:func:`time.process_time`, the best of ``repeat``) of the three parts of one dense ENGD
    step on ``model`` (a :class:`~pinnkit.PINN`) at ``theta``: ``"jacobian"`` (:func:`rowwise_jacobian`, else
    ``jacrev``), ``"solve"`` (form :math:`G` and ``eigh``) and ``"line_search"`` (the 30-point grid in one ``vmap``).
    """
    import time

    out: dict[str, float] = {}
    sys = gn_system(model.residual_vector, theta, dense=True, force=True, model=model)
    assert sys.J is not None
    J = sys.J
    parts: dict[str, Callable[[], object]] = {
        "jacobian": lambda: gn_system(model.residual_vector, theta, dense=True, force=True, model=model),
        "solve": lambda: dense_direction(J, sys.grad),
        "line_search": lambda: grid_line_search(total(model.terms), theta, sys.grad, default_etas()),
    }
    for name, fn in parts.items():
        best = math.inf
        for _ in range(max(1, int(repeat))):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        out[name] = best
    return out


#: the steppers of this module, registered in :data:`pinnkit.train.STEPPERS`
METHODS: dict[str, Callable[..., GaussNewtonStepper]] = {"engd": engd, "lm": lm}
