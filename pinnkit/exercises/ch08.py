"""Checks for the exercises of chapter 8 (gradient alignment and SOAP).

Each check accepts ``None`` (the placeholder in the notebook) and then only reminds you what to compute.
"""
from __future__ import annotations

import math

from . import close, pending, verdict


def check_orthonormal(answer: float | None) -> bool:
    """Exercise 1: the alignment score of four mutually orthogonal vectors of arbitrary lengths."""
    if pending(answer, "the score of four orthogonal gradients"):
        return False
    return verdict(close(answer, 2 / 4 - 1, rtol=0.0, atol=1e-3),
                   "Lengths do not count: average the unit vectors, square the norm, x 2, minus 1.")


def check_toy_cosine(answer: float | None) -> bool:
    """Exercise 2: cosine of g_1 = (1, 0.01) and g_2 = (1, -0.29) (the toy with W = diag(1, 10))."""
    if pending(answer, "the cosine of g_1, g_2 for W = diag(1, 10)"):
        return False
    expected = (1 - 0.01 * 0.29) / math.sqrt((1 + 0.01 ** 2) * (1 + 0.29 ** 2))
    return verdict(close(answer, expected, rtol=5e-3),  # the solution rounds it to 0.96
                   "g_i = W^T (W theta - a_i): the residuals are (1, 0.001) and (1, -0.029).")


def check_newton_toy(answer: float | None) -> bool:
    """Exercise 3: cosine of the two Newton directions H^{-1} g_i of the W = diag(1, 100) toy, H = 2 W^T W."""
    if pending(answer, "the cosine of H^-1 g_1 and H^-1 g_2"):
        return False
    u, v = (1.0, 1e-4), (1.0, -2e-4)   # 2 H^{-1} g_i = W^{-1} r_i
    expected = (u[0] * v[0] + u[1] * v[1]) / math.hypot(*u) / math.hypot(*v)
    return verdict(close(answer, expected, rtol=0.0, atol=1e-6),
                   "H^-1 g_i = W^-1 r_i / 2: divide the residuals' second entries by 100.")
