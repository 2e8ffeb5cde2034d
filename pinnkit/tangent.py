r"""The tangent kernel :math:`K = JJ^\top` of a residual map, :math:`J = \partial r/\partial\theta` (:math:`n \times p`),
and PL*: :math:`\lambda_{\min}(K) > 0` (needs :math:`p \ge n`). Under gradient flow on :math:`\|r\|^2`,
:math:`r' = -2Kr`: the component along an eigenvector of a constant :math:`K` decays as :math:`e^{-2\lambda_i t}`.
Chapter 10's studies are in :mod:`pinnkit.book.tangent_study`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from .curvature import jacobian

__all__ = ["residual_jacobian", "tangent_kernel", "PLStar", "pl_star", "kernel_components"]

Residuals = Callable[[Tensor], "Tensor | Mapping[str, Tensor]"]


def _stacked(residuals: Residuals) -> Callable[[Tensor], Tensor]:
    def r(theta: Tensor) -> Tensor:
        out = residuals(theta)
        return torch.cat([v.reshape(-1) for v in out.values()]) if isinstance(out, Mapping) else out.reshape(-1)
    return r


def residual_jacobian(residuals: Residuals, theta: Tensor, *, force: bool = False) -> Tensor:
    r""":math:`J = \partial r/\partial\theta` (:math:`n\times p`) of a residual vector, or of a dict of residual
    vectors stacked in order (``PINN.residual_vector`` gives the scaled vector whose squared norm is the loss).

    >>> J = residual_jacobian(lambda th: {"a": th[:1] * 3.0, "b": th ** 2}, torch.tensor([1.0, 2.0]))
    >>> J.tolist()
    [[3.0, 0.0], [2.0, 0.0], [0.0, 4.0]]
    """
    return jacobian(_stacked(residuals), theta, force=force)


def tangent_kernel(residuals: Residuals, theta: Tensor, *, force: bool = False) -> Tensor:
    r""":math:`K = JJ^\top`, :math:`K_{ij} = \nabla_\theta r_i \cdot \nabla_\theta r_j` (rank
    :math:`\le \min(n, p)`). For :math:`r = A\theta - b` it is :math:`AA^\top`:

    >>> A = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    >>> K = tangent_kernel(lambda th: A @ th, torch.zeros(2, dtype=torch.float64))
    >>> bool(torch.equal(K, A @ A.T)), torch.linalg.eigvalsh(K)[0].abs().item() < 1e-12   # n = 3 > p = 2
    (True, True)
    """
    J = residual_jacobian(residuals, theta, force=force)
    return J @ J.T


@dataclass(frozen=True)
class PLStar:
    r"""PL* at a point (:func:`pl_star`): ``n`` residuals, ``p`` parameters, ``mu`` :math:`= \lambda_{\min}(K)`
    (0 when :math:`p < n`), ``lmax`` :math:`= \lambda_{\max}(K)`, ``kappa`` ``= lmax / mu`` (``inf`` if ``mu <= 0``).
    """

    n: int
    p: int
    mu: float
    lmax: float
    kappa: float


def pl_star(residuals: Residuals, theta: Tensor, *, force: bool = False) -> PLStar:
    r""":math:`\mu = \lambda_{\min}(JJ^\top)` and :math:`\lambda_{\max}` at ``theta`` (dense, float64).

    >>> pl = pl_star(lambda th: torch.stack([th[0], 2 * th[1]]), torch.zeros(2, dtype=torch.float64))
    >>> pl.mu, pl.lmax, pl.kappa
    (1.0, 4.0, 4.0)
    """
    J = residual_jacobian(residuals, theta, force=force).to(torch.float64)
    ev = torch.linalg.eigvalsh(J @ J.T)
    mu, lmax = float(ev[0]), float(ev[-1])
    return PLStar(int(J.shape[0]), int(J.shape[1]), mu, lmax, lmax / mu if mu > 0 else math.inf)


def kernel_components(K: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Eigenvalues (descending) and eigenvectors (columns) of ``K``, and the components :math:`v_i^\top r` of
    ``r`` (``(n,)`` or ``(n, T)``).

    >>> lam, V, c = kernel_components(torch.diag(torch.tensor([1.0, 3.0])), torch.tensor([2.0, 5.0]))
    >>> lam.tolist(), c.abs().tolist()
    ([3.0, 1.0], [5.0, 2.0])
    """
    lam, V = torch.linalg.eigh(K)
    lam, V = lam.flip(0), V.flip(1)
    return lam, V, V.T @ r
