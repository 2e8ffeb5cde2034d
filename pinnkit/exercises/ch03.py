"""Checks for the exercises of chapter 3 (differential operators and the conditioning of the PINN loss)."""
from __future__ import annotations

import math

from . import close, missing, verdict


def check_annihilating_beta(answer: float | None, wx: float = 1.5, wt: float = -2.0) -> bool:
    """Exercise 1: the ``beta`` with ``2 wt + beta wx / pi = 0`` (rescaled weights of a convection feature on
    ``(0, 2 pi) x (0, 1)``)."""
    if missing(answer):
        return False
    return verdict(close(answer, -2 * math.pi * wt / wx, rtol=0.02),
                   "Undo the rescaling to [-1, 1] (x: factor 1/pi, t: factor 2), then solve w_t + beta w_x = 0.")



def check_null_dimension(answer: int | None) -> bool:
    """Exercise 3: zero eigenvalues of the residual term's Hessian for sin(j pi x) features plus a constant."""
    if missing(answer):
        return False
    return verdict(int(answer) == 1, "Which features have a zero second derivative?")


def check_feature_curvature(answer: float, wx: float = 2.0, wt: float = 1.0, beta: float = 10.0) -> bool:
    """``(2/N) sum (D phi)^2`` with ``D phi = (wt + beta wx) cos(.)`` and ``mean cos^2 = 1/2``."""
    expected = (wt + beta * wx) ** 2
    return verdict(close(answer, expected, rtol=0.02),
                   "D phi = (w_t + beta w_x) cos(w.X + b); square it, average cos^2 to 1/2, and multiply by 2.")


def check_slope(answer: float) -> bool:
    """The least-squares log-log slope through (1, 5), (10, 50), (100, 5000)."""
    return verdict(close(answer, 1.5, rtol=0.01), "Fit log y = p log x + log C by least squares (F.fit_power_law).")


def check_preconditioned_residual(answer: float | None, beta: float = 1.0) -> bool:
    """Exercise 2: kappa on the range (cutoff 1e-12) of the convection residual Hessian after operator
    preconditioning (feature j scaled by 1 / |w_t + beta w_x|, the constant by 1), for the chapter's ``model(beta)``.
    """
    if missing(answer):
        return False
    import torch

    from ..book.features_study import operator_factors, scaled
    from ..conditioning import range_condition
    from ..features import random_features
    from ..problems import Convection

    m = random_features(Convection(beta=beta), width=16, scale=2.0, n_res=500, n_ic=101, n_bc=51, seed=0,
                        activation="sin")
    d = torch.cat([1 / operator_factors(m, beta).abs(), torch.ones(1, dtype=torch.float64)])
    expected = range_condition(torch.linalg.eigvalsh(scaled(m.term_hessians()["residual"], d)), 1e-12).kappa
    return verdict(close(answer, expected, rtol=0.05),
                   "After the rescaling, column j of the residual matrix is cos(w_j.X + b_j): what is left is the "
                   "conditioning of those cosine features, whatever beta is.")
