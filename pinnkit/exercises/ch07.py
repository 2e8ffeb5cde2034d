"""Checks for the exercises of chapter 07 (the distribution of stationary points).

Every check accepts ``None`` (the placeholder in the stored notebook) and then only asks for an answer.
"""
from __future__ import annotations

from . import close, missing, verdict


def check_trivial_fraction(answer: float | None) -> bool:
    """The u == 0 saddle of a 1-20-20-1 tanh network has index 20 (the last hidden width) among 481 parameters:
    index fraction 20 / 481 ~ 0.042, although its loss is the highest of all stationary points found."""
    if missing(answer):
        return False
    return verdict(close(answer, 20 / 481, rtol=1e-2), "The index of u == 0 is the width of the last hidden layer; "
                                                       "divide by the number of parameters (481).")


def check_rtol_threshold(answer: float | None, norm_r: float, lam_max: float) -> bool:
    """H = G + R with G positive semi-definite, so lambda_min(H) >= -||R||. Negative eigenvalues count only when
    they exceed eig_rtol * lambda_max in size, so for eig_rtol above ||R|| / lambda_max the index is 0
    (``norm_r`` and ``lam_max`` are the values printed in the chapter)."""
    if missing(answer):
        return False
    return verdict(close(answer, norm_r / lam_max, rtol=0.05),
                   "Weyl's inequality: adding the positive semi-definite G cannot push an eigenvalue below "
                   "lambda_min(R) >= -||R||. Compare ||R|| with eig_rtol * lambda_max.")


def check_monkey_saddle(label: str | None) -> bool:
    """x^3 - 3 x y^2 at the origin: gradient 0 and Hessian 0, so the second-order test cannot decide."""
    if missing(label):
        return False
    return verdict(str(label).strip().lower() == "degenerate",
                   "Compute the Hessian at the origin: every second derivative vanishes there.")
