r"""Line searches along a descent direction :math:`d` (:math:`g^\top d < 0`): backtracking (Armijo) and strong Wolfe.

Armijo: from ``t = max_step``, ``t *= shrink`` until :math:`f(\theta + t d) \le f(\theta) + c_1 t\, g^\top d`.
On :math:`f = \theta^2` at :math:`\theta = 1` with :math:`d = -g = -2`, the full step overshoots to :math:`-1` and
the halved one lands on the minimum:

>>> import torch
>>> f = lambda th: (th ** 2).sum()
>>> theta = torch.tensor([1.0], dtype=torch.float64); g = 2 * theta
>>> res = armijo(f, theta, float(f(theta)), g, -g)
>>> res.step, res.theta.tolist(), res.loss, res.accepted
(0.5, [0.0], 0.0, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["LineSearchResult", "armijo", "WolfeResult", "WOLFE_REASONS", "strong_wolfe"]


@dataclass(frozen=True)
class LineSearchResult:
    """The accepted ``step`` :math:`t`, the point ``theta`` :math:`= \\theta + t d` and its ``loss``; when no trial
    passed (or the trials shrank until :math:`\\theta + t d` rounds to :math:`\\theta`), ``accepted=False``,
    ``step=0`` and the starting point with its loss.
    """

    step: float
    theta: Tensor
    loss: float
    accepted: bool


def armijo(f: Callable[[Tensor], Tensor], theta: Tensor, f0: float, g: Tensor, d: Tensor, *, c1: float = 1e-4,
           shrink: float = 0.5, max_step: float = 1.0, max_halvings: int = 40) -> LineSearchResult:
    r"""Backtrack along the descent direction ``d`` until :math:`f(\theta + t d) \le f_0 + c_1 t\, g^\top d`.

    A trial that rounds to ``theta`` itself (:math:`t d` below the resolution of every entry) ends the search without
    a step, unevaluated: every smaller trial is ``theta`` too, and in floating point it could pass the test (when
    :math:`c_1 t\, |g^\top d|` is below the resolution of ``f0``) while moving nothing. In float32 at
    :math:`\theta = 1`, a step of :math:`10^{-8}` rounds away (the spacing there is :math:`1.2 \cdot 10^{-7}`), so
    a search given an ``f0`` one rounding above :math:`f(\theta)` finds no step:

    >>> f = lambda th: (th ** 2).sum()
    >>> theta = torch.ones(1); g = torch.full((1,), 2e-8)
    >>> res = armijo(f, theta, float(f(theta)) + 1e-7, g, -g)
    >>> res.accepted, res.step, torch.equal(res.theta, theta)
    (False, 0.0, True)

    Args:
        f: the loss, ``theta -> scalar Tensor``; ``f0 = f(theta)`` and ``g`` its gradient at ``theta``.
        d: a descent direction; the trials are ``t = max_step * shrink**j``, ``j < max_halvings``.
        c1, shrink: constants in ``(0, 1)``.

    Returns:
        A :class:`LineSearchResult` (not accepted when every trial failed, gave a non-finite loss, or rounded to
        ``theta``).

    Raises:
        ValueError: ``c1`` or ``shrink`` outside ``(0, 1)``, ``max_step <= 0`` or ``max_halvings < 1``.
    """
    if not 0.0 < c1 < 1.0 or not 0.0 < shrink < 1.0:
        raise ValueError(f"c1 and shrink must lie in (0, 1), got c1={c1}, shrink={shrink}")
    if not max_step > 0 or int(max_halvings) < 1:
        raise ValueError(f"max_step must be positive and max_halvings >= 1, got {max_step}, {max_halvings}")
    slope = float(torch.dot(g, d))
    t = float(max_step)
    for _ in range(int(max_halvings)):
        trial = theta + t * d
        if torch.equal(trial, theta):  # t d rounds away: a step that moves nothing is no step
            break
        value = float(f(trial))
        if math.isfinite(value) and value <= f0 + c1 * t * slope:
            return LineSearchResult(t, trial, value, True)
        t *= shrink
    return LineSearchResult(0.0, theta, float(f0), False)


# --- strong Wolfe ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WolfeResult:
    r"""A strong Wolfe search: the ``step`` :math:`t` (None: failed), :math:`\phi(t)`, :math:`\phi'(t)`, the
    evaluations of :math:`\phi` and why it ended (``reason``, a key of :data:`WOLFE_REASONS`).
    """

    step: float | None
    value: float
    slope: float | None
    evals: int
    reason: str


#: why :func:`strong_wolfe` ended
WOLFE_REASONS = {
    "wolfe": "the strong Wolfe conditions hold at the accepted step",
    "extrapolation_limit": "maxiter doublings without bracketing a minimiser: the last trial is taken (scipy does so)",
    "zoom_failed": "the zoom stage made maxiter interpolations without meeting the conditions (no step)",
    "rounding": "the trial step became 0: rounding errors prevent progress (no step)",
}


def _cubicmin(a: float, fa: float, fpa: float, b: float, fb: float, c: float, fc: float) -> float | None:
    """Minimiser of the cubic through ``(a, fa)``, ``(b, fb)``, ``(c, fc)`` with slope ``fpa`` at ``a`` (or None)."""
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        try:
            C, db, dc = fpa, np.float64(b - a), np.float64(c - a)
            denom = (db * dc) ** 2 * (db - dc)
            r1, r2 = fb - fa - C * db, fc - fa - C * dc
            A = (dc ** 2 * r1 - db ** 2 * r2) / denom
            B = (-dc ** 3 * r1 + db ** 3 * r2) / denom
            xmin = a + (-B + np.sqrt(B * B - 3 * A * C)) / (3 * A)
        except (ArithmeticError, FloatingPointError):
            return None
    return float(xmin) if np.isfinite(xmin) else None


def _quadmin(a: float, fa: float, fpa: float, b: float, fb: float) -> float | None:
    """Minimiser of the quadratic through ``(a, fa)``, ``(b, fb)`` with slope ``fpa`` at ``a`` (or None)."""
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        try:
            db = np.float64(b - a)
            B = (fb - fa - fpa * db) / (db * db)
            xmin = a - fpa / (2.0 * B)
        except (ArithmeticError, FloatingPointError):
            return None
    return float(xmin) if np.isfinite(xmin) else None


def strong_wolfe(phi: Callable[[float], tuple[float, float]], phi0: float, slope0: float,
                 phi_prev: float | None = None, *, c1: float = 1e-4, c2: float = 0.9, amax: float | None = 1e100,
                 maxiter: int = 10) -> WolfeResult:
    r"""A step :math:`t` with :math:`\phi(t) \le \phi(0) + c_1 t\,\phi'(0)` and :math:`|\phi'(t)| \le
    c_2|\phi'(0)|` (strong Wolfe), for :math:`\phi(t) = f(\theta + t d)`.

    Nocedal & Wright's Algorithms 3.5 (bracketing by doubling) and 3.6 (zoom by cubic, quadratic, then bisection
    interpolation), trial for trial as scipy's ``scalar_search_wolfe2``. First trial :math:`t_1 = \min(1,
    2.02(\phi(0) - \phi_{\rm prev}) / \phi'(0))`, 1 when negative or without ``phi_prev``.

    >>> phi = lambda t: ((t - 0.3) ** 2, 2 * (t - 0.3))       # a parabola with its minimum at 0.3
    >>> r = strong_wolfe(phi, 0.09, -0.6)
    >>> round(r.step, 12), r.reason, r.evals
    (0.3, 'wolfe', 2)

    Args:
        phi: ``t -> (phi(t), phi'(t))``, one loss and gradient evaluation; ``phi0``, ``slope0 < 0`` at ``t = 0``.
        phi_prev: the loss before the previous step (sets the first trial).
        amax, maxiter: the largest step; the most doublings and the most zoom iterations.

    Raises:
        ValueError: not :math:`0 < c_1 < c_2 < 1`.
    """
    if not 0 < c1 < c2 < 1:
        raise ValueError(f"strong Wolfe needs 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    cache: dict[float, tuple[float, float]] = {}

    def ev(t: float) -> tuple[float, float]:
        if t not in cache:
            v, s = phi(t)
            cache[t] = (float(v), float(s))
        return cache[t]

    def done(t: float | None, reason: str, value: float, slope: float | None) -> WolfeResult:
        return WolfeResult(t, value, slope, len(cache), reason)

    a0, a1 = 0.0, 1.0
    if phi_prev is not None and slope0 != 0:
        a1 = min(1.0, 1.01 * 2 * (phi0 - phi_prev) / slope0)
    if a1 < 0:
        a1 = 1.0
    if amax is not None:
        a1 = min(a1, amax)
    f1, _ = ev(a1)
    f0_, d0_ = phi0, slope0

    def zoom(lo: float, hi: float, f_lo: float, f_hi: float, d_lo: float) -> WolfeResult:
        f_rec, a_rec, aj = phi0, 0.0, None
        for i in range(maxiter + 1):
            da = hi - lo
            a, b = (hi, lo) if da < 0 else (lo, hi)
            if i > 0:
                cchk = 0.2 * da
                aj = _cubicmin(lo, f_lo, d_lo, hi, f_hi, a_rec, f_rec)
            if i == 0 or aj is None or aj > b - cchk or aj < a + cchk:
                qchk = 0.1 * da
                aj = _quadmin(lo, f_lo, d_lo, hi, f_hi)
                if aj is None or aj > b - qchk or aj < a + qchk:
                    aj = lo + 0.5 * da
            fj, dj = ev(aj)    # one evaluation gives value and slope (scipy asks for the slope only when needed)
            if fj > phi0 + c1 * aj * slope0 or fj >= f_lo:
                f_rec, a_rec, hi, f_hi = f_hi, hi, aj, fj
            else:
                if abs(dj) <= -c2 * slope0:
                    return done(aj, "wolfe", fj, dj)
                if dj * (hi - lo) >= 0:
                    f_rec, a_rec, hi, f_hi = f_hi, hi, lo, f_lo
                else:
                    f_rec, a_rec = f_lo, lo
                lo, f_lo, d_lo = aj, fj, dj
        return done(None, "zoom_failed", phi0, None)

    for i in range(maxiter):
        if a1 == 0 or (amax is not None and a0 > amax):
            return done(None, "rounding", phi0, None)
        if f1 > phi0 + c1 * a1 * slope0 or (f1 >= f0_ and i > 0):
            return zoom(a0, a1, f0_, f1, d0_)
        _, d1 = ev(a1)
        if abs(d1) <= -c2 * slope0:
            return done(a1, "wolfe", f1, d1)
        if d1 >= 0:
            return zoom(a1, a0, f1, f0_, d1)
        a2 = 2 * a1
        if amax is not None:
            a2 = min(a2, amax)
        a0, a1, f0_, d0_ = a1, a2, f1, d1
        f1, _ = ev(a1)
    return done(a1, "extrapolation_limit", f1, None)
