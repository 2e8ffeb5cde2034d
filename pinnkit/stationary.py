r"""Classify a point :math:`\theta` of a loss by its gradient and the eigenvalues of its dense Hessian.

The *index* is the number of negative Hessian eigenvalues, the *index fraction* the index over the number of
parameters. An eigenvalue counts as zero when :math:`|\lambda| \le \max(` ``eig_atol``, ``eig_rtol``
:math:`\max|\lambda|)`. Labels:

* ``not stationary`` — :math:`\|\nabla L\| >` ``grad_tol``;
* ``saddle`` — some negative and some positive eigenvalues;
* ``minimum`` / ``maximum`` — all eigenvalues positive / negative (a strict local minimum / maximum);
* ``global minimum`` — index 0 at a loss at most ``global_below`` (a known lower bound the loss attains, such as
  0 for a least-squares loss that can interpolate), whatever its zero eigenvalues;
* ``degenerate`` — no eigenvalue of one sign but some zero: the second-order test cannot decide (``flat_ok=True``
  labels these minimum / maximum instead).

>>> import torch
>>> f = lambda th: th[0] ** 2 - th[1] ** 2
>>> p = classify(f, torch.zeros(2, dtype=torch.float64))
>>> p.label, p.index, p.min_eig, p.max_eig
('saddle', 1, -2.0, 2.0)
>>> flat = lambda th: th[0] ** 2                       # a valley of minima at loss 0: (0, t) for every t
>>> classify(flat, torch.zeros(2, dtype=torch.float64)).label
'degenerate'
>>> classify(flat, torch.zeros(2, dtype=torch.float64), global_below=1e-12).label
'global minimum'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .curvature import hessian
from .objective import Loss, total

__all__ = ["LABELS", "StationaryPoint", "classify", "zero_output"]

LABELS = ("global minimum", "minimum", "maximum", "saddle", "degenerate", "not stationary")


@dataclass(frozen=True)
class StationaryPoint:
    """Gradient, Hessian spectrum and label of one point (see the module docstring for the rules)."""

    loss: float
    grad_norm: float
    n_params: int
    n_negative: int
    n_zero: int
    n_positive: int
    min_eig: float
    max_eig: float
    label: str
    grad_tol: float
    zero_tol: float  # the eigenvalue threshold actually used: max(eig_atol, eig_rtol * max|lambda|)
    eigenvalues: Tensor = field(repr=False)  # ascending, on the CPU

    @property
    def index(self) -> int:
        """Number of negative eigenvalues."""
        return self.n_negative

    @property
    def index_fraction(self) -> float:
        """Fraction of negative eigenvalues, ``n_negative / n_params``."""
        return self.n_negative / self.n_params

    @property
    def stationary(self) -> bool:
        """True unless the gradient norm was above ``grad_tol``."""
        return self.label != "not stationary"

    def index_at(self, eig_rtol: float) -> int:
        r"""The index with another relative zero tolerance: eigenvalues :math:`< -` ``eig_rtol`` :math:`\max|\lambda|`.

        >>> p = classify(lambda th: th[0] ** 2 - 1e-6 * th[1] ** 2, torch.zeros(2, dtype=torch.float64))
        >>> p.index_at(1e-9), p.index_at(1e-3)
        (1, 0)
        """
        if eig_rtol < 0:
            raise ValueError(f"eig_rtol must be >= 0, got {eig_rtol}")
        lam = self.eigenvalues
        return int((lam < -eig_rtol * float(lam.abs().max())).sum())


def classify(f: Loss, theta: Tensor, *, grad_tol: float = 1e-6, eig_rtol: float = 1e-8, eig_atol: float = 0.0,
             global_below: float | None = None, flat_ok: bool = False, H: Tensor | None = None) -> StationaryPoint:
    """Gradient norm, Hessian index and label of ``theta`` for the loss ``f``.

    ``f`` is ``theta -> scalar`` or a terms function (summed); ``H`` the dense Hessian at ``theta`` if already
    computed. The tolerances, ``global_below`` and ``flat_ok`` are the module docstring's.

    Raises:
        ValueError: a negative tolerance, or ``H`` of the wrong shape.
    """
    if grad_tol < 0 or eig_rtol < 0 or eig_atol < 0:
        raise ValueError(f"tolerances must be >= 0, got grad_tol={grad_tol}, eig_rtol={eig_rtol}, eig_atol={eig_atol}")
    loss_fn = total(f)
    theta = theta.detach()
    g, loss = torch.func.grad_and_value(loss_fn)(theta)
    if H is None:
        H = hessian(loss_fn, theta)
    if H.shape != (theta.numel(), theta.numel()):
        raise ValueError(f"H must be {theta.numel()} x {theta.numel()}, got {tuple(H.shape)}")
    lam = torch.linalg.eigvalsh(0.5 * (H + H.T)).detach().cpu()
    tol = max(eig_atol, eig_rtol * float(lam.abs().max()))
    neg, pos = int((lam < -tol).sum()), int((lam > tol).sum())
    zero = lam.numel() - neg - pos
    gn = float(torch.linalg.vector_norm(g))
    if not gn <= grad_tol:
        label = "not stationary"
    elif neg and pos:
        label = "saddle"
    elif neg == 0 and global_below is not None and float(loss) <= global_below:
        label = "global minimum"
    elif neg == 0 and (zero == 0 or (flat_ok and pos)):
        label = "minimum"
    elif pos == 0 and (zero == 0 or (flat_ok and neg)):
        label = "maximum"
    else:
        label = "degenerate"
    return StationaryPoint(loss=float(loss), grad_norm=gn, n_params=lam.numel(), n_negative=neg, n_zero=zero,
                           n_positive=pos, min_eig=float(lam[0]), max_eig=float(lam[-1]), label=label,
                           grad_tol=grad_tol, zero_tol=tol, eigenvalues=lam)


def zero_output(model: Any, theta: Tensor | None = None) -> Tensor:
    """``theta`` with every parameter after the first weight matrix set to zero: the output :math:`u \\equiv 0`
    (with ``tanh`` a stationary point when the data have zero mean against the constant feature).
    """
    theta = (model.theta0 if theta is None else theta).detach().clone()
    theta[model.blocks[0].stop:] = 0.0
    return theta
