"""Self-checks for the homework problems of ``book/homework.md``: ``pinnkit.exercises.homework.check_hwN(...)``.

Each check recomputes a reference with pinnkit (at most a few seconds on a CPU) for the parameters it is given, and
prints only a verdict: *Correct!* or a hint. The defaults are the book's parameters; a grader's variant changes them
(``beta``, ``rho``, widths, seeds) and passes the same values here.

>>> import torch
>>> check_hw5(20.0, rank=3, mu=1.0, eigenvalues=torch.tensor([100.0, 10.0, 5.0, 1.0, 0.0]))   # (5 + 1) / (0 + 1)
Not yet. With the exact top-3 eigenpairs, kappa = (lambda_3 + mu) / (lambda_min + mu).
False
>>> check_hw5(6.0, rank=3, mu=1.0, eigenvalues=torch.tensor([100.0, 10.0, 5.0, 1.0, 0.0]))
Correct!
True
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from .. import alignment, conditioning, curvature, features, landscape, stationary
from ..book.regression import Regression
from ..objective import total
from ..pinn import PINN
from ..problems import Convection, Reaction
from . import close, missing, verdict


def _value(x: Any) -> float:
    """``x`` as a float, detached first when it is a tensor that requires grad."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)

__all__ = ["small_pinn", "check_hw1", "check_hw2", "check_hw3", "check_hw4", "check_hw5", "check_hw6", "check_hw7",
           "check_hw8", "check_hw9"]


def small_pinn(problem: Any, widths: Sequence[int] = (8, 8), n_res: int = 64, n_ic: int = 16, n_bc: int = 8,
               seed: int = 0, dtype: torch.dtype = torch.float64) -> PINN:
    """The small PINN of homework 2, 4 and 9: few enough parameters for a dense Hessian in well under a second."""
    return PINN(problem, widths=list(widths), n_res=n_res, n_ic=n_ic, n_bc=n_bc, seed=seed, dtype=dtype)


def check_hw1(terms_fn: Callable[..., Mapping[str, Tensor]] | None, rho: float = 5.0,
              seeds: Sequence[int] = (0, 1, 2)) -> bool:
    """Homework 1: a from-scratch reaction loss ``terms_fn(net, X_res, X_ic, X_lo, X_hi, rho)`` against
    ``pk.PINN(Reaction(rho)).terms`` in float64, on the parameters and points of several seeds (relative 1e-8)."""
    if missing(terms_fn):
        return False
    for seed in seeds:
        pinn = PINN(Reaction(rho=rho), widths=[16, 16], n_res=128, n_ic=32, n_bc=16, seed=seed, dtype=torch.float64)
        theta = pinn.theta0 + 0.3 * torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(seed),
                                                dtype=torch.float64)   # away from the zero biases of theta0
        net = pinn.net
        net.load_state_dict(pinn.params(theta))
        p = pinn.points
        got = terms_fn(net, p["residual"], p["initial"], p["boundary_low"], p["boundary_high"], rho)
        want = {k: float(v) for k, v in pinn.terms(theta).items()}
        if set(got) != set(want):
            return verdict(False, f"terms_fn must return a dict with the keys {sorted(want)}, got {sorted(got)}.")
        wrong = [k for k in want if not close(_value(got[k]), want[k], rtol=1e-8, atol=1e-14)]
        if wrong:
            return verdict(False, f"seed {seed}: {', '.join(wrong)} differ from pinnkit's. Residual: "
                                  "u_t - rho u (1 - u); initial: u(x, 0) - exp(-(x - pi)^2 / (2 (pi/4)^2)); "
                                  "boundary: u(0, t) - u(2 pi, t).")
    return verdict(True)


def check_hw2(values: Sequence[float] | Tensor | None, beta: float = 10.0, seed: int = 0, k: int = 3) -> bool:
    """Homework 2: the ``k`` largest Hessian eigenvalues of :func:`small_pinn` (convection, ``beta``, ``seed``) at
    ``theta0``, from your own Lanczos, against a dense eigensolver (relative 1e-6)."""
    if missing(values):
        return False
    pinn = small_pinn(Convection(beta=beta), seed=seed)
    lam = torch.linalg.eigvalsh(curvature.hessian(pinn.loss, pinn.theta0)).flip(0)[:k].tolist()
    got = sorted((float(v) for v in values), reverse=True)[:k]
    ok = len(got) == k and all(close(g, w, rtol=1e-6) for g, w in zip(got, lam))
    return verdict(ok, f"Give the {k} largest eigenvalues. Run more Lanczos steps, reorthogonalize against every "
                       "earlier vector, and use float64.")


def check_hw3(kappa: float | None, beta: float = 10.0, width: int = 64, seed: int = 0,
              rcut: float = conditioning.RCUT) -> bool:
    """Homework 3: kappa on the range (cutoff ``rcut``) of the residual term's Hessian of the random-feature
    convection model ``features.random_features("convection", width, seed=seed)`` at ``beta`` (relative 1 %)."""
    if missing(kappa):
        return False
    model = features.random_features(Convection(beta=beta), width=width, seed=seed)
    from ..book.features_study import operator_condition

    expected = operator_condition(model, "residual", rcut=rcut)
    return verdict(close(kappa, expected, rtol=0.01),
                   "The model is linear in its last layer, so the residual Hessian is 2 A^T A / n_r with "
                   "A_ij = (d_t + beta d_x) phi_j(x_i): take its eigenvalues and apply the cutoff.")


def check_hw4(kappa: float | None, n_res: int = 64, beta: float = 10.0, seed: int = 0,
              rcut: float = conditioning.RCUT) -> bool:
    """Homework 4: kappa on the range (cutoff ``rcut``) of the Gauss-Newton matrix ``J^T J`` of the residual
    vector (``pinn.residual_vector``) of :func:`small_pinn` (convection, ``n_res`` points) at ``theta0``, in
    float64 (relative 2 %)."""
    if missing(kappa):
        return False
    pinn = small_pinn(Convection(beta=beta), n_res=n_res, seed=seed)
    J = torch.func.jacrev(pinn.residual_vector)(pinn.theta0)
    expected = conditioning.range_condition(torch.linalg.eigvalsh(J.T @ J), rcut=rcut).kappa
    return verdict(close(kappa, expected, rtol=0.02),
                   "Use pinn.residual_vector (every residual scaled by 1/sqrt(n) of its term), its Jacobian J in "
                   "float64, and kappa on the range of J^T J with the stated cutoff.")


def check_hw5(kappa: float | None, rank: int = 20, mu: float = 1e-2, eigenvalues: Tensor | None = None) -> bool:
    """Homework 5: kappa of ``P^{-1/2} (H + mu I) P^{-1/2}`` for the *ideal* rank-``rank`` Nystrom preconditioner
    (the exact top eigenpairs) of ``H = diag(eigenvalues)``, default ``logspace(4, -2, 200)`` (relative 1 %)."""
    if missing(kappa):
        return False
    lam = torch.logspace(4, -2, 200, dtype=torch.float64) if eigenvalues is None else eigenvalues.double()
    lam = lam.sort(descending=True).values
    expected = float((lam[rank - 1] + mu) / (lam[-1] + mu))
    return verdict(close(kappa, expected, rtol=0.01),
                   f"With the exact top-{rank} eigenpairs, kappa = (lambda_{rank} + mu) / (lambda_min + mu).")


def check_hw6(indices: Mapping[int, int] | None, depth_widths: Sequence[int] = (2, 3, 4, 5, 6)) -> bool:
    """Homework 6: the number of negative Hessian eigenvalues at the trivial saddle ``u = 0``
    (:func:`pinnkit.stationary.zero_output`) of the 1-6-w-1 tanh regression of ``sin 2 pi x``, for each ``w``."""
    if missing(indices):
        return False
    wrong = []
    for w in depth_widths:
        model = Regression(widths=[6, w])
        expected = stationary.classify(model.loss, stationary.zero_output(model)).n_negative
        if int(indices.get(w, -1)) != expected:
            wrong.append(w)
    return verdict(not wrong, f"Wrong or missing for w = {wrong}. Write the Hessian at u = 0 in blocks: which "
                              "pairs of parameter groups does it couple, and with which sign?")


def check_hw7(indices: Mapping[float, int] | None, f: Callable[[Tensor], Any], theta: Tensor) -> bool:
    """Homework 7: the Hessian index of *your* near-stationary point ``theta`` of the loss ``f`` for each
    ``eig_rtol`` (the keys of ``indices``), against :func:`pinnkit.stationary.classify`."""
    if missing(indices):
        return False
    H = curvature.hessian(total(f), theta.detach())
    wrong = [r for r, n in indices.items()
             if int(n) != stationary.classify(f, theta, eig_rtol=float(r), H=H).n_negative]
    return verdict(not wrong, f"Wrong for eig_rtol = {wrong}: count eigenvalues below -eig_rtol * max|lambda|.")


def check_hw8(score: float | None, beta: float = 10.0, seed: int = 0, widths: Sequence[int] = (32, 32, 32)) -> bool:
    """Homework 8: the alignment score of the three term gradients of the convection PINN (``beta``, ``seed``;
    300 / 100 / 50 points, float64) at ``theta0`` (absolute 1e-6)."""
    if missing(score):
        return False
    pinn = PINN(Convection(beta=beta), widths=list(widths), n_res=300, n_ic=100, n_bc=50, seed=seed,
                dtype=torch.float64)
    expected = alignment.intra_step_alignment(pinn.terms, pinn.theta0)
    return verdict(close(score, expected, rtol=0.0, atol=1e-6),
                   "Normalise each term's gradient, average the unit vectors, and take 2 ||mean||^2 - 1 (float64).")


def check_hw9(curvatures: Sequence[float] | Tensor | None, f: Callable[[Tensor], Any], theta: Tensor, d1: Tensor,
              d2: Tensor) -> bool:
    """Homework 9: the two eigenvalues of the Hessian restricted to the plane of *your* slice directions ``d1``,
    ``d2`` at ``theta`` (e.g. from finite differences of the slice), against Hessian-vector products (5 %)."""
    if missing(curvatures):
        return False
    lam = landscape.plane_curvature(f, theta, d1, d2).tolist()
    got = sorted(float(c) for c in curvatures)
    scale = max(abs(v) for v in lam)
    ok = len(got) == 2 and all(close(g, w, rtol=0.05, atol=0.02 * scale) for g, w in zip(got, lam))
    return verdict(ok, "Orthonormalise d1, d2 first (the slice's own axes need not be orthogonal), then take the "
                       "eigenvalues of the 2 x 2 matrix of second differences; shrink the step if they drift.")
