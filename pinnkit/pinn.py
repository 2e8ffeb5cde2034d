"""The PINN loss as a pure function of one flat parameter vector ``theta``.

>>> import pinnkit as pk
>>> pinn = pk.PINN(pk.problems.Convection(beta=1.0), widths=[8, 8], n_res=64, n_ic=16, n_bc=8, seed=0)
>>> theta = pinn.theta0                      # 1-D tensor of all weights and biases
>>> sorted(pinn.terms(theta))                # per-term mean squared residuals
['boundary', 'initial', 'residual']
>>> bool(pinn.loss(theta) == sum(pinn.terms(theta).values()))
True
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .flat import Block, FlatMLP  # noqa: F401  (re-exported)
from .objective import total
from .problems import Problem, make


class PINN(FlatMLP):
    """A physics-informed network for ``problem``: an MLP, collocation points, and losses of ``theta``.

    Args:
        problem: a :class:`~pinnkit.problems.Problem` or its name (``"convection"``, ...).
        n_res, n_ic, n_bc: residual, initial and per-boundary point counts.
        seed: seeds the initialisation and the collocation sample.
        sampling: ``"grid"`` (the interior of the grid ``problem.eval_shape``), ``"authors"`` (Rathore et al.'s
            points) or ``"random"`` (uniform); see :meth:`~pinnkit.problems.Problem.sample`.
        eval_shape: the grid of :meth:`l2re` (default ``problem.eval_shape``; training points do not change).
    """

    def __init__(self, problem: Problem | str, widths: Sequence[int] = (50, 50, 50), n_res: int = 10_000,
                 n_ic: int = 257, n_bc: int = 101, seed: int = 0, activation: str = "tanh",
                 sampling: str = "grid", dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                 eval_shape: tuple[int, ...] | None = None):
        self.problem = make(problem) if isinstance(problem, str) else problem
        super().__init__(self.problem.dim, widths, seed=seed, activation=activation, dtype=dtype, device=device)
        self.points: dict[str, Tensor] = self.problem.sample(n_res, n_ic, n_bc, seed=self.seed,
                                                             method=sampling).to(self.device, dtype).points
        self.eval_shape: tuple[int, ...] = tuple(eval_shape or self.problem.eval_shape)
        self.X_eval = self.problem.grid(self.eval_shape).to(self.device, dtype)
        try:
            self.u_exact: Tensor | None = self.problem.exact(self.X_eval)
        except NotImplementedError:
            self.u_exact = None

    def residuals(self, theta: Tensor) -> dict[str, Tensor]:
        """Per-term residual vectors; each loss term is the mean of its squares."""
        return self.problem.residuals(self.u(theta), self.points)

    def terms(self, theta: Tensor) -> dict[str, Tensor]:
        """Per-term losses ``{name: mean(r_name ** 2)}`` (residual, initial, boundary, ...)."""
        return {k: (r ** 2).mean() for k, r in self.residuals(theta).items()}

    def loss(self, theta: Tensor) -> Tensor:
        """The PINN loss: the sum of :meth:`terms`."""
        return total(self.terms)(theta)

    def residual_vector(self, theta: Tensor) -> Tensor:
        r"""All residuals stacked and scaled so that ``loss(theta) == ||r||^2``: :math:`r_k / \sqrt{N_k}`."""
        return torch.cat([r / math.sqrt(r.numel()) for r in self.residuals(theta).values()])

    def l2re(self, theta: Tensor) -> float:
        r"""Relative L2 error on the evaluation grid, :math:`\|u_\theta - u^*\|_2 / \|u^*\|_2`."""
        if self.u_exact is None:
            raise ValueError(f"{self.problem.name} has no exact solution; compare against a reference instead")
        with torch.no_grad():
            pred = self.u(theta.detach())(self.X_eval)
            return float(torch.linalg.vector_norm(pred - self.u_exact) / torch.linalg.vector_norm(self.u_exact))

    def __repr__(self) -> str:
        sizes = {k: v.shape[0] for k, v in self.points.items()}
        return (f"PINN({self.problem!r}, widths={list(self.widths)}, params={self.n_params}, points={sizes}, "
                f"{self.dtype}, {self.device})")
