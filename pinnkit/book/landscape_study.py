r"""Chapter 9's landscape helpers: Goodfellow et al.'s interpolation line and the Deep Ritz loss of a PINN.

>>> import torch
>>> f = lambda th: (th ** 2).sum()
>>> s = interpolate(f, torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), span=(0.0, 1.0), n=3)
>>> s.loss.tolist(), s.marks
([2.0, 0.5, 0.0], {'init': 0.0, 'trained': 1.0})
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from ..landscape import Slice1D, slice_1d
from ..objective import Loss

__all__ = ["interpolate", "ritz_terms"]


def interpolate(f: Loss, theta_init: Tensor, theta_final: Tensor, *, span: tuple[float, float] = (-0.25, 1.25),
                n: int = 61, chunk: int = 64) -> Slice1D:
    r"""Goodfellow et al.'s line :math:`L((1-\alpha)\theta_0 + \alpha\theta^*)`, marked ``init`` (:math:`\alpha=0`)
    and ``trained`` (:math:`\alpha=1`).
    """
    d = (theta_final.detach() - theta_init.detach()).to(theta_init.dtype)
    s = slice_1d(f, theta_init, d, span=span, n=n, chunk=chunk, label="α  (0: initialization, 1: trained)")
    return Slice1D(s.alphas, s.loss, s.terms, s.label, s.norm, None, {"init": 0.0, "trained": 1.0})


def ritz_terms(pinn: Any) -> Callable[[Tensor], dict[str, Tensor]]:
    """The Deep Ritz loss on ``pinn``'s network and points: ``theta -> pinn.problem.energy_terms(pinn.u(theta),
    pinn.points)`` (``{"energy", "boundary"}``).
    """
    if not hasattr(pinn.problem, "energy_terms"):
        raise ValueError(f"{type(pinn.problem).__name__} has no Deep Ritz energy (energy_terms); use "
                         "pk.problems.Poisson1D")
    return lambda theta: pinn.problem.energy_terms(pinn.u(theta), pinn.points)
