"""Checks for the exercises of chapter 2 (the curvature toolkit).

Each check accepts ``None`` (the notebook's placeholder) and then only reminds you what to compute.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from . import close, verdict


def check_lanczos_first_step(alpha1: float | None, beta1: float | None) -> bool:
    r"""Exercise 1: Lanczos on ``A = diag(1, ..., 10)`` from ``v0 = (1, ..., 1)``: the first diagonal entry
    :math:`\alpha_1 = q_1^\top A q_1` and off-diagonal :math:`\beta_1 = \|Aq_1 - \alpha_1 q_1\|`."""
    if alpha1 is None or beta1 is None:
        return verdict(False, "Replace None by alpha1 and beta1 (on paper first, then with cv.lanczos).")
    lam = torch.arange(1.0, 11.0, dtype=torch.float64)
    a = float(lam.mean())                                  # q1 = v0/sqrt(10): the mean eigenvalue
    b = float(((lam - a) ** 2).mean().sqrt())              # the spread: a standard deviation
    ok = close(alpha1, a, rtol=1e-3) and close(beta1, b, rtol=1e-3)
    return verdict(ok, "q1 = v0/||v0|| weights every eigenvalue by 1/10: alpha1 is a mean, beta1 a standard "
                       "deviation")


def check_negative_count(answer: int | None, f: Callable[[Tensor], Tensor], theta: Tensor, tol: float = 1e-8) -> bool:
    r"""Exercise 2: the number of Hessian eigenvalues of ``f`` at ``theta`` below :math:`-\mathrm{tol}\cdot
    \lambda_{\max}` (clearly negative, not rounding noise)."""
    if answer is None:
        return verdict(False, "Replace None by the count of eigenvalues below -1e-8 * lambda_max.")
    from ..curvature import hessian_eigh
    ev = hessian_eigh(f, theta).values
    expected = int((ev < -tol * float(ev.max())).sum())
    return verdict(int(answer) == expected, "count ev < -1e-8 * ev.max() for ev = cv.hessian_eigh(...).values")


def check_kernel_tail(answer: float | None, sd: Any, below: float = -1.0) -> bool:
    r"""Exercise 3: the area of the *drawn* (smoothed) density of ``sd`` (a
    :class:`~pinnkit.curvature.SpectralDensity`) to the left of ``below``; compare it with ``sd.mass(-inf, below)``,
    the quadrature weight of the eigenvalues actually there."""
    if answer is None:
        return verdict(False, "Replace None by torch.trapezoid(density, grid) over the grid points below -1.")
    keep = sd.grid <= below
    expected = float(torch.trapezoid(sd.density[keep], sd.grid[keep])) if int(keep.sum()) > 1 else 0.0
    return verdict(close(answer, expected, rtol=0.05, atol=1e-6),
                   "integrate sd.density over sd.grid where sd.grid <= -1 (torch.trapezoid)")


def check_range_condition(answer: float | None, f: Callable[[Tensor], Tensor], theta: Tensor,
                          rcut: float = 1e-6) -> bool:
    """Exercise 4: the condition number on the range, ``pinnkit.conditioning.range_condition(ev, rcut).kappa``, of
    the Hessian of ``f`` at ``theta``."""
    if answer is None:
        return verdict(False, "Replace None by range_condition(eigenvalues, rcut=1e-6).kappa.")
    from ..conditioning import range_condition
    from ..curvature import hessian_eigh
    expected = range_condition(hessian_eigh(f, theta).values, rcut).kappa
    answer = float(answer)
    ok = math.isfinite(answer) and answer > 0 and abs(math.log10(answer) - math.log10(expected)) <= 0.05
    return verdict(ok, "use pinnkit.conditioning.range_condition(eigenvalues, rcut=1e-6).kappa on the residual term")
