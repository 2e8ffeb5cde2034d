"""Checks for the exercises of chapter 4 (the spectrum of the PINN loss)."""
from __future__ import annotations

from typing import Any

from . import close, verdict


def check_weight_sum(answer: float) -> bool:
    """Exercise 1: the Gauss quadrature weights of one SLQ probe sum to 1."""
    return verdict(close(answer, 1.0, rtol=1e-6), "The weights are squared components of a unit vector.")


def check_top_eigenvalue(answer: float, pinn: Any, theta: Any) -> bool:
    """Exercise 2: the largest eigenvalue of the residual term's Hessian (dense reference)."""
    import torch

    from ..curvature import hessian
    ev = torch.linalg.eigvalsh(hessian(lambda th: pinn.terms(th)["residual"], theta))
    return verdict(close(answer, float(ev[-1]), rtol=1e-3),
                   "Use cv.top_eigenpairs on the residual term only: lambda th: pinn.terms(th)['residual'].")
