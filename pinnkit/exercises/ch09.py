"""Checks for the exercises of chapter 9 (loss landscapes).

Each check accepts ``None`` (the placeholder in the notebook) and then only reminds you what to compute.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Sequence

import torch

from ..landscape import hessian_directions, normalize
from . import close, pending, verdict


def check_paraboloid(answer: float | None) -> bool:
    r"""Exercise 1: :math:`f = \tfrac12\theta^\top \mathrm{diag}(1, 4, 9)\,\theta`, slice through 0 along the top two
    unit eigenvectors; the value at :math:`(\alpha, \beta) = (1, -2)` is :math:`\tfrac12(9\cdot 1 + 4\cdot 4) = 12.5`."""
    if pending(answer, "the slice's value at (a_1, a_2) = (1, -2)"):
        return False
    return verdict(close(answer, 12.5, rtol=1e-6),
                   "along eigenvectors v1 (λ=9), v2 (λ=4) the slice is ½(λ1 a_1² + λ2 a_2²).")


def check_filter_normalized(answer: Sequence[float] | None) -> bool:
    """Exercise 2: W = [[3, 4], [0, 1]], b = [0, 2]; Gaussian draws d_W = [[1, 0], [2, 2]], d_b = [1, 1];
    the filter-normalized direction, flattened as (W rows, then b)."""
    if pending(answer, "six numbers: normalized d_W by rows, then d_b"):
        return False
    theta = torch.tensor([3.0, 4.0, 0.0, 1.0, 0.0, 2.0], dtype=torch.float64)
    d = torch.tensor([1.0, 0.0, 2.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    blocks = [SimpleNamespace(start=0, stop=4, shape=(2, 2)), SimpleNamespace(start=4, stop=6, shape=(2,))]
    expected = normalize(d, theta, blocks, "filter")
    try:
        ans = torch.as_tensor(answer, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        return verdict(False, "give six numbers: the two rows of d_W, then d_b.")
    ok = ans.shape == expected.shape and bool(torch.allclose(ans, expected, rtol=1e-3, atol=1e-3))
    return verdict(ok, "scale each row of d_W to the norm of that row of W, and d_b (one filter) to ||b||.")


def check_rank_deficit(answer: int | None, n_params: int, n_residuals: int) -> bool:
    r"""Exercise 3: at a zero-residual minimum the PINN Hessian is the Gauss-Newton matrix
    :math:`2 J^\top J` (``J`` of shape ``(N, P)``), of rank at most ``N``: at least ``P - N`` eigenvalues are 0."""
    if pending(answer, "the least number of exactly-zero eigenvalues"):
        return False
    expected = max(n_params - n_residuals, 0)
    return verdict(int(answer) == expected,
                   f"J^T J has rank <= min(N, P), N = {n_residuals} residual rows, P = {n_params} parameters.")


def check_bottom_curvature(answer: float | None, f: Callable[[torch.Tensor], Any], theta: torch.Tensor) -> bool:
    r"""Exercise 4: the curvature of the 1-D slice along the most negative Hessian eigenvector at ``theta``
    (a finite difference) should equal :math:`\lambda_{\min}` (computed here by a dense ``eigh``)."""
    if pending(answer, "the finite-difference curvature along v_P"):
        return False
    eigenvalues = hessian_directions(f, theta, k=1, which="smallest").eigenvalues
    assert eigenvalues is not None  # Hessian directions carry their eigenvalues
    lam = eigenvalues[0]
    return verdict(close(answer, lam, rtol=0.02), f"compare with λ_min = {lam:.3g}: Slice1D.curvature() on a small "
                                                  "symmetric span, odd number of points.")
