r"""Newton-family steps on the flat parameter vector with a dense curvature matrix :math:`C`:
:math:`\theta_+ = \theta + \alpha d`, :math:`d = -C^{+} g`, :math:`g = \nabla L(\theta)`.

=========================  ===========================================================================================
``"newton"``               :math:`C = H`, :math:`\alpha = 1`, minimum-norm solution (eigenvalues below
                           ``rcond * max|lambda|`` dropped); attracted by every stationary point, saddles included.
``"damped_newton"``        the same with an Armijo line search; :math:`d = -g` when :math:`g^\top d \ge 0`.
``"saddle_free_newton"``   :math:`C = |H| + \mu I` (Dauphin et al. 2014), with the line search.
``"gauss_newton"``         :math:`C = 2J^\top J` for :math:`L = \|r\|^2` (needs ``residual=``), with the line search.
``"levenberg_marquardt"``  :math:`C = 2J^\top J + \mu I`; :math:`\mu` halved after a step that lowers the loss,
                           doubled (step retried) otherwise.
``"gradient_norm"``        LM on :math:`\|\nabla L\|^2`: :math:`d = -(H^2 + \mu I)^{-1} H g`, :math:`\mu` quartered
                           after a step that lowers :math:`\|\nabla L\|`, else quadrupled; finds stationary points of
                           any index.
=========================  ===========================================================================================

Each is a stepper of :data:`pinnkit.training.STEPPERS` (``factory(terms_fn, theta, **options)`` with ``.step()``
and ``.theta``), run by :func:`pinnkit.train`.

>>> import torch, pinnkit as pk
>>> A = torch.tensor([[3., 1.], [1., 2.]], dtype=torch.float64); b = torch.tensor([1., -1.], dtype=torch.float64)
>>> f = lambda th: 0.5 * th @ A @ th - b @ th          # quadratic: one Newton step lands on A^{-1} b
>>> res = pk.train(f, "newton", 5, theta0=torch.zeros(2, dtype=torch.float64), grad_tol=1e-10, log_every=1,
...                quiet=True)
>>> res.status, res.steps, bool(torch.allclose(res.theta, torch.linalg.solve(A, b)))
('converged', 1, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .curvature import hessian, jacobian
from .linesearch import armijo
from .objective import TermsFn, total, value_and_grad

__all__ = ["newton_direction", "saddle_free_direction", "NewtonStepper", "StepInfo", "METHODS",
           "newton", "damped_newton", "saddle_free_newton", "gauss_newton", "levenberg_marquardt", "gradient_norm"]


def _cutoff(lam: Tensor, rcond: float | None) -> float:
    if rcond is None:
        rcond = lam.numel() * torch.finfo(lam.dtype).eps
    return float(rcond * lam.abs().max().clamp_min(torch.finfo(lam.dtype).tiny))


def _pseudo_solve(a: Tensor, V: Tensor, g: Tensor, rcond: float | None) -> Tensor:
    r""":math:`-V \operatorname{diag}(a)^{+} V^\top g`, dropping the :math:`a_i` with :math:`|a_i| \le` the cut-off."""
    keep = a.abs() > _cutoff(a, rcond)
    inv = torch.where(keep, 1.0 / torch.where(keep, a, torch.ones_like(a)), torch.zeros_like(a))
    return -(V @ (inv * (V.T @ g)))


def newton_direction(H: Tensor, g: Tensor, rcond: float | None = None) -> Tensor:
    r"""Minimum-norm least-squares solution of :math:`H d = -g`, symmetric ``H``:
    :math:`d = -\sum_{|\lambda_i| > c} \lambda_i^{-1} (v_i^\top g)\, v_i`, :math:`c` = ``rcond`` (default
    ``P * eps``) times :math:`\max|\lambda|`.

    >>> H = torch.tensor([[2., 0.], [0., 0.]], dtype=torch.float64)   # singular: the y-direction is dropped
    >>> newton_direction(H, torch.tensor([4., 1.], dtype=torch.float64))
    tensor([-2., -0.], dtype=torch.float64)
    """
    lam, V = torch.linalg.eigh(H)
    return _pseudo_solve(lam, V, g, rcond)


def saddle_free_direction(H: Tensor, g: Tensor, damping: float = 0.0, rcond: float | None = None) -> Tensor:
    r"""Saddle-free Newton direction :math:`d = -(|H| + \mu I)^{+} g`, :math:`|H| = V|\Lambda|V^\top`, ``damping``
    :math:`\mu \ge 0`, cut-off ``rcond`` on :math:`|\lambda| + \mu`; a descent direction. On :math:`x^2 - y^2`:

    >>> H = torch.diag(torch.tensor([2., -2.], dtype=torch.float64))
    >>> saddle_free_direction(H, torch.tensor([2., -2.], dtype=torch.float64))   # x -> 0, y moves away
    tensor([-1.,  1.], dtype=torch.float64)
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    lam, V = torch.linalg.eigh(H)
    return _pseudo_solve(lam.abs() + damping, V, g, rcond)


@dataclass(frozen=True)
class StepInfo:
    """What the last step did: loss and gradient norm *before* it, the step length and line-search factor."""

    loss: float
    grad_norm: float
    step_norm: float
    alpha: float
    mu: float = math.nan


class NewtonStepper:
    r"""One Newton-family step per :meth:`step` on a copy of ``theta`` (see the module table for ``variant``).

    Args:
        terms_fn: the loss, ``theta -> dict of terms`` or ``theta -> scalar``.
        residual: ``theta -> r`` with ``loss == ||r||^2`` (Gauss–Newton / LM only; ``pinn.residual_vector``).
        rcond: relative eigenvalue cut-off of the pseudo-inverse (default ``P * eps``).
        damping: :math:`\mu` added to :math:`|H|` (saddle-free), or the initial :math:`\mu` of LM / gradient-norm.
        line_search: Armijo backtracking (default on for damped Newton, saddle-free and Gauss–Newton).
        max_backtracks: trial steps of the line search (or :math:`\mu` increases of LM / gradient-norm).
        c1: sufficient-decrease constant of the line search.

    ``stalled`` is True after a step that left ``theta`` unchanged.

    Raises:
        ValueError: unknown variant, Gauss–Newton / LM without ``residual`` or with one not matching the loss.
    """

    VARIANTS = ("newton", "damped_newton", "saddle_free_newton", "gauss_newton", "levenberg_marquardt",
                "gradient_norm")

    def __init__(self, terms_fn: TermsFn, theta: Tensor, variant: str = "newton", *,
                 residual: Callable[[Tensor], Tensor] | None = None, rcond: float | None = None,
                 damping: float | None = None, line_search: bool | None = None, max_backtracks: int = 40,
                 c1: float = 1e-4):
        if variant not in self.VARIANTS:
            raise ValueError(f"unknown Newton variant {variant!r}; valid: {', '.join(self.VARIANTS)}")
        if variant in ("gauss_newton", "levenberg_marquardt") and residual is None:
            raise ValueError(f"{variant} needs residual= a function theta -> r with loss == ||r||^2 "
                             f"(for a PINN or Regression pass residual=model.residual_vector)")
        self.variant = variant
        self.f = total(terms_fn)
        self.residual = residual
        self.rcond = rcond
        default_damping = {"levenberg_marquardt": 1e-3, "gradient_norm": 1e-6}.get(variant, 0.0)
        self.mu = float(default_damping if damping is None else damping)
        if self.mu < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.line_search = (variant in ("damped_newton", "saddle_free_newton", "gauss_newton")
                            if line_search is None else bool(line_search))
        self.max_backtracks, self.c1 = int(max_backtracks), float(c1)
        if self.max_backtracks < 1:
            raise ValueError(f"max_backtracks must be a positive integer, got {max_backtracks}")
        self._theta = theta.detach().clone()
        self.last: StepInfo | None = None
        self.stalled = False
        if residual is not None:
            r0 = float((residual(self._theta) ** 2).sum())
            l0 = float(self.f(self._theta))
            if not math.isclose(r0, l0, rel_tol=1e-5, abs_tol=1e-12):
                raise ValueError(f"residual does not match the loss: ||r||^2 = {r0:.6g} but loss = {l0:.6g}; "
                                 f"pass the residual vector whose squared norm is the loss (pinn.residual_vector)")

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self._theta

    def state_dict(self) -> dict[str, Any]:
        """The adaptive damping :math:`\\mu` (LM, gradient-norm) for :class:`pinnkit.training.TrainState`."""
        return {"mu": self.mu}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.mu = float(state["mu"])

    def step(self) -> None:
        """Advance one optimizer step (updates :attr:`theta`)."""
        theta = self._theta
        if self.variant in ("gauss_newton", "levenberg_marquardt"):
            assert self.residual is not None
            r = self.residual(theta).detach()
            J = jacobian(self.residual, theta)
            loss_t, g = (r @ r), 2.0 * (J.T @ r)
            C = 2.0 * (J.T @ J)
        else:
            loss_t, _, g = value_and_grad(self.f, theta)
            C = hessian(self.f, theta)
        loss = float(loss_t)
        if self.variant == "gradient_norm":
            lam, V = torch.linalg.eigh(C)
            Vg = V.T @ g
            gn2 = float(g @ g)
            grad = torch.func.grad(self.f)
            alpha, new = 0.0, theta
            for _ in range(self.max_backtracks):
                d = -(V @ (lam * Vg / (lam ** 2 + self.mu)))
                trial = theta + d
                gt = grad(trial)
                value = float(gt @ gt)
                if math.isfinite(value) and value < gn2:
                    new, alpha = trial, 1.0
                    self.mu = max(self.mu / 4.0, 1e-30)
                    break
                self.mu *= 4.0
        elif self.variant == "levenberg_marquardt":
            lam, V = torch.linalg.eigh(C)
            Vg = V.T @ g
            alpha, new = 0.0, theta
            for _ in range(self.max_backtracks):
                d = -(V @ (Vg / (lam.clamp_min(0.0) + self.mu)))
                trial = theta + d
                value = float(self.f(trial))
                if math.isfinite(value) and value < loss:
                    new, alpha = trial, 1.0
                    self.mu = max(self.mu / 2.0, 1e-15)
                    break
                self.mu *= 2.0
        else:
            if self.variant == "saddle_free_newton":
                d = saddle_free_direction(C, g, self.mu, self.rcond)
            else:
                d = newton_direction(C, g, self.rcond)
            if self.variant == "damped_newton" and float(g @ d) >= 0.0:
                d = -g  # Newton direction points uphill (indefinite H): steepest descent instead
            if self.line_search:
                ls = armijo(self.f, theta, loss, g, d, c1=self.c1, max_halvings=self.max_backtracks)
                new, alpha = ls.theta, ls.step
            else:
                new, alpha = theta + d, 1.0
        self.last = StepInfo(loss, float(torch.linalg.vector_norm(g)), float(torch.linalg.vector_norm(new - theta)),
                             alpha, self.mu)
        self.stalled = bool(torch.equal(new, theta))
        self._theta = new.detach()


def newton(terms_fn: TermsFn, theta: Tensor, *, rcond: float | None = None) -> NewtonStepper:
    """Undamped Newton: full steps, pseudo-inverse of the dense Hessian (:class:`NewtonStepper`)."""
    return NewtonStepper(terms_fn, theta, "newton", rcond=rcond)


def damped_newton(terms_fn: TermsFn, theta: Tensor, *, rcond: float | None = None, c1: float = 1e-4,
                  max_backtracks: int = 40) -> NewtonStepper:
    """Newton direction with an Armijo line search, :math:`-g` when uphill (:class:`NewtonStepper`)."""
    return NewtonStepper(terms_fn, theta, "damped_newton", rcond=rcond, c1=c1, max_backtracks=max_backtracks)


def saddle_free_newton(terms_fn: TermsFn, theta: Tensor, *, damping: float = 0.0, rcond: float | None = None,
                       line_search: bool = True, c1: float = 1e-4, max_backtracks: int = 40) -> NewtonStepper:
    r"""Saddle-free Newton, :math:`d = -(|H| + \mu I)^{+} g`, with line search (:class:`NewtonStepper`)."""
    return NewtonStepper(terms_fn, theta, "saddle_free_newton", damping=damping, rcond=rcond,
                         line_search=line_search, c1=c1, max_backtracks=max_backtracks)


def gauss_newton(terms_fn: TermsFn, theta: Tensor, *, residual: Callable[[Tensor], Tensor] | None = None,
                 rcond: float | None = None, c1: float = 1e-4, max_backtracks: int = 40) -> NewtonStepper:
    r"""Gauss–Newton, :math:`d = -(2J^\top J)^{+} g`, with line search; ``residual`` required."""
    return NewtonStepper(terms_fn, theta, "gauss_newton", residual=residual, rcond=rcond, c1=c1,
                         max_backtracks=max_backtracks)


def levenberg_marquardt(terms_fn: TermsFn, theta: Tensor, *, residual: Callable[[Tensor], Tensor] | None = None,
                        damping: float = 1e-3, max_backtracks: int = 40) -> NewtonStepper:
    r"""Levenberg–Marquardt, :math:`d = -(2J^\top J + \mu I)^{-1} g`, adaptive :math:`\mu`; ``residual`` required."""
    return NewtonStepper(terms_fn, theta, "levenberg_marquardt", residual=residual, damping=damping,
                         max_backtracks=max_backtracks)


def gradient_norm(terms_fn: TermsFn, theta: Tensor, *, damping: float = 1e-6, max_backtracks: int = 40
                  ) -> NewtonStepper:
    r"""Levenberg–Marquardt on :math:`\|\nabla L\|^2`, :math:`d = -(H^2 + \mu I)^{-1} H g`: finds stationary
    points of any index.
    """
    return NewtonStepper(terms_fn, theta, "gradient_norm", damping=damping, max_backtracks=max_backtracks)


#: the Newton-family steppers of this module (all registered in :data:`pinnkit.training.STEPPERS`)
METHODS: dict[str, Callable[..., NewtonStepper]] = {
    "newton": newton, "damped_newton": damped_newton, "saddle_free_newton": saddle_free_newton,
    "gauss_newton": gauss_newton, "levenberg_marquardt": levenberg_marquardt, "gradient_norm": gradient_norm}
