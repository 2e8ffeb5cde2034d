"""Checks for the exercises of chapter 10 (from spectrum to speed: the tangent kernel and spectral bias)."""
from __future__ import annotations

import torch

from . import close, missing, verdict


def check_kernel_zeros(answer: int | None, n: int = 300, p: int = 50) -> bool:
    """Exercise 1: zero eigenvalues of ``K = J J^T`` for a full-rank ``n x p`` Jacobian, ``n > p``."""
    if missing(answer):
        return False
    return verdict(int(answer) == n - p, "K is n x n but has the rank of J, at most min(n, p).")


def outlier_spectrum() -> torch.Tensor:
    """Exercise 2's eigenvalues: 40 evenly spread over [1, 2] and the outliers 1e3, 1e4, 1e5."""
    return torch.cat([torch.linspace(1.0, 2.0, 40, dtype=torch.float64),
                      torch.tensor([1e3, 1e4, 1e5], dtype=torch.float64)])


def check_outlier_cg(answer: int | None, tol: float = 1e-6) -> bool:
    """Exercise 2: the outlier-aware CG prediction (one iteration per outlier plus Chebyshev on the rest)."""
    from ..book.tangent_study import predicted_iterations

    if missing(answer):
        return False
    expected = predicted_iterations(outlier_spectrum(), tol).cg
    return verdict(abs(int(answer) - expected) <= 1,
                   "Remove the three outliers (one iteration each), then apply Chebyshev to kappa = 2.")


def convection_kappas(beta: float = 40.0) -> tuple[float, float]:
    """Exercise 3's reference: kappa on the range (rcut 1e-12) of the loss Hessian of chapter 3's random sine
    features on convection, without and with the operator scaling ``1 / |w_t + beta w_x|`` (constant kept)."""
    import pinnkit as pk
    from pinnkit import features as F
    from pinnkit import tangent as T
    from pinnkit.book import features_study as FS
    from pinnkit.book import tangent_study as TS

    m = F.random_features(pk.problems.Convection(beta=beta), width=16, scale=2.0, n_res=500, n_ic=101, n_bc=51,
                          seed=0, activation="sin")
    A = T.residual_jacobian(m.residual_vector, m.theta0)
    d = torch.ones(m.n_params, dtype=torch.float64)
    d[:-1] = 1.0 / FS.operator_factors(m, beta).abs()
    out = []
    for B in (A, A * d):
        out.append(TS.predicted_iterations(torch.linalg.eigvalsh(2.0 * B.T @ B), 1e-4).kappa)
    return out[0], out[1]


def check_convection_preconditioning(kappa_plain: float | None, kappa_scaled: float | None,
                                     beta: float = 40.0) -> bool:
    """Exercise 3: both condition numbers at ``beta`` to within a factor 1.5."""
    if missing(kappa_plain) or missing(kappa_scaled):
        return False
    ref_plain, ref_scaled = convection_kappas(beta)
    ok = close(kappa_plain, ref_plain, rtol=0.5) and close(kappa_scaled, ref_scaled, rtol=0.5)
    return verdict(ok, "Use the chapter-3 model with seed 0, kappa on the range of H = 2 A^T A (rcut 1e-12), and "
                       "scale every feature but the constant by 1 / |w_t + beta w_x|.")
