"""Checks for the exercises of chapter 9 (loss landscapes)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from . import close, verdict


def check_paraboloid(answer: float) -> bool:
    r"""Exercise 1: :math:`f = \tfrac12\theta^\top \mathrm{diag}(1, 4, 9)\,\theta`, slice through 0 along the top two
    unit eigenvectors; the value at :math:`(\alpha, \beta) = (1, -2)` is :math:`\tfrac12(9\cdot 1 + 4\cdot 4) = 12.5`."""
    return verdict(close(answer, 12.5, rtol=1e-6),
                   "the slice along eigenvectors v1 (λ=9), v2 (λ=4) is ½(λ1 α² + λ2 β²).")


def check_filter_normalized(answer: Sequence[float]) -> bool:
    """Exercise 2: W = [[3, 4], [0, 1]], b = [0, 2]; Gaussian draws d_W = [[1, 0], [2, 2]], d_b = [1, 1];
    the filter-normalized direction, flattened as (W rows, then b)."""
    from ..landscape import normalize
    from types import SimpleNamespace as B
    theta = torch.tensor([3.0, 4.0, 0.0, 1.0, 0.0, 2.0], dtype=torch.float64)
    d = torch.tensor([1.0, 0.0, 2.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    blocks = [B(start=0, stop=4, shape=(2, 2)), B(start=4, stop=6, shape=(2,))]
    expected = normalize(d, theta, blocks, "filter")
    try:
        ans = torch.as_tensor(answer, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        return verdict(False, "give six numbers: the two rows of d_W, then d_b.")
    ok = ans.shape == expected.shape and bool(torch.allclose(ans, expected, rtol=1e-3, atol=1e-3))
    return verdict(ok, "scale each row of d_W to the norm of the same row of W, and d_b (one filter) to ||b||.")


def check_bottom_curvature(answer: float, f: Callable[[torch.Tensor], Any], theta: torch.Tensor) -> bool:
    r"""Exercise 3: the curvature of the 1-D slice along the most negative Hessian eigenvector at ``theta``
    (a finite difference) should equal :math:`\lambda_{\min}` (computed here by a dense ``eigh``)."""
    from ..landscape import hessian_directions
    lam = hessian_directions(f, theta, k=1, which="smallest").eigenvalues[0]
    return verdict(close(answer, lam, rtol=0.02), f"compare with λ_min = {lam:.3g}: use Slice1D.curvature() on a "
                                                  "small symmetric span with an odd number of points.")
