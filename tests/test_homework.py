"""The homework self-checks (pinnkit.exercises.homework): each accepts an answer computed independently of the check
and rejects a wrong one."""
from __future__ import annotations

import torch
from test_exercises_ch00_ch01 import reaction_terms  # the from-scratch reaction loss (chapter 1, exercise 1)

import pinnkit.exercises.homework as hw
from pinnkit import curvature, problems, stationary
from pinnkit.book.regression import Regression
from pinnkit.conditioning import range_condition


def test_hw1(capsys):
    assert hw.check_hw1(reaction_terms)
    assert not hw.check_hw1(lambda *a: reaction_terms(*a, initial=lambda X: torch.sin(X[:, 0])))
    assert not hw.check_hw1(lambda net, *a: {k: v for k, v in reaction_terms(net, *a).items() if k != "boundary"})
    assert hw.check_hw1(reaction_terms, rho=2.0)   # the check recomputes its reference for the variant's rho
    assert not hw.check_hw1(None)
    assert "Not yet" in capsys.readouterr().out


def test_hw2():
    pinn = hw.small_pinn(problems.Convection(beta=10.0))
    H = lambda v: curvature.hvp(pinn.loss, pinn.theta0, v)   # noqa: E731
    top = curvature.lanczos(H, pinn.n_params, pinn.n_params, torch.ones_like(pinn.theta0)).ritz_values
    values = top.sort(descending=True).values[:3]
    assert hw.check_hw2(values)
    assert not hw.check_hw2(values * (1 + 1e-4))
    assert not hw.check_hw2(values[:2])


def test_hw3():
    from pinnkit import features
    model = features.random_features(problems.Convection(beta=10.0), width=64, seed=0)
    A = model.operator_matrices()["residual"].double()   # H_res = 2 A^T A / n_r: its eigenvalues from A's SVD
    lam = 2 * torch.linalg.svdvals(A) ** 2 / A.shape[0]
    cut = 1e-8 * lam.max()
    kappa = float(lam.max() / lam[lam > cut].min())
    assert hw.check_hw3(kappa)
    assert not hw.check_hw3(1.1 * kappa)
    assert not hw.check_hw3(kappa, beta=1.0)


def test_hw4():
    pinn = hw.small_pinn(problems.Convection(beta=10.0), n_res=64)
    J = torch.autograd.functional.jacobian(pinn.residual_vector, pinn.theta0)
    s = torch.linalg.svdvals(J) ** 2    # eigenvalues of J^T J without forming it
    kappa = float(s.max() / s[s > 1e-8 * s.max()].min())
    assert hw.check_hw4(kappa)
    assert not hw.check_hw4(1.1 * kappa)


def test_hw5():
    lam = torch.logspace(4, -2, 200, dtype=torch.float64)
    rank, mu = 20, 1e-2
    H = torch.diag(lam)
    U = torch.eye(200, dtype=torch.float64)[:, :rank]     # the exact top eigenvectors
    P = U @ torch.diag(lam[:rank] + mu) @ U.T / (lam[rank - 1] + mu) + torch.eye(200, dtype=torch.float64) - U @ U.T
    e, V = torch.linalg.eigh(P)
    P_isqrt = V @ torch.diag(e ** -0.5) @ V.T
    k = torch.linalg.eigvalsh(P_isqrt @ (H + mu * torch.eye(200, dtype=torch.float64)) @ P_isqrt)
    kappa = float(k.max() / k.min())
    assert hw.check_hw5(kappa, rank=rank, mu=mu)
    assert not hw.check_hw5(float((lam[0] + mu) / (lam[-1] + mu)), rank=rank, mu=mu)   # unpreconditioned
    assert not hw.check_hw5(kappa, rank=10, mu=mu)


def test_hw6():
    assert hw.check_hw6({w: w for w in (2, 3, 4, 5, 6)})      # one negative eigenvalue per last-layer unit
    assert not hw.check_hw6({w: w + 1 for w in (2, 3, 4, 5, 6)})
    assert not hw.check_hw6({2: 2})


def test_hw7():
    model = Regression(widths=[6, 4])
    theta = stationary.zero_output(model)
    lam = torch.linalg.eigvalsh(curvature.hessian(model.loss, theta))
    indices = {r: int((lam < -r * lam.abs().max()).sum()) for r in (1e-8, 1e-4, 1e-2)}
    assert hw.check_hw7(indices, model.loss, theta)
    assert not hw.check_hw7({r: n + 1 for r, n in indices.items()}, model.loss, theta)


def test_hw8():
    pinn = hw.PINN(problems.Convection(beta=10.0), widths=[32, 32, 32], n_res=300, n_ic=100, n_bc=50, seed=0,
                   dtype=torch.float64)
    units = []
    for name in ("residual", "initial", "boundary"):
        g = torch.func.grad(lambda th: pinn.terms(th)[name])(pinn.theta0)   # noqa: B023
        units.append(g / g.norm())
    score = float(2 * (sum(units) / 3).norm() ** 2 - 1)
    assert hw.check_hw8(score)
    assert not hw.check_hw8(score + 0.01)
    assert not hw.check_hw8(score, beta=30.0)


def test_hw9():
    pinn = hw.small_pinn(problems.Convection(beta=10.0))
    gen = torch.Generator().manual_seed(0)
    d1, d2 = (torch.randn(pinn.n_params, generator=gen, dtype=torch.float64) for _ in range(2))
    Q, _ = torch.linalg.qr(torch.stack([d1, d2], 1))
    h, f, t = 1e-3, pinn.loss, pinn.theta0
    M = torch.empty(2, 2, dtype=torch.float64)
    for i in range(2):
        for j in range(2):
            a, b = Q[:, i] * h, Q[:, j] * h
            M[i, j] = (f(t + a + b) - f(t + a - b) - f(t - a + b) + f(t - a - b)) / (4 * h * h)
    curv = torch.linalg.eigvalsh(0.5 * (M + M.T))
    assert hw.check_hw9(curv, f, t, d1, d2)
    assert not hw.check_hw9(curv * 1.5, f, t, d1, d2)
    assert not hw.check_hw9(range_condition(curv).kappa * torch.ones(2), f, t, d1, d2)
