"""A network whose parameters are one flat vector ``theta``: the interface every pinnkit tool works on.

>>> import torch
>>> net = FlatMLP(2, [8], seed=0)
>>> net.n_params, [b.name for b in net.blocks]
(33, ['0.weight', '0.bias', '2.weight', '2.bias'])
>>> bool(torch.equal(net.params(net.theta0)["2.bias"], torch.zeros(1)))
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from .nets import mlp, size
from .presets import check_device, nudge, perturbed


@dataclass(frozen=True)
class Block:
    """One parameter tensor of the network inside the flat vector: ``theta[start:stop].view(shape)``."""

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int


class FlatMLP:
    """An MLP ``n_in -> widths -> 1`` (:func:`~pinnkit.nets.mlp`, seeded) as a pure function of the flat ``theta``.

    ``blocks`` is the layout of ``theta``, ``theta0`` the initialisation (one ulp off under ``PINNKIT_PERTURB``,
    :func:`pinnkit.presets.perturbed`); subclasses (:class:`~pinnkit.PINN`) add losses. ``dtype``: float32 or
    float64; ``device``: ``"cpu"`` (default), ``"cuda"`` or a :class:`torch.device`.

    Raises:
        ValueError: a bad size, dtype or activation, or CUDA without ``torch.cuda.is_available()``.
    """

    def __init__(self, n_in: int, widths: Sequence[int], seed: int = 0, activation: str = "tanh",
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self.device = check_device(device)
        self.seed = size(seed, "seed", minimum=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = mlp(n_in, widths, 1, activation)
        self.net = net.to(device=self.device, dtype=dtype)
        self.n_in = size(n_in, "n_in")
        self.widths = tuple(size(w, "width") for w in widths)
        blocks, start = [], 0
        for name, p in self.net.named_parameters():
            blocks.append(Block(name, tuple(p.shape), start, start + p.numel()))
            start += p.numel()
        self.blocks: tuple[Block, ...] = tuple(blocks)
        self.n_params = start
        self.theta0 = torch.cat([p.detach().reshape(-1) for p in self.net.parameters()]).clone()
        k = perturbed()
        if k:
            self.theta0 = nudge(self.theta0, 1_000_003 * k + self.seed)

    def check(self, theta: Tensor) -> None:
        """Raise unless ``theta`` is a 1-D tensor of this network's size, dtype and device."""
        if not isinstance(theta, Tensor):
            raise TypeError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {tuple(theta.shape)}")
        if theta.dtype != self.dtype or theta.device != self.device:
            raise ValueError(f"theta is {theta.dtype} on {theta.device} but this model is {self.dtype} on "
                             f"{self.device}; convert with theta.to(device={str(self.device)!r}, dtype={self.dtype})")

    def params(self, theta: Tensor) -> dict[str, Tensor]:
        """The network's parameters as views into ``theta``."""
        self.check(theta)
        return {b.name: theta[b.start:b.stop].view(b.shape) for b in self.blocks}

    def u(self, theta: Tensor) -> Callable[[Tensor], Tensor]:
        """The network at parameters ``theta`` as a function of the inputs ``X``, returning shape ``(N,)``."""
        params = self.params(theta)
        return lambda X: functional_call(self.net, params, (X,)).squeeze(-1)

    def predict(self, theta: Tensor, X: Tensor) -> Tensor:
        """Network output at the rows of ``X`` (``(N, n_in)``)."""
        if X.ndim != 2 or X.shape[1] != self.n_in:
            raise ValueError(f"X must have shape (N, {self.n_in}), got {tuple(X.shape)}")
        return self.u(theta)(X.to(self.device, self.dtype))
