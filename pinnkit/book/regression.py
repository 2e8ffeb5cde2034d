r"""Least-squares regression with an MLP on the flat-parameter interface of :class:`~pinnkit.PINN` (chapters 6-7).

:math:`L(\theta) = \frac1N\sum_n (u_\theta(x_n) - y_n)^2 = \|r(\theta)\|^2`, :math:`r_n = (u_\theta(x_n) - y_n)/\sqrt N`.
Default: a 1-10-10-1 tanh network (141 parameters) fitting :math:`\sin(2\pi x)` on 64 even points of :math:`[0, 1]`.

>>> import torch
>>> reg = Regression(seed=0)
>>> reg.n_params
141
>>> bool(torch.allclose(reg.loss(reg.theta0), (reg.residual_vector(reg.theta0) ** 2).sum()))
True
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..flat import FlatMLP
from ..nets import size


def sin2pi(x: Tensor) -> Tensor:
    r"""The default target :math:`\sin(2\pi x)`."""
    return torch.sin(2 * math.pi * x)


class Regression(FlatMLP):
    """Fit ``target`` on ``n`` even points of ``[0, 1]`` with an MLP of hidden ``widths``; same interface as
    :class:`~pinnkit.PINN` (``theta0``, ``terms``, ``loss``, ``residual_vector``, ``l2re``, ...).
    """

    def __init__(self, widths: Sequence[int] = (10, 10), n: int = 64, target: Callable[[Tensor], Tensor] = sin2pi,
                 seed: int = 0, activation: str = "tanh", dtype: torch.dtype = torch.float64,
                 device: str | torch.device | None = None, n_eval: int = 512):
        n = size(n, "n (number of data points)")
        n_eval = size(n_eval, "n_eval")
        super().__init__(1, widths, seed=seed, activation=activation, dtype=dtype, device=device)
        self.X = torch.linspace(0, 1, n, dtype=dtype, device=self.device)[:, None]
        self.y = target(self.X[:, 0])
        self.X_eval = torch.linspace(0, 1, n_eval, dtype=dtype, device=self.device)[:, None]
        self.y_eval = target(self.X_eval[:, 0])

    def residual_vector(self, theta: Tensor) -> Tensor:
        r"""Scaled residuals :math:`(u_\theta(x_n) - y_n)/\sqrt N`, so that ``loss == ||r||^2``."""
        return (self.u(theta)(self.X) - self.y) / math.sqrt(self.y.numel())

    def terms(self, theta: Tensor) -> dict[str, Tensor]:
        """``{"data": mean squared error}`` (one term)."""
        return {"data": (self.residual_vector(theta) ** 2).sum()}

    def loss(self, theta: Tensor) -> Tensor:
        r"""Mean squared error :math:`\frac1N\sum_n (u_\theta(x_n) - y_n)^2`."""
        return (self.residual_vector(theta) ** 2).sum()

    def l2re(self, theta: Tensor) -> float:
        r"""Relative L2 error on a fine grid, :math:`\|u_\theta - y\|_2 / \|y\|_2`."""
        with torch.no_grad():
            pred = self.u(theta.detach())(self.X_eval)
            return float(torch.linalg.vector_norm(pred - self.y_eval) / torch.linalg.vector_norm(self.y_eval))

    def __repr__(self) -> str:
        return (f"Regression(widths={list(self.widths)}, params={self.n_params}, points={self.y.numel()}, "
                f"{self.dtype}, {self.device})")
