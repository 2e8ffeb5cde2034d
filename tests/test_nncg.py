"""NysNewton-CG: Nyström approximation, preconditioned conditioning, convergence on quadratics, trainer plug-in."""
import math

import pytest
import torch

import pinnkit as pk
from pinnkit.nncg import NNCGStepper, NystromPreconditioner, nncg_stepper, nystrom, pcg

DT = torch.float64


def spd(n: int, eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    return (Q * eigenvalues) @ Q.T


def test_nystrom_matches_best_low_rank_for_fast_decay():
    """Sketch size s = k + 5 (oversampling 5) attains the best rank-k error (Eckart–Young: lambda_{k+1})."""
    n, k, s = 80, 10, 15
    ev = 1e3 * 0.3 ** torch.arange(n, dtype=DT)            # lambda_i = 1e3 * 0.3^i: fast decay
    H = spd(n, ev)
    evals, evecs = torch.linalg.eigh(H)
    for seed in range(3):
        pre = nystrom(H, n, s, mu=1e-3, generator=torch.Generator().manual_seed(seed))
        err_nys = float(torch.linalg.matrix_norm(H - pre.approximation(), 2))
        best_s = (evecs[:, -s:] * evals[-s:]) @ evecs[:, -s:].T
        assert float(torch.linalg.matrix_norm(H - best_s, 2)) == pytest.approx(float(ev[s]), rel=1e-4)
        assert float(ev[s]) <= err_nys <= float(ev[k])          # between best rank-s and best rank-k errors
        assert torch.allclose(pre.lhat[:3], ev[:3], rtol=1e-5)  # the top of the spectrum is accurate
        assert torch.allclose(pre.U.T @ pre.U, torch.eye(s, dtype=DT), atol=1e-10)


def test_nystrom_indefinite_falls_back_and_is_finite():
    ev = torch.cat([torch.logspace(3, -2, 30, dtype=DT), -torch.logspace(-1, -3, 10, dtype=DT)])
    H = spd(40, ev, seed=2)
    pre = nystrom(H, 40, 40, mu=1e-2, generator=torch.Generator().manual_seed(0))   # full rank sees lambda < 0
    assert torch.isfinite(pre.U).all() and bool((pre.lhat >= 0).all())
    assert float(pre.lhat[0]) == pytest.approx(1e3, rel=1e-6)


def test_apply_inverse_is_the_formula_and_sqrt_squares_to_it():
    n, s, mu = 50, 10, 1e-2
    H = spd(n, torch.logspace(4, -4, n, dtype=DT), seed=3)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(0))
    U, lh = pre.U, pre.lhat
    Pinv = (lh[-1] + mu) * (U / (lh + mu)) @ U.T + torch.eye(n, dtype=DT) - U @ U.T
    V = torch.randn(n, 3, dtype=DT)
    assert torch.allclose(pre.apply_inverse(V), Pinv @ V, atol=1e-12)
    assert torch.allclose(pre.apply_inverse(V[:, 0]), Pinv @ V[:, 0], atol=1e-12)
    assert torch.allclose(pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(V)), Pinv @ V, atol=1e-12)


def test_preconditioned_system_is_better_conditioned():
    n, s, mu = 120, 30, 1e-2
    ev = torch.cat([torch.logspace(6, 2, 20, dtype=DT), torch.logspace(0, -3, 100, dtype=DT)])  # outliers + bulk
    H = spd(n, ev, seed=4)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(0))
    A = H + mu * torch.eye(n, dtype=DT)
    S = pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(A).T).T         # P^{-1/2} A P^{-1/2}
    k_plain = torch.linalg.cond(A).item()
    k_pre = torch.linalg.cond(0.5 * (S + S.T)).item()
    assert k_plain > 1e7
    assert k_pre < 1e-4 * k_plain
    assert k_pre < 2 * (1.0 + mu) / mu                                 # ~ (lambda_{s+1} + mu) / mu
    # and PCG needs far fewer iterations than CG for the same tolerance
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(5))
    plain = pcg(lambda v: A @ v, b, tol=1e-8, max_iter=1000)
    prec = pcg(lambda v: A @ v, b, M_inv=pre.apply_inverse, tol=1e-8, max_iter=1000)
    assert prec.rel_residual <= 1e-8 and prec.iters < plain.iters / 3
    assert torch.allclose(A @ prec.x, b, atol=1e-6 * float(b.norm()))


def test_nncg_solves_a_quadratic_in_few_steps():
    n = 60
    A = spd(n, torch.logspace(3, -1, n, dtype=DT), seed=6)
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(7))
    x_star = torch.linalg.solve(A, b)
    f = lambda th: {"loss": 0.5 * th @ (A @ th) - b @ th}       # noqa: E731
    st = nncg_stepper(f, torch.zeros(n, dtype=DT), mu=1e-10, rank=20, refresh=5, cg_iters=200, cg_tol=1e-12)
    st.step()                                                   # one damped Newton step, mu ~ 0
    assert st.last["step"] == 1.0 and st.last["cg_rel_residual"] <= 1e-12   # full step accepted by Armijo
    assert float((st.theta - x_star).norm() / x_star.norm()) < 1e-8


def test_armijo_backtracks_on_a_nonconvex_loss():
    f = lambda th: {"loss": (th ** 2 - 1).pow(2).sum()}         # noqa: E731  double well, minima at +-1
    st = NNCGStepper(f, torch.full((4,), 3.0, dtype=DT), mu=1e-3, rank=2, cg_iters=20)
    losses = []
    for _ in range(15):
        st.step()
        losses.append(float(f(st.theta)["loss"]))
    assert all(b <= a + 1e-15 for a, b in zip(losses, losses[1:]))   # monotone: Armijo guarantees decrease
    assert losses[-1] < 1e-12


def test_nncg_plugs_into_train_after_lbfgs():
    if "nncg" not in pk.STEPPERS:                                # registered by pinnkit/__init__.py
        pk.STEPPERS["nncg"] = nncg_stepper
    torch.manual_seed(0)
    pinn = pk.PINN(pk.problems.Convection(beta=2.0), widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=DT)
    run = pk.train(pinn, "adam+lbfgs+nncg", 30, switch=(20, 5), lr=1e-2, quiet=True, log_every=1,
                   rank=10, cg_iters=30)
    h = run.history
    assert h.phase[-2] == "nncg" and isinstance(run.stepper, NNCGStepper)
    i = h.phase.index("nncg")
    assert h.loss[-1] < h.loss[i]                               # NNCG lowered the loss after L-BFGS
    assert all(b <= a * (1 + 1e-12) for a, b in zip(h.loss[i:], h.loss[i + 1:]))
    assert math.isfinite(run.l2re)


def test_bad_options_name_the_fix():
    with pytest.raises(ValueError, match="rank"):
        nystrom(torch.eye(3, dtype=DT), 3, 5, mu=1.0)
    with pytest.raises(ValueError, match="mu"):
        NNCGStepper(lambda th: {"l": (th ** 2).sum()}, torch.zeros(2, dtype=DT), mu=0.0)
    assert isinstance(nystrom(torch.eye(3, dtype=DT), 3, 2, 1.0), NystromPreconditioner)
