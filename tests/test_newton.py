"""Newton-family steps: closed forms (quadratics, linear residuals) and the saddle behaviour of Rowan (2025)."""
import math

import pytest
import torch

import pinnkit as pk
from pinnkit import newton as nt
from pinnkit.book.regression import Regression
from pinnkit.book.stationary_survey import run

D = torch.float64


def t(*xs):
    return torch.tensor(xs, dtype=D)


def test_newton_solves_a_quadratic_in_one_step():
    A = t([4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0])
    b = t(1.0, -2.0, 0.5)
    f = lambda th: 0.5 * th @ A @ th - b @ th
    res = run(f, "newton", steps=10, theta0=t(3.0, 3.0, -1.0))
    assert res.status == "converged" and res.steps == 1
    torch.testing.assert_close(res.theta, torch.linalg.solve(A, b))


def test_newton_on_indefinite_quadratic_jumps_to_the_saddle():
    f = lambda th: th[0] ** 2 - th[1] ** 2 + th[0] * th[1]
    res = run(f, "newton", steps=5, theta0=t(0.7, -1.3))
    assert res.steps == 1 and float(res.theta.abs().max()) < 1e-14


def test_newton_direction_is_minimum_norm_least_squares_when_singular():
    V = torch.linalg.qr(torch.randn(5, 5, dtype=D, generator=torch.Generator().manual_seed(0)))[0]
    H = V @ torch.diag(t(3.0, -2.0, 1.0, 0.0, 0.0)) @ V.T
    g = torch.randn(5, dtype=D, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(nt.newton_direction(H, g), -torch.linalg.pinv(H, hermitian=True) @ g)
    H2 = V @ torch.diag(t(3.0, -2.0, 1.0, 0.5, 4.0)) @ V.T
    torch.testing.assert_close(nt.newton_direction(H2, g), torch.linalg.solve(H2, -g))


def test_saddle_free_direction_is_descent_with_abs_eigenvalues():
    V = torch.linalg.qr(torch.randn(4, 4, dtype=D, generator=torch.Generator().manual_seed(2)))[0]
    lam = t(-3.0, -0.5, 1.0, 2.0)
    H = V @ torch.diag(lam) @ V.T
    g = torch.randn(4, dtype=D, generator=torch.Generator().manual_seed(3))
    d = nt.saddle_free_direction(H, g, damping=0.1)
    torch.testing.assert_close(d, -(V @ torch.diag(1 / (lam.abs() + 0.1)) @ V.T) @ g)
    assert float(g @ d) < 0


def test_on_x2_minus_y2_newton_finds_the_saddle_and_saddle_free_newton_escapes():
    f = lambda th: th[0] ** 2 - th[1] ** 2 + 0.25 * th[1] ** 4   # saddle (0, 0), minima (0, +-sqrt 2)
    x0 = t(0.8, 0.3)
    newton = run(f, "newton", steps=50, theta0=x0)
    assert newton.status == "converged" and float(newton.theta.norm()) < 1e-8          # the saddle
    sfn = run(f, "saddle_free_newton", steps=50, theta0=x0)
    assert sfn.status == "converged"
    torch.testing.assert_close(sfn.theta, t(0.0, math.sqrt(2.0)))                     # a minimum
    assert sfn.final_loss == pytest.approx(-1.0)
    # on the pure saddle x^2 - y^2 there is no minimum: saddle-free Newton keeps descending, away from 0
    g = lambda th: th[0] ** 2 - th[1] ** 2
    pure = run(g, "saddle_free_newton", steps=5, theta0=t(1.0, 0.1), damping=0.0)
    assert abs(float(pure.theta[1])) > 1.0 and pure.final_loss < -1.0
    assert float(run(g, "newton", steps=3, theta0=t(1.0, 0.1)).theta.norm()) < 1e-14


def test_two_layer_linear_net_newton_converges_to_the_zero_saddle():
    X = torch.randn(3, 20, dtype=D, generator=torch.Generator().manual_seed(0))
    Y = t([1.0, -2.0, 0.5]) @ X                                  # realisable target, L = ||Y - w2^T W1 X||^2 / N

    def f(th):
        W1, w2 = th[:6].view(2, 3), th[6:]
        return ((Y - w2 @ (W1 @ X)) ** 2).mean()

    x0 = 0.05 * torch.randn(8, dtype=D, generator=torch.Generator().manual_seed(1))
    newton = run(f, "newton", steps=50, theta0=x0)
    assert newton.status == "converged" and newton.final_loss > 0.5 * float((Y ** 2).mean())
    assert float((newton.theta[6:] @ newton.theta[:6].view(2, 3)).norm()) < 1e-8      # product ~ 0: u == 0
    sfn = run(f, "saddle_free_newton", steps=200, theta0=x0, damping=1e-3)
    assert sfn.final_loss < 1e-10


def test_gauss_newton_equals_the_hessian_for_a_linear_residual_and_solves_in_one_step():
    A = torch.randn(7, 4, dtype=D, generator=torch.Generator().manual_seed(4))
    b = torch.randn(7, dtype=D, generator=torch.Generator().manual_seed(5))
    r = lambda th: A @ th - b
    f = lambda th: (r(th) ** 2).sum()
    th = torch.randn(4, dtype=D)
    torch.testing.assert_close(pk.curvature.gauss_newton(r, th), pk.curvature.hessian(f, th))
    res = run(f, "gauss_newton", steps=5, theta0=th, residual=r)
    torch.testing.assert_close(res.theta, torch.linalg.lstsq(A, b).solution)
    assert res.steps == 1


def test_levenberg_marquardt_and_line_searches_decrease_the_regression_loss():
    reg = Regression(widths=[6], n=16, seed=0)
    for method in ("levenberg_marquardt", "gauss_newton", "damped_newton", "saddle_free_newton"):
        opts = {"residual": reg.residual_vector} if method in ("levenberg_marquardt", "gauss_newton") else {}
        res = run(reg, method, steps=8, **opts)
        loss = res.history.loss
        assert all(b <= a for a, b in zip(loss, loss[1:])), method
        if method != "gauss_newton":   # plain GN may crawl: near-null directions of J^T J give huge steps
            assert res.final_loss < 0.5 * loss[0], method


def test_clear_errors():
    reg = Regression(widths=[2], n=4)
    with pytest.raises(ValueError, match="residual="):
        run(reg, "gauss_newton", steps=1)
    with pytest.raises(ValueError, match="does not match the loss"):
        run(reg, "levenberg_marquardt", steps=1, residual=lambda th: 2 * reg.residual_vector(th))
    with pytest.raises(ValueError, match="unknown optimizer 'newtn'"):
        run(reg, "newtn", steps=1)
    with pytest.raises(TypeError, match="dampning.*saddle_free_newton: damping"):
        run(reg, "saddle_free_newton", steps=1, dampning=1.0)
    with pytest.raises(TypeError, match="residual"):   # undamped Newton uses the Hessian, not a residual
        run(reg, "newton", steps=1, residual=reg.residual_vector)


def test_divergence_is_reported_with_the_last_finite_iterate():
    # f = sqrt(1 + x^2) is convex, but undamped Newton maps x -> -x^3: from x = 2 it visits -8, 512, -1.3e8
    f = lambda th: torch.sqrt(1 + th ** 2).sum()
    res = run(f, "newton", steps=50, theta0=t(2.0), diverge=1e3)
    assert res.status == "diverged" and res.steps == 2
    torch.testing.assert_close(res.theta, t(512.0))
    assert res.history.step == [0, 1, 2]
    # the same run with a damped method converges to the minimum at 0
    assert run(f, "damped_newton", steps=50, theta0=t(2.0)).status == "converged"
    with pytest.raises(pk.TrainingDiverged, match="rose from its initial"):
        pk.train(f, "newton", steps=50, theta0=t(2.0), diverge=1e3, quiet=True, log_every=1)


def test_run_is_train_with_newton_defaults():
    reg = Regression(widths=[3], n=8, seed=1)
    a = run(reg, "LBFGS", steps=4)                       # method names are case-insensitive
    b = pk.train(reg, "lbfgs", steps=4, log_every=1, grad_tol=1e-10, quiet=True)
    assert type(a) is type(b) is pk.TrainResult
    assert torch.equal(a.theta, b.theta) and a.history.loss == b.history.loss and a.status == b.status
    assert run(reg, "newton", steps=0).steps == 0


def test_a_stalled_line_search_stops_the_run():
    # on sqrt(1 + x^2) at x = 2 the full Newton step overshoots to -8; with one trial step the search gives up
    f = lambda th: torch.sqrt(1 + th ** 2).sum()
    res = run(f, "damped_newton", steps=10, theta0=t(2.0), max_backtracks=1)
    assert res.status == "stalled" and res.steps == 1 and res.history.step == [0, 1]
    assert torch.equal(res.theta, t(2.0)) and res.stepper.last.alpha == 0.0
    assert run(f, "damped_newton", steps=10, theta0=t(2.0)).status != "stalled"   # 40 trials: t = 1/8 works


def test_steppers_are_registered_in_pk_train():
    assert set(nt.METHODS) <= set(pk.STEPPERS) and {"adam", "lbfgs", "soap", "nncg"} <= set(pk.STEPPERS)
    A = t([2.0, 0.5], [0.5, 1.0])
    run = pk.train(lambda th: 0.5 * th @ A @ th - th.sum(), "Newton", steps=2, theta0=t(1.0, 1.0), quiet=True)
    torch.testing.assert_close(run.theta, torch.linalg.solve(A, t(1.0, 1.0)))
