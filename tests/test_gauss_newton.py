"""ENGD and Levenberg-Marquardt (pinnkit.gauss_newton) against independent references: the least-squares
solution (numpy / torch.linalg), the pseudo-inverse, scipy's MINPACK Levenberg-Marquardt, and the dense Hessian."""
import math

import numpy as np
import pytest
import torch

import pinnkit as pk
from pinnkit import gauss_newton as gn
from pinnkit.book.regression import Regression

D = torch.float64


def _linear(A, b):
    r = lambda th: A @ th - b  # noqa: E731
    return r, (lambda th: {"loss": (r(th) ** 2).sum()})


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_one_step_with_eta_one_solves_linear_least_squares(solver):
    """r(theta) = A theta - b: Gauss-Newton is exact, so one step from anywhere lands on numpy's lstsq solution."""
    gen = torch.Generator().manual_seed(0)
    A, b = torch.randn(12, 5, generator=gen, dtype=D), torch.randn(12, generator=gen, dtype=D)
    r, f = _linear(A, b)
    s = gn.engd(f, torch.randn(5, generator=gen, dtype=D), residual=r, solver=solver)
    s.step()
    ref = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)[0]
    assert s.last.eta == 1.0
    assert np.allclose(s.theta.numpy(), ref, rtol=1e-9, atol=1e-10)


def test_rank_deficient_jacobian_gives_the_minimum_norm_step_and_the_cutoff_is_stated():
    """J with a repeated column (rank 3 of 4): from zero the step is the pseudo-inverse solution pinv(A) b; a singular
    value just above sqrt(rcond) * sigma_max is kept, one just below it is dropped."""
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(10, 3, generator=gen, dtype=D)
    A = torch.cat([A, A[:, :1]], dim=1)
    b = torch.randn(10, generator=gen, dtype=D)
    r, f = _linear(A, b)
    for solver in ("dense", "cg"):
        s = gn.engd(f, torch.zeros(4, dtype=D), residual=r, solver=solver)
        s.step()
        assert torch.allclose(s.theta, torch.linalg.pinv(A) @ b, atol=1e-10), solver
    assert s.last.rank is None and gn.engd(f, torch.zeros(4, dtype=D), residual=r).rcond == 5 * torch.finfo(D).eps
    dense = gn.engd(f, torch.zeros(4, dtype=D), residual=r, solver="dense")
    dense.step()
    assert dense.last.rank == 3
    g = torch.tensor([2.0, 2.0], dtype=D)
    for sigma, kept in ((3e-6, 2), (3e-7, 1)):           # G = 2 J^T J: eigenvalues 2 and 2 sigma^2; cutoff 1e-12
        d, rank = gn.dense_direction(torch.diag(torch.tensor([1.0, sigma], dtype=D)), g, rcond=1e-12)
        assert rank == kept
        assert math.isclose(float(d[1]), 1.0 / sigma ** 2 if kept == 2 else 0.0, rel_tol=1e-8)


def test_dense_and_cg_steps_agree():
    """The same ENGD step from the dense eigh solve and from matrix-free CG (linearize + vjp), and the same runs,
    on a nonlinear least-squares problem r = tanh(A theta) - b with a well-conditioned Jacobian."""
    gen = torch.Generator().manual_seed(4)
    A, b = torch.randn(30, 8, generator=gen, dtype=D) / 3, 0.5 * torch.rand(30, generator=gen, dtype=D)
    res = lambda th: torch.tanh(A @ th) - b  # noqa: E731
    f = lambda th: {"loss": (res(th) ** 2).sum()}  # noqa: E731
    th = torch.randn(8, generator=gen, dtype=D)
    dense, free = gn.gn_system(res, th, dense=True), gn.gn_system(res, th)
    assert torch.allclose(dense.grad, free.grad, rtol=1e-12, atol=1e-14)
    v = torch.randn(8, generator=gen, dtype=D)
    assert torch.allclose(dense.G(v), pk.curvature.gauss_newton(res, th) @ v, rtol=1e-10)
    assert torch.allclose(free.G(v), dense.G(v), rtol=1e-10, atol=1e-12)
    d_dense, rank = gn.dense_direction(dense.J, dense.grad)
    d_cg, its = gn.cg_direction(free, free.grad, tol=1e-12, max_iter=100)
    assert rank == 8 and its <= 8 + 2
    assert torch.allclose(d_cg, d_dense, rtol=1e-8, atol=1e-10)
    runs = [pk.train(f, "engd", steps=6, theta0=th, residual=res, quiet=True, log_every=1, solver=s)
            for s in ("dense", "cg")]
    assert np.allclose(runs[0].history.loss, runs[1].history.loss, rtol=1e-8)
    assert runs[0].history.loss[-1] < 0.5 * runs[0].history.loss[0]


@pytest.mark.parametrize("problem", ["poisson2d", "convection", "reaction", "wave"])
def test_rowwise_jacobian_equals_jacrev(problem):
    """The point-by-point Jacobian of a PINN's residual vector is jacrev's, including the wave problem's two-part
    initial and boundary terms (two values per point, stacked part after part)."""
    pinn = pk.PINN(problem, widths=[5], n_res=20, n_ic=6, n_bc=4, dtype=D, seed=0)
    th = pinn.theta0 + 0.1 * torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(0), dtype=D)
    J = gn.rowwise_jacobian(pinn, th)
    ref = torch.func.jacrev(pinn.residual_vector)(th)
    assert J is not None and J.shape == ref.shape and torch.allclose(J, ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(gn.gn_system(pinn.residual_vector, th, dense=True, model=pinn).J, ref, atol=1e-12)


class _MeanTerm(pk.problems.Convection):
    """Convection with an extra term that is not row-wise: the mean of u over the residual points."""

    def residuals(self, u, pts):
        out = super().residuals(u, pts)
        return {**out, "mean": u(pts["residual"]).mean().reshape(1)}


def test_rowwise_jacobian_declines_a_term_that_is_not_rowwise():
    pinn = pk.PINN(_MeanTerm(), widths=[5], n_res=20, n_ic=6, n_bc=4, dtype=D, seed=0)
    th = pinn.theta0
    assert gn.rowwise_jacobian(pinn, th) is None
    ref = torch.func.jacrev(pinn.residual_vector)(th)
    assert torch.allclose(gn.gn_system(pinn.residual_vector, th, dense=True, model=pinn).J, ref, atol=1e-12)


def test_engd_line_search_vmap_equals_loop_and_counts_evaluations():
    model = Regression(widths=[5], n=24, target=lambda x: torch.sin(3 * x), dtype=D, seed=1)
    th = model.theta0
    d = torch.randn(th.numel(), generator=torch.Generator().manual_seed(3), dtype=D)
    etas = gn.default_etas(12)
    a = gn.grid_line_search(model.loss, th, d, etas, vmap=True)
    b = gn.grid_line_search(model.loss, th, d, etas, vmap=False)
    assert a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-12)
    ref = min(float(model.loss(th - e * d)) for e in etas)
    assert math.isclose(a[1], ref, rel_tol=1e-12)
    run = pk.train(model, "engd", steps=3, quiet=True, log_every=1, etas=etas)     # model: residual found
    ev = run.history.evals
    assert len(ev) >= 2 and ev[0] == 0 and all(b - a == 13 for a, b in zip(ev, ev[1:]))  # 1 + 12 trials a step
    assert run.history.loss[-1] < run.history.loss[0]


def test_lm_matches_scipy_minpack_on_a_small_problem():
    """Fit y = a exp(-b t) + c: LM ends at MINPACK's (scipy least_squares, method='lm') minimiser."""
    scipy_opt = pytest.importorskip("scipy.optimize")
    t = np.linspace(0, 3, 25)
    y = 2.0 * np.exp(-1.3 * t) + 0.5 + 0.05 * np.sin(7 * t)
    tt, yy = torch.tensor(t, dtype=D), torch.tensor(y, dtype=D)

    def res(th):
        return th[0] * torch.exp(-th[1] * tt) + th[2] - yy

    ref = scipy_opt.least_squares(lambda x: x[0] * np.exp(-x[1] * t) + x[2] - y, [1.0, 0.3, 0.0], method="lm",
                                  xtol=1e-15, ftol=1e-15, gtol=1e-15)
    run = pk.train(lambda th: {"loss": (res(th) ** 2).sum()}, "lm", steps=60, theta0=torch.tensor([1.0, 0.3, 0.0],
                   dtype=D), residual=res, quiet=True, grad_tol=1e-13)
    assert np.allclose(run.theta.numpy(), ref.x, rtol=1e-8, atol=1e-10)
    assert math.isclose(run.loss, 2 * ref.cost, rel_tol=1e-10)    # scipy's cost is half the sum of squares
    mus = [s.mu for s in run.stepper.diagnostics]
    assert min(mus) < mus[0]                                        # the damping falls as the model becomes good


def test_lm_rejects_a_bad_step_and_raises_the_damping():
    """A tiny initial damping on a curved residual: the first trial step overshoots (gain ratio <= 0), is rejected,
    and mu grows until a step lowers the loss."""
    res = lambda th: torch.stack([10 * (th[1] - th[0] ** 2), 1 - th[0]])  # noqa: E731  Rosenbrock
    f = lambda th: {"loss": (res(th) ** 2).sum()}  # noqa: E731
    s = gn.lm(f, torch.tensor([-1.2, 1.0], dtype=D), residual=res, damping=1e-12)
    losses = [float(f(s.theta)["loss"])]
    for _ in range(40):
        s.step()
        losses.append(s.last.loss_after)
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert any(st.evals > 2 for st in s.diagnostics)                # at least one rejected trial
    assert torch.allclose(s.theta, torch.ones(2, dtype=D), atol=1e-8)


def test_hessian_is_gauss_newton_plus_residual_curvature():
    """Chapter 6's H = G + R on a PINN: G from the ENGD system (2 J^T J) and R = 2 sum_i r_i Hess(r_i), against the
    dense Hessian of the loss."""
    pinn = pk.PINN("poisson2d", widths=[4], n_res=12, n_bc=2, dtype=D, seed=0)
    th = pinn.theta0
    sys = gn.gn_system(pinn.residual_vector, th, dense=True)
    G = 2.0 * sys.J.T @ sys.J
    r0 = sys.r.detach()
    R = pk.curvature.hessian(lambda x: 2.0 * (r0 * pinn.residual_vector(x)).sum(), th)
    H = pk.curvature.hessian(pinn.loss, th)
    assert torch.allclose(H, G + R, rtol=1e-9, atol=1e-9 * float(H.abs().max()))
    assert float(torch.linalg.eigvalsh(G).min()) > -1e-9 * float(G.abs().max())      # G is PSD, H need not be


def test_engd_stalls_at_a_minimum():
    r, f = _linear(torch.eye(2, dtype=D), torch.ones(2, dtype=D))
    s = gn.engd(f, torch.ones(2, dtype=D), residual=r)
    s.step()
    assert s.stalled and torch.equal(s.theta, torch.ones(2, dtype=D))


def test_errors_name_the_fix():
    f = lambda th: (th ** 2).sum()  # noqa: E731
    with pytest.raises(ValueError, match="residual="):
        pk.train(f, "engd", steps=1, theta0=torch.ones(2, dtype=D))
    with pytest.raises(ValueError, match="does not match the loss"):
        gn.engd(f, torch.ones(2, dtype=D), residual=lambda th: th * 2)
    with pytest.raises(ValueError, match="solver='cg'"):
        gn.engd(f, torch.ones(6000, dtype=D), residual=lambda th: th, solver="dense")
    with pytest.raises(ValueError, match="solver must be"):
        gn.engd(f, torch.ones(2, dtype=D), residual=lambda th: th, solver="qr")
    assert {"engd", "lm"} <= set(pk.STEPPERS)


def test_engd_damping_by_the_loss():
    """damping='loss': mu = L(theta) at each step (recorded in the diagnostics); a bad value names the choices."""
    r, f = _linear(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=D), torch.tensor([2.0, 1.0, 3.0], dtype=D))
    s = gn.engd(f, torch.tensor([5.0, -7.0], dtype=D), residual=r, damping="loss")
    s.step()
    assert s.last.mu == s.last.loss_before and s.last.loss_after < s.last.loss_before
    with pytest.raises(ValueError, match="'loss' for engd"):
        gn.lm(f, torch.zeros(2, dtype=D), residual=r, damping="loss")


def test_step_cost_is_book_code_and_times_the_three_parts():
    from pinnkit.book import gauss_newton_study
    assert not hasattr(gn, "step_cost") and not hasattr(gn, "find_residual")    # moved / merged into find_model
    pinn = pk.PINN("poisson2d", widths=[4], n_res=16, n_bc=4, dtype=D, seed=0)
    cost = gauss_newton_study.step_cost(pinn, pinn.theta0, repeat=1)
    assert set(cost) == {"jacobian", "solve", "line_search"} and all(v >= 0 for v in cost.values())
    assert gn.find_model(pinn.terms) is pinn and gn.find_model(pk.objective.as_terms(pinn)) is pinn
    assert gn.find_model(lambda th: th.sum()) is None
