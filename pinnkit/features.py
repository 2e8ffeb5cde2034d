r"""Models linear in their parameters: a PINN whose hidden layers are frozen (random features).

With :math:`u_c(X) = \sum_j c_j \phi_j(X) + c_0` and a linear PDE operator :math:`\mathcal D`, every residual is
linear in ``c``: :math:`r_k(c) = A_k c - b_k`, with :math:`A_k` the operator applied to the features
at the term's points (:math:`(\mathcal D\phi_j)(X_i)` for the residual term). The PINN loss
:math:`L(c) = \sum_k \frac{1}{N_k}\|A_k c - b_k\|^2` is then a quadratic with constant Hessian

.. math::  H = 2 \sum_k \tfrac{1}{N_k} A_k^\top A_k ,

so its conditioning is exactly that of the (scaled) operator matrices — the setting of Rathore et al.'s Section 8.

>>> import torch, pinnkit as pk
>>> m = random_features(pk.problems.Convection(beta=2.0), width=8, n_res=64, n_ic=16, n_bc=8)
>>> H = m.hessian()
>>> bool(torch.allclose(H, pk.curvature.hessian(m.loss, m.theta0), atol=1e-10))
True
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .curvature import condition_number
from .pinn import PINN
from .problems import Problem

__all__ = ["LastLayer", "random_features", "operator_condition", "fit_power_law", "PowerLaw",
           "plot_power_law", "plot_eigenvalues"]


class LastLayer:
    """``pinn`` with every layer but the last frozen at ``theta``: a model linear in ``c`` (the last layer's weights
    and bias, ``pinn.blocks[-2:]``). Exposes the PINN interface on ``c``: ``theta0``, ``terms``, ``loss``,
    ``residuals``, ``residual_vector``, ``l2re``."""

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
        return self.pinn.residuals(self.full(c))

    def terms(self, c: Tensor) -> dict[str, Tensor]:
        return self.pinn.terms(self.full(c))

    def loss(self, c: Tensor) -> Tensor:
        return self.pinn.loss(self.full(c))

    def residual_vector(self, c: Tensor) -> Tensor:
        return self.pinn.residual_vector(self.full(c))

    def l2re(self, c: Tensor) -> float:
        return self.pinn.l2re(self.full(c))

    def operator_matrices(self) -> dict[str, Tensor]:
        r"""Per term, :math:`A_k = \partial r_k / \partial c` (``N_k x n_params``): exact, and constant for linear
        PDEs."""
        names = list(self.residuals(self.theta0))
        return {k: torch.func.jacfwd(lambda c, k=k: self.residuals(c)[k])(self.theta0) for k in names}

    def term_hessians(self) -> dict[str, Tensor]:
        r""":math:`H_k = \frac{2}{N_k} A_k^\top A_k` per term (their sum is :meth:`hessian`)."""
        return {k: 2.0 * A.T @ A / A.shape[0] for k, A in self.operator_matrices().items()}

    def hessian(self) -> Tensor:
        r"""The loss Hessian :math:`H = 2\sum_k A_k^\top A_k / N_k`."""
        return sum(self.term_hessians().values())

    def fit_hessian(self) -> Tensor:
        r"""Hessian of plain regression with the same features and points, :math:`\frac1N\|u_c(X) - u^*(X)\|^2`
        over the residual points: :math:`2\Phi^\top\Phi/N` — the PINN Hessian with the operator taken out."""
        X = self.pinn.points["residual"]
        Phi = torch.func.jacfwd(lambda c: self.pinn.u(self.full(c))(X))(self.theta0)
        return 2.0 * Phi.T @ Phi / Phi.shape[0]


def random_features(problem: Problem | str, width: int = 64, scale: float = 1.0, n_res: int = 1000, n_ic: int = 101,
                    n_bc: int = 51, seed: int = 0, dtype: torch.dtype = torch.float64,
                    device: str | torch.device | None = None, **pinn_kw: Any) -> LastLayer:
    r"""Random tanh features :math:`\phi_j(X) = \tanh(w_j^\top \tilde X + b_j)` with :math:`w_j \sim \mathcal N(0,
    \mathrm{scale}^2 I)` on inputs rescaled to :math:`[-1, 1]` per column,
    :math:`b_j \sim \mathcal N(0, \mathrm{scale}^2)` (``activation="sin"`` gives random Fourier features);
    the last layer (``width + 1`` parameters) is the model's parameter vector."""
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


def operator_condition(model: LastLayer, term: str | None = None) -> float:
    """Condition number of the Hessian of ``model``'s loss (or of one ``term``) by
    :func:`~pinnkit.curvature.condition_number`
    of its eigenvalues (constant: the model is linear in its parameters)."""
    H = model.hessian() if term is None else model.term_hessians()[term]
    return condition_number(torch.linalg.eigvalsh(H))


class PowerLaw:
    r"""A least-squares fit :math:`y \approx C x^{p}` on log-log axes: ``slope`` :math:`p`, ``prefactor`` :math:`C`."""

    def __init__(self, slope: float, prefactor: float):
        self.slope, self.prefactor = float(slope), float(prefactor)

    def __call__(self, x: Any) -> Any:
        return self.prefactor * x ** self.slope

    def __repr__(self) -> str:
        return f"PowerLaw(slope={self.slope:.3g}, prefactor={self.prefactor:.3g})"


def fit_power_law(x: Any, y: Any) -> PowerLaw:
    r"""Fit :math:`\log y = p \log x + \log C` by least squares.

    >>> round(fit_power_law([1, 2, 4, 8], [3, 12, 48, 192]).slope, 6)
    2.0
    """
    lx = torch.log(torch.as_tensor(x, dtype=torch.float64))
    ly = torch.log(torch.as_tensor(y, dtype=torch.float64))
    if lx.numel() < 2 or not bool(torch.isfinite(ly).all()):
        raise ValueError("need at least two points with positive, finite y to fit a power law")
    A = torch.stack([lx, torch.ones_like(lx)], dim=1)
    p, c = torch.linalg.lstsq(A, ly[:, None]).solution[:, 0]
    return PowerLaw(float(p), math.exp(float(c)))


def plot_power_law(x: Any, y: Any, fit: PowerLaw | None = None, *, xlabel: str, ylabel: str, title: str = "",
                   ax: Any = None, label: str | None = None) -> Any:
    """``y`` against ``x`` on log-log axes with the fitted power law (dashed). Returns the axes."""
    import matplotlib.pyplot as plt
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5), layout="constrained")[1]
    ax.loglog(x, y, "o-", label=label or "measured")
    if fit is not None:
        xs = torch.as_tensor(x, dtype=torch.float64)
        ax.loglog(xs, fit(xs), "k--", lw=1, label=f"fit: slope {fit.slope:.2g}")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return ax


def plot_eigenvalues(spectra: dict[str, Any], ax: Any = None, title: str = "") -> Any:
    """Eigenvalues of several symmetric matrices, sorted in decreasing order, on a log axis (|λ|, negative ones
    hollow). ``spectra``: label -> 1-D tensor of eigenvalues. Returns the axes."""
    import matplotlib.pyplot as plt
    ax = ax if ax is not None else plt.subplots(figsize=(5.5, 3.5), layout="constrained")[1]
    for i, (label, ev) in enumerate(spectra.items()):
        ev = torch.as_tensor(ev, dtype=torch.float64).sort(descending=True).values
        k = torch.arange(1, ev.numel() + 1)
        pos = ev > 0
        ax.semilogy(k[pos], ev[pos], "o-", ms=3, color=f"C{i}", label=label)
        if bool((~pos).any()):
            ax.semilogy(k[~pos], -ev[~pos], "o", ms=4, mfc="none", color=f"C{i}")
    ax.set(xlabel="index i (eigenvalues sorted, largest first)", ylabel="eigenvalue |λ_i| (log scale)", title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax
