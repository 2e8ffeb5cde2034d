r"""NysNewton-CG (NNCG) of Rathore et al. (2024, Appendix E): damped Newton–CG with a Nyström preconditioner.

Each iteration solves the damped Newton system

.. math::  (H + \mu I)\, d = \nabla L(\theta)

by preconditioned conjugate gradients (warm-started from the previous direction), then steps
:math:`\theta \leftarrow \theta - t d` with Armijo backtracking. The preconditioner is a randomized Nyström
approximation :math:`\hat H = U \hat\Lambda U^\top` of rank ``s`` (refreshed every ``F`` iterations), with

.. math::  P^{-1} = (\hat\lambda_s + \mu)\, U (\hat\Lambda + \mu I)^{-1} U^\top + (I - U U^\top).

>>> import torch
>>> A = torch.diag(torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)); b = torch.ones(3, dtype=torch.float64)
>>> f = lambda th: 0.5 * th @ A @ th - b @ th
>>> s = nncg_stepper(lambda th: {"loss": f(th)}, torch.zeros(3, dtype=torch.float64), mu=1e-8, rank=2)
>>> s.step(); bool(torch.allclose(s.theta, b / A.diagonal(), atol=1e-6))
True

Use it through the trainer: ``pk.train(pinn, "adam+lbfgs+nncg", steps, switch=(n_adam, n_lbfgs))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .curvature import hvp_operator
from .train import TermsFn

__all__ = ["NystromPreconditioner", "nystrom", "pcg", "CGResult", "armijo", "NNCGStepper", "nncg_stepper",
           "RATHORE2024", "RATHORE2024_SECONDS", "optimizer_table"]

MatVec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class NystromPreconditioner:
    r"""Randomized Nyström preconditioner for :math:`H + \mu I`.

    ``U`` (``P x s``, orthonormal columns) and ``lhat`` (``s``, descending, :math:`\ge 0`) give
    :math:`\hat H = U\,\mathrm{diag}(\hat\lambda)\,U^\top`; :math:`P = \frac{1}{\hat\lambda_s+\mu}
    U(\hat\Lambda + \mu I)U^\top + (I - UU^\top)`.
    """

    U: Tensor
    lhat: Tensor
    mu: float

    @property
    def rank(self) -> int:
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

    ``H`` is a dense matrix or a batched product ``V -> (H V^T)^T`` on rows ``V`` of shape ``(s, n)`` (as
    :func:`pinnkit.curvature.hvp_batch` / :class:`~pinnkit.curvature.HVPOperator`).
    Steps: Gaussian :math:`\Omega`; :math:`Q = \mathrm{qr}(\Omega)`;
    :math:`Y = HQ`; shift :math:`\nu = \sqrt{n}\,\epsilon\,\|Y\|`; :math:`C = \mathrm{chol}(Q^\top Y_\nu)` (if
    :math:`H` is indefinite, eigen-fallback: shift further by :math:`|\lambda_{\min}|`); :math:`B = Y_\nu C^{-\top}`;
    thin SVD :math:`B = U\Sigma V^\top`; :math:`\hat\lambda = \max(0, \Sigma^2 - \nu)`.
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
    if int(info) != 0:                                      # indefinite: shift further by |lambda_min| + nu
        extra = float(torch.linalg.eigvalsh(core).min().abs()) + nu
        nu = nu + extra
        Y_nu = Y_nu + extra * Q
        core = Q.T @ Y_nu
        C = torch.linalg.cholesky(0.5 * (core + core.T))
    B = torch.linalg.solve_triangular(C, Y_nu.T, upper=False).T   # B = Y_nu C^{-T}
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    lhat = (S ** 2 - nu).clamp_min(0.0)
    return NystromPreconditioner(U=U, lhat=lhat, mu=float(mu))


@dataclass(frozen=True)
class CGResult:
    """Solution ``x`` of the damped system, iterations used, final relative residual, and whether CG met
    negative curvature (then ``x`` is the last iterate with positive curvature)."""

    x: Tensor
    iters: int
    rel_residual: float
    negative_curvature: bool


def pcg(A: MatVec, b: Tensor, x0: Tensor | None = None, M_inv: MatVec | None = None, tol: float = 1e-8,
        max_iter: int = 100) -> CGResult:
    r"""Preconditioned conjugate gradients for :math:`Ax = b` (``A`` symmetric), stopping when
    :math:`\|b - Ax\| \le \mathrm{tol}\,\|b\|` or after ``max_iter`` products, or on negative curvature."""
    M_inv = M_inv or (lambda v: v)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    bnorm = float(torch.linalg.vector_norm(b)) or 1.0
    r = b - A(x) if x0 is not None else b.clone()
    z = M_inv(r)
    p = z.clone()
    rz = torch.dot(r, z)
    k, neg = 0, False
    while float(torch.linalg.vector_norm(r)) > tol * bnorm and k < max_iter:
        Ap = A(p)
        curv = torch.dot(p, Ap)
        if float(curv) <= 0:
            neg = True
            break
        alpha = rz / curv
        x = x + alpha * p
        r = r - alpha * Ap
        z = M_inv(r)
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
        k += 1
    return CGResult(x=x, iters=k, rel_residual=float(torch.linalg.vector_norm(r)) / bnorm, negative_curvature=neg)


def armijo(f: Callable[[Tensor], Tensor], theta: Tensor, f0: float, g: Tensor, d: Tensor, alpha: float = 0.1,
           beta: float = 0.5, t0: float = 1.0, max_halvings: int = 40) -> float:
    r"""Backtracking step :math:`t` with :math:`f(\theta - t d) \le f(\theta) - \alpha t\, g^\top d`; 0 if none."""
    slope = float(torch.dot(g, d))
    t = t0
    for _ in range(max_halvings):
        ft = float(f(theta - t * d))
        if math.isfinite(ft) and ft <= f0 - alpha * t * slope:
            return t
        t *= beta
    return 0.0


class NNCGStepper:
    """NNCG on a flat ``theta`` (the stepper protocol of :mod:`pinnkit.train`): ``step()`` = one Newton–CG
    iteration. ``last`` holds the diagnostics of the latest step (CG iterations, step size, ...)."""

    def __init__(self, terms_fn: TermsFn, theta: Tensor, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, alpha: float = 0.1, beta: float = 0.5,
                 max_step: float = 1.0, chunk: int = 16, seed: int = 0):
        if mu <= 0 or refresh <= 0 or cg_iters <= 0:
            raise ValueError(f"mu, refresh and cg_iters must be positive; got mu={mu}, refresh={refresh}, "
                             f"cg_iters={cg_iters}")
        self.loss = lambda th: sum(terms_fn(th).values())
        self._theta = theta.detach().clone()
        self.rank = min(int(rank), theta.numel())
        self.mu, self.refresh, self.cg_iters, self.cg_tol = float(mu), int(refresh), int(cg_iters), float(cg_tol)
        self.alpha, self.beta, self.max_step, self.chunk = alpha, beta, max_step, int(chunk)
        self.gen = torch.Generator().manual_seed(seed)
        self.precond: NystromPreconditioner | None = None
        self.d: Tensor | None = None
        self.k = 0
        self.last: dict[str, Any] = {}

    @property
    def theta(self) -> Tensor:
        return self._theta

    def step(self) -> None:
        th = self._theta
        op = hvp_operator(self.loss, th)          # gradient graph built once, reused by every product below
        if self.precond is None or self.k % self.refresh == 0:
            rows = lambda V: torch.cat([op(V[i:i + self.chunk]) for i in range(0, V.shape[0], self.chunk)])  # noqa
            self.precond = nystrom(rows, th.numel(), self.rank, self.mu, generator=self.gen, dtype=th.dtype,
                                   device=th.device)
        g, f0 = op.grad, float(self.loss(th))
        A = lambda v: op(v) + self.mu * v  # noqa: E731
        cg = pcg(A, g, x0=self.d, M_inv=self.precond.apply_inverse, tol=self.cg_tol, max_iter=self.cg_iters)
        d = cg.x
        if float(torch.dot(g, d)) <= 0:          # not a descent direction: fall back to the preconditioned gradient
            d = self.precond.apply_inverse(g)
        t = armijo(self.loss, th, f0, g, d, self.alpha, self.beta, self.max_step)
        self.d = d.detach()
        self._theta = (th - t * d).detach()
        self.k += 1
        self.last = {"cg_iters": cg.iters, "cg_rel_residual": cg.rel_residual, "step": t,
                     "negative_curvature": cg.negative_curvature, "loss_before": f0}


def nncg_stepper(terms_fn: TermsFn, theta: Tensor, mu: float = 1e-2, rank: int = 60, refresh: int = 20,
                 cg_iters: int = 100, cg_tol: float = 1e-8, **_: Any) -> NNCGStepper:
    """Stepper factory for :data:`pinnkit.train.STEPPERS` (``"nncg"``); defaults are the paper's
    (rank 60, refresh 20, Armijo 0.1/0.5, max step 1) with CPU-friendly CG limits (the paper: 1000 its, 1e-16)."""
    return NNCGStepper(terms_fn, theta, mu=mu, rank=rank, refresh=refresh, cg_iters=cg_iters, cg_tol=cg_tol)


# --- the paper's numbers and a comparison table ------------------------------------------------------------
#: Rathore et al. (2024): Table 1 (loss, L2RE; best over widths/seeds), Table 2 (Adam+L-BFGS then NNCG) and
#: Table 3 (seconds per iteration on a Titan V, L-BFGS vs NNCG).
RATHORE2024: dict[str, dict[str, tuple[float, float]]] = {
    "convection": {"adam": (1.40e-4, 5.96e-2), "lbfgs": (1.51e-5, 8.26e-3), "adam+lbfgs": (5.95e-6, 4.19e-3),
                   "adam+lbfgs+nncg": (3.63e-7, 1.94e-3)},
    "reaction": {"adam": (4.73e-6, 2.12e-2), "lbfgs": (8.93e-6, 3.83e-2), "adam+lbfgs": (3.26e-6, 1.92e-2),
                 "adam+lbfgs+nncg": (2.89e-7, 9.92e-3)},
    "wave": {"adam": (2.03e-2, 3.49e-1), "lbfgs": (1.84e-2, 3.35e-1), "adam+lbfgs": (1.12e-3, 5.52e-2),
             "adam+lbfgs+nncg": (6.13e-5, 1.27e-2)},
}
RATHORE2024_SECONDS: dict[str, dict[str, float]] = {
    "convection": {"lbfgs": 0.046, "nncg": 0.25}, "reaction": {"lbfgs": 0.036, "nncg": 0.72},
    "wave": {"lbfgs": 0.090, "nncg": 29.0},
}


def optimizer_table(runs: dict[str, dict[str, Any]], paper: dict[str, dict[str, tuple[float, float]]] | None = None,
                    seconds: dict[str, dict[str, float]] | None = None) -> str:
    """A text table, one row per (problem, method): our loss, L2RE, final gradient norm and seconds per step
    (``TrainResult``s in ``runs[problem][method]``) beside the paper's loss / L2RE (default :data:`RATHORE2024`) and
    seconds per iteration (default :data:`RATHORE2024_SECONDS`; L-BFGS and NNCG only)."""
    paper = RATHORE2024 if paper is None else paper
    seconds = RATHORE2024_SECONDS if seconds is None else seconds
    head = (f"{'problem':<11}{'method':<17}{'loss':>9}{'L2RE':>9}{'|grad|':>9}{'s/step':>8}   "
            f"{'paper loss':>10}{'paper L2RE':>11}{'paper s/it':>11}")
    lines = [head, "-" * len(head)]
    for prob, methods in runs.items():
        for m, r in methods.items():
            pl, pe = paper.get(prob, {}).get(m, (math.nan, math.nan))
            ps = seconds.get(prob, {}).get(m.split("+")[-1] if m != "adam+lbfgs" else "", math.nan)
            lines.append(f"{prob:<11}{m:<17}{r.loss:>9.1e}{r.l2re:>9.1e}{r.grad_norm:>9.1e}"
                         f"{r.seconds_per_step():>8.3f}   {pl:>10.1e}{pe:>11.1e}{ps:>11.3g}")
    return "\n".join(lines)
