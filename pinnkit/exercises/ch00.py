"""Checks for the exercises of chapter 0 (Start here)."""
from __future__ import annotations

import math
from typing import Any

import torch

from ..nets import mlp
from . import close, missing, verdict


def mlp_param_count(n_in: int, widths: list[int], n_out: int = 1) -> int:
    """Parameters of ``pinnkit.nets.mlp(n_in, widths, n_out)``: weights plus biases of every layer."""
    return sum(p.numel() for p in mlp(n_in, widths, n_out).parameters())


def check_zero_network(value: float | None, n_ic: int = 257) -> bool:
    """Exercise 1: at ``theta = 0`` the network is ``u = 0``; only the initial term ``mean_j sin^2 x_j`` is left
    (``n_ic`` evenly spaced points on ``[0, 2 pi]``)."""
    if missing(value):
        return False
    expected = sum(math.sin(2 * math.pi * j / (n_ic - 1)) ** 2 for j in range(n_ic)) / n_ic
    return verdict(close(value, expected, rtol=0.01),
                   "u = 0 has zero residual and zero periodic mismatch; what is left of (u - sin x)^2 at t = 0?")


def check_directional(value: float | None, pinn: Any, v: torch.Tensor) -> bool:
    """Exercise 2: a finite-difference estimate of ``grad L(theta0) . v``, compared with automatic differentiation
    (1 % relative tolerance)."""
    if missing(value):
        return False
    expected = float(torch.func.grad(pinn.loss)(pinn.theta0) @ v.to(pinn.theta0))
    return verdict(close(value, expected, rtol=1e-2, atol=1e-4 * abs(expected) + 1e-8),
                   f"Autodiff gives {expected:.4g}. Try another h: too large and the O(h^2) truncation error "
                   "dominates, too small and float32 rounding divided by 2h does.")


def check_param_count(answer: int, n_in: int = 2, widths: tuple[int, ...] = (50, 50, 50)) -> bool:
    """The number of parameters of the network ``n_in -> widths -> 1``."""
    expected = mlp_param_count(n_in, list(widths))
    return verdict(int(answer) == expected, "Count weights (fan_in x fan_out) and biases (fan_out) layer by layer.")


def check_bias_shift(value: float | None, pinn: Any) -> bool:
    """Exercise 3: the smallest loss along ``theta0 + c e``, ``e`` the output bias's entry of ``theta``.

    A constant ``c`` added to the output moves neither the residual (derivatives) nor the periodic boundary term
    (a difference); the initial term ``mean((u_j + c - sin x_j)^2)`` is smallest at ``c = -mean(u_j - sin x_j)``,
    where it is the variance of ``u_j - sin x_j``.
    """
    if missing(value):
        return False
    terms = {k: float(v) for k, v in pinn.terms(pinn.theta0).items()}
    x0 = pinn.points["initial"]
    with torch.no_grad():
        d = (pinn.predict(pinn.theta0, x0) - torch.sin(x0[:, 0])).double()
    expected = terms["residual"] + terms["boundary"] + float(((d - d.mean()) ** 2).mean())
    return verdict(close(value, expected, rtol=1e-3),
                   f"The loss at c = 0 is {sum(terms.values()):.4g}. Which terms can a constant shift of u change? "
                   "Minimise that one over c (a parabola), or scan c on a fine grid.")
