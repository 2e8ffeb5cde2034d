r"""Gauss–Newton steppers for :math:`L(\theta) = \|r(\theta)\|^2`: energy natural gradient (ENGD) and Levenberg–Marquardt.

With :math:`J = \partial r/\partial\theta`: :math:`\nabla L = 2J^\top r` and :math:`G = 2J^\top J`
(:func:`pinnkit.curvature.gauss_newton`).

* ``"engd"`` (Müller & Zeinhofer 2023): :math:`\theta \leftarrow \theta - \eta\,(G + \mu I)^{+}\nabla L`, with
  :math:`\eta` the best of a grid (default :math:`2^{-j}`, :math:`j < 30`, evaluated in one ``vmap``).
* ``"lm"``: :math:`\theta \leftarrow \theta - (G + \mu I)^{-1}\nabla L`, accepted when the gain ratio
  :math:`\rho = (L(\theta) - L(\theta_+)) / (L(\theta) - \|r - J d\|^2) > 0`; then
  :math:`\mu \leftarrow \mu\max(\tfrac13, 1 - (2\rho-1)^3)`, else :math:`\mu \leftarrow \nu\mu`, :math:`\nu
  \leftarrow 2\nu` and retry (Nielsen 1999).

Solvers: ``"dense"`` (:math:`J` by ``jacrev`` or point by point, ``eigh`` of :math:`G`; eigenvalues
:math:`\le` ``rcond`` :math:`\lambda_{\max}` dropped, default :math:`5\epsilon`), ``"cg"`` (matrix-free
:math:`Gv = 2J^\top(Jv)`, CG from zero: its iteration cap is the cut-off), ``"auto"`` (dense below
:data:`pinnkit.curvature.DENSE_LIMIT`).

>>> import torch
>>> A = torch.tensor([[1., 2.], [3., 4.], [5., 6.]], dtype=torch.float64); b = torch.tensor([1., 0., 2.],
...     dtype=torch.float64)
>>> r = lambda th: A @ th - b                       # a linear least-squares problem: one step with eta = 1
>>> s = engd(lambda th: {"loss": (r(th) ** 2).sum()}, torch.zeros(2, dtype=torch.float64), residual=r)
>>> s.step(); bool(torch.allclose(s.theta, torch.linalg.lstsq(A, b).solution)), s.last.eta
(True, 1.0)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor

from .curvature import DENSE_LIMIT, jacobian
from .nncg import pcg
from .objective import TermsFn, total

__all__ = ["GNSystem", "GNStep", "GaussNewtonStepper", "engd", "lm", "find_model", "rowwise_jacobian",
           "gn_system", "dense_direction", "cg_direction", "grid_line_search", "default_etas", "METHODS"]

Residual = Callable[[Tensor], Tensor]
Solver = Literal["auto", "dense", "cg"]


def find_model(terms_fn: Any) -> Any:
    """The object with a ``residual_vector`` behind a loss (the model, its bound ``terms``, or a closure over
    either, two levels deep), or ``None``.
    """
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
    r"""The Jacobian of ``model.residual_vector`` (a :class:`~pinnkit.PINN`) by ``vmap`` over points of ``jacrev``
    of one point's residuals: cost :math:`\propto N` instead of :math:`\propto mN`. Terms with :math:`c` values per
    point are stacked part after part. ``None`` when the residual is not row-wise (checked against
    ``residual_vector``).
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
        vals = values[:n, at:at + c].T.reshape(-1)          # point-major (n, c) -> part-major (c * n)
        if not torch.allclose(vals, full[k].reshape(-1), rtol=1e-9, atol=1e-12 * (1 + float(full[k].abs().max()))):
            return None
        blocks.append(Jr[:n, at:at + c].transpose(0, 1).reshape(size, -1) / math.sqrt(size))
        at += c
    return torch.cat(blocks)


@dataclass(frozen=True)
class GNSystem:
    r"""The linearisation at one ``theta``: ``r``, :math:`\|r\|^2`, :math:`2J^\top r`, the products
    :math:`Jv`, :math:`J^\top u`, and ``J`` when dense.
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
    """Linearise ``residual`` at ``theta``: the dense ``J`` (:func:`rowwise_jacobian` for a ``model``, else
    ``jacrev``; ``force`` as :func:`~pinnkit.curvature.jacobian`) or ``linearize``/``vjp``.
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
    r""":math:`d = (G + \mu I)^{+} g`, :math:`G = 2J^\top J`, by ``eigh``, and the rank kept: with :math:`\mu = 0`
    eigenvalues :math:`\le` ``rcond`` :math:`\lambda_{\max}` are dropped (default :math:`5\epsilon`; a cut-off on
    the squared singular values of :math:`J`).

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
    r""":math:`d \approx (G + \mu I)^{+} g` by CG from zero (stops at negative or zero curvature), and its
    iterations.
    """
    cg = pcg(lambda v: system.G(v) + damping * v, g, tol=tol, max_iter=max_iter, stop_on_negative_curvature=True)
    return cg.x, cg.iters


def default_etas(n: int = 30) -> Tensor:
    r"""The grid :math:`\eta \in \{1, 2^{-1}, \dots, 2^{-(n-1)}\}` (float64)."""
    return 2.0 ** -torch.arange(n, dtype=torch.float64)


def grid_line_search(loss: Callable[[Tensor], Tensor], theta: Tensor, d: Tensor, etas: Tensor, *,
                     vmap: bool = True) -> tuple[float, float]:
    r"""The :math:`\eta` in ``etas`` minimising :math:`L(\theta - \eta d)` and that loss (``(nan, nan)`` if none is
    finite); one ``vmap`` over the grid (``vmap=False``: a loop, the same numbers).
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
    """One step: losses before and after, ``eta`` (LM: 1 accepted, 0 not), the damping ``mu``, the dense ``rank``
    kept (None for CG), CG iterations, loss evaluations and the LM gain ratio ``rho``.
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
    r"""ENGD (``variant="engd"``) or LM (``"lm"``) on a flat ``theta``.

    Args:
        terms_fn: the loss, with ``loss == ||residual||^2``.
        theta: the starting point (copied).
        residual: ``theta -> r`` (default: the ``residual_vector`` of the model behind the loss, :func:`find_model`).
        solver: ``"dense"``, ``"cg"`` or ``"auto"``.
        rcond: dense cut-off relative to :math:`\lambda_{\max}(G)` when :math:`\mu = 0` (default :math:`5\epsilon`).
        damping: :math:`\mu \ge 0`; ENGD: 0 (pseudo-inverse) or ``"loss"`` (:math:`\mu = L(\theta)` every step);
            LM: the initial :math:`\mu` (default :math:`10^{-3}\max_i G_{ii}`).
        etas: ENGD's grid (:func:`default_etas`). max_tries: LM's trial steps per step.
        cg_iters, cg_tol: CG limits. vmap: evaluate the grid in one ``vmap``.
        force: allow the dense solver above :data:`~pinnkit.curvature.DENSE_LIMIT`.

    ``evals`` counts loss evaluations (the linearisation one, each trial one); ``stalled``: the last step found no
    lower loss; ``diagnostics``: one :class:`GNStep` per step.
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
                or cg_iters < 1 or max_tries < 1:
            raise ValueError(f"need rcond >= 0, damping >= 0, cg_iters >= 1, max_tries >= 1; got rcond={rcond}, "
                             f"damping={damping}, cg_iters={cg_iters}, max_tries={max_tries}")
        self.model = find_model(terms_fn) if residual is None else None
        residual = residual if self.model is None else self.model.residual_vector
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
        """The damping, LM's growth factor, the step and evaluation counts."""
        return {"mu": self.mu, "nu": self.nu, "k": self.k, "evals": self.evals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.mu = None if state["mu"] is None else float(state["mu"])
        self.nu, self.k, self.evals = float(state["nu"]), int(state["k"]), int(state["evals"])

    def step(self) -> None:
        """One ENGD or LM step.

        Raises:
            FloatingPointError: the loss or gradient is not finite at ``theta`` (``theta`` is left unchanged).
        """
        sys = gn_system(self.residual, self._theta, dense=self.dense, force=self.force, model=self.model)
        self.evals += 1
        if not (math.isfinite(sys.loss) and bool(torch.isfinite(sys.grad).all())):
            raise FloatingPointError(f"{self.variant} step {self.k}: the loss or gradient is not finite at theta")
        self.diagnostics.append(self._engd(sys) if self.variant == "engd" else self._lm(sys))
        self.k += 1

    def _engd(self, sys: GNSystem) -> GNStep:
        mu = sys.loss if self.damp_by_loss else float(self.mu or 0.0)
        rank: int | None = None
        its = 0
        if sys.J is not None:
            d, rank = dense_direction(sys.J, sys.grad, damping=mu, rcond=self.rcond)
        else:
            d, its = cg_direction(sys, sys.grad, damping=mu, tol=self.cg_tol, max_iter=self.cg_iters)
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
        eig = torch.linalg.eigh(2.0 * (sys.J.T @ sys.J)) if sys.J is not None else None
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
            predicted = sys.loss - float(((sys.r - sys.Jv(d)) ** 2).sum())
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
    r"""ENGD, :math:`\theta - \eta(G+\mu I)^{+}\nabla L` with a grid line search (:class:`GaussNewtonStepper`)."""
    return GaussNewtonStepper(terms_fn, theta, "engd", residual=residual, solver=solver, rcond=rcond,
                              damping=damping, etas=etas, cg_iters=cg_iters, cg_tol=cg_tol, vmap=vmap, force=force)


def lm(terms_fn: TermsFn, theta: Tensor, *, residual: Residual | None = None, solver: Solver = "auto",
       damping: float | None = None, max_tries: int = 30, cg_iters: int = 200, cg_tol: float = 1e-10,
       force: bool = False) -> GaussNewtonStepper:
    r"""Levenberg–Marquardt, :math:`\theta - (G + \mu I)^{-1}\nabla L` with the gain-ratio rule
    (:class:`GaussNewtonStepper`).
    """
    return GaussNewtonStepper(terms_fn, theta, "lm", residual=residual, solver=solver, damping=damping,
                              max_tries=max_tries, cg_iters=cg_iters, cg_tol=cg_tol, force=force)


#: the steppers of this module, registered in :data:`pinnkit.training.STEPPERS`
METHODS: dict[str, Callable[..., GaussNewtonStepper]] = {"engd": engd, "lm": lm}
