"""Checks for the exercises of chapter 1 (A first PINN)."""
from __future__ import annotations

from . import verdict


def check_exact_residual(value: float) -> bool:
    """Exercise 1: the residual loss term of the exact solution is zero up to rounding (float64)."""
    return verdict(0 <= float(value) < 1e-20,
                   "Use pinn.problem.residuals(pinn.problem.exact, pinn.points) in float64 and take the mean square "
                   "of the 'residual' entry.")


def check_budget(adam_steps: int, lbfgs_steps: int, total_iterations: int, lbfgs_iter: int = 20) -> bool:
    """Exercise 2: Rathore et al. count one L-BFGS step as ``lbfgs_iter`` iterations."""
    ok = adam_steps + lbfgs_iter * lbfgs_steps == total_iterations and adam_steps >= 0 and lbfgs_steps >= 0
    return verdict(ok, f"adam_steps + {lbfgs_iter} * lbfgs_steps must equal the budget of {total_iterations}.")
