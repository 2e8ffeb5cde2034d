r"""Curvature of a loss ``f(theta)``: Hessian-vector products, dense Hessians, Lanczos, spectral densities (SLQ),
L-BFGS-preconditioned spectra, Jacobians and Gauss–Newton matrices.

``f`` is anything :func:`pinnkit.objective.total` reads (a loss, a terms function, a PINN); ``theta`` is never
modified. Eigenvectors are **columns** ``(P, k)`` as from :func:`torch.linalg.eigh`; a block of vectors handed to
an operator is a batch of **rows** ``(k, P)`` and comes back as rows. HVP modes: ``"reverse"`` (one gradient graph
reused by every product), ``"forward"`` (forward-over-reverse), ``"auto"`` (:data:`DEFAULT_MODE`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, cast

import torch
from torch import Tensor

from .objective import total

Loss = Callable[[Tensor], Any]          # theta -> scalar Tensor, or -> dict[str, Tensor] (summed)
Matvec = Callable[[Tensor], Tensor]     # (P,) -> (P,) and (k, P) -> (k, P)

#: largest parameter count for which :func:`hessian` forms the dense matrix without ``force=True``
DENSE_LIMIT = 5000
#: HVP mode chosen by ``mode="auto"`` per device type (CPU: measured; CUDA: run ``benchmarks/curvature.py``)
DEFAULT_MODE: dict[str, str] = {"cpu": "reverse", "cuda": "reverse"}
MODES = ("auto", "forward", "reverse")

__all__ = [
    "DENSE_LIMIT", "DEFAULT_MODE", "MODES", "resolve_mode", "LinearOperator", "HVPOperator", "hvp", "hvp_batch",
    "hvp_operator", "hessian", "hessian_eigh", "Eigen", "LanczosResult", "lanczos", "top_eigenpairs",
    "bottom_eigenpairs", "SpectralDensity", "LogSpectralDensity", "slq", "spectral_density", "LBFGSPairs",
    "lbfgs_pairs", "lbfgs_two_loop", "LBFGSFactor", "preconditioned_operator", "preconditioned_spectrum",
    "jacobian", "gauss_newton", "gauss_newton_operator", "gauss_newton_product",
]


# --- Hessian-vector products -------------------------------------------------------------------------------
def _check_theta(theta: Tensor) -> None:
    if not isinstance(theta, Tensor) or theta.ndim != 1:
        raise ValueError("theta must be a flat 1-D tensor (e.g. pinn.theta0); got "
                         f"{type(theta).__name__}{tuple(theta.shape) if isinstance(theta, Tensor) else ''}")
    if not theta.is_floating_point():
        raise ValueError(f"theta must be floating point, got {theta.dtype}")


def resolve_mode(mode: str, device: torch.device | str) -> str:
    """The HVP mode ``mode`` stands for on ``device``: ``"auto"`` becomes :data:`DEFAULT_MODE` of the device type.

    Raises:
        ValueError: an unknown mode (the message lists :data:`MODES`).
    """
    device = torch.device(device)
    if mode not in MODES:
        raise ValueError(f"unknown HVP mode {mode!r}; valid: {', '.join(MODES)}")
    return DEFAULT_MODE.get(device.type, "reverse") if mode == "auto" else mode


def _is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA's ``OutOfMemoryError`` or the CPU allocator's message)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    msg = str(err).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "cannot allocate memory" in msg


class LinearOperator:
    r"""A square **symmetric** operator :math:`A` on :math:`\mathbb R^n` given by its products: ``A @ x`` (or
    ``A(x)``) for a vector ``(n,)``, ``A @ X`` for columns ``(n, k)``, ``V @ A`` (or ``A(V)``) for a block of rows
    ``(k, n)``; ``A + B``, ``A - B``, ``c * A``; :meth:`to_scipy`.

    >>> A = LinearOperator.from_dense(torch.tensor([[2., 1.], [1., 3.]], dtype=torch.float64))
    >>> (A @ torch.ones(2, dtype=torch.float64)).tolist(), (2 * A - A).shape
    ([3.0, 4.0], (2, 2))
    """

    def __init__(self, rows: Callable[[Tensor], Tensor], dim: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu"):
        self._rows, self.dim, self.dtype, self.device = rows, int(dim), dtype, torch.device(device)

    @classmethod
    def from_dense(cls, A: Tensor) -> "LinearOperator":
        """A symmetric matrix ``(n, n)`` as an operator."""
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"a matrix operator must be square, got {tuple(A.shape)}")
        return cls(lambda V: V @ A.T.to(V.dtype), A.shape[0], A.dtype, A.device)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, n)``."""
        return (self.dim, self.dim)

    def _check(self, V: Tensor) -> None:
        if V.ndim not in (1, 2) or V.shape[-1] != self.dim:
            raise ValueError(f"expected a vector of shape ({self.dim},) or a block of rows (k, {self.dim}), got "
                             f"{tuple(V.shape)}")

    def __call__(self, V: Tensor) -> Tensor:
        """:math:`Av` for a vector, :math:`VA` for a block of rows."""
        self._check(V)
        return self._rows(V)

    def __matmul__(self, X: Tensor) -> Tensor:
        """``A @ x`` for a vector ``(n,)``, ``A @ X`` for columns ``(n, k)``: the products of ``A(V)``."""
        if X.ndim == 2:
            if X.shape[0] != self.dim:
                raise ValueError(f"expected columns of shape ({self.dim}, k), got {tuple(X.shape)}")
            return self(X.T.contiguous()).T
        return self(X)

    def __rmatmul__(self, V: Tensor) -> Tensor:
        """``V @ A`` for a block of rows ``(k, n)`` (:math:`A` is symmetric)."""
        return self(V)

    def __mul__(self, c: float) -> "LinearOperator":
        if not isinstance(c, (int, float)):
            return NotImplemented
        return LinearOperator(lambda V: c * self(V), self.dim, self.dtype, self.device)

    __rmul__ = __mul__

    def __add__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        if other.dim != self.dim:
            raise ValueError(f"cannot add operators of sizes {self.dim} and {other.dim}")
        return LinearOperator(lambda V: self(V) + other(V), self.dim, self.dtype, self.device)

    def __sub__(self, other: "LinearOperator") -> "LinearOperator":
        return self + (-1.0) * other

    def to_scipy(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` (NumPy float64 in and out).

        >>> import scipy.sparse.linalg as sla
        >>> A = LinearOperator.from_dense(torch.diag(torch.arange(1., 6., dtype=torch.float64)))
        >>> [round(float(x), 8) for x in sla.eigsh(A.to_scipy(), k=2, which="LA")[0]]
        [4.0, 5.0]
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator as ScipyOperator

        def matvec(x: Any) -> Any:
            v = torch.as_tensor(np.asarray(x).reshape(-1)).to(self.device, self.dtype)
            return self(v).detach().cpu().double().numpy()

        def matmat(X: Any) -> Any:
            V = torch.as_tensor(np.asarray(X)).to(self.device, self.dtype)
            return self(V.T.contiguous()).T.detach().cpu().double().numpy()
        return ScipyOperator(self.shape, matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat,
                             dtype=np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class HVPOperator(LinearOperator):
    r"""The Hessian :math:`H = \nabla^2 f(\theta)` at a fixed ``theta`` as a :class:`LinearOperator` (no matrix).

    ``op(v)`` for ``v`` of shape ``(P,)`` or a block of rows ``(k, P)`` returns :math:`Hv` row by row; ``op @ X``
    multiplies columns ``(P, k)``. In ``"reverse"`` mode
    the gradient graph is built once here and reused by every product (that is what makes Lanczos cheap);
    ``op.grad`` is the gradient at ``theta`` and ``op.calls`` counts the vectors multiplied so far. On a PINN loss
    the graph costs about one gradient and each product 1-2 more (``benchmarks/hvp.py``).
    """

    #: rows per ``is_grads_batched`` call (larger blocks are split)
    BATCH = 16

    def __init__(self, f: Loss, theta: Tensor, mode: str = "auto"):
        _check_theta(theta)
        self.f = total(f)
        self.dim = theta.numel()
        self.dtype, self.device = theta.dtype, theta.device
        self.mode = resolve_mode(mode, theta.device)
        self.calls = 0
        #: how reverse mode multiplies a block: ``"batched"`` (``is_grads_batched``, :attr:`BATCH` rows per call;
        #: the default: faster on a GPU and for few points) or ``"loop"`` (one backward per row: faster on one CPU
        #: thread with thousands of points, as torch has no batching rule for ``tanh_backward``; used for good
        #: once a batched product runs out of memory). ``benchmarks/hvp.py`` times both.
        self.block = "batched"
        self._theta = theta.detach()
        if self.mode == "reverse":
            with torch.enable_grad():
                x = self._theta.clone().requires_grad_(True)   # local leaf copy: theta itself is untouched
                (g,) = torch.autograd.grad(self.f(x), x, create_graph=True)
            self._x, self._g = x, g
        else:
            self._gradf = torch.func.grad(self.f)

    @property
    def grad(self) -> Tensor:
        """The gradient at ``theta`` (free in reverse mode; one extra gradient in forward mode)."""
        if self.mode == "reverse":
            return self._g.detach()
        return cast(Tensor, self._gradf(self._theta)).detach()

    def _one(self, v: Tensor) -> Tensor:
        if self.mode == "forward":
            return cast(Tensor, torch.func.jvp(self._gradf, (self._theta,), (v,))[1])
        if not self._g.requires_grad:       # gradient independent of theta: f is linear, H = 0
            return torch.zeros_like(v)
        with torch.enable_grad():
            return torch.autograd.grad(self._g, self._x, v, retain_graph=True)[0]

    def __call__(self, V: Tensor) -> Tensor:
        """Hessian-vector products with a vector, or with a batch of vectors stored as rows."""
        self._check(V)
        V = V.to(self.dtype)
        if V.ndim == 1:
            self.calls += 1
            return self._one(V).detach()
        self.calls += V.shape[0]
        if self.mode == "forward":
            return cast(Tensor, torch.func.vmap(lambda v: torch.func.jvp(self._gradf, (self._theta,), (v,))[1])(V)).detach()
        if not self._g.requires_grad:
            return torch.zeros_like(V)
        return self._block_product(V)

    def _block_product(self, V: Tensor) -> Tensor:
        if self.block == "batched":
            try:
                return self._batched(V)
            except RuntimeError as err:                   # out of memory only: loop from now on; anything else
                if not _is_oom(err):                      # (a device mismatch, a real bug) is raised as is
                    raise
                self.block = "loop"
        return self._loop(V)

    def _loop(self, V: Tensor) -> Tensor:
        return torch.stack([self._one(v) for v in V]).detach()

    def _batched(self, V: Tensor) -> Tensor:
        if V.shape[0] > self.BATCH:                       # bounded memory
            return torch.cat([self._batched(V[i:i + self.BATCH]) for i in range(0, V.shape[0], self.BATCH)])
        with torch.enable_grad():
            return torch.autograd.grad(self._g, self._x, V, retain_graph=True, is_grads_batched=True)[0].detach()


def hvp_operator(f: Loss, theta: Tensor, *, mode: str = "auto") -> HVPOperator:
    """The Hessian at ``theta`` as a reusable operator (see :class:`HVPOperator`); cheapest for many products."""
    return HVPOperator(f, theta, mode)


def hvp(f: Loss, theta: Tensor, v: Tensor, *, mode: str = "auto") -> Tensor:
    r"""Hessian-vector product :math:`\nabla^2 f(\theta)\, v`.

    >>> f = lambda th: (th ** 2).sum() * 1.5           # H = 3 I
    >>> hvp(f, torch.ones(3), torch.tensor([1., 2., 3.]))
    tensor([3., 6., 9.])
    """
    if v.shape != theta.shape:
        raise ValueError(f"v must have the shape of theta {tuple(theta.shape)}, got {tuple(v.shape)}; "
                         "for a block of vectors use hvp_batch")
    return HVPOperator(f, theta, mode)(v)


def hvp_batch(f: Loss, theta: Tensor, V: Tensor, *, mode: str = "auto") -> Tensor:
    """Hessian times each row of ``V`` (shape ``(k, P)``) -> ``(k, P)``, the gradient graph shared by all rows."""
    if V.ndim != 2:
        raise ValueError(f"V must be a block of row vectors (k, {theta.numel()}), got {tuple(V.shape)}")
    return HVPOperator(f, theta, mode)(V)


# --- dense Hessian -----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, repr=False)
class Eigen:
    r"""Eigenpairs: ``values`` (k,) and unit ``vectors`` (P, k), **columns** as :func:`torch.linalg.eigh` gives them.

    Lanczos adds ``residuals`` :math:`\|Hv_i - \lambda_i v_i\|`, ``iterations`` (HVPs spent) and ``converged``
    (every residual at most ``tol`` :math:`\cdot\max|\lambda|`); a dense ``eigh`` leaves ``None, None, True``.

    >>> Eigen(torch.tensor([1.0, 2.5]), torch.eye(2))
    Eigen(k=2, P=2, values=[1, 2.5], converged=True)
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor | None = None
    iterations: int | None = None
    converged: bool = True

    def __repr__(self) -> str:
        v = self.values.tolist()
        shown = ", ".join(f"{x:.4g}" for x in v[:4]) + (", ..." if len(v) > 4 else "")
        return f"Eigen(k={len(v)}, P={self.vectors.shape[0]}, values=[{shown}], converged={self.converged})"


def hessian(f: Loss, theta: Tensor, *, chunk: int = 256, force: bool = False, mode: str = "auto") -> Tensor:
    r"""Dense Hessian :math:`\nabla^2 f(\theta)`, ``P x P``, symmetrised :math:`(H + H^\top)/2`, by blocks of
    ``chunk`` HVPs. Refuses above :data:`DENSE_LIMIT` parameters unless ``force=True`` (peak: two ``P x P``).

    >>> A = torch.tensor([[2., 1.], [1., 3.]], dtype=torch.float64)
    >>> hessian(lambda th: 0.5 * th @ A @ th, torch.zeros(2, dtype=torch.float64))
    tensor([[2., 1.],
            [1., 3.]], dtype=torch.float64)
    """
    _check_theta(theta)
    P = theta.numel()
    if P > DENSE_LIMIT and not force:
        raise ValueError(f"dense Hessian of {P} parameters needs about {2 * P * P * theta.element_size() / 1e9:.2f} "
                         f"GB at peak (the matrix and its symmetrised copy) and {P} HVPs; above the limit of "
                         f"{DENSE_LIMIT} use pinnkit.curvature.top_eigenpairs / spectral_density (Lanczos), or pass "
                         "force=True")
    op = HVPOperator(f, theta, mode)
    H = torch.empty(P, P, dtype=theta.dtype, device=theta.device)
    for i in range(0, P, chunk):
        k = min(chunk, P - i)
        E = torch.zeros(k, P, dtype=theta.dtype, device=theta.device)
        E[torch.arange(k), torch.arange(i, i + k)] = 1.0
        H[i:i + k] = op(E)
    H = H + H.T
    return H.mul_(0.5)


def hessian_eigh(f: Loss, theta: Tensor, *, force: bool = False, mode: str = "auto") -> Eigen:
    """All eigenpairs of :func:`hessian` (formed in ``theta``'s dtype), ascending, by ``eigh`` in float64."""
    values, vectors = torch.linalg.eigh(hessian(f, theta, force=force, mode=mode).to(torch.float64))
    return Eigen(values, vectors)


# --- Lanczos -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LanczosResult:
    r"""Lanczos tridiagonal :math:`T = Q^\top A Q = S\,\mathrm{diag}(\theta)\,S^\top` (diagonal ``alpha``,
    off-diagonal ``beta``; ``beta == 0`` marks a restart after breakdown).

    Shapes ``(m,)`` for one start vector, ``(b, m)`` for a block. ``ritz_values`` :math:`\theta` ascending (float64);
    ``weights`` :math:`S_{0i}^2` (SLQ's Gauss weights, summing to 1); ``ritz_vectors`` :math:`QS`, columns
    ``(..., dim, m)``, if asked; ``iterations`` ``m``; ``residual_bounds`` :math:`\beta_m|S_{mi}| =
    \|Ay_i - \theta_i y_i\|` (Paige); ``converged`` where that is at most ``tol`` :math:`\cdot\max|\theta|`.
    """

    alpha: Tensor
    beta: Tensor
    ritz_values: Tensor
    weights: Tensor
    ritz_vectors: Tensor | None = None
    iterations: int = 0
    residual_bounds: Tensor | None = None
    converged: Tensor | None = None

    def tridiagonal(self) -> Tensor:
        """The matrix ``T`` (float64), ``(m, m)`` or ``(b, m, m)``."""
        return _tridiag(self.alpha, self.beta)


def _tridiag(alpha: Tensor, beta: Tensor) -> Tensor:
    T = torch.diag_embed(alpha.to(torch.float64))
    if beta.shape[-1]:
        T = T + torch.diag_embed(beta.to(torch.float64), 1) + torch.diag_embed(beta.to(torch.float64), -1)
    return T


def _as_matvec(matvec: Matvec | Tensor) -> Matvec:
    return LinearOperator.from_dense(matvec) if isinstance(matvec, Tensor) else matvec


def _orthogonalize(w: Tensor, Q: Tensor) -> Tensor:
    """Rows of ``w`` (b, n) minus their components along the rows of ``Q[i]`` (b, j, n): classical Gram–Schmidt,
    repeated when a row lost more than 1/sqrt(2) of its norm ("twice is enough", Kahan–Parlett).
    """
    before = torch.linalg.vector_norm(w, dim=1)
    w = w - torch.bmm(torch.bmm(Q, w[:, :, None]).transpose(1, 2), Q)[:, 0]
    if bool((torch.linalg.vector_norm(w, dim=1) < 0.7071 * before).any()):
        w = w - torch.bmm(torch.bmm(Q, w[:, :, None]).transpose(1, 2), Q)[:, 0]
    return w


def lanczos(matvec: Matvec | Tensor, dim: int, steps: int, v0: Tensor | None = None, *,
            dtype: torch.dtype | None = None, device: str | torch.device | None = None, vectors: bool = False,
            seed: int = 0, tol: float | None = None) -> LanczosResult:
    r"""``m = min(steps, dim)`` Lanczos steps with full reorthogonalization on a symmetric operator of size ``dim``:
    :math:`A q_j = \beta_{j-1} q_{j-1} + \alpha_j q_j + \beta_j q_{j+1}`, :math:`q_1 = v_0/\|v_0\|`. On breakdown
    it restarts with a random vector orthogonal to ``Q`` (``beta_j = 0``).

    Args:
        matvec: ``v -> A v``, also on row blocks ``(b, dim)``; a square Tensor is the matrix itself.
        v0: ``(dim,)``, or ``(b, dim)`` start vectors run together (default: Gaussian from ``seed``, in the
            operator's dtype and device when it has them).
        vectors: also return the Ritz vectors.
        tol: of ``converged`` (default :math:`\sqrt\varepsilon` of the dtype).

    >>> A = torch.diag(torch.arange(1., 11., dtype=torch.float64))
    >>> r = lanczos(A, 10, 10)
    >>> [round(float(x), 6) for x in r.ritz_values[[0, -1]]]
    [1.0, 10.0]
    """
    if isinstance(matvec, (Tensor, LinearOperator)):
        dtype, device = dtype or matvec.dtype, device or matvec.device
    matvec = _as_matvec(matvec)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    gen = torch.Generator().manual_seed(int(seed))
    if v0 is None:
        v0 = torch.randn(dim, generator=gen, dtype=torch.float64)
        v0 = v0.to(device=device or "cpu", dtype=dtype or torch.get_default_dtype())
    else:
        v0 = v0.to(device=device or v0.device, dtype=dtype or v0.dtype)
    if v0.shape[-1] != dim or v0.ndim not in (1, 2):
        raise ValueError(f"v0 must have shape ({dim},) or (b, {dim}), got {tuple(v0.shape)}")
    single = v0.ndim == 1
    q = v0.reshape(-1, dim)
    nrm = torch.linalg.vector_norm(q, dim=1, keepdim=True)
    if not bool((nrm > 0).all()):
        raise ValueError("v0 must be nonzero")
    q = q / nrm
    b, m = q.shape[0], min(steps, dim)
    eps = torch.finfo(q.dtype).eps
    Q = torch.zeros(b, m, dim, dtype=q.dtype, device=q.device)
    alpha = torch.zeros(b, m, dtype=torch.float64)
    beta = torch.zeros(b, max(m - 1, 0), dtype=torch.float64)
    scale = torch.zeros(b, dtype=torch.float64)
    for j in range(m):
        Q[:, j] = q
        w = matvec(q[0] if single else q).reshape(b, dim).to(q.dtype)
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"the operator returned non-finite values at Lanczos step {j}; check the loss "
                                     "at theta (NaN/inf) or use float64")
        a = (w * q).sum(1)
        w = w - a[:, None] * q
        if j > 0:
            w = w - beta[:, j - 1].to(device=q.device, dtype=q.dtype)[:, None] * Q[:, j - 1]
        w = _orthogonalize(w, Q[:, :j + 1])
        alpha[:, j] = a.double().cpu()
        if j == m - 1:
            beta_m = torch.linalg.vector_norm(w, dim=1).double().cpu()     # for the residual bounds
            break
        bj = torch.linalg.vector_norm(w, dim=1).double().cpu()
        scale = torch.maximum(scale, alpha[:, j].abs() + bj + (beta[:, j - 1] if j > 0 else 0.0))
        broken = bj <= 10 * math.sqrt(dim) * eps * scale.clamp_min(torch.finfo(torch.float64).tiny)
        if bool(broken.any()):
            idx = broken.nonzero().flatten()
            fresh = torch.randn(len(idx), dim, generator=gen, dtype=torch.float64).to(q.device, q.dtype)
            fresh = _orthogonalize(fresh, Q[idx, :j + 1])
            w[idx.to(q.device)] = fresh / torch.linalg.vector_norm(fresh, dim=1, keepdim=True)
            bj[idx] = 0.0
            norms = torch.where(broken, torch.ones_like(bj), bj)
        else:
            norms = bj
        beta[:, j] = bj
        q = w / norms.to(device=q.device, dtype=q.dtype)[:, None]
    theta_, S = torch.linalg.eigh(_tridiag(alpha, beta))
    weights = S[:, 0, :] ** 2
    bounds = beta_m[:, None] * S[:, -1, :].abs()
    rtol = math.sqrt(eps) if tol is None else float(tol)
    converged = bounds <= rtol * theta_.abs().amax(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    ritz_vectors = None
    if vectors:
        ritz_vectors = torch.einsum("bjn,bji->bni", Q, S.to(device=Q.device, dtype=Q.dtype))
    dev = q.device
    out = dict(alpha=alpha.to(dev), beta=beta.to(dev), ritz_values=theta_.to(dev), weights=weights.to(dev),
               ritz_vectors=ritz_vectors, residual_bounds=bounds.to(dev), converged=converged.to(dev))
    if single:
        out = {k: (v[0] if v is not None else None) for k, v in out.items()}
    return LanczosResult(**out, iterations=m)


def _extreme(f: Loss, theta: Tensor, k: int, steps: int | None, largest: bool, mode: str, seed: int,
             tol: float | None) -> Eigen:
    _check_theta(theta)
    P = theta.numel()
    if not isinstance(k, int) or not 1 <= k <= P:
        raise ValueError(f"k must be an integer in [1, {P}], got {k!r}")
    steps = min(P, max(4 * k, 80)) if steps is None else min(int(steps), P)
    if steps < k:
        raise ValueError(f"steps={steps} must be at least k={k}")
    op = HVPOperator(f, theta, mode)
    v0 = torch.randn(P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = lanczos(op, P, steps, v0.to(theta.device, theta.dtype), vectors=True, seed=seed)
    idx = torch.arange(steps - 1, steps - 1 - k, -1) if largest else torch.arange(k)
    assert r.ritz_vectors is not None
    values = r.ritz_values[idx.to(r.ritz_values.device)]
    vecs = r.ritz_vectors[:, idx.to(r.ritz_vectors.device)]
    res = torch.linalg.vector_norm(op(vecs.T) - values.to(vecs.dtype)[:, None] * vecs.T, dim=1)
    rtol = math.sqrt(torch.finfo(theta.dtype).eps) if tol is None else float(tol)
    norm = float(r.ritz_values.abs().max())
    return Eigen(values, vecs, res, iterations=steps, converged=bool((res <= rtol * norm).all()))


def top_eigenpairs(f: Loss, theta: Tensor, k: int = 1, steps: int | None = None, *, mode: str = "auto",
                   seed: int = 0, tol: float | None = None) -> Eigen:
    r"""The ``k`` largest Hessian eigenpairs by Lanczos, **descending** (``values[0]`` is :math:`\lambda_{\max}`).

    ``steps`` (about that many HVPs) defaults to ``min(P, max(4k, 80))``; ``converged`` when every residual is at
    most ``tol`` (default :math:`\sqrt\varepsilon` of ``theta``'s dtype) times :math:`\max|\theta_i|`.
    """
    return _extreme(f, theta, k, steps, True, mode, seed, tol)


def bottom_eigenpairs(f: Loss, theta: Tensor, k: int = 1, steps: int | None = None, *, mode: str = "auto",
                      seed: int = 0, tol: float | None = None) -> Eigen:
    r"""The ``k`` smallest Hessian eigenpairs by Lanczos, **ascending** (``values[0]`` is :math:`\lambda_{\min}`);
    as :func:`top_eigenpairs`.
    """
    return _extreme(f, theta, k, steps, False, mode, seed, tol)


# --- stochastic Lanczos quadrature -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpectralDensity:
    r"""A smoothed spectral density :math:`\phi(t) = \frac1n\sum_p\sum_i w_{pi}\,\mathcal N(t;\lambda_{pi},\sigma^2)`.

    ``nodes`` :math:`\lambda_{pi}` and ``weights`` :math:`w_{pi}` per probe ``(n_probes, m)`` (SLQ's Gauss
    quadrature); ``grid``/``density`` the curve (float64, CPU, :math:`\int\phi = 1`); ``lmin``/``lmax`` the extreme
    nodes; ``sigma2`` the kernel variance :math:`\sigma^2` (absolute, in units of :math:`\lambda`); ``dim`` the
    operator size.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    lmin: float
    lmax: float
    sigma2: float
    dim: int

    @property
    def sigma(self) -> float:
        r"""The kernel width :math:`\sigma`."""
        return math.sqrt(self.sigma2)

    @classmethod
    def from_eigenvalues(cls, eigenvalues: Tensor, *, sigma2: float | None = None, sigma2_factor: float = 5e-5,
                         grid_size: int = 10_000, sigma: float | None = None) -> "SpectralDensity":
        """The density of known eigenvalues (weights ``1/n``), smoothed as :func:`slq` smooths (``sigma=sd.sigma``
        compares with an SLQ result ``sd`` at equal smoothing).
        """
        ev = torch.as_tensor(eigenvalues).detach().reshape(1, -1).double().cpu()
        w = torch.full_like(ev, 1.0 / ev.numel())
        return _density(ev, w, ev.numel(), grid_size, _sigma2(ev, sigma, sigma2, sigma2_factor))

    def with_sigma(self, sigma: float, grid_size: int = 10_000) -> "SpectralDensity":
        """The same nodes and weights smoothed with kernel width ``sigma > 0`` (no new products)."""
        return _density(self.nodes, self.weights, self.dim, grid_size, _sigma2(self.nodes, sigma, None, 0.0))

    def log_density(self, sigma: float = 0.1, rcut: float = 1e-12, grid_size: int = 2000) -> "LogSpectralDensity":
        r"""Densities of :math:`x = \log_{10}|\lambda|` for the positive and the negative nodes, Gaussian kernels of
        ``sigma`` decades; nodes with :math:`|\lambda| \le` ``rcut`` :math:`\cdot\max|\lambda|` count as ``zero_mass``.
        """
        if sigma <= 0 or not 0 < rcut < 1:
            raise ValueError(f"need sigma > 0 (decades) and 0 < rcut < 1, got sigma={sigma}, rcut={rcut}")
        x, w = self.nodes.reshape(-1).double(), self.weights.reshape(-1).double() / self.nodes.shape[0]
        floor = rcut * float(x.abs().max())
        pos, neg = x > floor, x < -floor
        lx = torch.log10(x.abs().clamp_min(floor if floor > 0 else torch.finfo(torch.float64).tiny))
        sel = lx[pos | neg]
        lo, hi = (float(sel.min()), float(sel.max())) if sel.numel() else (math.log10(max(floor, 1e-300)),) * 2
        grid = torch.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_size, dtype=torch.float64)
        s2 = sigma ** 2
        dp = _smooth(grid, lx[pos][None], w[pos][None], s2) if bool(pos.any()) else torch.zeros_like(grid)
        dn = _smooth(grid, lx[neg][None], w[neg][None], s2) if bool(neg.any()) else torch.zeros_like(grid)
        return LogSpectralDensity(grid, dp, dn, float(w[pos].sum()), float(w[neg].sum()),
                                  float(w[~(pos | neg)].sum()), floor, float(sigma))

    def moment(self, k: int) -> tuple[float, float]:
        r"""Estimate of :math:`\mathrm{tr}(H^k)/\dim` and its standard error over the probes (exact per probe for
        ``k < 2m``).
        """
        per = (self.weights * self.nodes ** k).sum(1)
        n = per.numel()
        se = float(per.std() / math.sqrt(n)) if n > 1 else math.nan
        return float(per.mean()), se

    def mass(self, lo: float, hi: float) -> float:
        """Fraction of the spectrum in ``[lo, hi]``: the weight of the nodes there (mean over probes)."""
        inside = (self.nodes >= lo) & (self.nodes <= hi)
        return float((self.weights * inside).sum(1).mean())

    def mass_se(self, lo: float, hi: float) -> float:
        """Standard error of :meth:`mass` over the probes (``nan`` for one probe)."""
        per = (self.weights * ((self.nodes >= lo) & (self.nodes <= hi))).sum(1)
        return float(per.std() / math.sqrt(per.numel())) if per.numel() > 1 else math.nan

    def integral(self) -> float:
        """Trapezoid integral of ``density`` over ``grid`` (1 up to grid resolution)."""
        return float(torch.trapezoid(self.density, self.grid))

    def drawn_mass(self, lo: float, hi: float) -> float:
        """Area of the smoothed curve over ``[lo, hi]`` (what a plot shows; :meth:`mass` is what is there)."""
        keep = (self.grid >= lo) & (self.grid <= hi)
        return float(torch.trapezoid(self.density[keep], self.grid[keep])) if int(keep.sum()) > 1 else 0.0

    def distance(self, other: "SpectralDensity") -> float:
        r"""L1 distance :math:`\int|\phi - \phi_{\rm other}|` on the union of grids (0 to 2)."""
        import numpy as np
        g = np.unique(torch.cat([self.grid, other.grid]).numpy())
        a = np.interp(g, self.grid.numpy(), self.density.numpy(), left=0.0, right=0.0)
        b = np.interp(g, other.grid.numpy(), other.density.numpy(), left=0.0, right=0.0)
        trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined]  # numpy < 2
        return float(trapezoid(np.abs(a - b), g))


@dataclass(frozen=True, eq=False)
class LogSpectralDensity:
    r"""Densities on :math:`x = \log_{10}|\lambda|` (``grid``) of the eigenvalues above ``floor`` (``positive``,
    integral ``mass_positive``) and below ``-floor`` (``negative``, ``mass_negative``); ``zero_mass`` within
    ``±floor``; ``sigma`` in decades.
    """

    grid: Tensor
    positive: Tensor
    negative: Tensor
    mass_positive: float
    mass_negative: float
    zero_mass: float
    floor: float
    sigma: float


def _sigma2(nodes: Tensor, sigma: float | None, sigma2: float | None, sigma2_factor: float) -> float:
    if sigma is not None:
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        return float(sigma) ** 2
    if sigma2 is not None:
        if not sigma2 > 0:
            raise ValueError(f"sigma2 must be positive, got {sigma2}")
        return float(sigma2)
    return float(sigma2_factor * max(1.0, float(nodes.max()) - float(nodes.min())))


def _density(nodes: Tensor, weights: Tensor, dim: int, grid_size: int, sigma2: float) -> SpectralDensity:
    grid = _density_grid(nodes, math.sqrt(sigma2), grid_size)
    return SpectralDensity(grid, _smooth(grid, nodes, weights, sigma2), nodes, weights, float(nodes.min()),
                           float(nodes.max()), sigma2, dim)


def _density_grid(nodes: Tensor, sigma: float, grid_size: int, pad: float = 6.0) -> Tensor:
    """An even grid plus points every sigma/2 around each node, so the curve integrates to 1 at any spread."""
    lo, hi = float(nodes.min()) - pad * sigma, float(nodes.max()) + pad * sigma
    patch = torch.arange(-pad, pad + 1e-9, 0.5, dtype=torch.float64) * sigma
    local = (nodes.reshape(-1, 1) + patch).reshape(-1)
    return torch.cat([torch.linspace(lo, hi, grid_size, dtype=torch.float64), local]).sort().values


def _smooth(grid: Tensor, nodes: Tensor, weights: Tensor, sigma2: float, chunk: int = 2048) -> Tensor:
    """Sum of weighted Gaussians on a sorted grid; nodes farther than 9 sigma (factor < 1e-17) are skipped."""
    x, w = nodes.reshape(-1), weights.reshape(-1) / nodes.shape[0]
    keep = w > 0
    x, w = x[keep], w[keep]
    x, order = x.sort()
    w = w[order]
    out = torch.zeros_like(grid)
    c, reach = 1.0 / math.sqrt(2 * math.pi * sigma2), 9.0 * math.sqrt(sigma2)
    for i in range(0, grid.numel(), chunk):
        g = grid[i:i + chunk]
        lo, hi = torch.searchsorted(x, torch.stack([g[0] - reach, g[-1] + reach])).tolist()
        if hi > lo:
            out[i:i + chunk] = (w[lo:hi] * torch.exp(-(g[:, None] - x[lo:hi]) ** 2 / (2 * sigma2))).sum(1) * c
    return out


def slq(matvec: Matvec | Tensor, dim: int, n_probes: int = 10, steps: int = 100, *, grid_size: int = 10_000,
        sigma2_factor: float = 5e-5, sigma: float | None = None, seed: int = 0, dtype: torch.dtype | None = None,
        device: str | torch.device | None = None, probe_batch: int | None = None) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature: ``n_probes`` Rademacher vectors :math:`v_p` run ``steps`` Lanczos steps
    together (``probe_batch`` at a time), :math:`v_p^\top g(A) v_p/\|v_p\|^2 \approx \sum_i w_{pi}\,g(\theta_{pi})`.

    Kernel variance :math:`\sigma^2 =` ``sigma2_factor`` :math:`\cdot\max(1, \lambda_{\max} - \lambda_{\min})`
    (Rathore et al.'s ``5e-5``), or ``sigma**2`` when given (one ``sigma`` for curves that share an axis).
    """
    if isinstance(matvec, (Tensor, LinearOperator)):
        dtype, device = dtype or matvec.dtype, device or matvec.device
    matvec = _as_matvec(matvec)
    if n_probes < 1:
        raise ValueError(f"n_probes must be positive, got {n_probes}")
    dtype = dtype or torch.get_default_dtype()
    gen = torch.Generator().manual_seed(int(seed))
    probes = (2.0 * torch.randint(0, 2, (n_probes, dim), generator=gen) - 1.0).to(device=device, dtype=dtype)
    batch = probe_batch or n_probes
    results = [lanczos(matvec, dim, steps, probes[i:i + batch], seed=seed + i)
               for i in range(0, n_probes, batch)]
    nodes = torch.cat([r.ritz_values for r in results]).cpu()
    weights = torch.cat([r.weights for r in results]).cpu()
    return _density(nodes, weights, dim, grid_size, _sigma2(nodes, sigma, None, sigma2_factor))


def spectral_density(f: Loss, theta: Tensor, n_probes: int = 10, steps: int = 100, *, grid_size: int = 10_000,
                     sigma2_factor: float = 5e-5, sigma: float | None = None, seed: int = 0, mode: str = "auto",
                     probe_batch: int | None = None) -> SpectralDensity:
    """Hessian spectral density of ``f`` at ``theta`` by :func:`slq`: ``n_probes * steps`` HVPs on one graph."""
    op = HVPOperator(f, theta, mode)
    return slq(op, op.dim, n_probes, steps, grid_size=grid_size, sigma2_factor=sigma2_factor, sigma=sigma,
               seed=seed, probe_batch=probe_batch)


# --- L-BFGS preconditioning (Rathore et al., Algorithms 2-3) ----------------------------------------------
@dataclass(frozen=True, eq=False)
class LBFGSPairs:
    r"""L-BFGS curvature pairs, oldest first: steps ``s`` (m, P), gradient changes ``y`` (m, P), and the initial
    scaling ``gamma`` :math:`= s^\top y / y^\top y` of the newest pair (torch's ``H_diag``).
    """

    s: Tensor
    y: Tensor
    gamma: float

    @property
    def rho(self) -> Tensor:
        r""":math:`\rho_i = 1/(s_i^\top y_i)`."""
        return 1.0 / (self.s * self.y).sum(1)


#: torch majors whose private ``torch.optim.LBFGS`` state (``old_stps``, ``old_dirs``, ``H_diag``) was checked
#: (tests/test_curvature.py reproduces torch's own search direction from it)
LBFGS_STATE_TORCH_MAJOR = (1, 2)


def _torch_lbfgs_state(state: Mapping[str, Any]) -> LBFGSPairs:
    """The one place that reads torch's private L-BFGS state, guarded by the torch version and the keys."""
    keys = ("old_stps", "old_dirs", "H_diag")
    major = int(torch.__version__.split(".")[0])
    if not all(k in state for k in keys):
        if not state or "d" not in state:
            raise ValueError("no L-BFGS history found: pass a TrainResult/torch.optim.LBFGS that has taken a step")
        raise RuntimeError(f"torch {torch.__version__}'s LBFGS state has keys {sorted(state)}, not {list(keys)}, "
                           "which pinnkit.curvature reads (checked on torch "
                           f"{'/'.join(f'{v}.x' for v in LBFGS_STATE_TORCH_MAJOR)}); install a checked torch or "
                           "update pinnkit.curvature._torch_lbfgs_state")
    if major not in LBFGS_STATE_TORCH_MAJOR:
        warnings.warn(f"pinnkit reads torch.optim.LBFGS's private state, checked on torch "
                      f"{LBFGS_STATE_TORCH_MAJOR}.x only, but this is torch {torch.__version__}; run "
                      "tests/test_curvature.py to confirm the pairs are still right", RuntimeWarning, stacklevel=3)
    s, y = list(state["old_stps"]), list(state["old_dirs"])
    if len(s) == 0:
        raise ValueError("the L-BFGS history is empty (one step or fewer was taken); train longer")
    return LBFGSPairs(torch.stack(s), torch.stack(y), float(state["H_diag"]))


def lbfgs_pairs(source: Any) -> LBFGSPairs:
    """The stored pairs of a :class:`~pinnkit.training.TrainResult` whose last phase is ``lbfgs``, of a
    :class:`torch.optim.LBFGS`, or of its per-parameter state dict (``old_stps``, ``old_dirs``, ``H_diag``).

    Raises:
        ValueError: no L-BFGS phase, several parameter tensors, or an empty history.
        RuntimeError: this torch stores its L-BFGS state differently (see :data:`LBFGS_STATE_TORCH_MAJOR`).
    """
    if isinstance(source, LBFGSPairs):
        return source
    state = source
    if hasattr(source, "stepper"):           # TrainResult
        stepper = source.stepper
        if stepper is None or not isinstance(getattr(stepper, "opt", None), torch.optim.LBFGS):
            raise ValueError(f"this TrainResult ({getattr(source, 'method', '?')}) did not end with an L-BFGS phase; "
                             "train with method='lbfgs' or 'adam+lbfgs'")
        source = stepper.opt
    if isinstance(source, torch.optim.LBFGS):
        params = source.param_groups[0]["params"]
        if len(params) != 1:
            raise ValueError("expected an L-BFGS over one flat parameter vector (as pinnkit.train builds)")
        state = source.state[params[0]]
    if not isinstance(state, Mapping):
        raise ValueError(f"cannot read L-BFGS pairs from a {type(source).__name__}; pass a TrainResult, a "
                         "torch.optim.LBFGS or LBFGSPairs")
    return _torch_lbfgs_state(state)


def lbfgs_two_loop(pairs: LBFGSPairs, v: Tensor) -> Tensor:
    r""":math:`H_k v`, the L-BFGS inverse-Hessian approximation applied to ``v`` by the two-loop recursion."""
    s, y, rho = pairs.s.to(v.dtype), pairs.y.to(v.dtype), pairs.rho.to(v.dtype)
    q, a = v.clone(), [torch.zeros((), dtype=v.dtype, device=v.device)] * len(s)
    for i in reversed(range(len(s))):
        a[i] = rho[i] * (s[i] @ q)
        q = q - a[i] * y[i]
    r = pairs.gamma * q
    for i in range(len(s)):
        r = r + s[i] * (a[i] - rho[i] * (y[i] @ r))
    return r


class LBFGSFactor:
    r"""The factor :math:`\tilde H` (``P x (P+m)``) of the L-BFGS inverse Hessian :math:`H_k = \tilde H\tilde H^\top`.

    With :math:`V_i = I - \rho_i y_i s_i^\top`, :math:`H_k = \gamma AA^\top + \sum_i c_i c_i^\top`,
    :math:`A = V_{m-1}^\top\cdots V_0^\top`, :math:`c_i = \sqrt{\rho_i}\,V_{m-1}^\top\cdots V_{i+1}^\top s_i`, so
    :math:`\tilde H = [\sqrt\gamma A,\ C]`. ``apply`` is :math:`\tilde H x`, ``apply_t`` :math:`\tilde H^\top z`, on
    a vector or a block of rows; :meth:`matrix` is :math:`\tilde H`.
    """

    def __init__(self, pairs: LBFGSPairs):
        self.s, self.y, self.rho, self.gamma = pairs.s, pairs.y, pairs.rho, pairs.gamma
        if bool((self.rho <= 0).any()):
            raise ValueError("every L-BFGS pair needs s·y > 0 (torch skips the others; these pairs are not from it)")
        m, P = self.s.shape
        self.m, self.P = m, P
        C = torch.zeros(m, P, dtype=self.s.dtype, device=self.s.device)   # rows c_i
        for j in range(m):
            if j:
                C[:j] = C[:j] - self.rho[j] * (C[:j] @ self.y[j])[:, None] * self.s[j]
            C[j] = self.rho[j].sqrt() * self.s[j]
        self.C = C

    def apply(self, X: Tensor) -> Tensor:
        r""":math:`\tilde H x` for ``(P+m,)`` or rows ``(k, P+m)``."""
        x1, x2 = X[..., :self.P], X[..., self.P:]
        for i in range(self.m):            # A x = V_{m-1}^T ... V_0^T x: V_0^T first
            x1 = x1 - self.rho[i] * (x1 @ self.y[i])[..., None] * self.s[i]
        return math.sqrt(self.gamma) * x1 + x2 @ self.C

    def apply_t(self, Z: Tensor) -> Tensor:
        r""":math:`\tilde H^\top z` for ``(P,)`` or rows ``(k, P)``."""
        z = Z
        for i in reversed(range(self.m)):  # A^T z = V_0 ... V_{m-1} z: V_{m-1} first
            z = z - self.rho[i] * (z @ self.s[i])[..., None] * self.y[i]
        return torch.cat([math.sqrt(self.gamma) * z, Z @ self.C.T], dim=-1)

    def matrix(self) -> Tensor:
        r"""The dense :math:`\tilde H`, ``(P, P + m)``."""
        return self.apply(torch.eye(self.P + self.m, dtype=self.s.dtype, device=self.s.device)).T


def preconditioned_operator(f: Loss, theta: Tensor, pairs: Any, *, mode: str = "auto") -> LinearOperator:
    r""":math:`\tilde H^\top \nabla^2 f(\theta)\,\tilde H` (size ``P + m``; ``pairs`` as :func:`lbfgs_pairs` takes).

    Its nonzero eigenvalues are those of :math:`H_k \nabla^2 f`; at least ``m`` are structural zeros.
    """
    pairs = lbfgs_pairs(pairs)
    op = HVPOperator(f, theta, mode)
    if pairs.s.shape[1] != op.dim:
        raise ValueError(f"the L-BFGS pairs have {pairs.s.shape[1]} parameters, theta has {op.dim}")
    pairs = LBFGSPairs(pairs.s.to(theta.device, theta.dtype), pairs.y.to(theta.device, theta.dtype), pairs.gamma)
    fac = LBFGSFactor(pairs)
    return LinearOperator(lambda X: fac.apply_t(op(fac.apply(X))), op.dim + fac.m, theta.dtype, theta.device)


def preconditioned_spectrum(f: Loss, theta: Tensor, pairs: Any, n_probes: int = 10, steps: int = 100, *,
                            grid_size: int = 10_000, sigma2_factor: float = 5e-5, sigma: float | None = None,
                            seed: int = 0, mode: str = "auto") -> SpectralDensity:
    """:func:`slq` density of :func:`preconditioned_operator`, with its ``m`` structural zeros (a mass of at least
    ``m / (P + m)`` at 0; :func:`pinnkit.conditioning.lbfgs_preconditioned` removes them, dense).
    """
    op = preconditioned_operator(f, theta, pairs, mode=mode)
    return slq(op, op.dim, n_probes, steps, grid_size=grid_size, sigma2_factor=sigma2_factor, sigma=sigma, seed=seed)


# --- Jacobians and Gauss-Newton ----------------------------------------------------------------------------
def jacobian(r: Callable[[Tensor], Tensor], theta: Tensor, *, force: bool = False) -> Tensor:
    r"""Jacobian :math:`J = \partial r/\partial\theta` (``m x P``) of residuals ``r: theta -> (m,)`` by ``jacrev``;
    refuses above ``DENSE_LIMIT**2`` entries unless ``force=True``.
    """
    _check_theta(theta)
    th = theta.detach()
    m, P = r(th).numel(), th.numel()
    if m * P > DENSE_LIMIT ** 2 and not force:
        raise ValueError(f"a dense Jacobian of {m} residuals x {P} parameters has {m * P:,} entries "
                         f"({m * P * th.element_size() / 1e9:.2f} GB, and jacrev's intermediates need several times "
                         f"that); above DENSE_LIMIT**2 = {DENSE_LIMIT ** 2:,} entries use "
                         "pinnkit.curvature.gauss_newton_product / gauss_newton_operator (matrix-free), fewer "
                         "points, or pass force=True")
    return cast(Tensor, torch.func.jacrev(r)(th))


def gauss_newton(r: Callable[[Tensor], Tensor], theta: Tensor, *, force: bool = False) -> Tensor:
    r"""Dense Gauss–Newton matrix :math:`G = 2J^\top J` of :math:`\|r(\theta)\|^2`: the Hessian without
    :math:`2\sum_i r_i\nabla^2 r_i`, positive semi-definite (``r = pinn.residual_vector``). Refuses above
    :data:`DENSE_LIMIT` parameters unless ``force=True``.
    """
    _check_theta(theta)
    P = theta.numel()
    if P > DENSE_LIMIT and not force:
        raise ValueError(f"dense Gauss-Newton matrix of {P} parameters ({P * P * theta.element_size() / 1e9:.2f} GB) "
                         f"is above DENSE_LIMIT = {DENSE_LIMIT}; use gauss_newton_product / gauss_newton_operator "
                         "(matrix-free) or pass force=True")
    J = jacobian(r, theta, force=force)
    return 2.0 * J.T @ J


def gauss_newton_operator(r: Callable[[Tensor], Tensor], theta: Tensor) -> LinearOperator:
    r""":math:`G = 2J^\top J` as a :class:`LinearOperator` (:func:`gauss_newton_product`)."""
    _check_theta(theta)
    return LinearOperator(lambda V: gauss_newton_product(r, theta, V), theta.numel(), theta.dtype, theta.device)


def gauss_newton_product(r: Callable[[Tensor], Tensor], theta: Tensor, v: Tensor) -> Tensor:
    r""":math:`Gv = 2J^\top(Jv)` by one ``jvp`` and one ``vjp``, without ``J`` (rows of ``(k, P)`` by ``vmap``)."""
    th = theta.detach()
    _, vjp_fn = torch.func.vjp(r, th)  # type: ignore[misc]  # torch stubs

    def one(u: Tensor) -> Tensor:
        Ju = torch.func.jvp(r, (th,), (u,))[1]
        return cast(Tensor, 2.0 * vjp_fn(Ju)[0])
    if v.ndim == 1:
        return one(v)
    if v.ndim == 2:
        return torch.func.vmap(one)(v)
    raise ValueError(f"v must be ({th.numel()},) or (k, {th.numel()}), got {tuple(v.shape)}")
