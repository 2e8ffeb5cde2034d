"""Multilayer perceptrons, initialised as in Rathore et al. (Xavier-normal weights, zero biases)."""
from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
from torch import nn


class Sin(nn.Module):
    """The activation :math:`\\sin(x)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\sin(x)` elementwise."""
        return torch.sin(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sin": Sin, "gelu": nn.GELU, "softplus": nn.Softplus}


def size(x: Any, name: str = "size", minimum: int = 1) -> int:
    """``x`` (a Python or numpy integer, not a float or bool) as an int, at least ``minimum``; else ``ValueError``.

    >>> import numpy as np
    >>> size(np.int64(3), "width")
    3
    """
    try:
        n = None if isinstance(x, bool) else operator.index(x)
    except TypeError:
        n = None
    if n is None or n < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        raise ValueError(f"{name} must be a {kind} integer, got {x!r}")
    return n


def mlp(n_in: int, widths: Sequence[int], n_out: int = 1, activation: str = "tanh") -> nn.Sequential:
    """``n_in -> widths[0] -> ... -> widths[-1] -> n_out``, an activation of :data:`ACTIVATIONS` between layers,
    Xavier-normal weights and zero biases (from the global torch RNG).

    Raises:
        ValueError: unknown activation or a size that is not a positive integer.

    >>> net = mlp(2, [50, 50, 50]); sum(p.numel() for p in net.parameters())
    5301
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    try:
        sizes = [size(n_in), *(size(w) for w in widths), size(n_out)]
    except ValueError:
        raise ValueError(f"layer sizes must be positive integers, got {[n_in, *widths, n_out]}") from None
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
