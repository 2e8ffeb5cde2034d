"""Checks for the exercises of chapter 06 (why exact Newton fails).

Every check accepts ``None`` (the placeholder in the stored notebook) and then only asks for an answer.
"""
from __future__ import annotations

from typing import Sequence

from . import close, missing, verdict


def check_newton_step(point: Sequence[float] | None) -> bool:
    """One undamped Newton step on f(x, y) = x^2 - y^2 from (1, 1): f is quadratic, so it lands on the
    stationary point (0, 0) — the saddle."""
    if missing(point):
        return False
    x, y = map(float, point)
    return verdict(close(x, 0.0, atol=1e-8) and close(y, 0.0, atol=1e-8),
                   "For a quadratic, one Newton step solves grad f = 0 exactly. Which point has zero gradient?")


def check_saddle_free_step(point: Sequence[float] | None) -> bool:
    """One saddle-free Newton step d = -|H|^{-1} g on x^2 - y^2 from (1, 0.5): H = diag(2, -2), g = (2, -1),
    |H|^{-1} g = (1, -0.5), so the new point is (0, 1.0): x goes to its minimum, y moves *away* from the saddle."""
    if missing(point):
        return False
    x, y = map(float, point)
    return verdict(close(x, 0.0, atol=1e-8) and close(y, 1.0, rtol=1e-6),
                   "Replace each eigenvalue by its absolute value: |H| = diag(2, 2). Then theta - |H|^{-1} g.")


def check_trivial_index(answer: int | None) -> bool:
    """At the trivial saddle of a 1-6-4-1 tanh network (all layers after the first zero) the Hessian couples each
    output weight W3_j with its row of W2 by +-||c||: one negative eigenvalue per unit of the last hidden layer."""
    if missing(answer):
        return False
    return verdict(int(answer) == 4, "Each unit j of the last hidden layer gives one pair +-||c|| (W3_j against "
                                     "row j of W2). How many units has the last hidden layer?")


def check_null_dim(answer: int | None) -> bool:
    """A 1-20-20-1 network has 20 + 20 + 400 + 20 + 20 + 1 = 481 parameters; J is 64 x 481, so G = 2 J^T J has
    rank at most 64 and at least 481 - 64 = 417 zero eigenvalues. On that null space H equals the residual term."""
    if missing(answer):
        return False
    return verdict(int(answer) == 417, "Count the parameters (weights and biases of three layers), then use "
                                       "rank(J^T J) <= number of data points.")
