"""Checks for the exercises of chapter 1 (A first PINN)."""
from __future__ import annotations

import math

from . import close, missing, verdict


def check_periods(answer: float | None, beta: float = 40.0) -> bool:
    """Exercise 1: periods of ``sin(x - beta t)`` in time over ``t in (0, 1)`` at a fixed ``x``: ``beta / (2 pi)``."""
    if missing(answer):
        return False
    return verdict(close(answer, beta / (2 * math.pi), rtol=0.03),
                   "sin(x - beta t) has angular frequency beta in t; a period is 2 pi / beta long.")


def check_curvature_factor(answer: float | None, beta_from: float = 10.0, beta_to: float = 40.0) -> bool:
    """Exercise 1: the growth of a curvature that scales like ``beta^2``."""
    if missing(answer):
        return False
    return verdict(close(answer, (beta_to / beta_from) ** 2, rtol=0.02),
                   "The residual contains beta u_x; squaring it gives beta^2.")


def check_constant_loss(answer: float | None, n_ic: int = 100) -> bool:
    """Exercise 2: the smallest loss of a constant prediction, ``mean_j sin^2 x_j`` over the ``n_ic`` evenly spaced
    initial points on ``[0, 2 pi]`` (the residual and the periodic boundary term vanish for a constant)."""
    if missing(answer):
        return False
    xs = [2 * math.pi * j / (n_ic - 1) for j in range(n_ic)]
    mean = sum(math.sin(x) for x in xs) / n_ic
    expected = sum((math.sin(x) - mean) ** 2 for x in xs) / n_ic
    return verdict(close(answer, expected, rtol=0.02),
                   "Only the initial term is left: minimise mean((c - sin x_j)^2) over c.")


def check_exact_residual(value: float) -> bool:
    """The residual loss term of the exact solution is zero up to rounding (float64)."""
    return verdict(0 <= float(value) < 1e-20,
                   "Use pinn.problem.residuals(pinn.problem.exact, pinn.points) in float64 and take the mean square "
                   "of the 'residual' entry.")


def check_budget(adam_steps: int, lbfgs_steps: int, total_iterations: int, lbfgs_iter: int = 20) -> bool:
    """Rathore et al. count one L-BFGS step as ``lbfgs_iter`` iterations."""
    ok = adam_steps + lbfgs_iter * lbfgs_steps == total_iterations and adam_steps >= 0 and lbfgs_steps >= 0
    return verdict(ok, f"adam_steps + {lbfgs_iter} * lbfgs_steps must equal the budget of {total_iterations}.")
