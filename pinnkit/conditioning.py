r"""How ill-conditioned is a symmetric matrix, or a preconditioned operator? Scale-invariant answers.

The largest eigenvalue :math:`\lambda_{\max}` is *not* a conditioning measure: multiplying a loss by 10 multiplies
it by 10 and changes nothing about how hard the loss is to minimise. Everything here is invariant under
:math:`A \to cA` (:math:`c > 0`):

* :func:`range_condition` — for a symmetric (possibly singular, possibly indefinite) matrix with eigenvalues
  :math:`\lambda_i`, the condition number **on the numerical range**

  .. math:: \kappa_{\mathrm{rcut}} = \frac{\max_i |\lambda_i|}{\min\{|\lambda_i| : |\lambda_i| > \mathrm{rcut}
            \cdot \max_j |\lambda_j|\}},

  the numerical rank (eigenvalues above the cutoff), the count of negative eigenvalues below
  :math:`-\mathrm{rcut}\cdot\max|\lambda|`, and effective ranks that need no cutoff. A singular matrix has no
  finite condition number, so the cutoff is part of the definition and must be stated with the number: a value
  :math:`\kappa \approx 1/\mathrm{rcut}` says the spectrum runs continuously down to zero.
* :func:`cluster_share` — the fraction of eigenvalues in :math:`[\mathrm{lo}, \mathrm{hi}]` (default
  :math:`[1/2, 2]`): for a preconditioned operator :math:`P A`, how many directions the preconditioner has made
  "about right" (eigenvalue near 1).
* :func:`lbfgs_preconditioned` — the spectrum of the L-BFGS-preconditioned Hessian :math:`H_k \nabla^2 L` with the
  structural zeros of :math:`\tilde H^\top \nabla^2 L\, \tilde H` removed, next to the scalar baseline
  :math:`\gamma \nabla^2 L` (L-BFGS's own initial matrix :math:`H_0 = \gamma I`), so that what the stored pairs
  add is separated from what a well-chosen scalar step size gives.
* :func:`term_conditions`, :func:`term_conditioning` — per loss term: the Hessian's, and the Gauss–Newton
  matrix's (rank at most the number of points), conditioning.
* :func:`iterations_predicted` — what a condition number means: iterations of CG and of gradient descent to
  reduce the error by ``tol`` (worst-case bounds).
* :func:`cg_bound`, :func:`cg_check` — what a whole spectrum predicts for CG (large outliers one iteration each,
  never more than the number of distinct eigenvalues), and CG actually run on the operator to check it, in plain
  float64 and with orthogonal residuals (exact arithmetic).

Dense eigenvalue problems only: at classroom sizes (``P`` up to a few thousand) ``eigh`` is exact and cheap; larger
``P`` is refused (:data:`DENSE_LIMIT`); use :mod:`pinnkit.curvature` (Lanczos, SLQ) there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .curvature import DENSE_LIMIT, Eigen, LBFGSFactor, LBFGSPairs, hessian
from .objective import term

#: default relative cutoff of :func:`range_condition`: eigenvalues with ``|lambda| <= RCUT * max|lambda|`` are
#: treated as zero (float64 eigensolvers resolve about ``1e-13`` of the norm at classroom ``P``)
RCUT = 1e-8

__all__ = ["DENSE_LIMIT", "RCUT", "condition_number", "RangeCondition", "range_condition", "cluster_share", "IterationBounds",
           "iterations_predicted", "OperatorConditioning", "operator_conditioning", "LBFGSConditioning",
           "lbfgs_preconditioned", "term_conditions", "as_eigenvalues"]


def as_eigenvalues(eigenvalues: Tensor | Sequence[float] | Eigen) -> Tensor:
    """Eigenvalues given as a tensor, a sequence or an :class:`~pinnkit.curvature.Eigen`, as a sorted float64
    CPU vector; ``ValueError`` when empty or not finite.
    """
    ev = eigenvalues.values if isinstance(eigenvalues, Eigen) else eigenvalues
    ev = ev if isinstance(ev, Tensor) else torch.as_tensor(ev, dtype=torch.float64)
    ev = ev.detach().reshape(-1).cpu().to(torch.float64)
    if ev.numel() == 0:
        raise ValueError("no eigenvalues given")
    if not bool(torch.isfinite(ev).all()):
        raise ValueError("the eigenvalues contain NaN or inf; check the matrix (or compute it in float64)")
    return ev.sort().values


# --- one symmetric matrix ----------------------------------------------------------------------------------
def condition_number(eigenvalues: Tensor | Sequence[float] | Eigen, rcut: float) -> float:
    r"""The condition number of a symmetric matrix with an explicit relative cutoff ``rcut``: the one definition
    every condition number of the package uses.

    .. math:: \kappa = \frac{\max_i |\lambda_i|}{\min\{|\lambda_i| : |\lambda_i| > \mathrm{rcut}\cdot\max_j
              |\lambda_j|\}} \;\le\; \frac{1}{\mathrm{rcut}},

    the 2-norm condition number :math:`\|A\|\,\|A_c^+\|` of :math:`A` restricted to its eigenvectors above the
    cutoff (magnitudes: a negative eigenvalue counts by its size). ``rcut = 0`` keeps every nonzero eigenvalue
    (:math:`\|A\|\,\|A^+\|`; :math:`\|A\|\,\|A^{-1}\|` for a nonsingular matrix) and has no ceiling. A value
    near ``1/rcut`` says the spectrum runs on down to the cutoff: report ``rcut`` with every ``kappa``.
    Invariant under :math:`A \to tA`, :math:`t \ne 0`.

    Args:
        eigenvalues: all eigenvalues (any order): a Tensor, a sequence or an :class:`~pinnkit.curvature.Eigen`.
        rcut: the relative cutoff in ``[0, 1)``; eigenvalues with :math:`|\lambda| \le` ``rcut`` times the largest
            magnitude count as zero.

    Returns:
        :math:`\kappa \ge 1`.

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
        n: number of eigenvalues.
        rcut: the relative cutoff; ``cutoff = rcut * norm`` is the absolute one.
        cutoff: eigenvalues with :math:`|\lambda| \le` ``cutoff`` count as zero.
        norm: :math:`\max_i |\lambda_i|` (the 2-norm).
        lmax, lmin: the algebraically largest and smallest eigenvalues.
        smallest: :math:`\min\{|\lambda_i| : |\lambda_i| > \text{cutoff}\}`.
        kappa: ``norm / smallest``, the condition number on the numerical range (:func:`condition_number`).
        rank: number of eigenvalues with :math:`|\lambda| >` ``cutoff`` (numerical rank).
        n_negative: number of eigenvalues below ``-cutoff``.
        effective_rank: :math:`\exp(-\sum_i p_i \log p_i)`, :math:`p_i = |\lambda_i| / \sum_j |\lambda_j|`
            (entropy effective rank, Roy & Vetterli 2007; no cutoff; equals ``n`` for a multiple of the identity).
        stable_rank: :math:`\sum_i \lambda_i^2 / \max_i \lambda_i^2 = \|A\|_F^2 / \|A\|_2^2` (no cutoff).
        intrinsic_dim: :math:`\sum_i |\lambda_i| / \max_i |\lambda_i|` (no cutoff; the trace over the norm for a
            positive semi-definite matrix).
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
        """``rank / n``: the share of directions the matrix sees at all (above the cutoff)."""
        return self.rank / self.n

    @property
    def negative_fraction(self) -> float:
        """``n_negative / n``."""
        return self.n_negative / self.n


def range_condition(eigenvalues: Tensor | Sequence[float] | Eigen, rcut: float = RCUT) -> RangeCondition:
    r"""Condition number on the numerical range, rank, negative count and effective ranks of a symmetric matrix.

    With :math:`\|A\| = \max_i|\lambda_i|` and the absolute cutoff :math:`c = \mathrm{rcut}\,\|A\|`:
    :math:`\kappa = \|A\| / \min\{|\lambda_i| : |\lambda_i| > c\}` (the 2-norm condition number of :math:`A`
    restricted to the span of its eigenvectors above the cutoff, i.e. :math:`\|A\|\,\|A_c^+\|`),
    ``rank`` :math:`= \#\{|\lambda_i| > c\}`, ``n_negative`` :math:`= \#\{\lambda_i < -c\}`. All of them are
    invariant under :math:`A \to tA`, :math:`t > 0`.

    Args:
        eigenvalues: all eigenvalues of the matrix (any order), a Tensor, a sequence or an
            :class:`~pinnkit.curvature.Eigen`.
        rcut: relative cutoff in ``(0, 1)``; state it next to any ``kappa`` you report.

    Returns:
        A :class:`RangeCondition`.

    Raises:
        ValueError: no eigenvalues, non-finite values, a zero matrix, or ``rcut`` outside ``(0, 1)``.

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
    r"""Fraction of eigenvalues in ``[lo, hi]``: :math:`\#\{\lambda_i \in [\mathrm{lo}, \mathrm{hi}]\} / n`.

    For a preconditioned operator :math:`PA` the ideal preconditioner gives all eigenvalues 1, so the share in
    :math:`[1/2, 2]` (the default) counts the directions it got right to within a factor 2. Unlike ``kappa`` it
    is *not* scale-invariant on purpose: it measures closeness to the identity.

    >>> cluster_share(torch.tensor([0.1, 0.6, 1.0, 1.9, 3.0]))
    0.6
    """
    if not 0.0 < lo <= hi:
        raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
    ev = as_eigenvalues(eigenvalues)
    return float(((ev >= lo) & (ev <= hi)).double().mean())


# --- what a condition number predicts ---------------------------------------------------------------------
@dataclass(frozen=True)
class IterationBounds:
    r"""Worst-case iteration counts to reduce the error by ``tol`` on an SPD system of condition number ``kappa``.

    Attributes:
        kappa: the condition number used.
        tol: the error reduction asked for.
        cg: :math:`\lceil \tfrac{\sqrt\kappa}{2} \ln(2/\mathrm{tol}) \rceil` (conjugate gradients, Chebyshev bound).
        gd: :math:`\lceil \tfrac{\kappa}{2} \ln(1/\mathrm{tol}) \rceil` (gradient descent, step
            :math:`2/(\lambda_{\min}+\lambda_{\max})`).
    """

    kappa: float
    tol: float
    cg: int
    gd: int


def iterations_predicted(kappa: float, tol: float = 1e-6) -> IterationBounds:
    r"""Iterations that a condition number ``kappa`` predicts for CG and for gradient descent.

    * CG: :math:`\|e_k\|_A \le 2\bigl(\tfrac{\sqrt\kappa-1}{\sqrt\kappa+1}\bigr)^k \|e_0\|_A` (Chebyshev bound;
      Golub & Van Loan, Nocedal & Wright Thm 5.5), and :math:`\tfrac{\sqrt\kappa-1}{\sqrt\kappa+1}\le e^{-2/\sqrt\kappa}`,
      so :math:`k \ge \tfrac{\sqrt\kappa}{2}\ln(2/\mathrm{tol})` suffices.
    * Gradient descent with the optimal fixed step :math:`2/(\lambda_{\min}+\lambda_{\max})`:
      :math:`\|e_k\| \le \bigl(\tfrac{\kappa-1}{\kappa+1}\bigr)^k\|e_0\| \le e^{-2k/\kappa}\|e_0\|`, so
      :math:`k \ge \tfrac{\kappa}{2}\ln(1/\mathrm{tol})`.

    Both are upper bounds for a positive-definite quadratic; clustered spectra converge faster under CG (it needs
    about one iteration per cluster), and an indefinite or singular matrix is outside the bound's assumptions.

    Args:
        kappa: condition number, ``>= 1`` (e.g. :attr:`RangeCondition.kappa`).
        tol: relative error reduction, in ``(0, 1)``.

    Returns:
        An :class:`IterationBounds`.

    Raises:
        ValueError: ``kappa < 1`` or ``tol`` outside ``(0, 1)``.

    >>> b = iterations_predicted(1e4, tol=1e-6)
    >>> b.cg, b.gd
    (726, 69078)
    >>> iterations_predicted(1e8, tol=1e-6).cg    # an upper bound only: never more than n distinct eigenvalues
    72544

    For an operator whose eigenvalues are known, :func:`cg_bound` is sharper: it counts large outliers one
    iteration each and caps the count at the number of distinct eigenvalues.
    """
    if not kappa >= 1.0 or math.isinf(kappa):
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    return IterationBounds(float(kappa), float(tol), cg=math.ceil(math.sqrt(kappa) / 2.0 * math.log(2.0 / tol)),
                           gd=math.ceil(kappa / 2.0 * math.log(1.0 / tol)))


# --- preconditioned operators -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class OperatorConditioning:
    r"""Conditioning of one (preconditioned) operator.

    Attributes:
        name: a label (``"L-BFGS H_k H"``, ``"gamma H"``, ...).
        eigenvalues: its eigenvalues, ascending, float64, CPU.
        range: :class:`RangeCondition` of ``eigenvalues``.
        lo, hi: the cluster interval.
        share: :func:`cluster_share` in ``[lo, hi]``.
        iterations: :func:`iterations_predicted` from ``range.kappa`` (meaningful when the operator is
            positive definite on its range; see ``range.n_negative``).
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
    r"""The L-BFGS-preconditioned Hessian against the scalar baseline (see :func:`lbfgs_preconditioned`).

    Attributes:
        hessian: the unpreconditioned :math:`H` (``P`` eigenvalues).
        lbfgs: :math:`H_k H` (``P`` eigenvalues: those of :math:`\tilde H^\top H \tilde H` without its ``m``
            structural zeros).
        baseline: :math:`\gamma H`, L-BFGS's initial matrix :math:`H_0 = \gamma I` alone.
        gamma: :math:`s^\top y / y^\top y` of the newest pair.
        m: number of stored pairs (= structural zeros removed).
    """

    hessian: OperatorConditioning
    lbfgs: OperatorConditioning
    baseline: OperatorConditioning
    gamma: float
    m: int


def _dense_factor(pairs: LBFGSPairs) -> Tensor:
    """The ``P x (P+m)`` matrix :math:`\\tilde H` of :class:`~pinnkit.curvature.LBFGSFactor` (float64)."""
    p64 = LBFGSPairs(pairs.s.detach().to(torch.float64).cpu(), pairs.y.detach().to(torch.float64).cpu(),
                     float(pairs.gamma))
    return LBFGSFactor(p64).matrix()


def lbfgs_preconditioned(H: Tensor, pairs: LBFGSPairs, *, rcut: float = RCUT, lo: float = 0.5, hi: float = 2.0,
                         tol: float = 1e-6, force: bool = False) -> LBFGSConditioning:
    r"""Dense spectra of the Hessian, of L-BFGS's preconditioned Hessian, and of the scalar baseline.

    L-BFGS's inverse-Hessian approximation factors as :math:`H_k = \tilde H\tilde H^\top`, :math:`\tilde H`
    of size :math:`P \times (P+m)` (:class:`~pinnkit.curvature.LBFGSFactor`; Rathore et al. Alg. 2-3). The matrix
    :math:`\tilde H^\top H\,\tilde H` is :math:`(P+m)\times(P+m)` but has rank at most :math:`P`: its ``m``
    **structural zeros** are the null space of :math:`\tilde H` and say nothing about the loss. Its other
    eigenvalues are those of :math:`H_k H`. With the thin SVD :math:`\tilde H = U\Sigma V^\top` (``P`` singular
    values, all positive when every :math:`s_i^\top y_i > 0`) they are the eigenvalues of the ``P x P`` symmetric
    matrix :math:`\Sigma U^\top H U \Sigma`, which is what is computed (the structural zeros never appear, so no
    threshold decides which zeros to drop).

    The baseline is :math:`\gamma H` with :math:`\gamma = s^\top y/y^\top y` of the newest pair, L-BFGS's initial
    matrix :math:`H_0 = \gamma I` (Nocedal & Wright eq. 7.20). Its ``kappa`` equals the Hessian's (a scalar cannot
    change a condition number) but its cluster share can differ: comparing ``lbfgs`` with ``baseline`` isolates
    what the stored pairs contribute.

    Args:
        H: the dense symmetric Hessian ``(P, P)`` (e.g. :func:`pinnkit.curvature.hessian`); any dtype/device.
        pairs: the L-BFGS pairs (:func:`pinnkit.curvature.lbfgs_pairs`), ``s`` and ``y`` of shape ``(m, P)``.
        rcut: relative cutoff of :func:`range_condition`, applied to each spectrum.
        lo, hi: cluster interval of :func:`cluster_share`.
        tol: error reduction for :func:`iterations_predicted`.
        force: allow ``P > DENSE_LIMIT``.

    Returns:
        A :class:`LBFGSConditioning` with ``hessian``, ``lbfgs`` and ``baseline`` entries.

    Raises:
        ValueError: shapes disagree, ``H`` is not symmetric, ``P`` above :data:`DENSE_LIMIT` without ``force``, or a
            pair with :math:`s^\top y \le 0`.

    A quadratic :math:`\tfrac12\theta^\top A\theta` with ``P`` exact pairs :math:`y_i = A s_i` along independent
    steps gives :math:`H_k = A^{-1}`, so every preconditioned eigenvalue is 1:

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
    Ht = _dense_factor(pairs)
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
    r""":func:`range_condition` of the dense Hessian of each loss term (and of their sum), ``P <= DENSE_LIMIT``.

    A term that averages ``n`` squared residuals has a Gauss–Newton part :math:`\tfrac2n J^\top J` of rank at most
    ``n``; with ``n < P`` (an initial condition on 64 points, ``P`` = 337 parameters) the rest of its spectrum is the
    small second-order part :math:`\tfrac2n\sum_i r_i\nabla^2 r_i`, so compare ``rank`` and ``effective_rank`` as
    well as ``kappa``.

    Args:
        terms_fn: ``theta -> dict`` of scalar terms (``PINN.terms``).
        theta: the point, a flat vector.
        rcut: relative cutoff of :func:`range_condition`.
        include_total: also return ``"total"``, the Hessian of the summed loss.
        mode: HVP mode of :func:`pinnkit.curvature.hessian`.

    Returns:
        ``{name: RangeCondition}`` in the order of the terms, then ``"total"``.
    """
    names = list(terms_fn(theta.detach()).keys())
    mats = {n: hessian(term(terms_fn, n), theta, mode=mode) for n in names}
    if include_total:
        mats["total"] = cast(Tensor, sum(mats.values()))
    return {n: range_condition(torch.linalg.eigvalsh(M.to(torch.float64)), rcut) for n, M in mats.items()}


# --- per-term dense matrices and a sorted-eigenvalue plot (chapter 4) ----------------------------------------
def term_hessians(terms_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, include_total: bool = True,
                  mode: str = "auto", force: bool = False) -> dict[str, Tensor]:
    r"""Dense Hessian :math:`\nabla^2 L_k(\theta)` of each loss term (float64, CPU), and of their sum.

    The matrices behind :func:`term_conditions`, for when the eigenvalues themselves are needed (plots, a
    preconditioner): ``torch.linalg.eigvalsh(term_hessians(...)["residual"])``.

    Args:
        terms_fn: ``theta -> dict`` of scalar terms (``PINN.terms``).
        theta: the point, a flat vector with at most :data:`DENSE_LIMIT` entries.
        include_total: also return ``"total"``, the Hessian of the summed loss.
        mode: HVP mode of :func:`pinnkit.curvature.hessian`.
        force: allow ``P > DENSE_LIMIT`` (``P`` HVPs per term and ``8 P^2`` bytes per matrix).

    Returns:
        ``{name: (P, P) Tensor}`` in the order of the terms, then ``"total"``.

    Raises:
        ValueError: ``theta`` has more than :data:`DENSE_LIMIT` entries and ``force`` is false (use SLQ).

    >>> f = lambda th: {"a": th[0] ** 2, "b": 3 * th[1] ** 2}
    >>> {k: torch.diagonal(M).tolist() for k, M in term_hessians(f, torch.zeros(2)).items()}
    {'a': [2.0, 0.0], 'b': [0.0, 6.0], 'total': [2.0, 6.0]}
    """
    if theta.numel() > DENSE_LIMIT and not force:
        raise ValueError(f"P = {theta.numel()} is above DENSE_LIMIT = {DENSE_LIMIT}; use "
                         "pinnkit.curvature.term_densities (SLQ) instead, or pass force=True")
    names = list(terms_fn(theta.detach()).keys())
    mats = {n: hessian(term(terms_fn, n), theta, mode=mode, force=force).to(torch.float64).cpu()
            for n in names}
    if include_total:
        mats["total"] = cast(Tensor, sum(mats.values()))
    return mats


def term_gauss_newton(residuals_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *,
                      include_total: bool = True, force: bool = False) -> dict[str, Tensor]:
    r"""Dense Gauss–Newton matrix of each mean-square term :math:`L_k = \frac1{N_k}\|r_k\|^2` (float64, CPU).

    :math:`\nabla^2 L_k = G_k + \frac{2}{N_k}\sum_i r_{k,i}\nabla^2 r_{k,i}` with :math:`G_k = \frac{2}{N_k}
    J_k^\top J_k`, :math:`J_k = \partial r_k/\partial\theta` of size :math:`N_k \times P`. So
    :math:`\operatorname{rank} G_k \le \min(N_k, P)`: a term with fewer residual points than parameters (an initial
    condition on 64 points, ``P`` = 501) has a rank-deficient Gauss–Newton part, and the rest of its Hessian is the
    second-order part, which vanishes as the residuals do.

    Args:
        residuals_fn: ``theta -> dict`` of residual vectors (``PINN.residuals``); term ``k`` is ``mean(r_k ** 2)``.
        theta: the point, a flat vector with at most :data:`DENSE_LIMIT` entries.
        include_total: also return ``"total"``, the sum of the :math:`G_k`.
        force: allow ``P > DENSE_LIMIT``.

    Returns:
        ``{name: (P, P) Tensor}``, then ``"total"``.

    Raises:
        ValueError: ``theta`` has more than :data:`DENSE_LIMIT` entries and ``force`` is false.

    >>> r = lambda th: {"a": torch.stack([th[0] + th[1], th[0] - th[1]]), "b": th[:1] * 3}
    >>> G = term_gauss_newton(r, torch.zeros(2, dtype=torch.float64))
    >>> G["a"].tolist(), G["b"].tolist()           # 2/2 * J^T J and 2/1 * [3, 0]^T [3, 0]
    ([[2.0, 0.0], [0.0, 2.0]], [[18.0, 0.0], [0.0, 0.0]])
    """
    if theta.numel() > DENSE_LIMIT and not force:
        raise ValueError(f"P = {theta.numel()} is above DENSE_LIMIT = {DENSE_LIMIT}; use matrix-free products "
                         "(pinnkit.curvature.gauss_newton_operator) instead, or pass force=True")
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
    r"""Scale-invariant conditioning of one mean-square loss term :math:`L_k = \frac1{N_k}\|r_k\|^2`
    (see :func:`term_conditioning`).

    Attributes:
        name: the term (``"residual"``, ``"initial"``, ``"boundary"``, ``"total"``).
        n_residuals: :math:`N_k`, the number of residuals (the rank bound of the Gauss–Newton part).
        eigenvalues: all eigenvalues of :math:`\nabla^2 L_k`, ascending (float64, CPU).
        hessian: :func:`range_condition` of :math:`\nabla^2 L_k`.
        gauss_newton: :func:`range_condition` of :math:`G_k = \frac2{N_k}J_k^\top J_k` (same ``rcut``).
        second_order: :math:`\|\nabla^2 L_k - G_k\|_2 / \|\nabla^2 L_k\|_2`, the relative size of the part
            :math:`\frac2{N_k}\sum_i r_{k,i}\nabla^2 r_{k,i}` that the residuals multiply.
    """

    name: str
    n_residuals: int
    eigenvalues: Tensor
    hessian: RangeCondition
    gauss_newton: RangeCondition
    second_order: float


def term_conditioning(residuals_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, rcut: float = RCUT,
                      force: bool = False, mode: str = "auto") -> dict[str, TermConditioning]:
    r"""Per-term (and total) Hessian and Gauss–Newton conditioning of a mean-square loss, densely.

    Term ``k`` is :math:`L_k(\theta) = \operatorname{mean}(r_k(\theta)^2)` (as ``PINN.terms`` builds it from
    ``PINN.residuals``); ``"total"`` is their sum. For each: the eigenvalues of :math:`\nabla^2 L_k`, their
    :func:`range_condition`, that of the Gauss–Newton part :math:`G_k` (rank :math:`\le N_k`), and the relative
    size of the second-order part. Costs ``P`` HVPs per term, one Jacobian and ``O(P^3)`` per eigensolve.

    Args:
        residuals_fn: ``theta -> dict`` of residual vectors (``PINN.residuals``).
        theta: the point, a flat vector.
        rcut: relative cutoff of :func:`range_condition`; state it with any ``kappa`` or ``rank`` reported.
        force: allow ``P > DENSE_LIMIT``.
        mode: HVP mode of :func:`pinnkit.curvature.hessian`.

    Returns:
        ``{name: TermConditioning}`` in the order of the terms, then ``"total"``.

    Raises:
        ValueError: ``P > DENSE_LIMIT`` without ``force``, or ``rcut`` outside ``(0, 1)``.

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


__all__ += ["term_hessians", "term_gauss_newton", "TermConditioning", "term_conditioning"]



# --- conditioning on the directions that carry curvature ----------------------------------------------------
def top_condition(eigenvalues: Tensor | Sequence[float] | Eigen, k: int) -> float:
    r"""Condition number of the top ``k`` eigenvalues by magnitude: :math:`|\lambda|_{(1)} / |\lambda|_{(k)}`.

    On a fixed number ``k`` of directions (e.g. the rank of the Gauss–Newton matrix, the directions that carry
    curvature) two operators are compared on subspaces of the same dimension, and neither value is capped by a
    relative cutoff as :attr:`RangeCondition.kappa` is (at most ``1/rcut``). Scale-invariant.

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
    return condition_number(a[:int(k)], rcut=0.0)   # the top k, every one of them nonzero: no cutoff needed


def best_scalar_share(eigenvalues: Tensor | Sequence[float] | Eigen, lo: float = 0.5, hi: float = 2.0,
                      ) -> tuple[float, float]:
    r"""The best scalar preconditioner :math:`cA` for :func:`cluster_share`: ``(share, c)`` maximising the
    fraction of eigenvalues of :math:`cA` in ``[lo, hi]`` over all :math:`c > 0`.

    :func:`cluster_share` depends on scale, so a preconditioner :math:`PA` should be compared with the best
    scalar multiple of :math:`A`, not with an arbitrary one (L-BFGS's :math:`\gamma`): that is what a step size
    alone can do. The best window :math:`[\mathrm{lo}/c, \mathrm{hi}/c]` contains the most positive eigenvalues
    of :math:`A` within a ratio ``hi/lo``; ``c`` maps its lower end to ``lo``.

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
    r"""The Hessian and a preconditioned Hessian compared on their top ``k`` eigenvalues (see :func:`compare_top`).

    Attributes:
        k: the number of eigenvalues compared (e.g. the Gauss–Newton rank).
        kappa_hessian: :func:`top_condition` of :math:`\nabla^2 L` (equal to that of any scalar multiple).
        kappa_preconditioned: :func:`top_condition` of the preconditioned operator.
        share_preconditioned: share of the top ``k`` of the preconditioned operator in ``[lo, hi]``.
        share_best_scalar: the same for the best scalar multiple :math:`c\nabla^2 L` (:func:`best_scalar_share`
            on the top ``k``).
        c: that best scalar.
    """

    k: int
    kappa_hessian: float
    kappa_preconditioned: float
    share_preconditioned: float
    share_best_scalar: float
    c: float

    @property
    def gain(self) -> float:
        """``kappa_hessian / kappa_preconditioned``: how much the preconditioner lowers kappa on the top ``k``."""
        return self.kappa_hessian / self.kappa_preconditioned


def compare_top(hessian_eigenvalues: Tensor | Sequence[float] | Eigen,
                preconditioned_eigenvalues: Tensor | Sequence[float] | Eigen, k: int, *, lo: float = 0.5,
                hi: float = 2.0) -> TopComparison:
    r"""Compare :math:`\nabla^2 L` and :math:`P\nabla^2 L` on their top ``k`` eigenvalues (by magnitude).

    A preconditioner of the form :math:`P\nabla^2 L` (``P`` nonsingular) has the same null space as
    :math:`\nabla^2 L`: it cannot lift the flat directions, only rearrange the others. So the fair comparison is on
    a fixed number of directions that carry curvature, ``k`` = the rank of the Gauss–Newton matrix, with
    ``kappa`` of the top ``k`` (:func:`top_condition`) and, for the scale-dependent share in ``[lo, hi]``, the best
    scalar multiple of the Hessian as the baseline (:func:`best_scalar_share`).

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


__all__ += ["top_condition", "best_scalar_share", "TopComparison", "compare_top"]


# --- CG iteration counts: a bound that counts outliers, checked against CG actually run ------------------
def _chebyshev_steps(kappa: float, tol: float) -> int:
    r"""Smallest ``m`` with :math:`1/T_m\bigl(\tfrac{\kappa+1}{\kappa-1}\bigr) \le \mathrm{tol}` (1 for ``kappa == 1``)."""
    if kappa <= 1.0:
        return 1
    x = 2.0 / (kappa - 1.0)                                   # (kappa + 1) / (kappa - 1) = 1 + x
    acosh_arg = math.log1p(x + math.sqrt(x * (x + 2.0)))      # arccosh(1 + x), accurate for small x
    return max(1, math.ceil(math.acosh(1.0 / tol) / acosh_arg))


@dataclass(frozen=True)
class CGBound:
    r"""Iterations CG needs, in exact arithmetic, to reduce the :math:`A`-norm error by ``tol`` (see :func:`cg_bound`).

    Attributes:
        tol: the error reduction asked for.
        n: number of eigenvalues (the dimension of the operator's range).
        distinct: number of distinct eigenvalues (relative gap above ``rtol``): CG terminates after at most this
            many iterations.
        chebyshev: the Chebyshev bound on the whole spectrum, :math:`\kappa = \lambda_{(1)}/\lambda_{(n)}`.
        outliers: ``j``, the number of largest eigenvalues the best bound treats as outliers.
        kappa_rest: :math:`\lambda_{(j+1)}/\lambda_{(n)}`, the condition number left after removing them.
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
    r"""Outlier-aware CG iteration bound for a symmetric positive-definite operator with these eigenvalues.

    With :math:`\lambda_{(1)} \ge \dots \ge \lambda_{(n)} > 0` and :math:`m_{\rm Cheb}(\kappa)` the smallest ``m``
    with :math:`1/T_m(\frac{\kappa+1}{\kappa-1}) \le \mathrm{tol}` (:math:`T_m` the Chebyshev polynomial,
    :math:`m \approx \frac{\sqrt\kappa}2\ln\frac2{\mathrm{tol}}`): the polynomial
    :math:`\prod_{i\le j}(1-\lambda/\lambda_{(i)})\,T_m(\cdot)/T_m(\cdot)` vanishes at the ``j`` largest eigenvalues
    and is at most :math:`1/T_m` in magnitude on :math:`[\lambda_{(n)}, \lambda_{(j+1)}]`, so
    :math:`\|e_{j+m}\|_A \le \mathrm{tol}\,\|e_0\|_A` for :math:`m = m_{\rm Cheb}(\lambda_{(j+1)}/\lambda_{(n)})`
    (large outliers cost one iteration each; Nocedal & Wright Sec. 5.1). And CG terminates after as many
    iterations as there are distinct eigenvalues. Both are statements about **exact** arithmetic: in floating
    point CG loses orthogonality and can need several times more (Meurant & Strakoš 2006); :func:`cg_check` runs
    it both ways.

    Args:
        eigenvalues: all eigenvalues of the operator on the space CG works in (e.g. the top ``k`` of a Hessian);
            every one must be positive.
        tol: :math:`A`-norm error reduction, in ``(0, 1)``.
        rtol: eigenvalues closer than ``rtol`` relative to each other count as one (for ``distinct``).

    Returns:
        A :class:`CGBound`.

    Raises:
        ValueError: an eigenvalue ``<= 0`` (CG's bounds need a positive-definite operator) or ``tol`` outside
            ``(0, 1)``.

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
        measured: iterations of plain float64 CG to an :math:`A`-norm error below ``tol`` (``None``: not within
            ``max_iter``).
        measured_exact: the same with every new residual re-orthogonalised against all previous ones, which is
            what exact arithmetic gives.
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
    r"""Run CG on the symmetric matrix ``A`` with a fixed right-hand side in the span of its top ``k`` eigenvectors
    and compare the iterations with :func:`cg_bound` of those ``k`` eigenvalues.

    The right-hand side is :math:`b = V_k w` (:math:`V_k` the eigenvectors of the ``k`` largest eigenvalues, which
    must be positive; tiny negative eigenvalues of a nearly converged Hessian stay outside, ``w`` standard normal
    from ``seed``), so :math:`x^* = V_k\Lambda_k^{-1}w` and, in exact
    arithmetic, CG never leaves that ``k``-dimensional invariant subspace: it solves with the operator whose
    spectrum is the top ``k``, on the full matrix ``A`` (float64). Counted: the first iteration with
    :math:`\|x_i - x^*\|_A \le \mathrm{tol}\,\|x^*\|_A` (``x_0 = 0``), for plain CG and for CG whose residuals are
    kept orthogonal (exact arithmetic's behaviour).

    Args:
        A: a symmetric matrix, ``n x n`` with at least ``k`` positive eigenvalues.
        k: the dimension of the subspace (e.g. the Gauss–Newton rank).
        tol: :math:`A`-norm error reduction.
        name: a label.
        seed: seed of ``w``.
        max_iter: iteration cap (default ``20 n``).

    Returns:
        A :class:`CGCheck`.

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


__all__ += ["CGBound", "cg_bound", "CGCheck", "cg_check"]
