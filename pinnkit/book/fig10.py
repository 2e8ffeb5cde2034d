r"""Rathore et al.'s Figure 10 and its controls (chapter 3): a 129-parameter convection PINN trained at growing
``n_res``, the Hessian's magnitude ratio, the authors' estimator (:mod:`pinnkit.book.power_iteration`), the
residual term at a fixed ``theta``, and the tangent kernel behind Theorem 8.4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..conditioning import condition_number, range_condition
from ..curvature import hessian, jacobian
from ..objective import term
from ..pinn import PINN
from ..problems import Convection as Problem_convection
from ..training import train
from .power_iteration import DeflatedPower, deflated_power_iteration

__all__ = ["magnitude_ratio", "Fig10Point", "fig10_sweep", "authors_estimate", "ResidualControl", "residual_control",
           "partial_term", "KernelPoint", "tangent_kernel_sweep"]


def magnitude_ratio(eigenvalues: Tensor | Sequence[float]) -> float:
    r""":math:`|\lambda_1| / \min_i |\lambda_i|`: the ratio Rathore et al. plot in their Figure 10.

    Their 129 eigenvalues come from power iteration with deflation, which finds eigenvalues in order of
    **magnitude**, so their :math:`\lambda_1` is the eigenvalue of largest magnitude, their :math:`\lambda_{129}`
    the one of smallest magnitude, and the ratio is the 2-norm condition number :math:`\|H\|\,\|H^{-1}\|`:
    :func:`~pinnkit.conditioning.condition_number` with ``rcut = 0``.

    >>> magnitude_ratio(torch.tensor([-0.5, 0.25, 2.0, 40.0]))    # 40 / 0.25, not 40 / 0.5
    160.0
    """
    ev = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    if float(ev.abs().min()) == 0.0:
        raise ValueError("an eigenvalue is exactly zero: the ratio is infinite (the matrix is singular)")
    return condition_number(ev, rcut=0.0)



@dataclass(frozen=True)
class Fig10Point:
    r"""One point of :func:`fig10_sweep`: the trained PINN at one ``n_res``.

    Attributes:
        n_res: residual points.
        loss, l2re: at the end of training.
        lmax: the largest eigenvalue of the dense Hessian of the loss.
        min_abs: the smallest eigenvalue magnitude.
        ratio: ``lmax / min_abs`` (:func:`magnitude_ratio`).
        n_negative: eigenvalues below ``-1e-8 * lmax``.
        seconds: wall time of training and eigensolve.
        authors_first, authors_last: the first and the last (129th) value of the authors' estimator
            (:func:`~pinnkit.power_iteration.deflated_power_iteration`, ``top_n = P``, ``tol = 1e-3``, at most 500
            iterations, float32) on the float32 Hessian at the same ``theta``; ``nan`` when not asked for.
        authors_ratio: :math:`|\lambda_1/\lambda_{129}|` as the authors plot it.
        n_below: how many exact eigenvalues are smaller in magnitude than ``|authors_last|``.
    """

    n_res: int
    loss: float
    l2re: float
    lmax: float
    min_abs: float
    ratio: float
    n_negative: int
    seconds: float
    authors_first: float = math.nan
    authors_last: float = math.nan
    authors_ratio: float = math.nan
    n_below: int = -1



def fig10_sweep(n_res: Sequence[int], *, adam_steps: int, lbfgs_steps: int, lr: float, seed: int,
                beta: float = 1.0, width: int = 32, dtype: torch.dtype = torch.float64,
                device: str | torch.device | None = None, authors: bool = False) -> list[Fig10Point]:
    r"""Train a one-hidden-layer PINN (width 32: 129 parameters) on convection at each ``n_res`` with Adam
    (``lr``) then L-BFGS, and take the dense Hessian's eigenvalues at the end (``eigvalsh``: exact).

    The same ``seed`` gives the same initial network for every ``n_res``; the residual points are drawn at random,
    without replacement, from the interior of the evaluation grid. Initial points 257, boundary points 101.

    Args:
        n_res: residual point counts, e.g. ``[2**k for k in range(8, 14)]``.
        adam_steps, lbfgs_steps: the schedule (Rathore et al.: 11,000 and 1,500, ``lr = 1e-4``).
        lr: Adam's learning rate.
        seed: initialisation and sampling seed.
        authors: also run the authors' estimator (:func:`authors_estimate`) at each trained ``theta`` (on the
            dense Hessian rounded to float32).

    Returns:
        One :class:`Fig10Point` per ``n_res``.
    """
    import time

    out = []
    for n in n_res:
        t0 = time.perf_counter()
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=257, n_bc=101, seed=seed,
                    dtype=dtype, device=device)
        run = train(pinn, "adam+lbfgs", adam_steps + lbfgs_steps, switch=adam_steps, lr=lr,
                    log_every=max(1, (adam_steps + lbfgs_steps) // 10))
        H = hessian(pinn.loss, run.theta)
        ev = torch.linalg.eigvalsh(H)
        extra: dict[str, Any] = {}
        if authors:
            est = authors_estimate(pinn, run.theta, seed=seed, hessian64=H if H.dtype == torch.float64 else None)
            last = float(est.eigenvalues[-1])
            extra = dict(authors_first=float(est.eigenvalues[0]), authors_last=last, authors_ratio=est.ratio,
                         n_below=int((ev.abs() < abs(last)).sum()))
        out.append(Fig10Point(int(n), run.loss, run.l2re, float(ev[-1]), float(ev.abs().min()),
                              magnitude_ratio(ev), int((ev < -1e-8 * float(ev[-1])).sum()),
                              time.perf_counter() - t0, **extra))
    return out



def authors_estimate(pinn: PINN, theta: Tensor, *, seed: int = 0, top_n: int | None = None, tol: float = 1e-3,
                     max_iter: int = 500, hessian64: Tensor | None = None) -> DeflatedPower:
    r"""Rathore et al.'s Figure 10 estimator at ``theta``: :func:`~pinnkit.power_iteration.deflated_power_iteration`
    (``top_n`` = all parameters, ``tol = 1e-3``, at most 500 iterations per value) in **float32**, on the Hessian
    of ``pinn``'s loss formed in float32 at ``theta`` rounded to float32, on the same points (a tanh network, as in
    Figure 10).

    The authors multiply by the Hessian with float32 autograd products; we form the float32 Hessian once (the
    network is small) and multiply by it — the same operator up to float32 rounding, far below the estimator's own
    error. ``hessian64``: a dense float64 Hessian already at hand, rounded to float32 instead of forming it again
    (again the same operator up to float32 rounding, relative ``1e-7`` against a floor near ``1e-4`` of
    :math:`\lambda_1`).

    Returns:
        A :class:`~pinnkit.power_iteration.DeflatedPower` (``.ratio``: :math:`|\lambda_1/\lambda_{129}|`).
    """
    if hessian64 is not None:
        H32 = hessian64.to(torch.float32)
    else:
        p32 = PINN(pinn.problem, widths=list(pinn.widths), n_res=1, n_ic=1, n_bc=1, seed=0, dtype=torch.float32,
                   device=pinn.device)
        p32.points = {k: v.to(torch.float32) for k, v in pinn.points.items()}
        H32 = hessian(p32.loss, theta.detach().to(torch.float32))
    return deflated_power_iteration(H32, top_n=top_n or H32.shape[0], tol=tol, max_iter=max_iter, seed=seed,
                                    dtype=torch.float32)



@dataclass(frozen=True)
class ResidualControl:
    r"""The residual term's Hessian at one fixed ``theta`` as ``n_res`` grows (:func:`residual_control`).

    Attributes:
        n_res: residual points.
        lmax: the largest eigenvalue of the residual term's Hessian.
        min_abs: the smallest :math:`|\lambda|` above ``rcut * max|lambda|``.
        ratio: ``max|lambda| / min_abs``, the condition number on the range (:func:`range_condition`): the
            residual term does not depend on the output bias (the operator annihilates constants), so its
            Hessian has an exact zero eigenvalue and no finite :func:`magnitude_ratio`.
        rank: eigenvalues above the cutoff.
        distance: :math:`\|H_n - H_{N}\|_F / \|H_{N}\|_F` against the largest ``n_res`` ``N``.
    """

    n_res: int
    lmax: float
    min_abs: float
    ratio: float
    rank: int
    distance: float



def residual_control(n_res: Sequence[int], *, seed: int, beta: float = 1.0, width: int = 32, rcut: float = 1e-12,
                     dtype: torch.dtype = torch.float64, device: str | torch.device | None = None
                     ) -> list[ResidualControl]:
    r"""The control for :func:`fig10_sweep`: the Hessian of the residual term alone,
    :math:`\frac1n\sum_i r_i^2`, at the **initial** ``theta`` (the same for every ``n``). A mean over points is a
    Monte-Carlo estimate of an integral, so at a fixed ``theta`` it converges as ``n`` grows (distance to the
    largest ``n`` of order :math:`n^{-1/2}`); it has no reason to grow.

    Returns:
        One :class:`ResidualControl` per ``n_res`` (the last has ``distance == 0``).
    """
    Hs = []
    for n in n_res:
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=257, n_bc=101, seed=seed,
                    dtype=dtype, device=device)
        Hs.append(hessian(term(pinn.terms, "residual"), pinn.theta0))
    ref = Hs[-1]
    out = []
    for n, H in zip(n_res, Hs):
        rc = range_condition(torch.linalg.eigvalsh(H), rcut=rcut)
        out.append(ResidualControl(int(n), rc.lmax, rc.smallest, rc.kappa, rc.rank,
                                   float(torch.linalg.matrix_norm(H - ref) / torch.linalg.matrix_norm(ref))))
    return out



def partial_term(pinn: PINN, name: str) -> Callable[[Tensor], Tensor]:
    """``theta -> pinn.residuals(theta)[name]``: one term's residual vector as a function of ``theta``."""
    return lambda theta: pinn.residuals(theta)[name]



@dataclass(frozen=True)
class KernelPoint:
    r"""The tangent kernels at one ``n_res`` (:func:`tangent_kernel_sweep`).

    Attributes:
        n_res: residual points.
        n_rows: rows of the whole loss's kernel, :math:`n = n_{\rm res} + n_{\rm ic} + n_{\rm bc}`.
        n_params: :math:`p`.
        lmax_res, lmin_res: extreme eigenvalues of the residual term's kernel
            :math:`K_{\rm res} = J_{\rm res}J_{\rm res}^\top / n_{\rm res}` (``n_res`` square).
        rel_min_res: ``lmin_res / lmax_res`` (near :math:`10^{-16}`: singular to working precision).
        rel_min_all: the same for the whole loss's kernel :math:`JJ^\top` (``J``: Jacobian of
            ``pinn.residual_vector``, each term scaled by :math:`1/\sqrt{N_k}`).
    """

    n_res: int
    n_rows: int
    n_params: int
    lmax_res: float
    lmin_res: float
    rel_min_res: float
    rel_min_all: float



def tangent_kernel_sweep(n_res: Sequence[int], *, seed: int, width: int = 32, n_ic: int = 8, n_bc: int = 4,
                         beta: float = 1.0, dtype: torch.dtype = torch.float64,
                         device: str | torch.device | None = None) -> list[KernelPoint]:
    r"""The tangent kernel :math:`JJ^\top` of a one-hidden-layer convection PINN (width 32: :math:`p = 129`, the
    network of Figure 10) at its **initial** ``theta`` as ``n_res`` grows: the quantity behind Rathore et al.'s
    Definition 8.3. With the residuals :math:`r` of the loss :math:`L = \|r\|^2`,
    :math:`\|\nabla L\|^2 = 4 r^\top JJ^\top r \ge 4\lambda_{\min}(JJ^\top) L`: the loss is PL* with
    :math:`\mu = 4\lambda_{\min}(JJ^\top)`, which can be positive only when :math:`p \ge n`.

    The same ``seed`` gives the same network for every ``n_res``; the points are the problem's own grid samples.

    Returns:
        One :class:`KernelPoint` per ``n_res``.
    """
    out = []
    for n in n_res:
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=n_ic, n_bc=n_bc, seed=seed,
                    dtype=dtype, device=device)
        theta = pinn.theta0
        J = jacobian(pinn.residual_vector, theta)
        Jr = jacobian(partial_term(pinn, "residual"), theta) / math.sqrt(int(n))
        ev_all = torch.linalg.eigvalsh(J @ J.T)
        ev = torch.linalg.eigvalsh(Jr @ Jr.T)
        out.append(KernelPoint(int(n), J.shape[0], pinn.n_params, float(ev[-1]), float(ev[0]),
                               float(ev[0] / ev[-1]), float(ev_all[0] / ev_all[-1])))
    return out
