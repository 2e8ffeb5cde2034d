"""Checks for the exercises of chapter 1 (A first PINN)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from . import close, missing, verdict


def _value(x: Any) -> float:
    """``x`` as a float, detached first when it is a tensor that requires grad."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def check_reaction_terms(terms: Mapping[str, Any] | None, pinn: Any) -> bool:
    """Exercise 1: a from-scratch reaction loss, ``{"residual", "initial", "boundary"}`` evaluated at
    ``pinn.theta0`` on ``pinn.points``, against ``pinn.terms(pinn.theta0)`` (relative 1e-8 in float64, 1e-4 in
    float32)."""
    if missing(terms):
        return False
    expected = {k: float(v) for k, v in pinn.terms(pinn.theta0).items()}
    if set(terms) != set(expected):
        return verdict(False, f"Return a dict with the keys {sorted(expected)}, got {sorted(terms)}.")
    rtol = 1e-8 if pinn.dtype == torch.float64 else 1e-4
    wrong = [k for k in expected if not close(_value(terms[k]), expected[k], rtol=rtol, atol=1e-14)]
    hints = {"residual": "the residual is u_t - rho u (1 - u): one time derivative, no x derivative.",
             "initial": "the initial value is exp(-(x - pi)^2 / (2 (pi/4)^2)), not sin x.",
             "boundary": "the boundary term compares u(0, t) with u(2 pi, t), as for convection."}
    return verdict(not wrong, " ".join(f"{k} is off: {hints[k]}" for k in wrong))


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
