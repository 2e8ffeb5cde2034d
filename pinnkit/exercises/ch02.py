"""Checks for the exercises of chapter 2 (the curvature toolkit)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from . import close, verdict


def check_lanczos_first_step(alpha1: float, beta1: float) -> bool:
    r"""Exercise 1: Lanczos on ``A = diag(1, ..., 10)`` from ``v0 = (1, ..., 1)``: the first diagonal entry
    :math:`\alpha_1 = q_1^\top A q_1` and off-diagonal :math:`\beta_1 = \|Aq_1 - \alpha_1 q_1\|`."""
    lam = torch.arange(1.0, 11.0, dtype=torch.float64)
    a = float(lam.mean())                                  # q1 = v0/sqrt(10): the mean eigenvalue
    b = float(((lam - a) ** 2).mean().sqrt())              # the spread: a standard deviation
    ok = close(alpha1, a, rtol=1e-3) and close(beta1, b, rtol=1e-3)
    return verdict(ok, "q1 = v0/||v0|| weights every eigenvalue by 1/10: alpha1 is a mean, beta1 a standard "
                       "deviation")


def check_negative_fraction(answer: float, f: Callable[[Tensor], Tensor], theta: Tensor) -> bool:
    """Exercise 2: the fraction of negative Hessian eigenvalues (the index / P) of ``f`` at ``theta``."""
    from ..curvature import hessian_eigh
    ev = hessian_eigh(f, theta).values
    expected = float((ev < 0).double().mean())
    return verdict(close(answer, expected, rtol=0.02, atol=1e-3),
                   "count eigenvalues < 0 of the dense Hessian (hessian_eigh) and divide by the parameter count")


def check_condition_number(answer: float, f: Callable[[Tensor], Tensor], theta: Tensor,
                           rel_cutoff: float = 1e-6) -> bool:
    """Exercise 3: the condition number of the Hessian of ``f`` at ``theta`` with the cutoff
    ``rel_cutoff * lambda_max`` (eigenvalues at or below it are ignored)."""
    from ..curvature import condition_number, hessian_eigh
    ev = hessian_eigh(f, theta).values
    expected = condition_number(ev, cutoff=rel_cutoff * float(ev.max()))
    answer = float(answer)
    ok = math.isfinite(answer) and answer > 0 and abs(math.log10(answer) - math.log10(expected)) <= 0.05
    return verdict(ok, "use condition_number(eigenvalues, cutoff=1e-6 * eigenvalues.max()) on the residual term")
