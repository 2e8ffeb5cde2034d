r"""Models linear in their parameters (a PINN with frozen hidden layers), and power-law fits.

For a linear operator the residuals are :math:`r_k(c) = A_k c - b_k` and the loss has the constant Hessian
:math:`H = 2 \sum_k A_k^\top A_k / N_k`. Chapter 3's feature models are in :mod:`pinnkit.book.features_study`.

>>> import torch, pinnkit as pk
>>> m = random_features(pk.problems.Convection(beta=2.0), width=8, n_res=64, n_ic=16, n_bc=8)
>>> H = m.hessian()
>>> bool(torch.allclose(H, pk.curvature.hessian(m.loss, m.theta0), atol=1e-10))
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from .pinn import PINN
from .problems import Problem

__all__ = ["LastLayer", "random_features", "PowerLaw", "t_quantile", "fit_power_law"]


class LastLayer:
    """``pinn`` with all but the last layer frozen at ``theta``: linear in ``c`` (the last layer), with the PINN
    interface on ``c`` (``theta0``, ``terms``, ``loss``, ``residuals``, ``residual_vector``, ``l2re``).
    """

    def __init__(self, pinn: PINN, theta: Tensor | None = None):
        theta = pinn.theta0 if theta is None else theta.detach()
        pinn.check(theta)
        self.pinn = pinn
        self.split = pinn.blocks[-2].start
        self.hidden = theta[:self.split].clone()
        self.theta0 = theta[self.split:].clone()
        self.n_params = self.theta0.numel()
        self.u_exact = pinn.u_exact

    def full(self, c: Tensor) -> Tensor:
        """The PINN's flat parameter vector for last-layer parameters ``c``."""
        return torch.cat([self.hidden, c])

    def residuals(self, c: Tensor) -> dict[str, Tensor]:
        """The residual vectors of the terms at ``c``."""
        return self.pinn.residuals(self.full(c))

    def terms(self, c: Tensor) -> dict[str, Tensor]:
        """The per-term mean-square losses at ``c``."""
        return self.pinn.terms(self.full(c))

    def loss(self, c: Tensor) -> Tensor:
        """The loss at ``c``."""
        return self.pinn.loss(self.full(c))

    def residual_vector(self, c: Tensor) -> Tensor:
        r"""The residuals :math:`r_k/\sqrt{N_k}` of all terms as one vector."""
        return self.pinn.residual_vector(self.full(c))

    def l2re(self, c: Tensor) -> float:
        """The relative L2 error at ``c``."""
        return self.pinn.l2re(self.full(c))

    def operator_matrices(self) -> dict[str, Tensor]:
        r"""Per term, :math:`A_k = \partial r_k / \partial c` (``N_k x n_params``; constant for linear PDEs)."""
        names = list(self.residuals(self.theta0))
        return {k: torch.func.jacfwd(lambda c, k=k: self.residuals(c)[k])(self.theta0) for k in names}

    def term_hessians(self) -> dict[str, Tensor]:
        r""":math:`H_k = \frac{2}{N_k} A_k^\top A_k` per term (their sum is :meth:`hessian`)."""
        return {k: 2.0 * A.T @ A / A.shape[0] for k, A in self.operator_matrices().items()}

    def hessian(self) -> Tensor:
        r"""The loss Hessian :math:`H = 2\sum_k A_k^\top A_k / N_k`."""
        return cast(Tensor, sum(self.term_hessians().values()))

    def fit_hessian(self) -> Tensor:
        r""":math:`2\Phi^\top\Phi/N`, the Hessian of regression :math:`\frac1N\|u_c(X) - u^*(X)\|^2` on the residual
        points: the PINN Hessian without the operator.
        """
        X = self.pinn.points["residual"]
        Phi: Tensor = torch.func.jacfwd(lambda c: self.pinn.u(self.full(c))(X))(self.theta0)
        return 2.0 * Phi.T @ Phi / Phi.shape[0]


def random_features(problem: Problem | str, width: int = 64, scale: float = 1.0, n_res: int = 1000, n_ic: int = 101,
                    n_bc: int = 51, seed: int = 0, dtype: torch.dtype = torch.float64,
                    device: str | torch.device | None = None, **pinn_kw: Any) -> LastLayer:
    r"""Random features :math:`\tanh(w_j^\top \tilde X + b_j)` (``activation="sin"``: random Fourier features),
    :math:`w_j, b_j \sim \mathcal N(0, \mathrm{scale}^2)`, :math:`\tilde X` the inputs rescaled to :math:`[-1, 1]`;
    the ``width + 1`` last-layer parameters are the model's.
    """
    pinn = PINN(problem, widths=[width], n_res=n_res, n_ic=n_ic, n_bc=n_bc, seed=seed, dtype=dtype, device=device,
                **pinn_kw)
    gen = torch.Generator().manual_seed(seed + 1)
    d = pinn.problem.dim
    lo = torch.tensor([b[0] for b in pinn.problem.bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in pinn.problem.bounds], dtype=torch.float64)
    W = scale * torch.randn(width, d, generator=gen, dtype=torch.float64)
    b = scale * torch.randn(width, generator=gen, dtype=torch.float64)
    # tanh(W (2 (X - lo) / (hi - lo) - 1) + b) = tanh(W' X + b')
    W1 = W * (2.0 / (hi - lo))
    b1 = b - W @ (2.0 * lo / (hi - lo) + 1.0)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = W1.reshape(-1).to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = b1.to(theta)
    return LastLayer(pinn, theta)


@dataclass(frozen=True)
class PowerLaw:
    r"""A least-squares fit :math:`y \approx C x^{p}` (``slope`` :math:`p`, ``prefactor`` :math:`C`) on log-log axes,
    valid on the fitted range ``[xmin, xmax]`` of ``n_points``; ``stderr`` is the slope's standard error (``nan``
    with fewer than 3 points).
    """

    slope: float
    prefactor: float
    xmin: float = 0.0
    xmax: float = math.inf
    stderr: float = math.nan
    n_points: int = 0

    def ci(self) -> tuple[float, float]:
        r"""The slope's 95% interval :math:`p \pm t_{0.975,\,n-2}\,\mathrm{SE}` (``nan`` below 3 points)."""
        if not self.n_points >= 3 or not math.isfinite(self.stderr):
            return (math.nan, math.nan)
        half = t_quantile(self.n_points - 2) * self.stderr
        return (self.slope - half, self.slope + half)

    def __call__(self, x: Any) -> Any:
        r"""The fitted law :math:`c\,x^p` at ``x``."""
        return self.prefactor * x ** self.slope

    def rounded(self, digits: int = 2) -> float:
        """The slope rounded to ``digits`` decimals, with ``-0.0`` printed as ``0.0``."""
        return round(self.slope, digits) or 0.0

    def __repr__(self) -> str:
        return f"PowerLaw(slope={self.slope:.3g}, prefactor={self.prefactor:.3g}, x in [{self.xmin:g}, {self.xmax:g}])"


#: two-sided 95% quantiles t_{0.975, df} of Student's t, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    r"""Student's :math:`t_{0.975}` with ``df`` degrees of freedom (a table to 30, then :math:`1.96 + 2.4/\mathrm{df}`).

    >>> t_quantile(4)
    2.776
    """
    if df < 1:
        raise ValueError(f"need at least one degree of freedom (three points), got df={df}")
    return _T975[df - 1] if df <= 30 else 1.96 + 2.4 / df


def fit_power_law(x: Any, y: Any, base: float = math.e) -> PowerLaw:
    r"""Fit :math:`\log y = p \log x + \log C` by least squares to two or more positive points (``base`` is unused).

    >>> round(fit_power_law([1, 2, 4, 8], [3, 12, 48, 192]).slope, 6)
    2.0
    >>> fit_power_law([1, 2, 4], [5, 5, 5]).rounded()
    0.0
    >>> f = fit_power_law([1, 2, 4, 8], [1.0, 4.4, 14.5, 70.0])   # noisy y ~ x^2: the CI brackets 2
    >>> lo, hi = f.ci(); bool(lo < 2 < hi)
    True
    """
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    if xt.numel() < 2 or not bool((xt > 0).all() and (yt > 0).all() and torch.isfinite(yt).all()):
        raise ValueError("need at least two points with positive x and positive, finite y to fit a power law")
    lx, ly = torch.log(xt), torch.log(yt)
    A = torch.stack([lx, torch.ones_like(lx)], dim=1)
    p, c = torch.linalg.lstsq(A, ly[:, None]).solution[:, 0]
    n = int(lx.numel())
    se = math.nan
    if n >= 3:
        resid = ly - (p * lx + c)
        sxx = float(((lx - lx.mean()) ** 2).sum())
        se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx) if sxx > 0 else math.nan
    return PowerLaw(float(p), math.exp(float(c)), float(xt.min()), float(xt.max()), se, n)
