r"""Rathore et al.'s eigenvalue estimator for their Figure 10: power iteration with deflation.

The authors (``plotting/condition_number.ipynb`` and ``src/pyhessian.py`` of their code, adapted from PyHessian)
estimate the condition number of a 129-parameter PINN as :math:`|\lambda_1 / \lambda_{129}|`, where the
:math:`\lambda_i` are found one after the other by power iteration: for the ``k``-th value, a random start vector
is, at every iteration, Gram–Schmidt-orthogonalised against the ``k - 1`` vectors found so far (one pass, in order),
normalised, multiplied by the Hessian, and replaced by the normalised product; the Rayleigh quotient
:math:`v^\top H v` is the estimate, and the iteration stops when it changes by less than ``tol`` relative
(``tol = 1e-3``, at most ``max_iter = 500`` iterations; float32). The vector kept is the last normalised product,
which is *not* orthogonalised again, so each stored vector carries the error of a ``1e-3`` stop; the deflation
leaks, and once the remaining eigenvalues are small the estimates stop at a floor set by that leak, not by
:math:`H`. :func:`deflated_power_iteration` is an independent implementation of that procedure (same steps, same
stopping rule, same ``1e-6`` in the normalisation), so that the book can put its output beside the exact spectrum.

>>> import torch
>>> H = torch.diag(torch.tensor([5.0, 3.0, 1.0]))
>>> r = deflated_power_iteration(H, top_n=2, tol=1e-8, max_iter=2000)
>>> [round(x, 3) for x in r.eigenvalues.tolist()]
[5.0, 3.0]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["DeflatedPower", "deflated_power_iteration", "with_spectrum"]


@dataclass(frozen=True)
class DeflatedPower:
    """What :func:`deflated_power_iteration` found, in the order it found it.

    Attributes:
        eigenvalues: ``(top_n,)`` the estimates (float64 copies of the working-precision values).
        vectors: ``(top_n, dim)`` the stored vectors (working precision).
        iterations: ``(top_n,)`` power iterations spent on each estimate.
    """

    eigenvalues: Tensor
    vectors: Tensor
    iterations: Tensor

    @property
    def ratio(self) -> float:
        r""":math:`|\lambda_1 / \lambda_{\rm last}|`: the quantity of Rathore et al.'s Figure 10 (first estimate over
        last, as their plotting code takes it).
        """
        return abs(float(self.eigenvalues[0]) / float(self.eigenvalues[-1]))


def _normalize(v: Tensor) -> Tensor:
    return v / (torch.linalg.vector_norm(v) + 1e-6)   # the authors' normalisation, with its 1e-6


def deflated_power_iteration(operator: Tensor | Callable[[Tensor], Tensor], dim: int | None = None, *,
                             top_n: int = 1, tol: float = 1e-3, max_iter: int = 100, seed: int = 0,
                             dtype: torch.dtype = torch.float32) -> DeflatedPower:
    r"""Estimate ``top_n`` eigenvalues of a symmetric operator by power iteration with deflation, step for step as
    Rathore et al. do for their Figure 10 (module docstring).

    For each ``k``: draw :math:`v \sim \mathcal N(0, I)` and normalise it; then repeat at most ``max_iter`` times:
    orthogonalise :math:`v` against the stored vectors :math:`u_1, \dots, u_{k-1}` one after the other
    (:math:`v \leftarrow v - \langle v, u_i\rangle u_i`), normalise, :math:`w = Hv`, estimate
    :math:`\theta = \langle w, v\rangle`, :math:`v \leftarrow w / \|w\|`; stop when
    :math:`|\theta_{\rm old} - \theta| / (|\theta_{\rm old}| + 10^{-6}) < \mathrm{tol}`, keeping
    :math:`\theta_{\rm old}`. Store :math:`v` as :math:`u_k`. (Normalisation divides by :math:`\|v\| + 10^{-6}`.)

    Args:
        operator: a symmetric ``(dim, dim)`` matrix, or a function ``v -> H v``.
        dim: the dimension (needed for a function; default: the matrix's size).
        top_n: how many values (the authors: 129, all of them for their network).
        tol: the relative-change stopping tolerance (the authors: ``1e-3``, PyHessian's default).
        max_iter: iterations per value at most (the authors: 500 for Figure 10).
        seed: seeds the start vectors (a ``torch.Generator``; the authors' come from the global RNG).
        dtype: working precision (the authors: float32); a matrix is cast to it.

    Returns:
        A :class:`DeflatedPower`; ``.ratio`` is Figure 10's :math:`|\lambda_1/\lambda_{129}|`.

    The Gram–Schmidt pass is applied as the product of its projections, formed once per value (a ``dim x dim``
    matrix: meant for the small networks of Figure 10, ``dim`` up to a few thousand). It runs on one torch thread
    (restored afterwards): the products are small, and the result then does not depend on the thread count.

    Raises:
        ValueError: ``top_n`` outside ``1..dim``, or a function without ``dim``.

    >>> H = torch.diag(torch.tensor([4.0, -2.0, 1.0]))
    >>> r = deflated_power_iteration(H, top_n=3, tol=1e-10, max_iter=5000, dtype=torch.float64)
    >>> [round(x, 4) for x in r.eigenvalues.tolist()]          # by magnitude, signs kept
    [4.0, -2.0, 1.0]
    """
    if isinstance(operator, Tensor):
        M = operator.to(dtype)
        n = M.shape[0] if dim is None else dim
        matvec: Callable[[Tensor], Tensor] = lambda v: M @ v   # noqa: E731
    else:
        if dim is None:
            raise ValueError("pass dim= with a matrix-free operator (the number of parameters)")
        n, matvec = dim, operator
    if not 1 <= top_n <= n:
        raise ValueError(f"top_n={top_n} must lie in 1..{n} (the operator's dimension)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # thousands of small products: one thread is faster, and thread-count independent
    try:
        return _iterate(matvec, n, top_n, tol, max_iter, seed, dtype)
    finally:
        torch.set_num_threads(threads)


def _iterate(matvec: Callable[[Tensor], Tensor], n: int, top_n: int, tol: float, max_iter: int, seed: int,
             dtype: torch.dtype) -> DeflatedPower:
    gen = torch.Generator().manual_seed(seed)
    found: list[Tensor] = []
    values: list[float] = []
    spent: list[int] = []
    # one Gram-Schmidt pass against u_1, ..., u_{k-1}, in order, is v -> (I - u_{k-1} u_{k-1}^T) ... (I - u_1 u_1^T) v:
    # the product is formed once per value (``project``), not once per iteration (same map, faster loop)
    project = torch.eye(n, dtype=dtype)
    for _ in range(top_n):
        estimate: float | None = None
        v = _normalize(torch.randn(n, generator=gen, dtype=torch.float64).to(dtype))
        its = 0
        for _ in range(max_iter):
            its += 1
            v = _normalize(project @ v)
            w = matvec(v)
            current = float(torch.dot(w, v))
            v = _normalize(w)                        # stored as is: not orthogonalised again
            if estimate is None:
                estimate = current
            elif abs(estimate - current) / (abs(estimate) + 1e-6) < tol:
                break
            else:
                estimate = current
        assert estimate is not None
        values.append(estimate)
        found.append(v)
        project = project - torch.outer(v, v @ project)
        spent.append(its)
    return DeflatedPower(torch.tensor(values, dtype=torch.float64), torch.stack(found),
                         torch.tensor(spent))


def with_spectrum(eigenvalues: Tensor, seed: int = 0) -> Tensor:
    r"""A symmetric matrix :math:`Q\,\mathrm{diag}(\lambda)\,Q^\top` with the given eigenvalues and a random
    orthogonal :math:`Q` (QR of a Gaussian matrix, ``seed``): a test operator whose spectrum is known exactly.

    >>> H = with_spectrum(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    >>> [round(x, 10) for x in torch.linalg.eigvalsh(H).tolist()]
    [1.0, 2.0, 3.0]
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(lam.numel(), lam.numel(), generator=gen, dtype=torch.float64))
    return (Q * lam) @ Q.T
