r"""Curvature of a loss ``f: theta -> scalar``: Hessian-vector products, dense Hessians, Lanczos, spectral densities.

Every function takes a loss ``f`` of one flat parameter vector ``theta`` (``PINN.loss``), or a per-term function
``theta -> dict[str, Tensor]`` (``PINN.terms``, summed), and never modifies ``theta``.

* :func:`hvp`, :func:`hvp_batch`, :func:`hvp_operator` — :math:`\nabla^2 f(\theta)\,v` for one vector or a block.
* :func:`hessian`, :func:`hessian_eigh` — the dense Hessian (small ``P`` only, see :data:`DENSE_LIMIT`).
* :func:`lanczos`, :func:`top_eigenpairs`, :func:`bottom_eigenpairs` — extreme eigenpairs from HVPs only.
* :func:`spectral_density`, :func:`term_densities`, :func:`slq` — stochastic Lanczos quadrature (Rathore et al.).
* :func:`preconditioned_spectrum`, :func:`lbfgs_pairs` — the spectrum of the L-BFGS-preconditioned Hessian.
* :func:`condition_number`, :func:`gauss_newton`, :func:`gauss_newton_product`.

**HVP modes.** ``"forward"`` is forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``, ``vmap`` for
blocks); ``"reverse"`` is reverse-over-reverse: the gradient is built once with ``create_graph=True`` on a *local
leaf copy* of ``theta`` and every product is one more backward pass through that retained graph. Measured on a
2-core CPU (convection PINN, 2751 parameters, float32): a first HVP costs 1.8 gradients in reverse mode and 2.7 in
forward mode; each further product at the same ``theta`` costs 0.6-1.0 gradient in reverse mode against 0.8-1.9
in forward mode. Blocks of vectors go through ``is_grads_batched`` (vmap over the backward pass), 0.2-0.6 gradient
per vector against 0.5-0.9 for a Python loop of backward passes (timings on a shared machine are noisy).
``"auto"`` picks :data:`DEFAULT_MODE` for the device (``benchmarks/curvature.py`` re-measures).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

Loss = Callable[[Tensor], Any]          # theta -> scalar Tensor, or -> dict[str, Tensor] (summed)
Matvec = Callable[[Tensor], Tensor]     # (P,) -> (P,) and (k, P) -> (k, P)

#: largest parameter count for which :func:`hessian` forms the dense matrix without ``force=True``
DENSE_LIMIT = 5000
#: HVP mode chosen by ``mode="auto"`` per device type (CPU: measured; CUDA: run ``benchmarks/curvature.py``)
DEFAULT_MODE: dict[str, str] = {"cpu": "reverse", "cuda": "reverse"}
MODES = ("auto", "forward", "reverse")

__all__ = [
    "DENSE_LIMIT", "DEFAULT_MODE", "HVPOperator", "hvp", "hvp_batch", "hvp_operator", "hessian", "hessian_eigh",
    "Eigen", "LanczosResult", "lanczos", "top_eigenpairs", "bottom_eigenpairs", "SpectralDensity", "slq",
    "spectral_density", "term_densities", "LBFGSPairs", "lbfgs_pairs", "lbfgs_two_loop", "LBFGSFactor",
    "preconditioned_spectrum", "condition_number", "jacobian", "gauss_newton", "gauss_newton_product",
    "plot_spectra", "plot_lanczos_convergence",
]


# --- Hessian-vector products -------------------------------------------------------------------------------
def _scalar(f: Loss) -> Callable[[Tensor], Tensor]:
    """``f`` as a scalar loss: a dict of terms is summed."""
    def total(theta: Tensor) -> Tensor:
        out = f(theta)
        if isinstance(out, Mapping):
            out = sum(out.values())
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ValueError("the loss must return a scalar Tensor or a dict of scalar Tensors, got "
                             f"{type(out).__name__}{'' if not isinstance(out, Tensor) else tuple(out.shape)}")
        return out.reshape(())
    return total


def _check_theta(theta: Tensor) -> None:
    if not isinstance(theta, Tensor) or theta.ndim != 1:
        raise ValueError("theta must be a flat 1-D tensor (e.g. pinn.theta0); got "
                         f"{type(theta).__name__}{tuple(theta.shape) if isinstance(theta, Tensor) else ''}")
    if not theta.is_floating_point():
        raise ValueError(f"theta must be floating point, got {theta.dtype}")


def _resolve_mode(mode: str, device: torch.device) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown HVP mode {mode!r}; valid: {', '.join(MODES)}")
    return DEFAULT_MODE.get(device.type, "reverse") if mode == "auto" else mode


class HVPOperator:
    r"""The Hessian :math:`H = \nabla^2 f(\theta)` at a fixed ``theta`` as a linear operator (no matrix formed).

    ``op(v)`` for ``v`` of shape ``(P,)`` or a block ``(k, P)`` returns :math:`Hv` row by row. In ``"reverse"`` mode
    the gradient graph is built once here and reused by every product (that is what makes Lanczos cheap);
    ``op.grad`` is the gradient at ``theta`` and ``op.calls`` counts the vectors multiplied so far.
    """

    #: rows per ``is_grads_batched`` call (larger blocks are split)
    BATCH = 16

    def __init__(self, f: Loss, theta: Tensor, mode: str = "auto"):
        _check_theta(theta)
        self.f = _scalar(f)
        self.dim = theta.numel()
        self.dtype, self.device = theta.dtype, theta.device
        self.mode = _resolve_mode(mode, theta.device)
        self.calls = 0
        #: how reverse mode multiplies a block: ``"batched"`` (``is_grads_batched``, :attr:`BATCH` rows per call;
        #: the default, measured faster) or ``"loop"`` (one backward per row; falls back to it if an op has no
        #: batching rule)
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
        return self._gradf(self._theta).detach()

    def _one(self, v: Tensor) -> Tensor:
        if self.mode == "forward":
            return torch.func.jvp(self._gradf, (self._theta,), (v,))[1]
        if not self._g.requires_grad:       # gradient independent of theta: f is linear, H = 0
            return torch.zeros_like(v)
        with torch.enable_grad():
            return torch.autograd.grad(self._g, self._x, v, retain_graph=True)[0]

    def __call__(self, V: Tensor) -> Tensor:
        if V.shape[-1] != self.dim or V.ndim not in (1, 2):
            raise ValueError(f"expected a vector of shape ({self.dim},) or a block (k, {self.dim}), got "
                             f"{tuple(V.shape)}")
        V = V.to(self.dtype)
        if V.ndim == 1:
            self.calls += 1
            return self._one(V).detach()
        self.calls += V.shape[0]
        if self.mode == "forward":
            return torch.func.vmap(lambda v: torch.func.jvp(self._gradf, (self._theta,), (v,))[1])(V).detach()
        if not self._g.requires_grad:
            return torch.zeros_like(V)
        return self._block_product(V)

    def _block_product(self, V: Tensor) -> Tensor:
        if self.block == "batched":
            try:
                return self._batched(V)
            except RuntimeError:                          # an op without a batching rule: loop from now on
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
@dataclass(frozen=True, eq=False)
class Eigen:
    """Eigenpairs: ``values`` (k,) and ``vectors`` (P, k) — **columns**, ``vectors[:, i]`` belongs to
    ``values[i]`` as in :func:`torch.linalg.eigh`. ``residuals[i] = ||H v_i - values[i] v_i||`` when known
    (Lanczos: a convergence certificate; dense ``eigh``: ``None``)."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor | None = None


def hessian(f: Loss, theta: Tensor, *, chunk: int = 256, force: bool = False, mode: str = "auto") -> Tensor:
    r"""Dense Hessian :math:`\nabla^2 f(\theta)` (``P x P``, symmetrised :math:`(H + H^\top)/2`) by batched HVPs.

    Refuses above :data:`DENSE_LIMIT` parameters unless ``force=True``: use Lanczos / SLQ instead.

    >>> A = torch.tensor([[2., 1.], [1., 3.]], dtype=torch.float64)
    >>> hessian(lambda th: 0.5 * th @ A @ th, torch.zeros(2, dtype=torch.float64))
    tensor([[2., 1.],
            [1., 3.]], dtype=torch.float64)
    """
    _check_theta(theta)
    P = theta.numel()
    if P > DENSE_LIMIT and not force:
        raise ValueError(f"dense Hessian of {P} parameters needs {P * P * theta.element_size() / 1e9:.2f} GB and "
                         f"{P} HVPs; above the limit of {DENSE_LIMIT} use pinnkit.curvature.top_eigenpairs / "
                         f"spectral_density (Lanczos), or pass force=True")
    op = HVPOperator(f, theta, mode)
    eye = torch.eye(P, dtype=theta.dtype, device=theta.device)
    H = torch.cat([op(eye[i:i + chunk]) for i in range(0, P, chunk)])
    return 0.5 * (H + H.T)


def hessian_eigh(f: Loss, theta: Tensor, *, force: bool = False, mode: str = "auto") -> Eigen:
    """All eigenpairs of the dense Hessian, ascending, by ``eigh`` in float64 (the Hessian itself is formed in
    ``theta``'s dtype, then promoted)."""
    H = hessian(f, theta, force=force, mode=mode).to(torch.float64)
    values, vectors = torch.linalg.eigh(H)
    return Eigen(values, vectors)


# --- Lanczos -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LanczosResult:
    r"""The Lanczos tridiagonal :math:`T = Q^\top A Q` (``alpha`` diagonal, ``beta`` off-diagonal) and its
    eigen-decomposition :math:`T = S\,\mathrm{diag}(\theta)\,S^\top`.

    Shapes are ``(m,)`` / ``(m-1,)`` for one start vector, ``(b, m)`` / ``(b, m-1)`` for a block of ``b``.
    ``ritz_values`` ascending (float64); ``weights`` the squared first components :math:`S_{0i}^2` (the Gauss
    quadrature weights of SLQ, summing to 1); ``ritz_vectors`` :math:`QS` as columns ``(..., dim, m)`` if asked.
    ``beta == 0`` marks a restart after an invariant subspace was found (exact breakdown).
    """

    alpha: Tensor
    beta: Tensor
    ritz_values: Tensor
    weights: Tensor
    ritz_vectors: Tensor | None = None

    def tridiagonal(self) -> Tensor:
        """The matrix ``T`` (float64), ``(m, m)`` or ``(b, m, m)``."""
        return _tridiag(self.alpha, self.beta)


def _tridiag(alpha: Tensor, beta: Tensor) -> Tensor:
    T = torch.diag_embed(alpha.to(torch.float64))
    if beta.shape[-1]:
        T = T + torch.diag_embed(beta.to(torch.float64), 1) + torch.diag_embed(beta.to(torch.float64), -1)
    return T


def _as_matvec(matvec: Matvec | Tensor) -> Matvec:
    if isinstance(matvec, Tensor):
        A = matvec
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"a matrix operator must be square, got {tuple(A.shape)}")
        return lambda V: V @ A.T.to(V.dtype)
    return matvec


def _orthogonalize(w: Tensor, Q: Tensor) -> Tensor:
    """Remove from the rows of ``w`` (b, n) their components along the rows of each ``Q[i]`` (b, j, n): classical
    Gram–Schmidt, repeated when a row lost more than 1/sqrt(2) of its norm ("twice is enough", Kahan–Parlett)."""
    before = torch.linalg.vector_norm(w, dim=1)
    w = w - torch.bmm(torch.bmm(Q, w[:, :, None]).transpose(1, 2), Q)[:, 0]
    if bool((torch.linalg.vector_norm(w, dim=1) < 0.7071 * before).any()):
        w = w - torch.bmm(torch.bmm(Q, w[:, :, None]).transpose(1, 2), Q)[:, 0]
    return w


def lanczos(matvec: Matvec | Tensor, dim: int, steps: int, v0: Tensor | None = None, *,
            dtype: torch.dtype | None = None, device: str | torch.device | None = None, vectors: bool = False,
            seed: int = 0) -> LanczosResult:
    r"""Lanczos with full reorthogonalization on a symmetric operator ``matvec`` of size ``dim``.

    Builds an orthonormal Krylov basis :math:`Q = [q_1..q_m]`, :math:`q_1 = v_0/\|v_0\|`, with
    :math:`A q_j = \beta_{j-1} q_{j-1} + \alpha_j q_j + \beta_j q_{j+1}`; each new vector is re-orthogonalised
    against all previous ones (twice when needed), so the Ritz values are accurate without spurious copies.
    ``m = min(steps, dim)``. On exact breakdown (an invariant subspace, :math:`\beta_j \approx 0`) Lanczos restarts
    with a random vector orthogonal to ``Q`` and records ``beta_j = 0``.

    Args:
        matvec: ``v -> A v``; also called on blocks ``(b, dim) -> (b, dim)`` when ``v0`` is a block. A square
            Tensor is accepted as the matrix itself.
        v0: start vector ``(dim,)``, or a block ``(b, dim)`` of ``b`` independent start vectors run together
            (one block product per step). Default: a Gaussian vector from ``seed``, in ``dtype``/``device`` (default:
            the operator's when it is a Tensor or an :class:`HVPOperator`, else torch's default dtype on the CPU).
        vectors: also return the Ritz vectors (columns).

    >>> A = torch.diag(torch.arange(1., 11., dtype=torch.float64))
    >>> r = lanczos(A, 10, 10)
    >>> [round(float(x), 6) for x in r.ritz_values[[0, -1]]]
    [1.0, 10.0]
    """
    if isinstance(matvec, (Tensor, HVPOperator)):          # the operator knows its dtype and device
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
    ritz_vectors = None
    if vectors:
        ritz_vectors = torch.einsum("bjn,bji->bni", Q, S.to(device=Q.device, dtype=Q.dtype))
    dev = q.device
    out = dict(alpha=alpha.to(dev), beta=beta.to(dev), ritz_values=theta_.to(dev), weights=weights.to(dev),
               ritz_vectors=ritz_vectors)
    if single:
        out = {k: (v[0] if v is not None else None) for k, v in out.items()}
    return LanczosResult(**out)


def _extreme(f: Loss, theta: Tensor, k: int, steps: int | None, largest: bool, mode: str, seed: int) -> Eigen:
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
    values = r.ritz_values[idx.to(r.ritz_values.device)]
    vecs = r.ritz_vectors[:, idx.to(r.ritz_vectors.device)]
    res = torch.linalg.vector_norm(op(vecs.T) - values.to(vecs.dtype)[:, None] * vecs.T, dim=1)
    return Eigen(values, vecs, res)


def top_eigenpairs(f: Loss, theta: Tensor, k: int = 1, steps: int | None = None, *, mode: str = "auto",
                   seed: int = 0) -> Eigen:
    r"""The ``k`` largest (algebraic) Hessian eigenpairs by Lanczos, **descending**: ``values[0]`` is
    :math:`\lambda_{\max}`; ``vectors[:, i]`` unit columns; ``residuals[i] = \|Hv_i - \lambda_i v_i\|``.

    ``steps`` Lanczos steps (default ``min(P, max(4k, 80))``), i.e. about that many HVPs."""
    return _extreme(f, theta, k, steps, True, mode, seed)


def bottom_eigenpairs(f: Loss, theta: Tensor, k: int = 1, steps: int | None = None, *, mode: str = "auto",
                      seed: int = 0) -> Eigen:
    r"""The ``k`` smallest (most negative) Hessian eigenpairs by Lanczos, **ascending**: ``values[0]`` is
    :math:`\lambda_{\min}`. The small end of a PINN spectrum is clustered, so check ``residuals`` (raise ``steps``)."""
    return _extreme(f, theta, k, steps, False, mode, seed)


# --- stochastic Lanczos quadrature -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SpectralDensity:
    r"""A smoothed spectral density :math:`\phi(t) = \frac1{n}\sum_{p}\sum_i w_{pi}\,\mathcal N(t;\theta_{pi},\sigma^2)`
    from stochastic Lanczos quadrature (SLQ).

    ``nodes``/``weights``: Ritz values / Gauss weights per probe, ``(n_probes, m)``; ``grid``/``density`` the
    smoothed density (float64, CPU; :math:`\int\phi = 1`); ``lmin``/``lmax`` the extreme nodes;
    ``sigma2 = sigma2_factor * max(1, lmax - lmin)``; ``dim`` the operator size.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    lmin: float
    lmax: float
    sigma2: float
    dim: int

    @classmethod
    def from_eigenvalues(cls, eigenvalues: Tensor, *, sigma2: float | None = None, sigma2_factor: float = 5e-5,
                         grid_size: int = 10_000) -> "SpectralDensity":
        """The exact density of known eigenvalues (each weight ``1/n``), smoothed the same way: what SLQ estimates.
        Pass ``sigma2=sd.sigma2`` to compare with an SLQ result ``sd`` at equal smoothing."""
        ev = torch.as_tensor(eigenvalues).detach().reshape(1, -1).double().cpu()
        lmin, lmax = float(ev.min()), float(ev.max())
        sigma2 = float(sigma2_factor * max(1.0, lmax - lmin)) if sigma2 is None else float(sigma2)
        w = torch.full_like(ev, 1.0 / ev.numel())
        grid = _density_grid(ev, math.sqrt(sigma2), grid_size)
        return cls(grid, _smooth(grid, ev, w, sigma2), ev, w, lmin, lmax, sigma2, ev.numel())

    def moment(self, k: int) -> tuple[float, float]:
        r"""SLQ estimate of :math:`\mathrm{tr}(H^k)/\dim` and its standard error (std over probes / sqrt(n)).

        Exact per probe for ``k < 2m`` (Gauss quadrature), so the only error is Hutchinson's sampling error."""
        per = (self.weights * self.nodes ** k).sum(1)
        n = per.numel()
        se = float(per.std() / math.sqrt(n)) if n > 1 else math.nan
        return float(per.mean()), se

    def mass(self, lo: float, hi: float) -> float:
        """Fraction of the spectrum in ``[lo, hi]``: the quadrature weight of the nodes there (probe mean)."""
        inside = (self.nodes >= lo) & (self.nodes <= hi)
        return float((self.weights * inside).sum(1).mean())

    def integral(self) -> float:
        """Trapezoid integral of ``density`` over ``grid`` (1 up to grid resolution)."""
        return float(torch.trapezoid(self.density, self.grid))

    def plot(self, ax: Any = None, label: str | None = None, floor: float = 1e-10, **kwargs: Any) -> Any:
        """Plot as Rathore et al.: symlog eigenvalue axis (linear within ±1), log density (values below ``floor``
        times the peak are left blank). Returns the matplotlib axes."""
        import matplotlib.pyplot as plt
        ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
        d = torch.where(self.density >= floor * float(self.density.max()), self.density, torch.nan)
        ax.plot(self.grid.numpy(), d.numpy(), label=label, **kwargs)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue λ (symlog scale)")
        ax.set_ylabel("density (log scale)")
        if label is not None:
            ax.legend()
        return ax


def _density_grid(nodes: Tensor, sigma: float, grid_size: int, pad: float = 6.0) -> Tensor:
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
        sigma2_factor: float = 5e-5, seed: int = 0, dtype: torch.dtype | None = None,
        device: str | torch.device | None = None, probe_batch: int | None = None) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature on any symmetric operator (Rathore et al.; Ghorbani et al.'s PyHessian).

    ``n_probes`` Rademacher vectors :math:`v_p` run ``steps`` Lanczos steps **together** (one block product per
    step, ``probe_batch`` probes at a time; default all). Each probe gives Gauss nodes :math:`\theta_{pi}` (Ritz
    values) and weights :math:`w_{pi}` (squared first eigenvector components of its tridiagonal), the quadrature
    :math:`v^\top g(A) v/\|v\|^2 \approx \sum_i w_{pi} g(\theta_{pi})`. The density is smoothed by Gaussians of
    variance :math:`\sigma^2 = ` ``sigma2_factor`` :math:`\cdot\max(1, \lambda_{\max} - \lambda_{\min})` and
    evaluated on ``grid_size`` even points plus points every :math:`\sigma/2` around each node (so it integrates
    to 1 whatever the spread).
    """
    if isinstance(matvec, (Tensor, HVPOperator)):
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
    lmin, lmax = float(nodes.min()), float(nodes.max())
    sigma2 = float(sigma2_factor * max(1.0, lmax - lmin))
    grid = _density_grid(nodes, math.sqrt(sigma2), grid_size)
    return SpectralDensity(grid, _smooth(grid, nodes, weights, sigma2), nodes, weights, lmin, lmax, sigma2, dim)


def spectral_density(f: Loss, theta: Tensor, n_probes: int = 10, steps: int = 100, *, grid_size: int = 10_000,
                     sigma2_factor: float = 5e-5, seed: int = 0, mode: str = "auto",
                     probe_batch: int | None = None) -> SpectralDensity:
    """Hessian spectral density of ``f`` (a loss, or a terms function: summed) at ``theta`` by :func:`slq`:
    ``n_probes * steps`` HVPs through one shared gradient graph."""
    op = HVPOperator(f, theta, mode)
    return slq(op, op.dim, n_probes, steps, grid_size=grid_size, sigma2_factor=sigma2_factor, seed=seed,
               probe_batch=probe_batch)


def term_densities(terms_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, include_total: bool = False,
                   **kwargs: Any) -> dict[str, SpectralDensity]:
    """One :func:`spectral_density` per loss term (same probes for all), plus ``"total"`` if asked."""
    names = list(terms_fn(theta.detach()).keys())
    out = {name: spectral_density(lambda th, n=name: terms_fn(th)[n], theta, **kwargs) for name in names}
    if include_total:
        out["total"] = spectral_density(terms_fn, theta, **kwargs)
    return out


# --- L-BFGS preconditioning (Rathore et al., Algorithms 2-3) ----------------------------------------------
@dataclass(frozen=True, eq=False)
class LBFGSPairs:
    r"""The curvature pairs of L-BFGS, oldest first: ``s`` (m, P) steps, ``y`` (m, P) gradient changes, and
    ``gamma`` (torch's ``H_diag`` :math:`= s^\top y / y^\top y` of the newest pair), the initial scaling."""

    s: Tensor
    y: Tensor
    gamma: float

    @property
    def rho(self) -> Tensor:
        return 1.0 / (self.s * self.y).sum(1)


def lbfgs_pairs(source: Any) -> LBFGSPairs:
    """Extract the stored pairs from a :class:`~pinnkit.train.TrainResult` whose last phase is ``lbfgs``, a
    :class:`torch.optim.LBFGS`, or its per-parameter state dict (keys ``old_stps``, ``old_dirs``, ``H_diag``)."""
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
    if not isinstance(state, Mapping) or "old_stps" not in state:
        raise ValueError("no L-BFGS history found: pass a TrainResult/torch.optim.LBFGS that has taken a step")
    if len(state["old_stps"]) == 0:
        raise ValueError("the L-BFGS history is empty (one step or fewer was taken); train longer")
    return LBFGSPairs(torch.stack(list(state["old_stps"])), torch.stack(list(state["old_dirs"])),
                      float(state["H_diag"]))


def lbfgs_two_loop(pairs: LBFGSPairs, v: Tensor) -> Tensor:
    r"""The L-BFGS inverse-Hessian approximation applied to ``v``, :math:`H_k v`, by the two-loop recursion."""
    s, y, rho = pairs.s.to(v.dtype), pairs.y.to(v.dtype), pairs.rho.to(v.dtype)
    q, a = v.clone(), [None] * len(s)
    for i in reversed(range(len(s))):
        a[i] = rho[i] * (s[i] @ q)
        q = q - a[i] * y[i]
    r = pairs.gamma * q
    for i in range(len(s)):
        r = r + s[i] * (a[i] - rho[i] * (y[i] @ r))
    return r


class LBFGSFactor:
    r"""The factor :math:`\tilde H` of the L-BFGS inverse-Hessian approximation :math:`H_k = \tilde H \tilde H^\top`.

    With :math:`V_i = I - \rho_i y_i s_i^\top`, :math:`H_k = \gamma A A^\top + \sum_i c_i c_i^\top` where
    :math:`A = V_{m-1}^\top\cdots V_0^\top` and :math:`c_i = \sqrt{\rho_i}\,V_{m-1}^\top\cdots V_{i+1}^\top s_i`, so
    :math:`\tilde H = [\sqrt\gamma A,\; C]` is ``P x (P + m)``. ``apply`` is :math:`\tilde H x`, ``apply_t`` is
    :math:`\tilde H^\top z`; both take rows (``(P+m,)``/``(b, P+m)`` and ``(P,)``/``(b, P)``).
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
        x1, x2 = X[..., :self.P], X[..., self.P:]
        for i in range(self.m):            # A x = V_{m-1}^T ... V_0^T x: V_0^T first
            x1 = x1 - self.rho[i] * (x1 @ self.y[i])[..., None] * self.s[i]
        return math.sqrt(self.gamma) * x1 + x2 @ self.C

    def apply_t(self, Z: Tensor) -> Tensor:
        z = Z
        for i in reversed(range(self.m)):  # A^T z = V_0 ... V_{m-1} z: V_{m-1} first
            z = z - self.rho[i] * (z @ self.s[i])[..., None] * self.y[i]
        return torch.cat([math.sqrt(self.gamma) * z, Z @ self.C.T], dim=-1)


def preconditioned_spectrum(f: Loss, theta: Tensor, pairs: Any, n_probes: int = 10, steps: int = 100, *,
                            grid_size: int = 10_000, sigma2_factor: float = 5e-5, seed: int = 0,
                            mode: str = "auto") -> SpectralDensity:
    r"""Spectral density of the L-BFGS-preconditioned Hessian :math:`\tilde H^\top \nabla^2 f(\theta)\,\tilde H`
    (Rathore et al., Algorithms 2-3), size ``P + m``; its nonzero eigenvalues are those of :math:`H_k \nabla^2 f`.

    ``pairs``: :class:`LBFGSPairs`, or anything :func:`lbfgs_pairs` accepts (a ``TrainResult`` of
    ``"adam+lbfgs"``, a ``torch.optim.LBFGS``)."""
    pairs = pairs if isinstance(pairs, LBFGSPairs) else lbfgs_pairs(pairs)
    op = HVPOperator(f, theta, mode)
    if pairs.s.shape[1] != op.dim:
        raise ValueError(f"the L-BFGS pairs have {pairs.s.shape[1]} parameters, theta has {op.dim}")
    pairs = LBFGSPairs(pairs.s.to(theta.device, theta.dtype), pairs.y.to(theta.device, theta.dtype), pairs.gamma)
    fac = LBFGSFactor(pairs)
    return slq(lambda X: fac.apply_t(op(fac.apply(X))), op.dim + fac.m, n_probes, steps, grid_size=grid_size,
               sigma2_factor=sigma2_factor, seed=seed, dtype=theta.dtype, device=theta.device)


# --- condition numbers -------------------------------------------------------------------------------------
def condition_number(eigenvalues: Tensor | Sequence[float] | Eigen, cutoff: float | None = None) -> float:
    r""":math:`\kappa = \lambda_{\max} / \lambda_{\min}^{+}`, the smallest eigenvalue **above** ``cutoff``.

    Default cutoff: :math:`n\,\varepsilon\,|\lambda|_{\max}` (``n`` eigenvalues, :math:`\varepsilon` the dtype's
    machine epsilon: the numerical-rank threshold of ``torch.linalg.matrix_rank``); eigenvalues at or below it
    (zero, tiny, negative) are ignored. Pass an explicit ``cutoff`` to compare runs fairly.

    >>> condition_number(torch.tensor([-1.0, 1e-17, 0.5, 4.0], dtype=torch.float64))
    8.0
    """
    ev = eigenvalues.values if isinstance(eigenvalues, Eigen) else eigenvalues
    ev = torch.as_tensor(ev).reshape(-1)
    if not ev.is_floating_point():
        ev = ev.double()
    if ev.numel() == 0:
        raise ValueError("no eigenvalues given")
    top = float(ev.max())
    if cutoff is None:
        cutoff = ev.numel() * torch.finfo(ev.dtype).eps * float(ev.abs().max())
    pos = ev[ev > cutoff]
    if top <= 0 or pos.numel() == 0:
        raise ValueError(f"no eigenvalue above the cutoff {cutoff:.3g} (largest {top:.3g}); the matrix is not "
                         "positive anywhere — lower the cutoff or look at the negative part")
    return top / float(pos.min())


# --- Jacobians and Gauss-Newton ----------------------------------------------------------------------------
def jacobian(r: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    r"""Jacobian :math:`J = \partial r / \partial \theta` (``m x P``) of a residual vector function."""
    return torch.func.jacrev(r)(theta.detach())


def gauss_newton(r: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    r"""Dense Gauss–Newton matrix :math:`G = 2 J^\top J` of the least-squares loss :math:`\|r(\theta)\|^2`.

    It is the Hessian :math:`2J^\top J + 2\sum_i r_i \nabla^2 r_i` without the second-order term, hence
    positive semi-definite. For a PINN pass ``pinn.residual_vector`` (``loss == ||r||^2``).
    """
    J = jacobian(r, theta)
    return 2.0 * J.T @ J


def gauss_newton_product(r: Callable[[Tensor], Tensor], theta: Tensor, v: Tensor) -> Tensor:
    r""":math:`G v = 2 J^\top (J v)` without forming ``J``: one ``jvp`` and one ``vjp`` (rows of a block
    ``(k, P)`` are done together by ``vmap``). Matches :func:`gauss_newton` ``@ v``."""
    th = theta.detach()
    _, vjp_fn = torch.func.vjp(r, th)

    def one(u: Tensor) -> Tensor:
        Ju = torch.func.jvp(r, (th,), (u,))[1]
        return 2.0 * vjp_fn(Ju)[0]
    if v.ndim == 1:
        return one(v)
    if v.ndim == 2:
        return torch.func.vmap(one)(v)
    raise ValueError(f"v must be ({th.numel()},) or (k, {th.numel()}), got {tuple(v.shape)}")


# --- plots -------------------------------------------------------------------------------------------------
def plot_spectra(densities: Mapping[str, SpectralDensity], ax: Any = None, title: str | None = None) -> Any:
    """Overlay several spectral densities (e.g. :func:`term_densities`) on one symlog/log axis."""
    import matplotlib.pyplot as plt
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    for name, sd in densities.items():
        sd.plot(ax, label=name)
    if title:
        ax.set_title(title)
    return ax


def plot_lanczos_convergence(matvec: Matvec | Tensor, dim: int, steps: int, *, eigenvalues: Tensor | None = None,
                             v0: Tensor | None = None, seed: int = 0, ax: Any = None) -> Any:
    """Ritz values of one Lanczos run after each step ``j = 1..steps`` (the eigenvalues of the leading ``j x j``
    block of ``T``): the extremes converge first. ``eigenvalues`` (exact, if known) are drawn as grey lines."""
    import matplotlib.pyplot as plt
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    r = lanczos(matvec, dim, steps, v0, seed=seed)
    T = r.tridiagonal().cpu()
    if eigenvalues is not None:
        for e in torch.as_tensor(eigenvalues).double().cpu():
            ax.axhline(float(e), color="0.85", lw=0.5, zorder=0)
    for j in range(1, T.shape[0] + 1):
        ev = torch.linalg.eigvalsh(T[:j, :j])
        ax.plot([j] * j, ev.numpy(), ".", color="C0", ms=2)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("Lanczos step j (number of HVPs)")
    ax.set_ylabel("Ritz values (symlog)")
    return ax
