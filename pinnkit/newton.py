r"""Newton-family steps on the flat parameter vector, with the dense Hessian (Rowan 2025).

All steps solve a model of the loss around :math:`\theta` with a curvature matrix :math:`C`,
:math:`\theta_+ = \theta + \alpha d`, :math:`d = -C^{+} g`, :math:`g = \nabla L(\theta)`:

============================  =========================================================================
``"newton"``                  :math:`C = H` (dense Hessian), :math:`\alpha = 1`; the minimum-norm
                              least-squares solution when :math:`H` is singular (eigenvalues below
                              ``rcond * max|lambda|`` are dropped). It solves :math:`\nabla L = 0`, so it is
                              attracted by *every* stationary point — saddles included.
``"damped_newton"``           the same direction with a backtracking (Armijo) line search on the loss; when
                              the Newton direction is not a descent direction it falls back to :math:`-g`.
``"saddle_free_newton"``      :math:`C = |H| + \mu I` (Dauphin et al. 2014): eigenvalues replaced by their
                              absolute values, so negative-curvature directions are *descended*.
``"gauss_newton"``            :math:`C = G = 2J^\top J` for :math:`L = \|r\|^2` (needs ``residual=``),
                              positive semi-definite, with the Armijo line search.
``"levenberg_marquardt"``     :math:`C = G + \mu I`, :math:`\mu` halved after a successful step and doubled
                              (step retried) when the loss would increase — a trust-region method.
``"gradient_norm"``           a stationary-point *finder*: Levenberg–Marquardt on :math:`\|\nabla L\|^2`,
                              :math:`d = -(H^2 + \mu I)^{-1} H g`, :math:`\mu` adapted so that
                              :math:`\|\nabla L\|` decreases. It converges to minima, saddles and maxima alike.
============================  =========================================================================

Each is a stepper for :func:`pinnkit.train` (``factory(terms_fn, theta, **options)`` with ``.step()`` and
``.theta``) and :func:`run` drives any of them to a gradient tolerance.

>>> import torch
>>> A = torch.tensor([[3., 1.], [1., 2.]], dtype=torch.float64); b = torch.tensor([1., -1.], dtype=torch.float64)
>>> f = lambda th: 0.5 * th @ A @ th - b @ th          # quadratic: one Newton step lands on A^{-1} b
>>> res = run(f, "newton", steps=5, theta0=torch.zeros(2, dtype=torch.float64))
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
from .train import STEPPERS as _TRAIN_STEPPERS
from .train import TermsFn, as_terms, resolve, value_and_grad

__all__ = ["newton_direction", "saddle_free_direction", "NewtonStepper", "NewtonResult", "run",
           "METHODS",
           "newton", "damped_newton", "saddle_free_newton", "gauss_newton", "levenberg_marquardt", "gradient_norm"]


def _total(terms_fn: TermsFn) -> Callable[[Tensor], Tensor]:
    return lambda th: sum(terms_fn(th).values())


def _cutoff(lam: Tensor, rcond: float | None) -> float:
    if rcond is None:
        rcond = lam.numel() * torch.finfo(lam.dtype).eps
    return float(rcond * lam.abs().max().clamp_min(torch.finfo(lam.dtype).tiny))


def newton_direction(H: Tensor, g: Tensor, rcond: float | None = None) -> Tensor:
    r"""Minimum-norm least-squares solution of :math:`H d = -g` (symmetric :math:`H`), by ``eigh``.

    :math:`d = -\sum_{|\lambda_i| > c} \lambda_i^{-1} (v_i^\top g)\, v_i` with :math:`c` = ``rcond`` times the
    largest :math:`|\lambda|` (default ``P * eps``). Equals ``torch.linalg.solve(H, -g)`` when :math:`H` is
    well conditioned.

    >>> H = torch.tensor([[2., 0.], [0., 0.]], dtype=torch.float64)   # singular: the y-direction is dropped
    >>> newton_direction(H, torch.tensor([4., 1.], dtype=torch.float64))
    tensor([-2., -0.], dtype=torch.float64)
    """
    lam, V = torch.linalg.eigh(H)
    keep = lam.abs() > _cutoff(lam, rcond)
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    return -(V @ (inv * (V.T @ g)))


def saddle_free_direction(H: Tensor, g: Tensor, damping: float = 0.0, rcond: float | None = None) -> Tensor:
    r"""Saddle-free Newton direction :math:`d = -(|H| + \mu I)^{+} g`, :math:`|H| = V|\Lambda|V^\top`.

    Always a descent direction (:math:`g^\top d \le 0`). On :math:`x^2 - y^2` at :math:`(1, 1)`:

    >>> H = torch.diag(torch.tensor([2., -2.], dtype=torch.float64))
    >>> saddle_free_direction(H, torch.tensor([2., -2.], dtype=torch.float64))   # x -> 0, y moves away
    tensor([-1.,  1.], dtype=torch.float64)
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    lam, V = torch.linalg.eigh(H)
    a = lam.abs() + damping
    keep = a > _cutoff(a, rcond)
    inv = torch.where(keep, 1.0 / torch.where(keep, a, torch.ones_like(a)), torch.zeros_like(a))
    return -(V @ (inv * (V.T @ g)))


@dataclass(frozen=True)
class StepInfo:
    """What the last step did: loss and gradient norm *before* it, the step length and line-search factor."""

    loss: float
    grad_norm: float
    step_norm: float
    alpha: float
    mu: float = math.nan


class NewtonStepper:
    """One Newton-family step per :meth:`step` on a copy of ``theta`` (see the module table for ``variant``).

    Args:
        variant: ``"newton"``, ``"damped_newton"``, ``"saddle_free_newton"``, ``"gauss_newton"`` or
            ``"levenberg_marquardt"``.
        residual: ``theta -> r`` with ``loss == ||r||^2`` (Gauss–Newton / LM only; e.g. ``pinn.residual_vector``).
        rcond: relative eigenvalue cut-off of the pseudo-inverse (default ``P * eps``).
        damping: :math:`\\mu` added to :math:`|H|` (saddle-free) or the initial :math:`\\mu` of LM.
        line_search: Armijo backtracking (default on for damped Newton, saddle-free and Gauss–Newton).
        max_backtracks, c1: line-search halvings and sufficient-decrease constant.
    """

    VARIANTS = ("newton", "damped_newton", "saddle_free_newton", "gauss_newton", "levenberg_marquardt",
                "gradient_norm")

    def __init__(self, terms_fn: TermsFn, theta: Tensor, variant: str = "newton", *,
                 residual: Callable[[Tensor], Tensor] | None = None, rcond: float | None = None,
                 damping: float | None = None, line_search: bool | None = None, max_backtracks: int = 40,
                 c1: float = 1e-4, **_: Any):
        if variant not in self.VARIANTS:
            raise ValueError(f"unknown Newton variant {variant!r}; valid: {', '.join(self.VARIANTS)}")
        if variant in ("gauss_newton", "levenberg_marquardt") and residual is None:
            raise ValueError(f"{variant} needs residual= a function theta -> r with loss == ||r||^2 "
                             f"(for a PINN or Regression pass residual=model.residual_vector)")
        self.variant = variant
        self.f = _total(as_terms(terms_fn))
        self.residual = residual
        self.rcond = rcond
        defaults = {"saddle_free_newton": 0.0, "levenberg_marquardt": 1e-3, "gradient_norm": 1e-6}
        default_damping = defaults.get(variant, 0.0)
        self.mu = float(default_damping if damping is None else damping)
        if self.mu < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.line_search = (variant in ("damped_newton", "saddle_free_newton", "gauss_newton")
                            if line_search is None else bool(line_search))
        self.max_backtracks, self.c1 = int(max_backtracks), float(c1)
        self._theta = theta.detach().clone()
        self.last: StepInfo | None = None
        if residual is not None:
            r0 = float((residual(self._theta) ** 2).sum())
            l0 = float(self.f(self._theta))
            if not math.isclose(r0, l0, rel_tol=1e-5, abs_tol=1e-12):
                raise ValueError(f"residual does not match the loss: ||r||^2 = {r0:.6g} but loss = {l0:.6g}; "
                                 f"pass the residual vector whose squared norm is the loss (pinn.residual_vector)")

    @property
    def theta(self) -> Tensor:
        return self._theta

    def _backtrack(self, theta: Tensor, loss: float, g: Tensor, d: Tensor) -> tuple[Tensor, float]:
        slope = float(g @ d)
        alpha = 1.0
        for _ in range(self.max_backtracks):
            trial = theta + alpha * d
            value = float(self.f(trial))
            if math.isfinite(value) and value <= loss + self.c1 * alpha * slope:
                return trial, alpha
            alpha *= 0.5
        return theta, 0.0  # no acceptable step: stay (the runner then reports no progress)

    def step(self) -> None:
        theta = self._theta
        if self.variant in ("gauss_newton", "levenberg_marquardt"):
            r = self.residual(theta).detach()
            J = jacobian(self.residual, theta)
            loss_t, g = (r @ r), 2.0 * (J.T @ r)
            C = 2.0 * (J.T @ J)
        else:
            loss_t, _, g = value_and_grad(as_terms(self.f), theta)
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
            alpha = 0.0
            new = theta
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
                new, alpha = self._backtrack(theta, loss, g, d)
            else:
                new, alpha = theta + d, 1.0
        self.last = StepInfo(loss, float(torch.linalg.vector_norm(g)), float(torch.linalg.vector_norm(new - theta)),
                             alpha, self.mu)
        self._theta = new.detach()


def gradient_norm(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    r"""Levenberg–Marquardt on :math:`\|\nabla L\|^2`: finds stationary points of any index."""
    return NewtonStepper(terms_fn, theta, "gradient_norm", **options)


def newton(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    """Undamped exact Newton (full step, pseudo-inverse of the dense Hessian)."""
    return NewtonStepper(terms_fn, theta, "newton", **options)


def damped_newton(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    """Exact Newton direction with an Armijo backtracking line search on the loss."""
    return NewtonStepper(terms_fn, theta, "damped_newton", **options)


def saddle_free_newton(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    """Saddle-free Newton, :math:`d = -(|H| + \\mu I)^{-1} g` (Dauphin et al. 2014), with line search."""
    return NewtonStepper(terms_fn, theta, "saddle_free_newton", **options)


def gauss_newton(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    """Gauss–Newton, :math:`d = -(2J^\\top J)^{+} g`, with line search (needs ``residual=``)."""
    return NewtonStepper(terms_fn, theta, "gauss_newton", **options)


def levenberg_marquardt(terms_fn: TermsFn, theta: Tensor, **options: Any) -> NewtonStepper:
    """Levenberg–Marquardt, :math:`d = -(2J^\\top J + \\mu I)^{-1} g` with adaptive :math:`\\mu`
    (needs ``residual=``)."""
    return NewtonStepper(terms_fn, theta, "levenberg_marquardt", **options)


#: the Newton-family steppers of this module (``pk.train`` knows them once registered in ``STEPPERS``)
METHODS: dict[str, Callable[..., Any]] = {"newton": newton, "damped_newton": damped_newton,
                                          "saddle_free_newton": saddle_free_newton, "gauss_newton": gauss_newton,
                                          "levenberg_marquardt": levenberg_marquardt, "gradient_norm": gradient_norm}


@dataclass(frozen=True)
class NewtonResult:
    """A run of :func:`run`: entry ``i`` of ``loss``/``grad_norm`` describes the iterate after ``step[i]`` steps;
    ``theta`` is the last logged iterate and ``steps`` its step count.

    ``status`` is ``"converged"`` (gradient norm below ``grad_tol``), ``"max_steps"``, ``"stalled"`` (a
    Newton-family step found no acceptable step) or ``"diverged"`` (non-finite or exploding loss; ``theta`` is
    then the last finite logged iterate).
    """

    method: str
    theta: Tensor
    theta0: Tensor
    loss: tuple[float, ...]
    grad_norm: tuple[float, ...]
    step: tuple[int, ...]  # the step count of each logged entry
    status: str
    steps: int

    @property
    def final_loss(self) -> float:
        return self.loss[-1]

    @property
    def final_grad_norm(self) -> float:
        return self.grad_norm[-1]


def run(objective: Any, method: str = "newton", steps: int = 50, *, theta0: Tensor | None = None,
        grad_tol: float = 1e-10, diverge: float = 1e8, log_every: int = 1, **options: Any) -> NewtonResult:
    """Iterate ``method`` from ``theta0`` until ``||grad|| <= grad_tol`` or ``steps`` steps.

    Args:
        objective: a model with ``terms``/``theta0`` (``PINN``, ``Regression``) or a function ``theta -> loss``.
        method: a name in :data:`METHODS` or any :data:`pinnkit.train.STEPPERS` entry (``"adam"``, ``"lbfgs"``).
        grad_tol: stop when the gradient norm of the iterate is at most this.
        diverge: stop (``status="diverged"``) when the loss exceeds this multiple of its initial value.
        log_every: record (and test ``grad_tol``) every this many steps, and after the last (cheap first-order runs).
        **options: passed to the stepper (``residual=``, ``damping=``, ``rcond=``, ``lr=``, ...).
    """
    factories = {**_TRAIN_STEPPERS, **METHODS}
    if method not in factories:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(factories)}")
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    terms_fn, theta0 = resolve(objective, theta0)
    theta = theta0.detach().clone()
    loss, _, g = value_and_grad(terms_fn, theta)
    losses, gnorms, logged = [float(loss)], [float(torch.linalg.vector_norm(g))], [0]
    first = max(abs(losses[0]), 1e-30)
    status = "converged" if gnorms[0] <= grad_tol else "max_steps"
    stepper = factories[method](terms_fn, theta, **options)
    good, k = theta, 0   # good: the last logged (finite) iterate
    while status != "converged" and k < steps:
        stepper.step()
        new = stepper.theta.detach().clone()  # torch steppers update their parameter in place
        k += 1
        if k % log_every and k < steps:
            continue
        loss, _, g = value_and_grad(terms_fn, new)
        value, gn = float(loss), float(torch.linalg.vector_norm(g))
        if not (math.isfinite(value) and math.isfinite(gn)) or value > diverge * first:
            status = "diverged"
            break
        stalled = isinstance(stepper, NewtonStepper) and bool(torch.equal(new, good))
        good = new
        losses.append(value)
        gnorms.append(gn)
        logged.append(k)
        if gn <= grad_tol:
            status = "converged"
        elif stalled:
            status = "stalled"
            break
    return NewtonResult(method=method, theta=good.clone(), theta0=theta0.detach().clone(), loss=tuple(losses),
                        grad_norm=tuple(gnorms), step=tuple(logged), status=status, steps=logged[-1])


def plot_endpoints(model: Any, endpoints: Any, seed: int, axes: Any = None) -> Any:
    """Left: loss against step of every run from ``seed``; right: the function each run ended at, with the target.

    ``endpoints`` are :class:`pinnkit.stationary.Endpoint` from :func:`pinnkit.stationary.survey` and ``model``
    the one built for ``seed`` (a :class:`~pinnkit.regression.Regression` or a 1-D :class:`~pinnkit.PINN`).
    """
    import matplotlib.pyplot as plt
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    else:
        fig = axes[0].figure
    X = model.X_eval
    with torch.no_grad():
        target = model.y_eval if hasattr(model, "y_eval") else model.u_exact
        axes[1].plot(X[:, 0].cpu(), target.cpu(), "k--", lw=2, label="target")
        for e in endpoints:
            if e.seed != seed:
                continue
            axes[0].loglog([k + 1 for k in e.run.step], e.run.loss, label=e.name)
            axes[1].plot(X[:, 0].cpu(), model.predict(e.run.theta, X).cpu(), label=e.name)
    axes[0].set_xlabel("optimizer step + 1")
    axes[0].set_ylabel("loss")
    axes[0].set_title(f"loss histories (seed {seed})")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("x")
    axes[1].set_ylabel("u(x)")
    axes[1].set_title("where each run ended")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
