r"""Scale-invariant conditioning (unchanged by :math:`A \to cA`, :math:`c > 0`) of a symmetric matrix
(:func:`condition_number`, :func:`range_condition`), of a preconditioned operator (:func:`cluster_share`,
:func:`lbfgs_preconditioned`) and of each loss term (:func:`term_conditioning`); what a condition number predicts
(:func:`iterations_predicted`). Dense eigenvalue problems, ``P`` up to :data:`~pinnkit.curvature.DENSE_LIMIT`;
above it use :mod:`pinnkit.curvature` (Lanczos, SLQ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .curvature import DENSE_LIMIT, Eigen, LBFGSFactor, LBFGSPairs, hessian
from .objective import term

#: default relative cutoff of :func:`range_condition` (float64 eigensolvers resolve about ``1e-13`` of the norm)
RCUT = 1e-8

__all__ = ["DENSE_LIMIT", "RCUT", "as_eigenvalues", "condition_number", "RangeCondition", "range_condition",
           "cluster_share", "IterationBounds", "iterations_predicted", "OperatorConditioning",
           "operator_conditioning", "LBFGSConditioning", "lbfgs_preconditioned", "term_conditions", "term_hessians",
           "term_gauss_newton", "TermConditioning", "term_conditioning"]


def as_eigenvalues(eigenvalues: Tensor | Sequence[float] | Eigen) -> Tensor:
    """Eigenvalues (a tensor, a sequence or an :class:`~pinnkit.curvature.Eigen`) as a sorted float64 CPU vector.

    Raises:
        ValueError: empty or not finite.
    """
    ev = eigenvalues.values if isinstance(eigenvalues, Eigen) else eigenvalues
    ev = ev if isinstance(ev, Tensor) else torch.as_tensor(ev, dtype=torch.float64)
    ev = ev.detach().reshape(-1).cpu().to(torch.float64)
    if ev.numel() == 0:
        raise ValueError("no eigenvalues given")
    if not bool(torch.isfinite(ev).all()):
        raise ValueError("the eigenvalues contain NaN or inf; check the matrix (or compute it in float64)")
    return ev.sort().values


def condition_number(eigenvalues: Tensor | Sequence[float] | Eigen, rcut: float) -> float:
    r"""The condition number of a symmetric matrix with an explicit relative cutoff, the package's one definition:

    .. math:: \kappa = \frac{\max_i |\lambda_i|}{\min\{|\lambda_i| : |\lambda_i| > \mathrm{rcut}\cdot\max_j
              |\lambda_j|\}} \;\le\; \frac{1}{\mathrm{rcut}},

    :math:`\|A\|\,\|A_c^+\|` on the eigenvectors above the cutoff (``rcut = 0``: every nonzero eigenvalue).

    Raises:
        ValueError: no eigenvalues, non-finite values, a zero matrix, or ``rcut`` outside ``[0, 1)``.

    >>> condition_number([-2e-3, 0.0, 1e-12, 0.5, 4.0], rcut=1e-6)   # 4 / 2e-3: the 1e-12 and the 0 are cut
    2000.0
    >>> condition_number([1e-12, 1.0], rcut=1e-6), condition_number([1e-12, 1.0], rcut=0.0)
    (1.0, 1000000000000.0)
    """
    if not 0.0 <= rcut < 1.0:
        raise ValueError(f"rcut must be in [0, 1), got {rcut}")
    a = as_eigenvalues(eigenvalues).abs()
    norm = float(a.max())
    if norm == 0.0:
        raise ValueError("all eigenvalues are zero: the matrix has no range, so no condition number")
    return norm / float(a[a > rcut * norm].min())


@dataclass(frozen=True)
class RangeCondition:
    r"""Scale-invariant conditioning of a symmetric matrix (see :func:`range_condition`).

    Attributes:
        n, norm: the number of eigenvalues and :math:`\max_i |\lambda_i|`.
        rcut, cutoff: the relative cutoff and ``cutoff = rcut * norm``.
        lmax, lmin: the largest and smallest eigenvalues.
        smallest: :math:`\min\{|\lambda_i| : |\lambda_i| > \text{cutoff}\}`.
        kappa: ``norm / smallest`` (:func:`condition_number`).
        rank, n_negative: :math:`\#\{|\lambda_i| > \text{cutoff}\}` and :math:`\#\{\lambda_i < -\text{cutoff}\}`.
        effective_rank: :math:`\exp(-\sum_i p_i \log p_i)`, :math:`p_i = |\lambda_i| / \sum_j |\lambda_j|`.
        stable_rank: :math:`\sum_i \lambda_i^2 / \max_i \lambda_i^2`.
        intrinsic_dim: :math:`\sum_i |\lambda_i| / \max_i |\lambda_i|`.
    """

    n: int
    rcut: float
    cutoff: float
    norm: float
    lmax: float
    lmin: float
    smallest: float
    kappa: float
    rank: int
    n_negative: int
    effective_rank: float
    stable_rank: float
    intrinsic_dim: float

    @property
    def rank_fraction(self) -> float:
        """``rank / n``."""
        return self.rank / self.n

    @property
    def negative_fraction(self) -> float:
        """``n_negative / n``."""
        return self.n_negative / self.n


def range_condition(eigenvalues: Tensor | Sequence[float] | Eigen, rcut: float = RCUT) -> RangeCondition:
    r""":func:`condition_number`, numerical rank, negative count and effective ranks of a symmetric matrix, with
    the cutoff :math:`c = \mathrm{rcut}\,\max_i|\lambda_i|`, ``rcut`` in ``(0, 1)``.

    >>> rc = range_condition([-2e-3, 0.0, 1e-12, 0.5, 4.0], rcut=1e-6)
    >>> rc.kappa, rc.rank, rc.n_negative          # 4 / 2e-3; the 1e-12 and the 0 are below 4e-6
    (2000.0, 3, 1)
    >>> round(range_condition(torch.ones(10)).effective_rank, 6), range_condition(torch.ones(10)).kappa
    (10.0, 1.0)
    >>> range_condition(7.0 * torch.tensor([1.0, 2.0, 8.0])).kappa   # scale-invariant
    8.0
    """
    if not 0.0 < rcut < 1.0:
        raise ValueError(f"rcut must be in (0, 1), got {rcut}")
    ev = as_eigenvalues(eigenvalues)
    a = ev.abs()
    norm = float(a.max())
    if norm == 0.0:
        raise ValueError("all eigenvalues are zero: the matrix has no range, so no condition number")
    cutoff = rcut * norm
    above = a[a > cutoff]
    p = a / a.sum()
    p = p[p > 0]
    return RangeCondition(
        n=ev.numel(), rcut=float(rcut), cutoff=cutoff, norm=norm, lmax=float(ev[-1]), lmin=float(ev[0]),
        smallest=float(above.min()), kappa=condition_number(ev, rcut), rank=int(above.numel()),
        n_negative=int((ev < -cutoff).sum()), effective_rank=float(torch.exp(-(p * p.log()).sum())),
        stable_rank=float((a ** 2).sum()) / norm ** 2, intrinsic_dim=float(a.sum()) / norm)


def cluster_share(eigenvalues: Tensor | Sequence[float] | Eigen, lo: float = 0.5, hi: float = 2.0) -> float:
    r""":math:`\#\{\lambda_i \in [\mathrm{lo}, \mathrm{hi}]\} / n`: for :math:`PA`, the directions the
    preconditioner got right to within a factor 2 (not scale-invariant: it measures closeness to the identity).

    >>> cluster_share(torch.tensor([0.1, 0.6, 1.0, 1.9, 3.0]))
    0.6
    """
    if not 0.0 < lo <= hi:
        raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
    ev = as_eigenvalues(eigenvalues)
    return float(((ev >= lo) & (ev <= hi)).double().mean())


@dataclass(frozen=True)
class IterationBounds:
    r"""Worst-case iterations to reduce the error by ``tol`` at condition number ``kappa``
    (see :func:`iterations_predicted`): ``cg`` and ``gd``.
    """

    kappa: float
    tol: float
    cg: int
    gd: int


def iterations_predicted(kappa: float, tol: float = 1e-6) -> IterationBounds:
    r"""CG: :math:`\lceil \tfrac{\sqrt\kappa}{2} \ln(2/\mathrm{tol}) \rceil` (Chebyshev bound,
    :math:`\|e_k\|_A \le 2(\tfrac{\sqrt\kappa-1}{\sqrt\kappa+1})^k \|e_0\|_A`); gradient descent with step
    :math:`2/(\lambda_{\min}+\lambda_{\max})`: :math:`\lceil \tfrac{\kappa}{2} \ln(1/\mathrm{tol}) \rceil`.
    Upper bounds for a positive-definite quadratic.

    >>> b = iterations_predicted(1e4, tol=1e-6)
    >>> b.cg, b.gd
    (726, 69078)
    >>> iterations_predicted(1e8, tol=1e-6).cg    # an upper bound only: never more than n distinct eigenvalues
    72544
    """
    if not kappa >= 1.0 or math.isinf(kappa):
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    return IterationBounds(float(kappa), float(tol), cg=math.ceil(math.sqrt(kappa) / 2.0 * math.log(2.0 / tol)),
                           gd=math.ceil(kappa / 2.0 * math.log(1.0 / tol)))


@dataclass(frozen=True, eq=False)
class OperatorConditioning:
    r"""One spectrum (ascending float64 ``eigenvalues``) with its :func:`range_condition` ``range``,
    :func:`cluster_share` ``share`` in ``[lo, hi]`` and :func:`iterations_predicted` ``iterations``.
    """

    name: str
    eigenvalues: Tensor
    range: RangeCondition
    lo: float
    hi: float
    share: float
    iterations: IterationBounds


def operator_conditioning(eigenvalues: Tensor | Sequence[float] | Eigen, name: str = "", *, rcut: float = RCUT,
                          lo: float = 0.5, hi: float = 2.0, tol: float = 1e-6) -> OperatorConditioning:
    """Bundle :func:`range_condition`, :func:`cluster_share` and :func:`iterations_predicted` for one spectrum.

    >>> oc = operator_conditioning(torch.tensor([0.5, 1.0, 1.0, 8.0]), "toy")
    >>> oc.range.kappa, oc.share, oc.iterations.cg
    (16.0, 0.75, 30)
    """
    ev = as_eigenvalues(eigenvalues)
    rc = range_condition(ev, rcut)
    return OperatorConditioning(name, ev, rc, float(lo), float(hi), cluster_share(ev, lo, hi),
                                iterations_predicted(rc.kappa, tol))


@dataclass(frozen=True, eq=False)
class LBFGSConditioning:
    r"""``hessian`` :math:`H`, ``lbfgs`` :math:`H_k H` and ``baseline`` :math:`\gamma H`, with
    :math:`\gamma = s^\top y / y^\top y` of the newest of ``m`` pairs (see :func:`lbfgs_preconditioned`).
    """

    hessian: OperatorConditioning
    lbfgs: OperatorConditioning
    baseline: OperatorConditioning
    gamma: float
    m: int


def lbfgs_preconditioned(H: Tensor, pairs: LBFGSPairs, *, rcut: float = RCUT, lo: float = 0.5, hi: float = 2.0,
                         tol: float = 1e-6, force: bool = False) -> LBFGSConditioning:
    r"""Dense spectra of the Hessian ``H``, of L-BFGS's :math:`H_k H` and of the scalar baseline :math:`\gamma H`.

    :math:`H_k = \tilde H\tilde H^\top` with :math:`\tilde H = U\Sigma V^\top` of size :math:`P \times (P+m)`
    (:class:`~pinnkit.curvature.LBFGSFactor`), so the eigenvalues of :math:`H_k H` are those of the ``P x P``
    matrix :math:`\Sigma U^\top H U \Sigma`: the ``m`` structural zeros of :math:`\tilde H^\top H \tilde H` never
    appear. ``force`` allows ``P > DENSE_LIMIT``.

    Raises:
        ValueError: shapes disagree, ``H`` is not symmetric, or ``P > DENSE_LIMIT`` without ``force``.

    With ``P`` exact pairs :math:`y_i = A s_i` of a quadratic, :math:`H_k = A^{-1}`:

    >>> A = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    >>> S = torch.eye(3, dtype=torch.float64)
    >>> r = lbfgs_preconditioned(A, LBFGSPairs(S, S @ A, gamma=0.01))
    >>> [round(float(x), 8) for x in r.lbfgs.eigenvalues], r.lbfgs.share, r.baseline.range.kappa
    ([1.0, 1.0, 1.0], 1.0, 100.0)
    """
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix (P, P), got {tuple(H.shape)}")
    P = H.shape[0]
    if pairs.s.ndim != 2 or pairs.s.shape[1] != P or pairs.y.shape != pairs.s.shape:
        raise ValueError(f"the pairs must have s, y of shape (m, {P}); got s {tuple(pairs.s.shape)}, "
                         f"y {tuple(pairs.y.shape)}")
    if P > DENSE_LIMIT and not force:
        raise ValueError(f"P = {P} is above DENSE_LIMIT = {DENSE_LIMIT}: the dense factor has {P}x{P + len(pairs.s)}"
                         f" entries and the SVD costs O(P^3); use pinnkit.curvature.preconditioned_spectrum (SLQ) "
                         "or pass force=True")
    H64 = H.detach().to(torch.float64).cpu()
    asym = float((H64 - H64.T).abs().max())
    if asym > 1e-6 * float(H64.abs().max()):
        raise ValueError(f"H is not symmetric (max |H - H^T| = {asym:.2g}); pass a Hessian or symmetrise it")
    H64 = 0.5 * (H64 + H64.T)
    p64 = LBFGSPairs(pairs.s.detach().to(torch.float64).cpu(), pairs.y.detach().to(torch.float64).cpu(),
                     float(pairs.gamma))
    Ht = LBFGSFactor(p64).matrix()                              # P x (P + m), float64
    U, sig, _ = torch.linalg.svd(Ht, full_matrices=False)      # U (P, P), sig (P,)
    B = sig[:, None] * (U.T @ H64 @ U) * sig[None, :]
    ev_h = torch.linalg.eigvalsh(H64)
    ev_k = torch.linalg.eigvalsh(0.5 * (B + B.T))
    gamma = float(pairs.gamma)
    kw = dict(rcut=rcut, lo=lo, hi=hi, tol=tol)
    return LBFGSConditioning(hessian=operator_conditioning(ev_h, "H", **kw),
                             lbfgs=operator_conditioning(ev_k, "H_k H (L-BFGS)", **kw),
                             baseline=operator_conditioning(gamma * ev_h, "gamma H (scalar)", **kw),
                             gamma=gamma, m=int(pairs.s.shape[0]))


def term_conditions(terms_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, rcut: float = RCUT,
                    include_total: bool = True, mode: str = "auto") -> dict[str, RangeCondition]:
    r"""``{name: range_condition}`` of the dense Hessian of each term of ``terms_fn`` (and of their sum,
    ``"total"``); ``mode`` is :func:`pinnkit.curvature.hessian`'s.
    """
    names = list(terms_fn(theta.detach()).keys())
    mats = {n: hessian(term(terms_fn, n), theta, mode=mode) for n in names}
    if include_total:
        mats["total"] = cast(Tensor, sum(mats.values()))
    return {n: range_condition(torch.linalg.eigvalsh(M.to(torch.float64)), rcut) for n, M in mats.items()}


def _check_dense(theta: Tensor, force: bool, instead: str) -> None:
    if theta.numel() > DENSE_LIMIT and not force:
        raise ValueError(f"P = {theta.numel()} is above DENSE_LIMIT = {DENSE_LIMIT}; use {instead} instead, or pass "
                         "force=True")


def term_hessians(terms_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, include_total: bool = True,
                  mode: str = "auto", force: bool = False) -> dict[str, Tensor]:
    r"""``{name: (P, P)}`` dense Hessians :math:`\nabla^2 L_k(\theta)` of each term (float64, CPU), then
    ``"total"``; ``force`` allows ``P > DENSE_LIMIT``.

    >>> f = lambda th: {"a": th[0] ** 2, "b": 3 * th[1] ** 2}
    >>> {k: torch.diagonal(M).tolist() for k, M in term_hessians(f, torch.zeros(2)).items()}
    {'a': [2.0, 0.0], 'b': [0.0, 6.0], 'total': [2.0, 6.0]}
    """
    _check_dense(theta, force, "pinnkit.book.spectra_study.term_densities (SLQ)")
    names = list(terms_fn(theta.detach()).keys())
    mats = {n: hessian(term(terms_fn, n), theta, mode=mode, force=force).to(torch.float64).cpu()
            for n in names}
    if include_total:
        mats["total"] = cast(Tensor, sum(mats.values()))
    return mats


def term_gauss_newton(residuals_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *,
                      include_total: bool = True, force: bool = False) -> dict[str, Tensor]:
    r"""``{name: (P, P)}`` dense Gauss–Newton matrices :math:`G_k = \frac{2}{N_k} J_k^\top J_k` of the terms
    :math:`L_k = \frac1{N_k}\|r_k\|^2` (float64, CPU; rank :math:`\le \min(N_k, P)`), then ``"total"``.

    >>> r = lambda th: {"a": torch.stack([th[0] + th[1], th[0] - th[1]]), "b": th[:1] * 3}
    >>> G = term_gauss_newton(r, torch.zeros(2, dtype=torch.float64))
    >>> G["a"].tolist(), G["b"].tolist()           # 2/2 * J^T J and 2/1 * [3, 0]^T [3, 0]
    ([[2.0, 0.0], [0.0, 2.0]], [[18.0, 0.0], [0.0, 0.0]])
    """
    _check_dense(theta, force, "matrix-free products (pinnkit.curvature.gauss_newton_operator)")
    jac = torch.func.jacrev(lambda th: dict(residuals_fn(th)))(theta.detach())
    mats = {}
    for n, J in jac.items():
        J = J.reshape(-1, theta.numel()).to(torch.float64).cpu()
        mats[n] = (2.0 / J.shape[0]) * (J.T @ J)
    if include_total:
        mats["total"] = sum(mats.values())
    return mats


@dataclass(frozen=True, eq=False)
class TermConditioning:
    r"""Conditioning of one term :math:`L_k = \frac1{N_k}\|r_k\|^2` (see :func:`term_conditioning`).

    Attributes:
        name: the term (or ``"total"``).
        n_residuals: :math:`N_k`.
        eigenvalues: the eigenvalues of :math:`\nabla^2 L_k`, ascending.
        hessian, gauss_newton: :func:`range_condition` of :math:`\nabla^2 L_k` and of :math:`G_k`.
        second_order: :math:`\|\nabla^2 L_k - G_k\|_2 / \|\nabla^2 L_k\|_2`.
    """

    name: str
    n_residuals: int
    eigenvalues: Tensor
    hessian: RangeCondition
    gauss_newton: RangeCondition
    second_order: float


def term_conditioning(residuals_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, rcut: float = RCUT,
                      force: bool = False, mode: str = "auto") -> dict[str, TermConditioning]:
    r"""Per-term (and total) Hessian and Gauss–Newton conditioning of :math:`L_k = \operatorname{mean}(r_k^2)`
    (``residuals_fn`` e.g. ``PINN.residuals``), densely: ``P`` HVPs per term and one Jacobian.

    >>> r = lambda th: {"a": torch.stack([th[0], 2 * th[1]]) - 1, "b": th[:1] * 0 + th[0] ** 2 - 1}
    >>> tc = term_conditioning(r, torch.ones(2, dtype=torch.float64))  # residuals zero: H == G = diag(1,4), diag(8,0)
    >>> {k: (v.n_residuals, v.hessian.rank, round(v.hessian.kappa, 6), v.second_order) for k, v in tc.items()}
    {'a': (2, 2, 4.0, 0.0), 'b': (1, 1, 1.0, 0.0), 'total': (3, 2, 2.25, 0.0)}
    """
    def terms_fn(th: Tensor) -> dict[str, Tensor]:
        return {k: (r ** 2).mean() for k, r in residuals_fn(th).items()}
    sizes = {k: int(r.numel()) for k, r in residuals_fn(theta.detach()).items()}
    sizes["total"] = sum(sizes.values())
    H = term_hessians(terms_fn, theta, mode=mode, force=force)
    G = term_gauss_newton(residuals_fn, theta, force=force)
    out = {}
    for k, Hk in H.items():
        ev = torch.linalg.eigvalsh(Hk)
        norm = float(ev.abs().max())
        diff = float(torch.linalg.matrix_norm(Hk - G[k], 2))
        out[k] = TermConditioning(k, sizes[k], ev, range_condition(ev, rcut),
                                  range_condition(torch.linalg.eigvalsh(G[k]), rcut),
                                  diff / norm if norm > 0 else math.nan)
    return out


def _chebyshev_steps(kappa: float, tol: float) -> int:
    r"""CG's Chebyshev count: the least ``m`` with :math:`1/T_m\bigl(\tfrac{\kappa+1}{\kappa-1}\bigr) \le \mathrm{tol}`,
    :math:`m = \lceil \operatorname{arccosh}(1/\mathrm{tol}) / \ln\frac{\sqrt\kappa+1}{\sqrt\kappa-1} \rceil`
    (:math:`\le \lceil \ln(2/\mathrm{tol}) / \ln\frac{\sqrt\kappa+1}{\sqrt\kappa-1} \rceil`, the
    :math:`2\rho^m` bound); 1 for :math:`\kappa = 1`.

    >>> _chebyshev_steps(9.0, 1e-3)     # rho = 1/2: T_m(5/4) = (2^m + 2^-m) / 2 >= 1000 first at m = 11
    11
    """
    if not 1.0 <= kappa < math.inf:
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    if kappa == 1.0:
        return 1
    x = 2.0 / (kappa - 1.0)                                   # (kappa + 1) / (kappa - 1) = 1 + x
    acosh_arg = math.log1p(x + math.sqrt(x * (x + 2.0)))      # arccosh(1 + x), accurate for small x
    return max(1, math.ceil(math.acosh(1.0 / tol) / acosh_arg))
