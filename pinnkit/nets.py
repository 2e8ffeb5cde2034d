"""Multilayer perceptrons, initialised as in Rathore et al. (Xavier-normal weights, zero biases)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "sin": None, "gelu": nn.GELU, "softplus": nn.Softplus}


class Sin(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def mlp(n_in: int, widths: Sequence[int], n_out: int = 1, activation: str = "tanh") -> nn.Sequential:
    """``n_in -> widths[0] -> ... -> widths[-1] -> n_out`` with the given activation between layers.

    >>> net = mlp(2, [50, 50, 50]); sum(p.numel() for p in net.parameters())
    5301
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    sizes = [int(n_in), *map(int, widths), int(n_out)]
    if any(s <= 0 for s in sizes):
        raise ValueError(f"layer sizes must be positive, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(Sin() if activation == "sin" else ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
