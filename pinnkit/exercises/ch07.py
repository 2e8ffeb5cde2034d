"""Checks for the exercises of chapter 07 (the distribution of stationary points)."""
from __future__ import annotations

from . import close, verdict


def check_index_fraction(answer: float) -> bool:
    """f(x, y, z) = x^2 - y^2 + z^2 at the origin: eigenvalues (2, -2, 2), index 1, index fraction 1/3."""
    return verdict(close(answer, 1 / 3, rtol=1e-3), "Count the negative eigenvalues of diag(2, -2, 2) and divide "
                                                    "by the number of parameters.")


def check_quadratic_decrease(answer: float, lam: float = -0.33, t: float = 0.5) -> bool:
    """Along the most negative eigenvector from a saddle, L(theta + t v) - L(theta) ~ lam t^2 / 2."""
    return verdict(close(answer, 0.5 * lam * t * t, rtol=1e-3),
                   "The gradient vanishes at the saddle, so only the quadratic term (1/2) t^2 v^T H v remains.")


def check_monkey_saddle(label: str) -> bool:
    """x^3 - 3 x y^2 at the origin: gradient 0 and Hessian 0, so the second-order test cannot decide."""
    return verdict(str(label).strip().lower() == "degenerate",
                   "Compute the Hessian at the origin: every second derivative vanishes there.")
