r"""The tangent kernel of a PINN, and what a spectrum predicts about the speed of training.

A PINN's loss is a sum of squares, :math:`L(\theta) = \|r(\theta)\|^2` with the stacked, scaled residual vector
:math:`r \in \mathbb R^n` (``PINN.residual_vector``) and its Jacobian :math:`J = \partial r/\partial\theta`
(:math:`n \times p`). Two matrices share the same nonzero eigenvalues:

* the **tangent kernel** :math:`K = JJ^\top` (:math:`n\times n`, function space: one row per collocation point;
  the neural tangent kernel of Wang, Yu and Perdikaris), and
* the **Gram matrix** :math:`G = J^\top J` (:math:`p \times p`, parameter space; the Gauss–Newton part of the
  Hessian is :math:`2G`).

Under gradient flow :math:`\theta' = -\nabla L = -2J^\top r` the residual moves as :math:`r' = J\theta' = -2Kr`:
for a model linear in :math:`\theta` (constant :math:`K`) its component along an eigenvector :math:`v_i` of
:math:`K` decays as :math:`e^{-2\lambda_i t}`. Small kernel eigenvalues are slow components. Liu, Zhu and
Belkin's PL* condition (Rathore et al. Def. 8.3) asks :math:`\lambda_{\min}(K) > 0` (:math:`\mu =
2\lambda_{\min}(K)` for :math:`L = \|r\|^2`), which needs :math:`p \ge n`.

On a quadratic :math:`\tfrac12 e^\top H e` (the error :math:`e = \theta - \theta^*`, the loss of a linear model up
to a constant) the functions below *count* iterations of gradient descent, conjugate gradients and L-BFGS until the
energy norm :math:`\|e\|_H` (:math:`\sqrt{2(L - L^*)}` when the loss is :math:`L^* + \tfrac12 e^\top He`) falls
by ``tol``, and :func:`predicted_iterations` says what the spectrum predicts for the first two.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .conditioning import as_eigenvalues
from .curvature import jacobian
from .pinn import PINN
from .problems import Problem

__all__ = ["residual_jacobian", "tangent_kernel", "PLStar", "pl_star", "white_residual_error", "Predicted",
           "chebyshev_iterations", "predicted_iterations", "gd_iterations", "cg_iterations", "LBFGSCount",
           "lbfgs_iterations", "energy_norm", "kernel_components"]

Residuals = Callable[[Tensor], "Tensor | Mapping[str, Tensor]"]


def _stacked(residuals: Residuals) -> Callable[[Tensor], Tensor]:
    def r(theta: Tensor) -> Tensor:
        out = residuals(theta)
        return torch.cat([v.reshape(-1) for v in out.values()]) if isinstance(out, Mapping) else out.reshape(-1)
    return r


def residual_jacobian(residuals: Residuals, theta: Tensor, *, force: bool = False) -> Tensor:
    r"""The Jacobian :math:`J = \partial r/\partial\theta` (:math:`n\times p`) of a residual vector, or of a dict of
    residual vectors stacked in their order (``PINN.residuals``; pass ``PINN.residual_vector`` for the scaled
    vector whose squared norm is the loss).

    >>> J = residual_jacobian(lambda th: {"a": th[:1] * 3.0, "b": th ** 2}, torch.tensor([1.0, 2.0]))
    >>> J.tolist()
    [[3.0, 0.0], [2.0, 0.0], [0.0, 4.0]]
    """
    return jacobian(_stacked(residuals), theta, force=force)


def tangent_kernel(residuals: Residuals, theta: Tensor, *, force: bool = False) -> Tensor:
    r"""The tangent kernel :math:`K = JJ^\top` (:math:`n\times n`) of a residual vector at ``theta``:
    :math:`K_{ij} = \nabla_\theta r_i \cdot \nabla_\theta r_j`. Its nonzero eigenvalues are those of
    :math:`J^\top J`; its rank is at most :math:`\min(n, p)`.

    For a linear model :math:`r(\theta) = A\theta - b` it is :math:`AA^\top`:

    >>> A = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    >>> K = tangent_kernel(lambda th: A @ th, torch.zeros(2, dtype=torch.float64))
    >>> bool(torch.equal(K, A @ A.T)), torch.linalg.eigvalsh(K)[0].abs().item() < 1e-12   # n = 3 > p = 2
    (True, True)
    """
    J = residual_jacobian(residuals, theta, force=force)
    return J @ J.T


@dataclass(frozen=True)
class PLStar:
    r"""The PL* quantities of a residual map at one point (:func:`pl_star`).

    Attributes:
        n: residuals (rows of :math:`J`).
        p: parameters (columns).
        mu: :math:`\lambda_{\min}(K)`, the PL* constant of :math:`\tfrac12\|r\|^2` at this point (0 when
            :math:`p < n`: then :math:`K` is singular).
        lmax: :math:`\lambda_{\max}(K)`.
        kappa: ``lmax / mu`` (``inf`` when ``mu <= 0``): the condition number of Rathore et al.'s Def. 8.3 at an
            interpolating point, where the Hessian is :math:`2J^\top J` and :math:`\|H\| = 2\lambda_{\max}`,
            :math:`\mu` taken for :math:`L = \|r\|^2` is :math:`2\lambda_{\min}(K)`.
    """

    n: int
    p: int
    mu: float
    lmax: float
    kappa: float


def pl_star(residuals: Residuals, theta: Tensor, *, force: bool = False) -> PLStar:
    r""":math:`\mu = \lambda_{\min}(JJ^\top)` and :math:`\lambda_{\max}` at ``theta`` (dense eigenvalues, float64).

    >>> pl = pl_star(lambda th: torch.stack([th[0], 2 * th[1]]), torch.zeros(2, dtype=torch.float64))
    >>> pl.mu, pl.lmax, pl.kappa
    (1.0, 4.0, 4.0)
    """
    J = residual_jacobian(residuals, theta, force=force).to(torch.float64)
    ev = torch.linalg.eigvalsh(J @ J.T)
    mu, lmax = float(ev[0]), float(ev[-1])
    return PLStar(int(J.shape[0]), int(J.shape[1]), mu, lmax, lmax / mu if mu > 0 else math.inf)


def kernel_components(K: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Eigenvalues (descending), eigenvectors (columns) of the kernel ``K`` and the components :math:`v_i^\top r`
    of residual vectors ``r`` (``(n,)`` or ``(n, T)``: one column per time) along them.

    >>> lam, V, c = kernel_components(torch.diag(torch.tensor([1.0, 3.0])), torch.tensor([2.0, 5.0]))
    >>> lam.tolist(), c.abs().tolist()
    ([3.0, 1.0], [5.0, 2.0])
    """
    lam, V = torch.linalg.eigh(K)
    lam, V = lam.flip(0), V.flip(1)
    return lam, V, V.T @ r


def energy_norm(H: Tensor, e: Tensor) -> float:
    r""":math:`\|e\|_H = \sqrt{e^\top H e}` (clipped at 0 against rounding)."""
    return math.sqrt(max(float(e @ (H @ e)), 0.0))


def white_residual_error(A: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""An initial error :math:`e_0 = A^+ z`, :math:`z \sim \mathcal N(0, I_n)`: the parameter error whose initial
    residual :math:`Ae_0` is white noise projected on the range of :math:`A` — the same expected weight on every
    eigenvector of the kernel :math:`AA^\top`, the premise under which the worst-case bounds are tight.

    >>> A = torch.diag(torch.tensor([1.0, 1e-3], dtype=torch.float64))
    >>> e0 = white_residual_error(A, torch.Generator().manual_seed(0))
    >>> z = torch.randn(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> bool(torch.allclose(A @ e0, z))
    True
    """
    z = torch.randn(A.shape[0], generator=generator, dtype=torch.float64).to(A)
    return cast(Tensor, torch.linalg.lstsq(A, z[:, None], driver="gelsd" if A.device.type == "cpu" else None).solution[:, 0])


# --- what a spectrum predicts --------------------------------------------------------------------------------
def chebyshev_iterations(kappa: float, tol: float) -> int:
    r"""CG's Chebyshev bound: the least ``k`` with :math:`2\rho^k \le \mathrm{tol}`,
    :math:`\rho = (\sqrt\kappa - 1)/(\sqrt\kappa + 1)` (Nocedal & Wright Thm 5.5); 1 when :math:`\kappa = 1`.

    >>> chebyshev_iterations(9.0, 1e-3)      # rho = 1/2: 2 / 2^k <= 1e-3 at k = 11
    11
    """
    if not kappa >= 1.0 or math.isinf(kappa):
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    s = math.sqrt(kappa)
    if s - 1.0 <= 1e-12 * s:
        return 1
    return max(1, math.ceil(math.log(2.0 / tol) / math.log((s + 1.0) / (s - 1.0))))


@dataclass(frozen=True)
class Predicted:
    r"""Iterations a spectrum predicts to reduce :math:`\|e\|_H` by ``tol`` (see :func:`predicted_iterations`).

    Attributes:
        kappa: :math:`\lambda_{\max}/\lambda_{\min}` on the range (eigenvalues above ``rcut`` times the largest).
        rank: eigenvalues above the cutoff.
        tol: the reduction.
        gd: gradient descent with step :math:`1/\lambda_{\max}`: least ``k`` with :math:`(1 - 1/\kappa)^k \le
            \mathrm{tol}` (:math:`\approx \kappa\ln(1/\mathrm{tol})`).
        cg_chebyshev: :func:`chebyshev_iterations` of ``kappa`` alone.
        cg: the outlier-aware bound :math:`\min_m \big(m + \mathrm{cheb}(\lambda_{m+1}/\lambda_{\min})\big)`,
            at most ``rank`` (CG's finite termination).
        outliers: the ``m`` that attains it.
    """

    kappa: float
    rank: int
    tol: float
    gd: int
    cg_chebyshev: int
    cg: int
    outliers: int


def predicted_iterations(eigenvalues: Tensor | Sequence[float], tol: float = 1e-4, rcut: float = 1e-12
                         ) -> Predicted:
    r"""What the eigenvalues of a positive semi-definite :math:`H` predict for GD and CG on :math:`\tfrac12
    e^\top H e` (exact-arithmetic upper bounds; the null space below ``rcut`` is left out: no method moves it and
    the energy norm does not see it).

    * GD, step :math:`1/\lambda_{\max}`: each component shrinks by :math:`1 - \lambda_i/\lambda_{\max} \le 1 -
      1/\kappa` per step, so :math:`k = \lceil \ln\mathrm{tol} / \ln(1 - 1/\kappa)\rceil` suffices.
    * CG: the residual polynomial with roots at the ``m`` largest eigenvalues times the Chebyshev polynomial on
      :math:`[\lambda_{\min}, \lambda_{m+1}]` gives :math:`m + \mathrm{cheb}(\lambda_{m+1}/\lambda_{\min})`
      (the roots above the interval only shrink it); the minimum over ``m`` never exceeds the rank.

    >>> p = predicted_iterations([1.0] * 10 + [1e6], tol=1e-4)   # one outlier: a huge kappa, two iterations
    >>> p.kappa, p.cg_chebyshev, p.cg, p.outliers, p.gd
    (1000000.0, 4952, 2, 1, 9210336)
    """
    ev = as_eigenvalues(torch.as_tensor(eigenvalues, dtype=torch.float64))
    if float(ev[0]) < -rcut * float(ev.abs().max()):
        raise ValueError("the matrix has negative eigenvalues: the GD and CG bounds need a positive semi-definite H")
    top = float(ev[-1])
    pos = ev[ev > rcut * top].flip(0)                  # descending, on the range
    lmin = float(pos[-1])
    kappa = top / lmin
    gd = 1 if kappa == 1.0 else math.ceil(math.log(tol) / math.log1p(-1.0 / kappa))
    cands = [m + chebyshev_iterations(float(pos[m]) / lmin, tol) for m in range(pos.numel())]
    m = min(range(len(cands)), key=cands.__getitem__)
    return Predicted(kappa, int(pos.numel()), float(tol), gd, cands[0], min(cands[m], int(pos.numel())), m)


# --- what the optimizers do -----------------------------------------------------------------------------------
def _check(H: Tensor, e0: Tensor, tol: float) -> float:
    if H.ndim != 2 or H.shape[0] != H.shape[1] or e0.shape != (H.shape[0],):
        raise ValueError(f"need a square H and a matching vector e0, got {tuple(H.shape)} and {tuple(e0.shape)}")
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    E0 = energy_norm(H, e0)
    if E0 == 0.0:
        raise ValueError("e0 has zero energy norm: it is already at a minimiser (or in the null space of H)")
    return E0


def gd_iterations(H: Tensor, e0: Tensor, tol: float = 1e-4, step: float | None = None,
                  max_iter: int = 10 ** 9) -> int:
    r"""Gradient descent :math:`e_{k+1} = e_k - \eta He_k` on :math:`\tfrac12 e^\top He`: the first ``k`` with
    :math:`\|e_k\|_H \le \mathrm{tol}\,\|e_0\|_H` (``step`` :math:`\eta` default :math:`1/\lambda_{\max}`).

    The iteration is linear, :math:`e_k = (I - \eta H)^k e_0`, so ``2^j`` steps at once are one product with
    :math:`M^{2^j}` (``M = I - eta H`` squared ``j`` times): the count is found with a few hundred products even
    when it is :math:`10^8` (``tests/test_tangent.py`` checks it against the step-by-step loop).

    Raises:
        RuntimeError: not reached within ``max_iter`` steps (``step`` too large, or ``H`` singular along ``e0``).

    >>> gd_iterations(torch.diag(torch.tensor([1.0, 0.1], dtype=torch.float64)),     # slow component:
    ...               torch.tensor([0.0, 1.0], dtype=torch.float64), tol=1e-3)       # 0.9^k <= 1e-3
    66
    """
    E0 = _check(H, e0, tol)
    H = H.to(torch.float64)
    e = e0.to(H)
    eta = 1.0 / float(torch.linalg.eigvalsh(H)[-1]) if step is None else float(step)
    powers = [torch.eye(H.shape[0], dtype=H.dtype, device=H.device) - eta * H]
    while 2 ** len(powers) <= max_iter and len(powers) < 40:
        M = powers[-1] @ powers[-1]
        powers.append(M)
        if float(torch.linalg.matrix_norm(M, 2)) < tol * 1e-3:
            break
    target = tol * E0
    if energy_norm(H, e) <= target:
        return 0
    k = 0
    big = len(powers) - 1
    while True:                     # whole blocks of 2^big steps while they stay above the target
        nxt = powers[big] @ e
        if energy_norm(H, nxt) <= target:
            break
        e, k = nxt, k + 2 ** big
        if k > max_iter:
            raise RuntimeError(f"gradient descent did not reach tol={tol} in {max_iter} steps (step {eta:.3g}); "
                               "is the step below 2/lambda_max and H positive definite along e0?")
    for j in range(big - 1, -1, -1):  # binary descent: the largest number of steps that stays above the target
        nxt = powers[j] @ e
        if energy_norm(H, nxt) > target:
            e, k = nxt, k + 2 ** j
    return k + 1


def cg_iterations(H: Tensor, e0: Tensor, tol: float = 1e-4, max_iter: int | None = None) -> int:
    r"""Conjugate gradients on :math:`He = 0` from ``e0`` (CG on :math:`Hx = b` from any :math:`x_0` with error
    :math:`e_0 = x_0 - x^*`): the first ``k`` with :math:`\|e_k\|_H \le \mathrm{tol}\,\|e_0\|_H`; one product
    with ``H`` per iteration.

    Raises:
        RuntimeError: not reached within ``max_iter`` (default ``20 n``) iterations.

    >>> H = torch.diag(torch.tensor([1.0, 2.0, 2.0, 5.0], dtype=torch.float64))   # 3 distinct eigenvalues
    >>> cg_iterations(H, torch.ones(4, dtype=torch.float64), tol=1e-10)
    3
    """
    E0 = _check(H, e0, tol)
    H = H.to(torch.float64)
    x = e0.to(H).clone()
    r = -(H @ x)
    p = r.clone()
    rr = float(r @ r)
    for k in range(1, (max_iter or 20 * H.shape[0]) + 1):
        Hp = H @ p
        a = rr / float(p @ Hp)
        x, r = x + a * p, r - a * Hp
        if energy_norm(H, x) <= tol * E0:
            return k
        rn = float(r @ r)
        p, rr = r + (rn / rr) * p, rn
    raise RuntimeError(f"CG did not reach tol={tol} in {max_iter or 20 * H.shape[0]} iterations")


@dataclass(frozen=True)
class LBFGSCount:
    """What :func:`lbfgs_iterations` measured: ``iterations`` (L-BFGS steps) and ``evaluations`` (loss +
    gradient evaluations, line-search trials included).
    """

    iterations: int
    evaluations: int


def lbfgs_iterations(H: Tensor, e0: Tensor, tol: float = 1e-4, history_size: int = 100,
                     max_iter: int = 100_000) -> LBFGSCount:
    r"""``torch.optim.LBFGS`` as Rathore et al. run it (``lr = 1``, strong Wolfe line search, history 100, its
    tolerance tests switched off) on :math:`\tfrac12 e^\top H e` from ``e0``: iterations and evaluations until
    :math:`\|e_k\|_H \le \mathrm{tol}\,\|e_0\|_H`. No sharp bound in :math:`\kappa` exists for it; with exact line
    searches and a long enough history it would take CG's steps on a quadratic.

    Raises:
        RuntimeError: not reached within ``max_iter`` iterations.

    >>> lbfgs_iterations(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    LBFGSCount(iterations=2, evaluations=4)

    (torch's first step has length :math:`\min(1, 1/\|g\|_1) = 1/3` along :math:`-g`; the second lands exactly.)
    """
    E0 = _check(H, e0, tol)
    H = H.to(torch.float64)
    x = e0.to(H).clone().requires_grad_(True)
    # one iteration per step() call; max_eval = 26 leaves the line search its default 25 trials (torch's default
    # max_eval = 1.25 max_iter would leave it none at max_iter = 1)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=26, history_size=history_size,
                            line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> Tensor:
        opt.zero_grad()
        f = 0.5 * x @ (H @ x)
        f.backward()  # type: ignore[no-untyped-call]
        return f

    for k in range(1, max_iter + 1):
        opt.step(closure)   # type: ignore[arg-type,no-untyped-call,unused-ignore]
        with torch.no_grad():
            if energy_norm(H, x.detach()) <= tol * E0:
                return LBFGSCount(k, int(opt.state[x]["func_evals"]))
    raise RuntimeError(f"L-BFGS did not reach tol={tol} in {max_iter} iterations")


# --- spectral bias: the kernel's eigenvectors on a space-time grid --------------------------------------------
def grid_points(problem: Problem, nx: int, nt: int) -> Tensor:
    r"""An ``nt x nx`` grid of residual points for a space-time problem on :math:`(x_0, x_1)\times(t_0, t_1)`:
    :math:`x_i = x_0 + (x_1 - x_0)\,i/n_x` (periodic: :math:`x_1` left out), :math:`t_j = t_0 + (t_1 - t_0)
    (j + \tfrac12)/n_t`; rows ordered with ``x`` fastest, so ``values.reshape(nt, nx)`` is the grid.

    >>> from pinnkit.problems import Convection
    >>> X = grid_points(Convection(1.0), nx=4, nt=2)
    >>> X.shape, X[1].tolist()[0] == math.pi / 2, X[4].tolist()[1]
    (torch.Size([8, 2]), True, 0.75)
    """
    (x0, x1), (t0, t1) = problem.bounds
    x = x0 + (x1 - x0) * torch.arange(nx, dtype=torch.float64) / nx
    t = t0 + (t1 - t0) * (torch.arange(nt, dtype=torch.float64) + 0.5) / nt
    tt, xx = torch.meshgrid(t, x, indexing="ij")
    return torch.stack([xx.reshape(-1), tt.reshape(-1)], dim=1)


def grid_frequencies(V: Tensor, nx: int, nt: int) -> tuple[Tensor, Tensor]:
    r"""Mean frequencies of grid functions: for each column of ``V`` (its first ``nx * nt`` rows are values on
    :func:`grid_points`), the energy-weighted mean :math:`|m|` of its discrete Fourier transform in ``x``
    (periodic; :math:`m = 0..n_x/2`) and the mean index :math:`l` of its cosine transform (DCT-II) in ``t``.
    A constant has (0, 0); white noise about :math:`(n_x/4, (n_t - 1)/2)`.

    >>> nx, nt = 16, 8
    >>> X = grid_points(__import__("pinnkit").problems.Convection(1.0), nx, nt)
    >>> v = torch.sin(3 * X[:, 0]) * torch.cos(4 * math.pi * X[:, 1])    # m = 3; cos(l pi t): l = 4
    >>> fx, ft = grid_frequencies(v[:, None], nx, nt)
    >>> round(float(fx[0]), 6), round(float(ft[0]), 6)
    (3.0, 4.0)
    """
    k = V.shape[1]
    W = V[: nx * nt].T.reshape(k, nt, nx).to(torch.float64)
    Fx = torch.fft.rfft(W, dim=2)
    j = torch.arange(nt, dtype=torch.float64)
    C = torch.cos(math.pi * (j[None, :] + 0.5) * j[:, None] / nt)          # DCT-II rows l = 0..nt-1
    C[0] /= math.sqrt(2.0)                                                  # orthogonal rows of equal norm
    Pw = torch.einsum("lj,kjm->klm", C.to(Fx.dtype), Fx).abs() ** 2
    Pw[:, :, 1:(nx + 1) // 2] *= 2.0                                        # rfft: m and -m
    total = Pw.sum((1, 2))
    m = torch.arange(Fx.shape[2], dtype=torch.float64)
    return (Pw.sum(1) * m).sum(1) / total, (Pw.sum(2) * j).sum(1) / total


def gradient_descent(loss: Callable[[Tensor], Tensor], theta: Tensor, step: float, steps: int) -> Tensor:
    r"""Plain full-batch gradient descent :math:`\theta \leftarrow \theta - \eta\nabla L(\theta)`, ``steps``
    times; returns the last iterate (``theta`` is not modified).

    >>> float(gradient_descent(lambda th: (th ** 2).sum(), torch.tensor([1.0]), 0.25, 3)[0])   # 0.5^3
    0.125
    """
    g = torch.func.grad(loss)
    th = theta.detach().clone()
    for _ in range(int(steps)):
        th = th - step * g(th)
    return th


@dataclass(frozen=True)
class Band:
    r"""The components of a residual along a band of kernel eigenvectors ``lo .. hi - 1`` (descending
    eigenvalues), before and after training (see :func:`band_retention`).

    Attributes:
        lo, hi: eigenvector indices (``hi`` excluded).
        lam_top, lam_bottom: the band's largest and smallest eigenvalue.
        predicted: energy kept in the band under the linearised dynamics,
            :math:`\sum_i (1 - 2\eta\lambda_i)^{2T} c_i(0)^2 / \sum_i c_i(0)^2`.
        measured: :math:`\sum_i c_i(T)^2 / \sum_i c_i(0)^2` with the residual of the trained network.
    """

    lo: int
    hi: int
    lam_top: float
    lam_bottom: float
    predicted: float
    measured: float


def band_retention(lam: Tensor, c0: Tensor, cT: Tensor, step: float, steps: int,
                   edges: Sequence[int]) -> list[Band]:
    r"""Energy kept per band of kernel eigenvectors after ``steps`` gradient-descent steps of size ``step`` on
    :math:`\|r\|^2`: measured (``c0``, ``cT``: components of the residual before and after, from
    :func:`kernel_components`) against the linearised prediction :math:`(1 - 2\eta\lambda_i)^{T}` per component
    (:math:`r \leftarrow (I - 2\eta K) r` for a constant kernel ``K``).

    Args:
        lam: kernel eigenvalues, descending.
        edges: band boundaries, e.g. ``[0, 5, 20, 60]``: bands ``0..4``, ``5..19``, ``20..59``.

    >>> lam = torch.tensor([1.0, 0.5, 0.0]); c = torch.ones(3)
    >>> [(b.predicted, b.measured) for b in band_retention(lam, c, c * 0.5, 0.25, 1, [0, 1, 3])]
    [(0.25, 0.25), (0.78125, 0.25)]
    """
    factor = (1.0 - 2.0 * step * lam).abs() ** int(steps)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        e0 = float((c0[lo:hi] ** 2).sum())
        out.append(Band(int(lo), int(hi), float(lam[lo]), float(lam[hi - 1]),
                        float(((factor * c0)[lo:hi] ** 2).sum()) / e0, float((cT[lo:hi] ** 2).sum()) / e0))
    return out


__all__ += ["grid_points", "grid_frequencies", "gradient_descent", "Band", "band_retention"]



def grid_pinn(problem: Problem, width: int, nx: int, nt: int, n_ic: int, n_bc: int, seed: int = 0,
              dtype: torch.dtype = torch.float64, device: str | torch.device | None = None) -> PINN:
    r"""A two-hidden-layer ``tanh`` PINN (``width`` each) whose residual points are the ``nt x nx`` grid of
    :func:`grid_points` (so its residual vector's first ``nx * nt`` entries are grid values, x fastest).

    >>> from pinnkit.problems import Convection
    >>> pinn = grid_pinn(Convection(30.0), width=4, nx=8, nt=2, n_ic=8, n_bc=4)
    >>> pinn.residual_vector(pinn.theta0).shape     # 16 + 8 + 4 residuals
    torch.Size([28])
    """
    pinn = PINN(problem, widths=[width, width], n_res=nx * nt, n_ic=n_ic, n_bc=n_bc, seed=seed, dtype=dtype,
                device=device)
    pinn.points["residual"] = grid_points(pinn.problem, nx, nt).to(pinn.theta0)
    return pinn


def band_edges(lam: Tensor, cuts: Sequence[float]) -> list[int]:
    r"""Indices that split descending eigenvalues ``lam`` into bands by :math:`\lambda/\lambda_1`: band ``b`` holds
    the eigenvalues in ``(cuts[b] , cuts[b-1]]`` (``cuts`` decreasing, the first band starts at 1).

    >>> band_edges(torch.tensor([10.0, 5.0, 0.5, 0.01, 1e-9]), [1e-1, 1e-4])
    [0, 2, 4]
    """
    rel = lam / lam[0]
    return [0] + [int((rel > c).sum()) for c in cuts]



def slow_share(K: Tensor, r: Tensor, cut: float = 1e-4) -> float:
    r"""The share of :math:`\|r\|^2` on the eigenvectors of the kernel ``K`` with :math:`\lambda < \mathrm{cut}\cdot
    \lambda_1`: the part of a residual that gradient descent, at a step stable for :math:`\lambda_1`, barely moves.

    >>> slow_share(torch.diag(torch.tensor([1.0, 1e-6], dtype=torch.float64)),
    ...            torch.tensor([1.0, 3.0], dtype=torch.float64))   # 9 / 10
    0.9
    """
    lam, _, c = kernel_components(K, r)
    return float((c[lam < cut * lam[0]] ** 2).sum() / (c ** 2).sum())


@dataclass(frozen=True)
class IterationRow:
    """Predicted and measured iterations on one quadratic (see :func:`iteration_study`); ``lbfgs_evals`` counts
    loss + gradient evaluations.
    """

    kappa: float
    rank: int
    gd_pred: int
    gd: int
    cg_chebyshev: int
    cg_pred: int
    cg: int
    lbfgs: int
    lbfgs_evals: int


def iteration_study(A: Tensor, e0: Tensor, tol: float = 1e-4, rcut: float = 1e-12) -> IterationRow:
    r"""For the least-squares loss :math:`\|A(c - c^*)\|^2` (Hessian :math:`H = 2A^\top A`) from the error
    ``e0``: :func:`predicted_iterations` of :math:`H` and the counts of :func:`gd_iterations`,
    :func:`cg_iterations` and :func:`lbfgs_iterations`, all to the same ``tol`` on :math:`\|e\|_H`.

    >>> row = iteration_study(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64)),
    ...                       torch.ones(2, dtype=torch.float64))
    >>> row.kappa, row.cg, row.gd <= row.gd_pred
    (4.0, 2, True)
    """
    A = A.to(torch.float64)
    H = 2.0 * A.T @ A
    pred = predicted_iterations(torch.linalg.eigvalsh(H), tol, rcut)
    lb = lbfgs_iterations(H, e0, tol)
    return IterationRow(pred.kappa, pred.rank, pred.gd, gd_iterations(H, e0, tol), pred.cg_chebyshev, pred.cg,
                        cg_iterations(H, e0, tol), lb.iterations, lb.evaluations)


def sine_operator_scaling(n_freq: int, order: int = 2, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Operator preconditioning for the features :math:`\sin(j\pi x)`, :math:`j = 1..K`, plus a constant
    (:func:`pinnkit.features.fourier_features`): the column scaling :math:`d_j = (j\pi)^{-\mathrm{order}}`, 1 for
    the constant. :math:`\partial_x^{\,\mathrm{order}}` multiplies feature ``j`` by :math:`\pm(j\pi)^{\rm order}`,
    so :math:`A\,\mathrm{diag}(d)` has columns of equal size: the inverse of the operator on the basis.

    >>> sine_operator_scaling(2, order=1).tolist() == [1 / math.pi, 1 / (2 * math.pi), 1.0]
    True
    """
    d = torch.ones(n_freq + 1, dtype=dtype)
    d[:-1] = (math.pi * torch.arange(1, n_freq + 1, dtype=dtype)) ** (-float(order))
    return d


__all__ += ["grid_pinn", "band_edges", "slow_share", "IterationRow", "iteration_study", "sine_operator_scaling"]

