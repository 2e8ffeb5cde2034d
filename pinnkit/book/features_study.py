r"""Chapter 3's feature models (:class:`pinnkit.features.LastLayer`): sine and Fourier features, their operator
matrices and the operator preconditioning :math:`DHD` that undoes a derivative on the basis.

A derivative of order :math:`k` multiplies :math:`\sin(j\pi x)` by :math:`(j\pi)^k`, so the Hessian of the
``k``-th derivative term has eigenvalues :math:`\approx (j\pi)^{2k}` and :math:`\kappa \approx K^{2k}`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..conditioning import RCUT, condition_number
from ..features import LastLayer
from ..pinn import PINN
from ..problems import Problem, partial

__all__ = ["fourier_features", "random_sine_features", "feature_weights", "operator_factors", "order_scaling",
           "scaled", "derivative_gram", "operator_condition"]


def operator_condition(model: LastLayer, term: str | None = None, rcut: float = RCUT) -> float:
    r""":math:`\kappa` on the range (:func:`~pinnkit.conditioning.condition_number` with ``rcut``) of the constant
    Hessian of ``model``'s loss, or of one ``term``.
    """
    H = model.hessian() if term is None else model.term_hessians()[term]
    return condition_number(torch.linalg.eigvalsh(H), rcut=rcut)


def feature_weights(model: LastLayer) -> Tensor:
    r"""The hidden layer's weights in the problem's coordinates, ``(width, d)``:
    :math:`\phi_j(X) = \sigma(w_j^\top X + b_j)`.
    """
    b = model.pinn.blocks[0]
    return model.hidden[b.start:b.stop].reshape(b.shape)


def operator_factors(model: LastLayer, beta: float) -> Tensor:
    r"""Convection's factor per sine feature: :math:`(\partial_t + \beta\partial_x)\sin(w_j^\top X + b_j) =
    (w_{j,t} + \beta w_{j,x})\cos(\cdot)`.

    >>> import pinnkit as pk
    >>> from pinnkit.features import random_features
    >>> m = random_features(pk.problems.Convection(beta=1.0), width=4, activation="sin")
    >>> W = feature_weights(m)
    >>> bool(torch.allclose(operator_factors(m, 3.0), W[:, 1] + 3.0 * W[:, 0]))
    True
    """
    W = feature_weights(model)
    return W[:, 1] + beta * W[:, 0]


def fourier_features(problem: Problem | str, n_freq: int, n_res: int = 512, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
                     **pinn_kw: Any) -> LastLayer:
    r"""Features :math:`\sin\big(j\pi (x - a)/(b - a)\big)`, :math:`j = 1..K` (``n_freq``), plus the constant, for
    a 1-D problem on :math:`(a, b)`; needs ``n_res > 2 n_freq``.

    >>> import pinnkit as pk
    >>> m = fourier_features(pk.problems.Poisson1D(), n_freq=3, n_res=16)
    >>> X = torch.tensor([[0.25]], dtype=torch.float64)
    >>> bool(torch.allclose(m.pinn.u(m.full(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)))(X),
    ...                     torch.sin(torch.tensor([2 * math.pi * 0.25], dtype=torch.float64))))
    True
    """
    pinn = PINN(problem, widths=[n_freq], n_res=n_res, seed=seed, activation="sin", dtype=dtype, device=device,
                **pinn_kw)
    if pinn.problem.dim != 1:
        raise ValueError(f"fourier_features needs a 1-D problem, got dim={pinn.problem.dim}; "
                         "use random_features for space-time problems")
    if n_res <= 2 * n_freq:
        raise ValueError(f"n_res={n_res} points cannot resolve {n_freq} frequencies; use n_res > 2 * n_freq")
    (a, b), = pinn.problem.bounds
    w = math.pi * torch.arange(1, n_freq + 1, dtype=torch.float64) / (b - a)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = w.to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = (-w * a).to(theta)
    return LastLayer(pinn, theta)


def random_sine_features(problem: Problem | str, n_freq: int, n_res: int = 512, seed: int = 0,
                         dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
                         **pinn_kw: Any) -> LastLayer:
    r"""Random sines :math:`\sin\big(\omega_j (x - a) + b_j\big)`, :math:`\omega_j = \pi (j + u_j)/(b - a)`,
    :math:`u_j \sim U(-\tfrac12, \tfrac12)`, :math:`b_j \sim U(0, 2\pi)`, plus the constant: the frequencies of
    :func:`fourier_features`, not orthogonal.

    >>> import pinnkit as pk
    >>> m = random_sine_features(pk.problems.Poisson1D(), n_freq=4, n_res=64, seed=0)
    >>> w = feature_weights(m)[:, 0] / math.pi
    >>> bool(((w - torch.arange(1, 5) ).abs() <= 0.5).all())
    True
    """
    pinn = PINN(problem, widths=[n_freq], n_res=n_res, seed=seed, activation="sin", dtype=dtype, device=device,
                **pinn_kw)
    if pinn.problem.dim != 1:
        raise ValueError(f"random_sine_features needs a 1-D problem, got dim={pinn.problem.dim}; "
                         "use random_features for space-time problems")
    (a, b), = pinn.problem.bounds
    gen = torch.Generator().manual_seed(seed + 1)
    w = math.pi * (torch.arange(1, n_freq + 1, dtype=torch.float64)
                   + torch.rand(n_freq, generator=gen, dtype=torch.float64) - 0.5) / (b - a)
    phase = 2 * math.pi * torch.rand(n_freq, generator=gen, dtype=torch.float64)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = w.to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = (phase - w * a).to(theta)
    return LastLayer(pinn, theta)


def order_scaling(model: LastLayer, order: int) -> Tensor:
    r"""The diagonal :math:`d_j = |\omega_j|^{-k}` (first input's frequency; ``k = order``), 1 for the constant:
    features :math:`\phi_j \to d_j\phi_j` turn :math:`H` into :func:`scaled` ``(H, d)``.

    >>> import pinnkit as pk
    >>> m = fourier_features(pk.problems.Poisson1D(), n_freq=2, n_res=16)
    >>> [round(x, 6) for x in (order_scaling(m, 2) * torch.tensor([math.pi**2, 4 * math.pi**2, 1.0])).tolist()]
    [1.0, 1.0, 1.0]
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    w = feature_weights(model)[:, 0].abs().to(torch.float64)
    return torch.cat([w ** (-order), torch.ones(1, dtype=torch.float64)])


def scaled(H: Tensor, d: Tensor) -> Tensor:
    r""":math:`DHD`, :math:`D = \mathrm{diag}(d)`: the Hessian in the parameters :math:`c = Dc'`.

    >>> scaled(torch.eye(2), torch.tensor([2.0, 3.0])).diag().tolist()
    [4.0, 9.0]
    """
    d = d.to(H)
    return d[:, None] * H * d[None, :]


def derivative_gram(model: LastLayer, order: int, X: Tensor | None = None, constant: bool = False) -> Tensor:
    r"""The Hessian :math:`\frac2N A_k^\top A_k`, :math:`(A_k)_{ij} = \partial_x^{\,k}\phi_j(X_i)`, of
    :math:`\frac1N\|\partial_x^{\,k} u_c(X)\|^2` (``k = order``; default ``X`` the residual points). The constant
    feature's column is left out unless ``constant``: every derivative annihilates it, and at ``k = 0`` it is
    nearly collinear with the odd sines.
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    X = model.pinn.points["residual"] if X is None else X

    def d(c: Tensor) -> Tensor:
        f = model.pinn.u(model.full(c))
        for _ in range(order):
            f = partial(f, 0)
        return f(X)

    A: Tensor = torch.func.jacfwd(d)(model.theta0)
    A = A if constant else A[:, :-1]
    return 2.0 * A.T @ A / A.shape[0]
