r"""Chapter 10's studies of the tangent kernel (:mod:`pinnkit.tangent`): what a spectrum predicts about the speed of
training, what GD, CG and L-BFGS do on a quadratic, and spectral bias on a space-time grid.

On a quadratic :math:`\tfrac12 e^\top H e` (error :math:`e = \theta - \theta^*`) the counters run until the energy
norm :math:`\|e\|_H` falls by ``tol``; :func:`predicted_iterations` gives the spectrum's bounds for GD and CG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast

import torch
from torch import Tensor

from ..conditioning import _chebyshev_steps, as_eigenvalues
from ..nets import size
from ..pinn import PINN
from ..problems import Problem
from ..tangent import kernel_components

__all__ = ["energy_norm", "white_residual_error", "Predicted", "predicted_iterations", "gd_iterations",
           "cg_iterations", "LBFGSCount", "lbfgs_iterations", "IterationRow", "iteration_study",
           "sine_operator_scaling", "grid_points", "grid_frequencies", "grid_pinn", "gradient_descent", "Band",
           "band_retention", "band_edges", "slow_share", "Capture", "captured_fraction"]


def energy_norm(H: Tensor, e: Tensor) -> float:
    r""":math:`\|e\|_H = \sqrt{e^\top H e}` (clipped at 0 against rounding)."""
    return math.sqrt(max(float(e @ (H @ e)), 0.0))


def white_residual_error(A: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r""":math:`e_0 = A^+ z`, :math:`z \sim \mathcal N(0, I_n)`: an error whose residual :math:`Ae_0` is white noise
    on the range of :math:`A` (equal expected weight on every eigenvector of :math:`AA^\top`).

    >>> A = torch.diag(torch.tensor([1.0, 1e-3], dtype=torch.float64))
    >>> e0 = white_residual_error(A, torch.Generator().manual_seed(0))
    >>> z = torch.randn(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> bool(torch.allclose(A @ e0, z))
    True
    """
    z = torch.randn(A.shape[0], generator=generator, dtype=torch.float64).to(A)
    return cast(Tensor, torch.linalg.lstsq(A, z[:, None], driver="gelsd" if A.device.type == "cpu" else None).solution[:, 0])


@dataclass(frozen=True)
class Predicted:
    r"""Iterations a spectrum predicts to reduce :math:`\|e\|_H` by ``tol`` (:func:`predicted_iterations`).

    Attributes:
        kappa: :math:`\lambda_{\max}/\lambda_{\min}` on the range (eigenvalues above ``rcut`` times the largest).
        rank: eigenvalues above the cutoff.
        tol: the reduction.
        gd: least ``k`` with :math:`(1 - 1/\kappa)^k \le \mathrm{tol}` (step :math:`1/\lambda_{\max}`).
        cg_chebyshev: the Chebyshev count of ``kappa`` alone.
        cg: :math:`\min_m \big(m + \mathrm{cheb}(\lambda_{m+1}/\lambda_{\min})\big)`, at most ``rank``.
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
    r"""GD's and CG's exact-arithmetic bounds on :math:`\tfrac12 e^\top H e` for a positive semi-definite ``H``
    with these eigenvalues (the null space below ``rcut`` left out): GD
    :math:`k = \lceil \ln\mathrm{tol} / \ln(1 - 1/\kappa)\rceil`; CG :math:`m` roots on the largest eigenvalues
    plus the Chebyshev count on :math:`[\lambda_{\min}, \lambda_{m+1}]`, best ``m``.

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
    cands = [m + _chebyshev_steps(float(pos[m]) / lmin, tol) for m in range(pos.numel())]
    m = min(range(len(cands)), key=cands.__getitem__)
    return Predicted(kappa, int(pos.numel()), float(tol), gd, cands[0], min(cands[m], int(pos.numel())), m)


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
    r"""Gradient descent :math:`e_{k+1} = (I - \eta H)e_k`: the first ``k`` with :math:`\|e_k\|_H \le
    \mathrm{tol}\,\|e_0\|_H` (``step`` :math:`\eta`, default :math:`1/\lambda_{\max}`), found by repeated squaring
    of :math:`I - \eta H` and a binary descent.

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
    for j in range(big - 1, -1, -1):  # the largest number of steps that stays above the target
        nxt = powers[j] @ e
        if energy_norm(H, nxt) > target:
            e, k = nxt, k + 2 ** j
    return k + 1


def cg_iterations(H: Tensor, e0: Tensor, tol: float = 1e-4, max_iter: int | None = None) -> int:
    r"""Conjugate gradients on :math:`He = 0` from ``e0``: the first ``k`` with :math:`\|e_k\|_H \le
    \mathrm{tol}\,\|e_0\|_H` (at most ``max_iter``, default ``20 n``).

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
    """:func:`lbfgs_iterations`' ``iterations`` and ``evaluations`` (line-search trials included)."""

    iterations: int
    evaluations: int


def lbfgs_iterations(H: Tensor, e0: Tensor, tol: float = 1e-4, history_size: int = 100,
                     max_iter: int = 100_000) -> LBFGSCount:
    r"""``torch.optim.LBFGS`` (``lr = 1``, strong Wolfe, history 100, its own tolerances off) on
    :math:`\tfrac12 e^\top He` from ``e0`` until :math:`\|e_k\|_H \le \mathrm{tol}\,\|e_0\|_H`.

    >>> lbfgs_iterations(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    LBFGSCount(iterations=2, evaluations=4)
    """
    E0 = _check(H, e0, tol)
    H = H.to(torch.float64)
    x = e0.to(H).clone().requires_grad_(True)
    # max_eval = 26 leaves the line search its 25 trials (torch's default 1.25 max_iter leaves none at max_iter = 1)
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


@dataclass(frozen=True)
class IterationRow:
    """Predicted and measured iterations on one quadratic (:func:`iteration_study`)."""

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
    r"""For :math:`\|A(c - c^*)\|^2` (:math:`H = 2A^\top A`) from ``e0``: :func:`predicted_iterations` of ``H`` and
    the GD, CG and L-BFGS counts to the same ``tol``.

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
    r"""Column scaling :math:`d_j = (j\pi)^{-\mathrm{order}}` for the features :math:`\sin(j\pi x)`, 1 for the
    constant: the inverse of :math:`\partial_x^{\,\mathrm{order}}` on the basis.

    >>> sine_operator_scaling(2, order=1).tolist() == [1 / math.pi, 1 / (2 * math.pi), 1.0]
    True
    """
    d = torch.ones(n_freq + 1, dtype=dtype)
    d[:-1] = (math.pi * torch.arange(1, n_freq + 1, dtype=dtype)) ** (-float(order))
    return d


# --- spectral bias: the kernel's eigenvectors on a space-time grid --------------------------------------------
def grid_points(problem: Problem, nx: int, nt: int) -> Tensor:
    r"""An ``nt x nx`` grid: :math:`x_i = x_0 + (x_1 - x_0)\,i/n_x`, :math:`t_j = t_0 + (t_1 - t_0)(j + \tfrac12)/n_t`,
    ``x`` fastest (``values.reshape(nt, nx)`` is the grid).

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
    r"""Per column of ``V`` (values on :func:`grid_points` in its first ``nx * nt`` rows): the energy-weighted mean
    :math:`|m|` of its Fourier transform in ``x`` and mean index :math:`l` of its DCT-II in ``t``.

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


def grid_pinn(problem: Problem, width: int, nx: int, nt: int, n_ic: int, n_bc: int, seed: int = 0,
              dtype: torch.dtype = torch.float64, device: str | torch.device | None = None) -> PINN:
    r"""A ``tanh`` PINN with two hidden layers of ``width`` whose residual points are :func:`grid_points`.

    >>> from pinnkit.problems import Convection
    >>> pinn = grid_pinn(Convection(30.0), width=4, nx=8, nt=2, n_ic=8, n_bc=4)
    >>> pinn.residual_vector(pinn.theta0).shape     # 16 + 8 + 4 residuals
    torch.Size([28])
    """
    pinn = PINN(problem, widths=[width, width], n_res=nx * nt, n_ic=n_ic, n_bc=n_bc, seed=seed, dtype=dtype,
                device=device)
    pinn.points["residual"] = grid_points(pinn.problem, nx, nt).to(pinn.theta0)
    return pinn


def gradient_descent(loss: Callable[[Tensor], Tensor], theta: Tensor, step: float, steps: int) -> Tensor:
    r"""``steps`` full-batch steps :math:`\theta \leftarrow \theta - \eta\nabla L(\theta)`; the last iterate.

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
    r"""Energy of a residual on kernel eigenvectors ``lo .. hi - 1`` (:func:`band_retention`).

    Attributes:
        lo, hi: eigenvector indices (``hi`` excluded).
        lam_top, lam_bottom: the band's largest and smallest eigenvalue.
        predicted: :math:`\sum_i (1 - 2\eta\lambda_i)^{2T} c_i(0)^2 / \sum_i c_i(0)^2`.
        measured: :math:`\sum_i c_i(T)^2 / \sum_i c_i(0)^2`.
    """

    lo: int
    hi: int
    lam_top: float
    lam_bottom: float
    predicted: float
    measured: float


def band_retention(lam: Tensor, c0: Tensor, cT: Tensor, step: float, steps: int,
                   edges: Sequence[int]) -> list[Band]:
    r"""Energy kept per band after ``steps`` GD steps on :math:`\|r\|^2`: measured from the components ``c0``,
    ``cT`` against the linearised :math:`r \leftarrow (I - 2\eta K) r`; ``lam`` descending, ``edges`` the band
    boundaries (``[0, 5, 20]``: bands ``0..4``, ``5..19``).

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


def band_edges(lam: Tensor, cuts: Sequence[float]) -> list[int]:
    r"""Indices splitting descending ``lam`` into bands of :math:`\lambda/\lambda_1` in ``(cuts[b], cuts[b-1]]``.

    >>> band_edges(torch.tensor([10.0, 5.0, 0.5, 0.01, 1e-9]), [1e-1, 1e-4])
    [0, 2, 4]
    """
    rel = lam / lam[0]
    return [0] + [int((rel > c).sum()) for c in cuts]


def slow_share(K: Tensor, r: Tensor, cut: float = 1e-4) -> float:
    r"""The share of :math:`\|r\|^2` on the eigenvectors of ``K`` with :math:`\lambda < \mathrm{cut}\,\lambda_1`.

    >>> slow_share(torch.diag(torch.tensor([1.0, 1e-6], dtype=torch.float64)),
    ...            torch.tensor([1.0, 3.0], dtype=torch.float64))   # 9 / 10
    0.9
    """
    lam, _, c = kernel_components(K, r)
    return float((c[lam < cut * lam[0]] ** 2).sum() / (c ** 2).sum())


@dataclass(frozen=True)
class Capture:
    r"""``fraction`` :math:`\|V_k^\top y\|^2 / \|y\|^2` of a target in the top ``k`` eigenvectors of
    :math:`K = JJ^\top`, with all ``eigenvalues`` of ``K``, largest first (:func:`captured_fraction`).
    """

    k: int
    fraction: float
    eigenvalues: Tensor


def captured_fraction(model: Any, theta: Tensor, X: Tensor, y: Tensor, k: int) -> Capture:
    r"""The fraction of the target ``y`` (values at the rows of ``X``) in the top-``k`` eigenvectors of
    :math:`K = J J^\top`, :math:`J = \partial u_\theta(X) / \partial\theta`: the part learned first.

    >>> import pinnkit as pk
    >>> pinn = pk.PINN(pk.problems.Convection(beta=1.0), widths=[8], n_res=8, n_ic=4, n_bc=2, dtype=torch.float64)
    >>> X = pinn.problem.grid((6, 5))
    >>> c = captured_fraction(pinn, pinn.theta0, X, torch.ones(30, dtype=torch.float64), k=30)
    >>> round(c.fraction, 6)          # k = all 30 points: the whole target (K has full rank here)
    1.0
    """
    k = size(k, "k")
    X = X.to(theta.device, theta.dtype)
    J = torch.func.jacrev(lambda th: model.u(th)(X))(theta.detach())
    evals, evecs = torch.linalg.eigh(J @ J.T)
    evals, evecs = evals.flip(0), evecs.flip(1)
    y = y.to(theta.device, theta.dtype)
    frac = float((evecs[:, :k].T @ y).pow(2).sum() / y.pow(2).sum())
    return Capture(k=k, fraction=frac, eigenvalues=evals.detach())
