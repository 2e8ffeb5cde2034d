r"""NysNewton-CG (NNCG) of Rathore et al. (2024, Appendix E): damped Newton–CG with a Nyström preconditioner.

Each iteration solves the damped Newton system

.. math::  (H + \mu I)\, d = \nabla L(\theta)

by preconditioned conjugate gradients (warm-started from the previous direction), then steps
:math:`\theta \leftarrow \theta - t d` with Armijo backtracking. The preconditioner is a randomized Nyström
approximation :math:`\hat H = U \hat\Lambda U^\top` of rank ``s`` (refreshed every ``F`` iterations), with

.. math::  P^{-1} = (\hat\lambda_s + \mu)\, U (\hat\Lambda + \mu I)^{-1} U^\top + (I - U U^\top).

Two modes (``safeguard=``), because the authors' code (``opt_for_pinns``, ``nys_newton_cg.py``) has no safeguard:

* ``safeguard=False`` (default) — **the paper's algorithm**: CG runs through negative curvature
  (:math:`p^\top(H+\mu I)p \le 0`; it only counts it) until the tolerance or the iteration cap, and the direction is
  used even when it is not a descent direction (the authors print a warning; Armijo then accepts only a vanishing
  step, so the iterate does not move).
* ``safeguard=True`` — CG stops at the first negative-curvature direction and returns its last iterate (truncated
  Newton–CG, Nocedal & Wright, Algorithm 7.1), and if :math:`g^\top d \le 0` the step falls back to the
  preconditioned gradient :math:`P^{-1} g`, which is always a descent direction. This guarantees progress where the
  paper's mode cannot move (tested on a double well), but on the stalled PINNs of chapter 5 it truncated CG after a
  few iterations and lowered the loss less than the paper's mode; hence it is an option, not the default.

Other differences, both modes: the CG tolerance is relative, :math:`\|r\| \le \mathrm{tol}\,\|g\|` (the authors':
absolute, 1e-16, which in practice means "always run ``cg_iters``"); the Armijo search (:func:`pinnkit.linesearch.armijo`
on :math:`-d`, sufficient-decrease constant ``alpha``, shrink ``beta``) gives up after 40 halvings (step 0); an
indefinite Nyström core is handled by keeping its positive part (see :func:`nystrom`). Every step's CG diagnostics
are kept in :attr:`NNCGStepper.diagnostics` (:class:`NNCGStep`).

>>> import torch
>>> A = torch.diag(torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)); b = torch.ones(3, dtype=torch.float64)
>>> f = lambda th: 0.5 * th @ A @ th - b @ th
>>> s = nncg_stepper(lambda th: {"loss": f(th)}, torch.zeros(3, dtype=torch.float64), mu=1e-8, rank=2)
>>> s.step(); bool(torch.allclose(s.theta, b / A.diagonal(), atol=1e-6)), s.last.exit
(True, 'tolerance')

Use it through the trainer: ``pk.train(pinn, "adam+lbfgs+nncg", steps, switch=(n_adam, n_lbfgs))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from .curvature import hvp_operator
from .linesearch import armijo
from .objective import TermsFn, total

__all__ = ["NystromPreconditioner", "nystrom", "pcg", "CGResult", "NNCGStep", "NNCGStepper",
           "nncg_stepper", "GDArmijoStepper", "gd_armijo_stepper"]

MatVec = Callable[[Tensor], Tensor]

#: CG exit reasons (:attr:`CGResult.exit`)
EXITS = ("tolerance", "max_iter", "negative_curvature")


@dataclass(frozen=True)
class NystromPreconditioner:
    r"""Randomized Nyström preconditioner for :math:`H + \mu I`.

    ``U`` (``P x s``, orthonormal columns) and ``lhat`` (``s``, descending, :math:`\ge 0`) give
    :math:`\hat H = U\,\mathrm{diag}(\hat\lambda)\,U^\top`; :math:`P = \frac{1}{\hat\lambda_s+\mu}
    U(\hat\Lambda + \mu I)U^\top + (I - UU^\top)`. ``indefinite`` is True when the sketched core
    :math:`Q^\top H Q` was not positive definite and only its positive part was used.
    """

    U: Tensor
    lhat: Tensor
    mu: float
    indefinite: bool = False

    @property
    def rank(self) -> int:
        """The rank of the Nystrom approximation (its number of eigenvalues)."""
        return int(self.lhat.numel())

    def _apply(self, v: Tensor, power: float) -> Tensor:
        """:math:`P^{-power} v` for ``v`` of shape ``(P,)`` or ``(P, k)``."""
        scale = ((self.lhat[-1] + self.mu) / (self.lhat + self.mu)) ** power
        y = self.U.T @ v
        yv = scale * y if v.ndim == 1 else scale[:, None] * y
        return self.U @ yv + v - self.U @ y

    def apply_inverse(self, v: Tensor) -> Tensor:
        r""":math:`P^{-1} v = (\hat\lambda_s+\mu) U(\hat\Lambda+\mu I)^{-1}U^\top v + v - UU^\top v`."""
        return self._apply(v, 1.0)

    def apply_inverse_sqrt(self, v: Tensor) -> Tensor:
        r""":math:`P^{-1/2} v` (same eigenvectors, square-rooted eigenvalues)."""
        return self._apply(v, 0.5)

    def approximation(self) -> Tensor:
        r"""The dense rank-``s`` approximation :math:`\hat H = U \hat\Lambda U^\top` (for tests and small ``P``)."""
        return (self.U * self.lhat) @ self.U.T


def nystrom(H: MatVec | Tensor, n: int, rank: int, mu: float, *, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> NystromPreconditioner:
    r"""Randomized Nyström approximation of the symmetric ``n x n`` matrix ``H`` (Appendix E, Algorithm 5).

    Steps: Gaussian :math:`\Omega`; :math:`Q = \mathrm{qr}(\Omega)`; :math:`Y = HQ`; shift
    :math:`\nu = \sqrt{n}\,\epsilon\,\|Y\|_F`, :math:`Y_\nu = Y + \nu Q`; core :math:`M = Q^\top Y_\nu`;
    :math:`B = Y_\nu C^{-\top}` with :math:`C = \mathrm{chol}(M)`; thin SVD :math:`B = U\Sigma V^\top`;
    :math:`\hat\lambda = \max(0, \Sigma^2 - \nu)`, so :math:`\hat H = Y_\nu M^{-1} Y_\nu^\top - \nu I` on the range.

    If :math:`H` is indefinite the core :math:`M` may be too, and Cholesky fails. The authors then shift :math:`M`
    by :math:`|\lambda_{\min}(M)|`, which makes it *nearly singular*: the Nyström formula divides by that near-zero
    eigenvalue and returns a fake top eigenvalue orders of magnitude above :math:`\lambda_{\max}(H)`, and the
    "preconditioned" system is worse conditioned than the plain one. Here the core is instead eigendecomposed,
    :math:`M = V\,\mathrm{diag}(w)\,V^\top`, and pseudo-inverted (:math:`|w_i| > s\,\epsilon\max_j|w_j|`): the
    indefinite Nyström approximation :math:`Y_\nu M^+ Y_\nu^\top = B J B^\top` with
    :math:`B = Y_\nu V |W|^{-1/2}`, :math:`J = \mathrm{sign}(W)`, is eigendecomposed through a thin QR of
    :math:`B`, and its non-positive part is dropped, :math:`\hat\lambda = \max(0, \ell - \nu)`, as the paper's
    :math:`\max(0, S^2 - \nu)` intends. When the sketch spans the range of a low-rank :math:`H` this recovers the
    exact positive spectrum (tested); in general it is the Nyström approximation (Frangella, Tropp & Udell 2023) of
    the curvature the sketch sees, with the negative directions left to the identity part of :math:`P^{-1}`. The
    result has ``indefinite=True``.

    Args:
        H: a dense symmetric matrix, or a batched product ``V -> (H V^T)^T`` on rows ``V`` of shape ``(s, n)``
            (as :func:`pinnkit.curvature.hvp_batch` / :class:`~pinnkit.curvature.HVPOperator`).
        n: the dimension. rank: the sketch size ``s``. mu: the damping stored in the preconditioner.
        generator: random generator of the test matrix. dtype, device: of the sketch (taken from ``H`` if dense).

    Returns:
        The :class:`NystromPreconditioner` (``U`` columns, ``lhat`` descending and non-negative).

    Raises:
        ValueError: ``rank`` is not in ``1..n``.
    """
    if not 0 < rank <= n:
        raise ValueError(f"rank must be in 1..{n} (the number of parameters), got {rank}; lower rank=")
    if isinstance(H, Tensor):
        dense = H
        H = lambda V: V @ dense  # noqa: E731  (symmetric: (H V^T)^T = V H)
        dtype, device = dense.dtype, dense.device
    omega = torch.randn(n, rank, generator=generator, dtype=dtype, device="cpu").to(device)
    Q, _ = torch.linalg.qr(omega)
    Y = H(Q.T).T                                            # n x s
    nu = math.sqrt(n) * torch.finfo(dtype).eps * float(torch.linalg.matrix_norm(Y))
    Y_nu = Y + nu * Q
    core = Q.T @ Y_nu
    core = 0.5 * (core + core.T)
    C, info = torch.linalg.cholesky_ex(core)
    indefinite = int(info) != 0
    if not indefinite:
        B = torch.linalg.solve_triangular(C, Y_nu.T, upper=False).T   # B = Y_nu C^{-T}
        U, S, _ = torch.linalg.svd(B, full_matrices=False)
        lhat = (S ** 2 - nu).clamp_min(0.0)
    else:                            # pseudo-inverse core, then the positive part of Y_nu M^+ Y_nu^T
        w, V = torch.linalg.eigh(core)
        keep = w.abs() > rank * torch.finfo(dtype).eps * float(w.abs().max())
        if not bool(keep.any()):                            # the sketch saw no curvature: identity preconditioner
            return NystromPreconditioner(U=Q[:, :1], lhat=torch.zeros(1, dtype=dtype, device=device), mu=float(mu),
                                         indefinite=True)
        B = (Y_nu @ V[:, keep]) / w[keep].abs().sqrt()      # Y_nu M^+ Y_nu^T = B J B^T, J = sign(w)
        Qb, Rb = torch.linalg.qr(B)
        K = (Rb * torch.sign(w[keep])) @ Rb.T
        ell, Z = torch.linalg.eigh(0.5 * (K + K.T))
        U, lhat = (Qb @ Z).flip(1), (ell.flip(0) - nu).clamp_min(0.0)   # descending; non-positive part -> 0
    return NystromPreconditioner(U=U, lhat=lhat, mu=float(mu), indefinite=indefinite)


@dataclass(frozen=True)
class CGResult:
    """Result of :func:`pcg`: the solution ``x``, the CG iterations used, the final relative residual
    :math:`\\|b - Ax\\| / \\|b\\|` and preconditioned residual :math:`\\sqrt{r^\\top M^{-1} r / b^\\top M^{-1} b}`,
    why CG stopped (``exit``: ``"tolerance"``, ``"max_iter"`` or ``"negative_curvature"``) and how many
    search directions had :math:`p^\\top A p \\le 0` (``negative_curvature_hits``).
    """

    x: Tensor
    iters: int
    rel_residual: float
    precond_residual: float
    exit: str
    negative_curvature_hits: int = 0

    @property
    def negative_curvature(self) -> bool:
        """Whether CG met a direction of non-positive curvature."""
        return self.negative_curvature_hits > 0


def pcg(A: MatVec, b: Tensor, x0: Tensor | None = None, M_inv: MatVec | None = None, tol: float = 1e-8,
        max_iter: int = 100, *, stop_on_negative_curvature: bool = True) -> CGResult:
    r"""Preconditioned conjugate gradients for :math:`Ax = b` (``A`` symmetric).

    Stops when :math:`\|b - Ax\| \le \mathrm{tol}\,\|b\|` (``exit="tolerance"``), after ``max_iter`` products
    (``"max_iter"``), or — with ``stop_on_negative_curvature`` — at the first direction with :math:`p^\top A p \le 0`
    (``"negative_curvature"``; ``x`` is then the last iterate). Without it CG carries on as the authors' code does
    (a negative step length along ``p``), only counting such directions; an exactly zero curvature still stops it.

    Returns:
        A :class:`CGResult`.
    """
    M_inv = M_inv or (lambda v: v)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    bnorm = float(torch.linalg.vector_norm(b)) or 1.0
    bMb = float(torch.dot(b, M_inv(b))) or 1.0
    r = b - A(x) if x0 is not None else b.clone()
    z = M_inv(r)
    p = z.clone()
    rz = torch.dot(r, z)
    k, hits, exit_ = 0, 0, "max_iter"
    while True:
        if float(torch.linalg.vector_norm(r)) <= tol * bnorm:
            exit_ = "tolerance"
            break
        if k >= max_iter:
            break
        Ap = A(p)
        curv = torch.dot(p, Ap)
        if float(curv) <= 0:
            hits += 1
            if stop_on_negative_curvature or float(curv) == 0:
                exit_ = "negative_curvature"
                break
        alpha = rz / curv
        x = x + alpha * p
        r = r - alpha * Ap
        z = M_inv(r)
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
        k += 1
    return CGResult(x=x, iters=k, rel_residual=float(torch.linalg.vector_norm(r)) / bnorm,
                    precond_residual=math.sqrt(abs(float(torch.dot(r, M_inv(r)))) / abs(bMb)), exit=exit_,
                    negative_curvature_hits=hits)


@dataclass(frozen=True)
class NNCGStep:
    """Diagnostics of one NNCG step.

    ``cg_iters``, ``exit`` (``"tolerance"`` / ``"max_iter"`` / ``"negative_curvature"``), ``rel_residual`` and
    ``precond_residual`` describe the CG solve; ``negative_curvature_hits`` counts CG directions with
    :math:`p^\\top(H+\\mu I)p \\le 0`; ``descent`` is :math:`g^\\top d > 0` for the CG direction; ``fallback`` says
    the preconditioned gradient was used instead (safeguard mode only); ``t`` is the Armijo step (0: no step
    accepted); ``hvps`` counts Hessian-vector products of the step (CG + Nyström refresh); ``refreshed`` and
    ``indefinite`` describe the preconditioner.
    """

    step: int
    loss_before: float
    loss_after: float
    cg_iters: int
    exit: str
    rel_residual: float
    precond_residual: float
    negative_curvature_hits: int
    descent: bool
    fallback: bool
    t: float
    hvps: int
    refreshed: bool
    indefinite: bool


class _CountedIterate:
    """An iterate ``_theta`` and a loss whose evaluations are counted in ``evals`` (NNCG and its GD control)."""

    loss: Callable[[Tensor], Tensor]
    _theta: Tensor
    evals: int

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self._theta

    def _counted(self, th: Tensor) -> Tensor:
        self.evals += 1
        return self.loss(th)


class NNCGStepper(_CountedIterate):
    """NNCG on a flat ``theta`` (the stepper protocol of :mod:`pinnkit.train`): ``step()`` = one Newton–CG
    iteration (one "iteration" in Rathore et al.'s count). ``diagnostics`` holds one :class:`NNCGStep` per step,
    ``last`` the latest. See the module docstring for ``safeguard`` (False, the default: the paper's algorithm).

    Budgets: ``evals`` counts loss evaluations so far (per step one loss-and-gradient evaluation, the loss at the
    current point, and every Armijo trial; :attr:`pinnkit.train.History.evals` logs it) and ``hvps`` the
    Hessian-vector products (CG and the Nyström sketch).
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0, chunk: int = 16, seed: int = 0, safeguard: bool = False):
        if mu <= 0 or refresh <= 0 or cg_iters <= 0 or chunk <= 0:
            raise ValueError(f"mu, refresh, cg_iters and chunk must be positive; got mu={mu}, refresh={refresh}, "
                             f"cg_iters={cg_iters}, chunk={chunk}")
        if not (0 < alpha < 1 and 0 < beta < 1 and max_step > 0):
            raise ValueError(f"Armijo needs 0 < alpha < 1, 0 < beta < 1 and max_step > 0; got alpha={alpha}, "
                             f"beta={beta}, max_step={max_step}")
        self.loss = total(terms_fn)
        self._theta = theta.detach().clone()
        self.rank = min(int(rank), theta.numel())
        self.mu, self.refresh, self.cg_iters, self.cg_tol = float(mu), int(refresh), int(cg_iters), float(cg_tol)
        self.alpha, self.beta, self.max_step, self.chunk = float(alpha), float(beta), float(max_step), int(chunk)
        self.safeguard = bool(safeguard)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.precond: NystromPreconditioner | None = None
        self.d: Tensor | None = None
        self.k = 0
        self.evals = 0     # loss evaluations so far (a gradient counts one)
        self.hvps = 0      # Hessian-vector products so far
        self.diagnostics: list[NNCGStep] = []

    @property
    def last(self) -> NNCGStep | None:
        """Diagnostics of the latest step (None before the first)."""
        return self.diagnostics[-1] if self.diagnostics else None

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on, for :class:`pinnkit.train.TrainState`: the step count (it decides
        when the preconditioner is refreshed), the preconditioner, the CG warm start and the sketch's random
        state (``theta`` is saved separately; the diagnostics are not kept).
        """
        pre = self.precond
        return {"k": self.k, "d": self.d, "gen": self.gen.get_state(), "evals": self.evals, "hvps": self.hvps,
                "precond": None if pre is None else {"U": pre.U, "lhat": pre.lhat, "mu": pre.mu,
                                                     "indefinite": pre.indefinite}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.k, self.d = int(state["k"]), state["d"]
        self.evals, self.hvps = int(state.get("evals", 0)), int(state.get("hvps", 0))
        self.gen.set_state(state["gen"])
        pre = state["precond"]
        self.precond = None if pre is None else NystromPreconditioner(pre["U"], pre["lhat"], float(pre["mu"]),
                                                                      bool(pre["indefinite"]))

    def step(self) -> None:
        """One NNCG iteration.

        Raises:
            FloatingPointError: the gradient or the CG direction is not finite (``theta`` is left unchanged).
        """
        th = self._theta
        op = hvp_operator(self.loss, th)          # gradient graph built once, reused by every product below
        g, f0 = op.grad, float(self._counted(th))
        self.evals += 1                           # the gradient (built by hvp_operator)
        if not (math.isfinite(f0) and bool(torch.isfinite(g).all())):
            raise FloatingPointError(f"NNCG step {self.k}: the loss or gradient is not finite at the current theta; "
                                     "train in float64 or stop the previous phase earlier")
        refreshed = self.precond is None or self.k % self.refresh == 0
        if refreshed:
            rows = lambda V: torch.cat([op(V[i:i + self.chunk]) for i in range(0, V.shape[0], self.chunk)])  # noqa
            self.precond = nystrom(rows, th.numel(), self.rank, self.mu, generator=self.gen, dtype=th.dtype,
                                   device=th.device)
        assert self.precond is not None
        A = lambda v: op(v) + self.mu * v  # noqa: E731
        cg = pcg(A, g, x0=self.d, M_inv=self.precond.apply_inverse, tol=self.cg_tol, max_iter=self.cg_iters,
                 stop_on_negative_curvature=self.safeguard)
        d = cg.x
        if not bool(torch.isfinite(d).all()):
            raise FloatingPointError(
                f"NNCG step {self.k}: the CG direction is not finite (CG exit {cg.exit!r} after {cg.iters} "
                f"iterations); theta is unchanged. Raise the damping mu= (now {self.mu:g}), train in float64, or "
                "use safeguard=True (stops CG at negative curvature)")
        descent = float(torch.dot(g, d)) > 0
        fallback = self.safeguard and not descent
        if fallback:                              # not a descent direction: use the preconditioned gradient
            d = self.precond.apply_inverse(g)
        ls = armijo(self._counted, th, f0, g, -d, c1=self.alpha, shrink=self.beta, max_step=self.max_step)  # th - t d
        self.d = cg.x.detach()                    # warm start from the CG solution, as the authors
        self._theta = ls.theta.detach()
        self.diagnostics.append(NNCGStep(
            step=self.k, loss_before=f0, loss_after=ls.loss, cg_iters=cg.iters,
            exit=cg.exit, rel_residual=cg.rel_residual, precond_residual=cg.precond_residual,
            negative_curvature_hits=cg.negative_curvature_hits, descent=descent, fallback=fallback, t=ls.step,
            hvps=op.calls, refreshed=refreshed, indefinite=self.precond.indefinite))
        self.hvps += op.calls
        self.k += 1


def nncg_stepper(terms_fn: TermsFn, theta: Tensor, *, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0, chunk: int = 16, seed: int = 0, safeguard: bool = False) -> NNCGStepper:
    """Stepper factory for :data:`pinnkit.train.STEPPERS` (``"nncg"``).

    Defaults are the paper's (rank 60, refresh 20, Armijo ``alpha`` 0.1 / ``beta`` 0.5, ``max_step`` 1) with
    CPU-friendly CG limits (the paper: 1000 iterations, absolute tolerance 1e-16). ``chunk``: Hessian-vector
    products per batch in the Nyström sketch; ``seed``: of the sketch; ``safeguard``: see :mod:`pinnkit.nncg`
    (False = the paper's algorithm).
    """
    return NNCGStepper(terms_fn, theta, mu=mu, rank=rank, refresh=refresh, cg_iters=cg_iters, cg_tol=cg_tol,
                       alpha=alpha, beta=beta, max_step=max_step, chunk=chunk, seed=seed, safeguard=safeguard)


class GDArmijoStepper(_CountedIterate):
    r"""Gradient descent with NNCG's Armijo search: :math:`\theta \leftarrow \theta - t\nabla L`, the first
    trial :math:`t` = ``max_step``, halved (``beta``) until :math:`L` falls by ``alpha`` :math:`t\|\nabla L\|^2`.

    The control for NNCG: the same line search and budget without curvature, so a gain NNCG makes and this does
    not comes from the curvature, not from the line search. ``evals`` counts loss evaluations (one
    loss-and-gradient evaluation per step and every Armijo trial), ``last_t`` the latest accepted step (0: none
    accepted).

    >>> import torch
    >>> s = GDArmijoStepper(lambda th: {"loss": (th ** 2).sum()}, torch.ones(2, dtype=torch.float64), max_step=1.0)
    >>> s.step(); s.theta.tolist(), s.last_t, s.evals      # t = 1 overshoots to -1, t = 1/2 lands on 0
    ([0.0, 0.0], 0.5, 3)
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0):
        if not (0 < alpha < 1 and 0 < beta < 1 and max_step > 0):
            raise ValueError(f"Armijo needs 0 < alpha < 1, 0 < beta < 1 and max_step > 0; got alpha={alpha}, "
                             f"beta={beta}, max_step={max_step}")
        self.loss = total(terms_fn)
        self._theta = theta.detach().clone()
        self.alpha, self.beta, self.max_step = float(alpha), float(beta), float(max_step)
        self.evals, self.k, self.last_t = 0, 0, math.nan

    def step(self) -> None:
        """One gradient step with Armijo backtracking.

        Raises:
            FloatingPointError: the loss or gradient is not finite (``theta`` is left unchanged).
        """
        th = self._theta.detach().requires_grad_(True)
        f = self.loss(th)
        (g,) = torch.autograd.grad(f, th)
        self.evals += 1                           # the loss and its gradient
        f0 = float(f.detach())
        if not (math.isfinite(f0) and bool(torch.isfinite(g).all())):
            raise FloatingPointError(f"GD step {self.k}: the loss or gradient is not finite; train in float64")
        ls = armijo(self._counted, self._theta, f0, g, -g, c1=self.alpha, shrink=self.beta, max_step=self.max_step)
        self._theta, self.last_t = ls.theta.detach(), ls.step
        self.k += 1

    def state_dict(self) -> dict[str, Any]:
        """The step count and evaluation count (``theta`` is saved separately)."""
        return {"k": self.k, "evals": self.evals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.k, self.evals = int(state["k"]), int(state.get("evals", 0))


def gd_armijo_stepper(terms_fn: TermsFn, theta: Tensor, *, alpha: float = 0.1, beta: float = 0.5,
                      max_step: float = 1.0) -> GDArmijoStepper:
    """Stepper factory for :data:`pinnkit.train.STEPPERS` (``"gd_armijo"``): :class:`GDArmijoStepper` with
    NNCG's Armijo constants (``alpha`` 0.1, ``beta`` 0.5, first trial ``max_step`` 1).
    """
    return GDArmijoStepper(terms_fn, theta, alpha=alpha, beta=beta, max_step=max_step)


