"""Checks for the exercises of chapter 3 (why differential operators make the loss ill-conditioned)."""
from __future__ import annotations

from . import close, verdict


def check_feature_curvature(answer: float, wx: float = 2.0, wt: float = 1.0, beta: float = 10.0) -> bool:
    """Exercise 1: ``(2/N) sum (D phi)^2`` with ``D phi = (wt + beta wx) cos(.)`` and ``mean cos^2 = 1/2``."""
    expected = (wt + beta * wx) ** 2
    return verdict(close(answer, expected, rtol=0.02),
                   "D phi = (w_t + beta w_x) cos(w.X + b); square it, average cos^2 to 1/2, and multiply by 2.")


def check_slope(answer: float) -> bool:
    """Exercise 2: the least-squares log-log slope through (1, 5), (10, 50), (100, 5000)."""
    return verdict(close(answer, 1.5, rtol=0.01), "Fit log y = p log x + log C by least squares (F.fit_power_law).")
