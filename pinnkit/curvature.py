"""Curvature of a loss ``f: theta -> scalar``: Hessian-vector products and dense Hessians.

All functions are pure: they never modify ``theta`` and never call ``backward``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Loss = Callable[[Tensor], Tensor]

#: largest parameter count for which :func:`hessian` forms the dense matrix without ``force=True``
DENSE_LIMIT = 5000


def hvp(f: Loss, theta: Tensor, v: Tensor) -> Tensor:
    r"""Hessian-vector product :math:`\nabla^2 f(\theta)\, v` (forward-over-reverse).

    >>> f = lambda th: (th ** 2).sum() * 1.5           # H = 3 I
    >>> hvp(f, torch.ones(3), torch.tensor([1., 2., 3.]))
    tensor([3., 6., 9.])
    """
    return torch.func.jvp(torch.func.grad(f), (theta.detach(),), (v,))[1]


def hvp_batch(f: Loss, theta: Tensor, V: Tensor) -> Tensor:
    """Hessian times each row of ``V`` (shape ``(k, P)``), vectorised with ``vmap``."""
    g = torch.func.grad(f)
    th = theta.detach()
    return torch.func.vmap(lambda v: torch.func.jvp(g, (th,), (v,))[1])(V)


def hessian(f: Loss, theta: Tensor, *, chunk: int = 256, force: bool = False) -> Tensor:
    r"""Dense Hessian :math:`\nabla^2 f(\theta)` (``P x P``, symmetrised) by batched HVPs.

    Refuses above :data:`DENSE_LIMIT` parameters unless ``force=True``: use Lanczos / SLQ instead.
    """
    P = theta.numel()
    if P > DENSE_LIMIT and not force:
        raise ValueError(f"dense Hessian of {P} parameters needs {P * P * theta.element_size() / 1e9:.2f} GB and "
                         f"{P} HVPs; above the limit of {DENSE_LIMIT} use pinnkit.curvature.lanczos / "
                         f"spectral_density, or pass force=True")
    eye = torch.eye(P, dtype=theta.dtype, device=theta.device)
    H = torch.cat([hvp_batch(f, theta, eye[i:i + chunk]) for i in range(0, P, chunk)])
    return 0.5 * (H + H.T)
