"""Checks for the exercises of chapter 5 (Adam, L-BFGS and NysNewton-CG)."""
from __future__ import annotations

import torch

from . import close, verdict


def check_precond_scaling(along_u1: float | None, orthogonal: float | None,
                          lhat: tuple[float, float] = (100.0, 10.0), mu: float = 0.1) -> bool:
    """Exercise 1: the Nyström ``M^{-1}`` scales ``u_i`` by ``(lhat_l + mu) / (lhat_i + mu)`` and leaves the
    complement of ``U`` unchanged. ``None`` (not answered yet) prints a reminder and returns False."""
    if along_u1 is None or orthogonal is None:
        return verdict(False, "Replace None by the two scale factors you computed.")
    expected = (lhat[-1] + mu) / (lhat[0] + mu)
    return verdict(close(along_u1, expected, rtol=0.02) and close(orthogonal, 1.0, rtol=0.02),
                   "Apply M^{-1} = (lhat_l + mu) U (Lhat + mu I)^{-1} U^T + (I - U U^T) to u_1 and to a vector "
                   "orthogonal to U.")


def preconditioned_condition(n: int = 50, rank: int = 10, mu: float = 1e-2, seed: int = 0) -> float:
    """Condition number of ``M^{-1/2} (H + mu I) M^{-1/2}`` for ``H = diag(logspace(4, -2, n))``."""
    from ..nncg import nystrom
    H = torch.diag(torch.logspace(4, -2, n, dtype=torch.float64))
    pre = nystrom(H, n, rank, mu=mu, generator=torch.Generator().manual_seed(seed))
    A = H + mu * torch.eye(n, dtype=torch.float64)
    S = pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(A).T).T
    return float(torch.linalg.cond(0.5 * (S + S.T)))


def check_preconditioned_condition(answer: float | None) -> bool:
    """Exercise 2: the condition number of the Nyström-preconditioned damped system (``None``: not answered)."""
    if answer is None:
        return verdict(False, "Replace None by the condition number you computed.")
    return verdict(close(answer, preconditioned_condition(), rtol=0.05),
                   "Compute S = M^{-1/2} (H + mu I) M^{-1/2} with pre.apply_inverse_sqrt applied on both sides, then "
                   "torch.linalg.cond(S).")
