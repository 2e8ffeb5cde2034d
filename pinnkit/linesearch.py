r"""Backtracking (Armijo) line search: the one copy every optimizer in pinnkit uses.

Convention: :math:`d` is a *descent* direction and the new point is :math:`\theta_+ = \theta + t d`. Starting
from ``t = max_step``, ``t`` is multiplied by ``shrink`` until the sufficient-decrease (Armijo) condition

.. math::  f(\theta + t d) \le f(\theta) + c_1\, t\, g^\top d

holds (with :math:`g = \nabla f(\theta)`, so :math:`g^\top d < 0` for a descent direction). On the quadratic
:math:`f(\theta) = \theta^2` at :math:`\theta = 1` with the steepest-descent direction :math:`d = -g = -2`, the
full step overshoots to :math:`-1` (no decrease) and the halved one lands on the minimum:

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

import torch
from torch import Tensor

__all__ = ["LineSearchResult", "armijo"]


@dataclass(frozen=True)
class LineSearchResult:
    """The accepted step ``step`` (:math:`t`), the new point ``theta`` :math:`= \\theta + t d` and its ``loss``.

    When no trial step satisfied the Armijo condition, ``accepted`` is False, ``step`` is 0 and ``theta`` /
    ``loss`` are the starting point and its loss.
    """

    step: float
    theta: Tensor
    loss: float
    accepted: bool


def armijo(f: Callable[[Tensor], Tensor], theta: Tensor, f0: float, g: Tensor, d: Tensor, *, c1: float = 1e-4,
           shrink: float = 0.5, max_step: float = 1.0, max_halvings: int = 40) -> LineSearchResult:
    r"""Backtrack along the descent direction ``d`` until :math:`f(\theta + t d) \le f_0 + c_1 t\, g^\top d`.

    Args:
        f: the loss, ``theta -> scalar Tensor``.
        theta: the current point (not modified).
        f0: ``f(theta)``.
        g: the gradient of ``f`` at ``theta``.
        d: a descent direction (:math:`g^\top d < 0`); the step is ``theta + t * d``.
        c1: sufficient-decrease constant, in ``(0, 1)``.
        shrink: factor applied to ``t`` after a rejected trial, in ``(0, 1)``.
        max_step: the first trial ``t``.
        max_halvings: how many trial steps are tried at most: ``t = max_step * shrink**j``, ``j < max_halvings``.

    Returns:
        A :class:`LineSearchResult`; ``accepted=False`` (and ``step=0``, ``theta`` unchanged) when every trial
        failed or gave a non-finite loss.

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
        value = float(f(trial))
        if math.isfinite(value) and value <= f0 + c1 * t * slope:
            return LineSearchResult(t, trial, value, True)
        t *= shrink
    return LineSearchResult(0.0, theta, float(f0), False)
