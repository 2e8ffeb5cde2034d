r"""Chapter 4's conditioning studies: L-BFGS against the Hessian on the top ``k`` eigenvalues, and what a
spectrum predicts for CG (an outlier-aware bound, checked against CG run in float64 and in exact arithmetic).
Built on :mod:`pinnkit.conditioning`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..conditioning import _chebyshev_steps, as_eigenvalues, cluster_share, condition_number
from ..curvature import Eigen

__all__ = ["top_condition", "best_scalar_share", "TopComparison", "compare_top", "CGBound", "cg_bound", "CGCheck",
           "cg_check"]


def top_condition(eigenvalues: Tensor | Sequence[float] | Eigen, k: int) -> float:
    r"""Condition number of the top ``k`` eigenvalues by magnitude, :math:`|\lambda|_{(1)} / |\lambda|_{(k)}`
    (no cutoff; scale-invariant).

    >>> ev = torch.tensor([1e-12, 0.01, 1.0, 4.0], dtype=torch.float64)
    >>> top_condition(ev, 2), top_condition(ev, 3)
    (4.0, 400.0)

    Raises:
        ValueError: ``k`` outside ``1 .. n`` or the ``k``-th magnitude is zero.
    """
    a = as_eigenvalues(eigenvalues).abs().sort(descending=True).values
    if not 1 <= int(k) <= a.numel():
        raise ValueError(f"k must be in 1 .. {a.numel()}, got {k}")
    if float(a[int(k) - 1]) == 0.0:
        raise ValueError(f"the {k}-th largest |eigenvalue| is zero: fewer than {k} directions carry curvature")
    return condition_number(a[:int(k)], rcut=0.0)


def best_scalar_share(eigenvalues: Tensor | Sequence[float] | Eigen, lo: float = 0.5, hi: float = 2.0,
                      ) -> tuple[float, float]:
    r"""``(share, c)``: the largest :func:`~pinnkit.conditioning.cluster_share` of :math:`cA` over :math:`c > 0`,
    and that ``c`` (the window holds the most positive eigenvalues within a ratio ``hi/lo``).

    >>> best_scalar_share(torch.tensor([1.0, 2.0, 3.0, 100.0, 0.0]))   # [1, 3] fits in a ratio 4: c = 0.5
    (0.6, 0.5)
    """
    if not 0.0 < lo <= hi:
        raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
    ev = as_eigenvalues(eigenvalues)
    pos = ev[ev > 0]
    if pos.numel() == 0:
        return 0.0, 1.0
    right = torch.searchsorted(pos, pos * (hi / lo), right=True)     # pos is ascending
    counts = right - torch.arange(pos.numel())
    i = int(counts.argmax())
    return float(counts[i]) / ev.numel(), lo / float(pos[i])


@dataclass(frozen=True)
class TopComparison:
    r"""The Hessian and a preconditioned Hessian on their top ``k`` eigenvalues (see :func:`compare_top`).

    Attributes:
        k: the number of eigenvalues compared.
        kappa_hessian, kappa_preconditioned: :func:`top_condition` of each.
        share_preconditioned: share of the preconditioned top ``k`` in ``[lo, hi]``.
        share_best_scalar, c: :func:`best_scalar_share` of the Hessian's top ``k``.
    """

    k: int
    kappa_hessian: float
    kappa_preconditioned: float
    share_preconditioned: float
    share_best_scalar: float
    c: float

    @property
    def gain(self) -> float:
        """``kappa_hessian / kappa_preconditioned``."""
        return self.kappa_hessian / self.kappa_preconditioned


def compare_top(hessian_eigenvalues: Tensor | Sequence[float] | Eigen,
                preconditioned_eigenvalues: Tensor | Sequence[float] | Eigen, k: int, *, lo: float = 0.5,
                hi: float = 2.0) -> TopComparison:
    r"""Compare :math:`\nabla^2 L` and :math:`P\nabla^2 L` on their top ``k`` eigenvalues by magnitude
    (``k`` e.g. the Gauss–Newton rank: :math:`P\nabla^2 L` keeps the null space of :math:`\nabla^2 L`).

    >>> A = torch.tensor([0.0, 1e-3, 1.0, 10.0, 100.0], dtype=torch.float64)
    >>> t = compare_top(A, torch.tensor([0.0, 1e-3, 0.9, 1.0, 1.2], dtype=torch.float64), 3)
    >>> round(t.kappa_hessian), round(t.kappa_preconditioned, 3), t.share_preconditioned, round(t.share_best_scalar, 3)
    (100, 1.333, 1.0, 0.333)
    """
    def top(e: Tensor | Sequence[float] | Eigen) -> Tensor:
        a = as_eigenvalues(e)
        return a[a.abs().argsort(descending=True)[:int(k)]]

    th, tp = top(hessian_eigenvalues), top(preconditioned_eigenvalues)
    share_c, c = best_scalar_share(th, lo, hi)
    return TopComparison(int(k), top_condition(th, int(k)), top_condition(tp, int(k)), cluster_share(tp, lo, hi),
                         share_c, c)


@dataclass(frozen=True)
class CGBound:
    r"""Iterations CG needs, in exact arithmetic, to reduce the :math:`A`-norm error by ``tol`` (see :func:`cg_bound`).

    Attributes:
        tol: the error reduction asked for.
        n: number of eigenvalues.
        distinct: number of distinct eigenvalues (relative gap above ``rtol``).
        chebyshev: the Chebyshev bound on the whole spectrum.
        outliers: ``j``, the number of largest eigenvalues treated as outliers.
        kappa_rest: :math:`\lambda_{(j+1)}/\lambda_{(n)}`.
        iterations: :math:`\min\bigl(\text{distinct},\ \min_j\, j + m_{\rm Cheb}(\lambda_{(j+1)}/\lambda_{(n)})\bigr)`.
    """

    tol: float
    n: int
    distinct: int
    chebyshev: int
    outliers: int
    kappa_rest: float
    iterations: int


def cg_bound(eigenvalues: Tensor | Sequence[float] | Eigen, tol: float = 1e-6, *, rtol: float = 1e-10) -> CGBound:
    r"""Outlier-aware CG iteration bound for a positive-definite operator with these eigenvalues.

    With :math:`\lambda_{(1)} \ge \dots \ge \lambda_{(n)} > 0` and :math:`m_{\rm Cheb}(\kappa)` the smallest ``m``
    with :math:`1/T_m(\frac{\kappa+1}{\kappa-1}) \le \mathrm{tol}`: :math:`\|e_{j+m}\|_A \le \mathrm{tol}\,
    \|e_0\|_A` for :math:`m = m_{\rm Cheb}(\lambda_{(j+1)}/\lambda_{(n)})` (each large outlier costs one
    iteration), and CG ends after as many iterations as there are distinct eigenvalues (exact arithmetic).

    Raises:
        ValueError: an eigenvalue ``<= 0`` or ``tol`` outside ``(0, 1)``.

    >>> b = cg_bound([1.0] * 5 + [2.0] * 5, tol=1e-6)       # two distinct eigenvalues: two iterations
    >>> b.distinct, b.iterations, b.chebyshev
    (2, 2, 9)
    >>> b = cg_bound(torch.cat([torch.linspace(1, 2, 100), torch.tensor([1e4, 1e6])]), tol=1e-6)
    >>> b.chebyshev, b.outliers, b.iterations          # two outliers: 2 + Chebyshev on [1, 2]
    (7255, 2, 11)
    """
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    ev = as_eigenvalues(eigenvalues)
    if float(ev[0]) <= 0.0:
        raise ValueError(f"the smallest eigenvalue is {float(ev[0]):.3g} <= 0: CG's bounds need a positive-definite "
                         "operator; pass the eigenvalues of the range, e.g. the top k (k = Gauss-Newton rank)")
    a = ev.flip(0)                                             # descending
    n = a.numel()
    distinct = 1 + int((a[:-1] - a[1:] > rtol * a[:-1]).sum())
    lo = float(a[-1])
    steps = [j + _chebyshev_steps(float(a[j]) / lo, tol) for j in range(n)]
    j = min(range(n), key=lambda i: steps[i])
    return CGBound(float(tol), n, distinct, steps[0], j, float(a[j]) / lo, min(distinct, steps[j]))


@dataclass(frozen=True, eq=False)
class CGCheck:
    r"""CG run on an operator, against :func:`cg_bound` (see :func:`cg_check`).

    Attributes:
        name: a label.
        k: the number of top eigenvalues whose eigenspace holds the right-hand side.
        eigenvalues: those ``k`` eigenvalues, descending (float64).
        bound: :func:`cg_bound` of them.
        measured, measured_exact: iterations of float64 CG, and of CG with re-orthogonalised residuals, to an
            :math:`A`-norm error below ``tol`` (``None``: not within ``max_iter``).
        errors, errors_exact: :math:`\|x_i - x^*\|_A / \|x^*\|_A` after ``i = 0, 1, ...`` iterations.
    """

    name: str
    k: int
    eigenvalues: Tensor
    bound: CGBound
    measured: int | None
    measured_exact: int | None
    errors: Tensor
    errors_exact: Tensor


def _cg_errors(A: Tensor, b: Tensor, x_star: Tensor, tol: float, max_iter: int, reorthogonalize: bool,
               ) -> tuple[int | None, Tensor]:
    """Plain (or fully re-orthogonalised) CG from 0; relative A-norm errors per iteration, and the first one below tol."""
    def anorm(e: Tensor) -> float:
        return math.sqrt(max(float(e @ (A @ e)), 0.0))

    e0 = anorm(x_star)
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), r @ r
    basis = [r / r.norm()]
    errors, hit = [1.0], None
    for i in range(1, max_iter + 1):
        Ap = A @ p
        alpha = rr / (p @ Ap)
        x, r = x + alpha * p, r - alpha * Ap
        errors.append(anorm(x - x_star) / e0)
        if errors[-1] <= tol:
            hit = i
            break
        if reorthogonalize:
            Q = torch.stack(basis, 1)
            for _ in range(2):                                  # twice is enough (Kahan-Parlett)
                r = r - Q @ (Q.T @ r)
            basis.append(r / r.norm())
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return hit, torch.tensor(errors, dtype=torch.float64)


def cg_check(A: Tensor, k: int, tol: float = 1e-6, *, name: str = "", seed: int = 0,
             max_iter: int | None = None) -> CGCheck:
    r"""CG on the symmetric ``A`` with :math:`b = V_k w` (top ``k`` eigenvectors, positive eigenvalues; ``w``
    standard normal from ``seed``), counted to :math:`\|x_i - x^*\|_A \le \mathrm{tol}\,\|x^*\|_A` from ``x_0 = 0``,
    plain and re-orthogonalised, against :func:`cg_bound` of the top ``k`` eigenvalues (``max_iter``: ``20 n``).

    Raises:
        ValueError: ``k`` outside ``1 .. n``, or fewer than ``k`` positive eigenvalues.

    >>> A = torch.diag(torch.tensor([1e4, 1e2, 1.0, 1.0, 0.0], dtype=torch.float64))
    >>> c = cg_check(A, 4)                             # top 4: three distinct eigenvalues
    >>> c.bound.iterations, c.measured_exact, c.measured
    (3, 3, 3)
    """
    A = A.detach().to(torch.float64).cpu()
    A = 0.5 * (A + A.T)
    n = A.shape[0]
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must be in 1 .. {n}, got {k}")
    lam, V = torch.linalg.eigh(A)
    lam_k, V_k = lam[-int(k):].flip(0), V[:, -int(k):].flip(1)      # the k largest, descending
    bound = cg_bound(lam_k, tol)
    w = torch.randn(int(k), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    b, x_star = V_k @ w, V_k @ (w / lam_k)
    cap = 20 * n if max_iter is None else int(max_iter)
    hit, err = _cg_errors(A, b, x_star, tol, cap, False)
    hit_x, err_x = _cg_errors(A, b, x_star, tol, cap, True)
    return CGCheck(name, int(k), lam_k, bound, hit, hit_x, err, err_x)
