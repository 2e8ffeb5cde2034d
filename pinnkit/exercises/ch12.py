"""Checks for the exercises of chapter 12 (what works: Gauss–Newton in function space).

Every check accepts ``None`` (the placeholder in the stored notebook) and then only asks for an answer.
"""
from __future__ import annotations

from typing import Sequence

from . import close, missing, verdict


def check_linear_step(point: Sequence[float] | None) -> bool:
    """One ENGD step with eta = 1 on r(theta) = A theta - b, A = [[2, 0], [0, 1], [0, 1]], b = (2, 1, 3), from
    theta = (5, -7): Gauss–Newton is exact on a linear residual, so it lands on the least-squares solution
    (1, 2) (x: 2 x = 2; y: the mean of 1 and 3), wherever it starts."""
    if missing(point):
        return False
    x, y = map(float, point)
    return verdict(close(x, 1.0, atol=1e-8) and close(y, 2.0, atol=1e-8),
                   "The residual is linear, so the Gauss-Newton model is exact: solve the normal equations "
                   "A^T A theta = A^T b (or use torch.linalg.lstsq). The start does not matter.")


def check_cost_ratio(ratio: float | None) -> bool:
    """Doubling the width of the shallow 2D Poisson network (64 -> 128) takes P from 257 to 513; the dense solve
    (eigh of the P x P Gramian) grows like P^3: (513 / 257)^3 = 7.95, about 8."""
    if missing(ratio):
        return False
    return verdict(close(ratio, (513 / 257) ** 3, rtol=0.15),
                   "Count the parameters of a 2-w-1 network (2w + w + w + 1), then use cost ~ P^3 for eigh.")


def check_poisson1d(l2re: float | None) -> bool:
    """Homework: ENGD (float64, 40 steps) with a 1-16-1 tanh PINN on -u'' = pi^2 sin(pi x), 32 points, reaches a
    relative L2 error below 1e-7 from seeds 0, 1, 2 (measured: 2e-10 to 1e-9)."""
    if missing(l2re):
        return False
    return verdict(0 <= float(l2re) < 1e-7,
                   "Train pk.PINN('poisson1d', widths=[16], n_res=32, dtype=torch.float64) with "
                   "pk.train(pinn, 'engd', steps=40) and report run.l2re. Did you use float64?")
