"""Checks for the exercises of chapter 8 (gradient alignment and SOAP)."""
from __future__ import annotations

import math

from . import close, verdict


def check_orthonormal(answer: float) -> bool:
    """Exercise 1: the alignment score of four mutually orthogonal vectors, 2/4 - 1."""
    return verdict(close(answer, 2 / 4 - 1, rtol=0.0, atol=1e-3),
                   "The score ignores lengths: average the four unit vectors, square the norm, times 2, minus 1.")


def check_toy_cosine(answer: float) -> bool:
    """Exercise 2: cosine of g_1 = (1, 0.01) and g_2 = (1, -0.29) (the toy with W = diag(1, 10))."""
    expected = (1 - 0.01 * 0.29) / math.sqrt((1 + 0.01 ** 2) * (1 + 0.29 ** 2))
    return verdict(close(answer, expected, rtol=1e-3),
                   "g_i = W^T (W theta - a_i) with W = diag(1, 10): the residuals are (1, 0.001) and (1, -0.029).")
