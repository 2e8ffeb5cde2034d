"""Checks for the exercises of chapter 0 (Start here)."""
from __future__ import annotations

from ..nets import mlp
from . import verdict


def mlp_param_count(n_in: int, widths: list[int], n_out: int = 1) -> int:
    """Parameters of ``pinnkit.nets.mlp(n_in, widths, n_out)``: weights plus biases of every layer."""
    return sum(p.numel() for p in mlp(n_in, widths, n_out).parameters())


def check_param_count(answer: int, n_in: int = 2, widths: tuple[int, ...] = (50, 50, 50)) -> bool:
    """Exercise 1: the number of parameters of the network ``n_in -> widths -> 1``."""
    expected = mlp_param_count(n_in, list(widths))
    return verdict(int(answer) == expected, "Count weights (fan_in x fan_out) and biases (fan_out) layer by layer.")


def check_preset(name: str) -> bool:
    """Exercise 2: the preset this notebook would choose on a machine with a CUDA GPU."""
    return verdict(str(name).strip().lower() == "paper", "Read pinnkit.presets.current: what happens with CUDA?")
