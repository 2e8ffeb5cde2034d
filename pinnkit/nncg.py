r"""NysNewton-CG (NNCG, Rathore et al. 2024, App. E): damped Newton–CG with a Nyström preconditioner.

Each step solves :math:`(H + \mu I)\,d = \nabla L(\theta)` by preconditioned CG (warm-started from the previous
direction) and steps :math:`\theta \leftarrow \theta - t d` with Armijo backtracking. The preconditioner is a
rank-``s`` Nyström approximation :math:`\hat H = U \hat\Lambda U^\top` (refreshed every ``refresh`` steps),

.. math::  P^{-1} = (\hat\lambda_s + \mu)\, U (\hat\Lambda + \mu I)^{-1} U^\top + (I - U U^\top).

``safeguard=False`` (default) is the paper's algorithm: CG runs through negative curvature and the direction is
used even if :math:`g^\top d \le 0`. ``safeguard=True`` stops CG at negative curvature (Nocedal & Wright, Alg. 7.1)
and falls back to :math:`P^{-1} g` when :math:`g^\top d \le 0`. The CG tolerance is relative,
:math:`\|r\| \le \mathrm{tol}\,\|g\|` (the authors': absolute 1e-16).

>>> import torch
>>> A = torch.diag(torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)); b = torch.ones(3, dtype=torch.float64)
>>> f = lambda th: 0.5 * th @ A @ th - b @ th
>>> s = nncg_stepper(lambda th: {"loss": f(th)}, torch.zeros(3, dtype=torch.float64), mu=1e-8, rank=2)
>>> s.step(); bool(torch.allclose(s.theta, b / A.diagonal(), atol=1e-6)), s.last.exit
(True, 'tolerance')
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

__all__ = ["NystromPreconditioner", "step_reason", "nystrom", "pcg", "CGResult", "NNCGStep", "NNCGStepper",
           "nncg_stepper", "GDArmijoStepper", "gd_armijo_stepper"]

MatVec = Callable[[Tensor], Tensor]

#: CG exit reasons (:attr:`CGResult.exit`)
EXITS = ("tolerance", "max_iter", "negative_curvature")


def step_reason(exit: str, descent: bool, accepted: bool) -> str:
    """How an NNCG step ended, as :attr:`NNCGStepper.last_stop` reports it (:attr:`pinnkit.training.History.stops`):
    the CG exit (:data:`EXITS`), whether :math:`g^\\top d > 0` and whether the Armijo search accepted a step.

    >>> step_reason("max_iter", descent=False, accepted=False)
    'max_iter:ascent:no_step'
    """
    return f"{exit}:{'descent' if descent else 'ascent'}:{'step' if accepted else 'no_step'}"


@dataclass(frozen=True)
class NystromPreconditioner:
    r""":math:`\hat H = U\,\mathrm{diag}(\hat\lambda)\,U^\top` (``U`` ``(P, s)`` orthonormal, ``lhat`` descending,
    :math:`\ge 0`) and the preconditioner :math:`P` of :math:`H + \mu I`; ``indefinite``: the sketched core was not
    positive definite and only its positive part was kept.
    """

    U: Tensor
    lhat: Tensor
    mu: float
    indefinite: bool = False

    @property
    def rank(self) -> int:
        """The rank ``s`` of the approximation."""
        return int(self.lhat.numel())

    def _apply(self, v: Tensor, power: float) -> Tensor:
        scale = ((self.lhat[-1] + self.mu) / (self.lhat + self.mu)) ** power
        y = self.U.T @ v
        yv = scale * y if v.ndim == 1 else scale[:, None] * y
        return self.U @ yv + v - self.U @ y

    def apply_inverse(self, v: Tensor) -> Tensor:
        r""":math:`P^{-1} v` for ``v`` of shape ``(P,)`` or ``(P, k)``."""
        return self._apply(v, 1.0)

    def apply_inverse_sqrt(self, v: Tensor) -> Tensor:
        r""":math:`P^{-1/2} v`."""
        return self._apply(v, 0.5)

    def approximation(self) -> Tensor:
        r"""The dense :math:`\hat H = U \hat\Lambda U^\top`."""
        return (self.U * self.lhat) @ self.U.T


def nystrom(H: MatVec | Tensor, n: int, rank: int, mu: float, *, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> NystromPreconditioner:
    r"""Randomized Nyström approximation of the symmetric ``n x n`` matrix ``H`` (App. E, Algorithm 5).

    :math:`Q = \mathrm{qr}(\Omega)`, :math:`Y_\nu = HQ + \nu Q` (:math:`\nu = \sqrt n\,\epsilon\,\|HQ\|_F`),
    :math:`C = \mathrm{chol}(Q^\top Y_\nu)`, :math:`Y_\nu C^{-\top} = U\Sigma V^\top`,
    :math:`\hat\lambda = \max(0, \Sigma^2 - \nu)`. If the core :math:`M = Q^\top Y_\nu` is indefinite, it is
    pseudo-inverted by ``eigh`` (not shifted, as the authors do: that divides by a near-zero eigenvalue and
    gives a fake top eigenvalue) and the positive part of :math:`Y_\nu M^{+} Y_\nu^\top - \nu I` is kept.

    ``H``: a dense matrix or a batched product ``V -> (H V^T)^T`` on rows ``V`` ``(s, n)``
    (:class:`~pinnkit.curvature.HVPOperator`). ``rank``: the sketch size ``s`` in ``1..n``.
    """
    if not 0 < rank <= n:
        raise ValueError(f"rank must be in 1..{n} (the number of parameters), got {rank}; lower rank=")
    if isinstance(H, Tensor):
        dense = H
        H = lambda V: V @ dense  # noqa: E731  (symmetric: (H V^T)^T = V H)
        dtype, device = dense.dtype, dense.device
    omega = torch.randn(n, rank, generator=generator, dtype=dtype, device="cpu").to(device)
    Q, _ = torch.linalg.qr(omega)
    Y = H(Q.T).T
    nu = math.sqrt(n) * torch.finfo(dtype).eps * float(torch.linalg.matrix_norm(Y))
    Y_nu = Y + nu * Q
    core = Q.T @ Y_nu
    core = 0.5 * (core + core.T)
    C, info = torch.linalg.cholesky_ex(core)
    indefinite = int(info) != 0
    if not indefinite:
        B = torch.linalg.solve_triangular(C, Y_nu.T, upper=False).T
        U, S, _ = torch.linalg.svd(B, full_matrices=False)
        lhat = (S ** 2 - nu).clamp_min(0.0)
    else:
        w, V = torch.linalg.eigh(core)
        keep = w.abs() > rank * torch.finfo(dtype).eps * float(w.abs().max())
        if not bool(keep.any()):                            # the sketch saw no curvature: identity preconditioner
            return NystromPreconditioner(U=Q[:, :1], lhat=torch.zeros(1, dtype=dtype, device=device), mu=float(mu),
                                         indefinite=True)
        B = (Y_nu @ V[:, keep]) / w[keep].abs().sqrt()      # Y_nu M^+ Y_nu^T = B J B^T, J = sign(w)
        Qb, Rb = torch.linalg.qr(B)
        K = (Rb * torch.sign(w[keep])) @ Rb.T
        ell, Z = torch.linalg.eigh(0.5 * (K + K.T))
        U, lhat = (Qb @ Z).flip(1), (ell.flip(0) - nu).clamp_min(0.0)
    return NystromPreconditioner(U=U, lhat=lhat, mu=float(mu), indefinite=indefinite)


@dataclass(frozen=True)
class CGResult:
    r"""Result of :func:`pcg`: ``x``, iterations, :math:`\|b - Ax\|/\|b\|`, the preconditioned residual
    :math:`\sqrt{r^\top M^{-1} r / b^\top M^{-1} b}`, the ``exit`` reason (:data:`EXITS`) and the number of
    directions with :math:`p^\top A p \le 0`.
    """

    x: Tensor
    iters: int
    rel_residual: float
    precond_residual: float
    exit: str
    negative_curvature_hits: int = 0


def pcg(A: MatVec, b: Tensor, x0: Tensor | None = None, M_inv: MatVec | None = None, tol: float = 1e-8,
        max_iter: int = 100, *, stop_on_negative_curvature: bool = True) -> CGResult:
    r"""Preconditioned conjugate gradients for :math:`Ax = b` (``A`` symmetric).

    Stops at :math:`\|b - Ax\| \le \mathrm{tol}\,\|b\|`, after ``max_iter`` products, or (with
    ``stop_on_negative_curvature``) at the first :math:`p^\top A p \le 0`, returning the last iterate. Without it
    such directions are only counted (the authors' CG); an exactly zero curvature always stops.
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
    """One NNCG step: the CG solve (``cg_iters``, ``exit``, residuals, ``negative_curvature_hits``), whether
    :math:`g^\\top d > 0` (``descent``), whether the preconditioned gradient replaced it (``fallback``), the Armijo
    step ``t`` (0: none accepted), the step's Hessian-vector products and the preconditioner's state.
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


def _check_armijo(alpha: float, beta: float, max_step: float) -> None:
    if not (0 < alpha < 1 and 0 < beta < 1 and max_step > 0):
        raise ValueError(f"Armijo needs 0 < alpha < 1, 0 < beta < 1 and max_step > 0; got alpha={alpha}, "
                         f"beta={beta}, max_step={max_step}")


class _CountedIterate:
    """An iterate ``_theta`` and a loss whose evaluations are counted in ``evals``."""

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
    """NNCG on a flat ``theta``; ``step()`` is one Newton–CG iteration. ``diagnostics`` holds one
    :class:`NNCGStep` per step; ``evals`` counts loss evaluations (gradient, loss, Armijo trials) and ``hvps``
    Hessian-vector products; ``last_stop`` is the latest step's ``(evaluations, reason, numbers)``
    (:func:`step_reason`; numbers: its ``hvps``, ``cg_iters``, Armijo step ``t`` and direction norm ``d_norm``
    :math:`\\|d\\|`), which :func:`pinnkit.train` logs in :attr:`~pinnkit.training.History.stops`.
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0, chunk: int = 16, seed: int = 0, safeguard: bool = False):
        if mu <= 0 or refresh <= 0 or cg_iters <= 0 or chunk <= 0:
            raise ValueError(f"mu, refresh, cg_iters and chunk must be positive; got mu={mu}, refresh={refresh}, "
                             f"cg_iters={cg_iters}, chunk={chunk}")
        _check_armijo(alpha, beta, max_step)
        self.loss = total(terms_fn)
        self._theta = theta.detach().clone()
        self.rank = min(int(rank), theta.numel())
        self.mu, self.refresh, self.cg_iters, self.cg_tol = float(mu), int(refresh), int(cg_iters), float(cg_tol)
        self.alpha, self.beta, self.max_step, self.chunk = float(alpha), float(beta), float(max_step), int(chunk)
        self.safeguard = bool(safeguard)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.precond: NystromPreconditioner | None = None
        self.d: Tensor | None = None
        self.k, self.evals, self.hvps = 0, 0, 0
        self.diagnostics: list[NNCGStep] = []
        self.last_stop: tuple[int, str, dict[str, float]] | None = None

    @property
    def last(self) -> NNCGStep | None:
        """Diagnostics of the latest step (None before the first)."""
        return self.diagnostics[-1] if self.diagnostics else None

    def state_dict(self) -> dict[str, Any]:
        """The step count, preconditioner, CG warm start, counters and the sketch's RNG state (not ``theta``)."""
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
        th, before = self._theta, self.evals
        op = hvp_operator(self.loss, th)          # gradient graph built once, reused by every product below
        g, f0 = op.grad, float(self._counted(th))
        self.evals += 1                           # the gradient
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
            start = "none" if self.d is None else f"{float(torch.linalg.vector_norm(self.d)):.3g}"
            raise FloatingPointError(
                f"NNCG step {self.k}: the CG direction is not finite (CG exit {cg.exit!r} after {cg.iters} "
                f"iterations, {cg.negative_curvature_hits} with p.Ap <= 0, warm start |d| {start}); theta is "
                f"unchanged. Raise the damping mu= (now {self.mu:g}), train in float64, or use safeguard=True "
                "(stops CG at negative curvature)")
        descent = float(torch.dot(g, d)) > 0
        fallback = self.safeguard and not descent
        if fallback:
            d = self.precond.apply_inverse(g)
        ls = armijo(self._counted, th, f0, g, -d, c1=self.alpha, shrink=self.beta, max_step=self.max_step)
        self.d = cg.x.detach()                    # warm start from the CG solution, as the authors
        self._theta = ls.theta.detach()
        self.diagnostics.append(NNCGStep(
            step=self.k, loss_before=f0, loss_after=ls.loss, cg_iters=cg.iters,
            exit=cg.exit, rel_residual=cg.rel_residual, precond_residual=cg.precond_residual,
            negative_curvature_hits=cg.negative_curvature_hits, descent=descent, fallback=fallback, t=ls.step,
            hvps=op.calls, refreshed=refreshed, indefinite=self.precond.indefinite))
        self.hvps += op.calls
        self.last_stop = (self.evals - before, step_reason(cg.exit, descent, ls.accepted),
                          {"hvps": op.calls, "cg_iters": cg.iters, "t": ls.step,
                           "d_norm": float(torch.linalg.vector_norm(cg.x))})
        self.k += 1


def nncg_stepper(terms_fn: TermsFn, theta: Tensor, *, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0, chunk: int = 16, seed: int = 0, safeguard: bool = False) -> NNCGStepper:
    """Stepper factory ``"nncg"`` for :data:`pinnkit.training.STEPPERS`: the paper's rank, refresh and Armijo
    constants, CPU-sized CG limits (the paper: 1000 iterations). ``chunk``: products per batch in the sketch.
    """
    return NNCGStepper(terms_fn, theta, mu=mu, rank=rank, refresh=refresh, cg_iters=cg_iters, cg_tol=cg_tol,
                       alpha=alpha, beta=beta, max_step=max_step, chunk=chunk, seed=seed, safeguard=safeguard)


class GDArmijoStepper(_CountedIterate):
    r"""NNCG's control: :math:`\theta \leftarrow \theta - t\nabla L` with the same Armijo search (first trial
    ``max_step``, shrunk by ``beta`` until :math:`L` falls by ``alpha`` :math:`t\|\nabla L\|^2`); ``last_t``
    is the accepted step (0: none); ``last_stop`` the latest step's ``(evaluations, "step" or "no_step", {"t": t})``
    (:attr:`pinnkit.training.History.stops`).

    >>> import torch
    >>> s = GDArmijoStepper(lambda th: {"loss": (th ** 2).sum()}, torch.ones(2, dtype=torch.float64), max_step=1.0)
    >>> s.step(); s.theta.tolist(), s.last_t, s.evals      # t = 1 overshoots to -1, t = 1/2 lands on 0
    ([0.0, 0.0], 0.5, 3)
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0):
        _check_armijo(alpha, beta, max_step)
        self.loss = total(terms_fn)
        self._theta = theta.detach().clone()
        self.alpha, self.beta, self.max_step = float(alpha), float(beta), float(max_step)
        self.evals, self.k, self.last_t = 0, 0, math.nan
        self.last_stop: tuple[int, str, dict[str, float]] | None = None

    def step(self) -> None:
        """One gradient step with Armijo backtracking.

        Raises:
            FloatingPointError: the loss or gradient is not finite (``theta`` is left unchanged).
        """
        th, before = self._theta.detach().requires_grad_(True), self.evals
        f = self.loss(th)
        (g,) = torch.autograd.grad(f, th)
        self.evals += 1
        f0 = float(f.detach())
        if not (math.isfinite(f0) and bool(torch.isfinite(g).all())):
            raise FloatingPointError(f"GD step {self.k}: the loss or gradient is not finite; train in float64")
        ls = armijo(self._counted, self._theta, f0, g, -g, c1=self.alpha, shrink=self.beta, max_step=self.max_step)
        self._theta, self.last_t = ls.theta.detach(), ls.step
        self.last_stop = (self.evals - before, "step" if ls.accepted else "no_step", {"t": ls.step})
        self.k += 1

    def state_dict(self) -> dict[str, Any]:
        """The step and evaluation counts (``theta`` is saved separately)."""
        return {"k": self.k, "evals": self.evals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.k, self.evals = int(state["k"]), int(state.get("evals", 0))


def gd_armijo_stepper(terms_fn: TermsFn, theta: Tensor, *, alpha: float = 0.1, beta: float = 0.5,
                      max_step: float = 1.0) -> GDArmijoStepper:
    """Stepper factory ``"gd_armijo"`` for :data:`pinnkit.training.STEPPERS` (:class:`GDArmijoStepper`)."""
    return GDArmijoStepper(terms_fn, theta, alpha=alpha, beta=beta, max_step=max_step)
