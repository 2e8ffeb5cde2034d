"""Dense BFGS and the self-scaled variants against scipy and against the algebra of the Broyden family."""
import math

import numpy as np
import pytest
import torch

import pinnkit as pk
from pinnkit.bfgs import BFGS_REASONS, UPDATES, bfgs, self_scaled_update
from pinnkit.linesearch import WolfeResult, strong_wolfe

so = pytest.importorskip("scipy.optimize")
from scipy.optimize import _linesearch as scipy_ls  # noqa: E402
from scipy.optimize import _optimize as scipy_opt  # noqa: E402

X0 = [-1.2, 1.0, -0.5, 0.8]


def rosen(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def rosen_fg(xn):
    """Rosenbrock and its gradient for scipy, computed by the same torch code as pinnkit's (same rounding)."""
    x = torch.tensor(xn, dtype=torch.float64, requires_grad=True)
    f = rosen(x)
    (g,) = torch.autograd.grad(f, x)
    return float(f.detach()), g.numpy()


def scipy_bfgs(gtol=1e-8):
    path = []
    r = so.minimize(rosen_fg, np.array(X0), jac=True, method="BFGS", options={"gtol": gtol},
                    callback=lambda xk: path.append(np.array(xk)))
    return r, np.array(path)


def scipy_wolfe12(phi, phi0, slope0, phi_prev):
    """scipy BFGS's own line search (MINPACK dcsrch, then the Nocedal-Wright zoom), as a pinnkit line search."""
    cache = {}

    def ev(t):
        if t not in cache:
            cache[t] = phi(t)
        return cache[t]

    stp, fval, _ = scipy_ls.scalar_search_wolfe1(lambda t: ev(t)[0], lambda t: ev(t)[1], phi0, phi_prev, slope0,
                                                 c1=1e-4, c2=0.9, amax=1e100, amin=1e-100)
    if stp is None:
        stp, fval, _, _ = scipy_ls.scalar_search_wolfe2(lambda t: ev(t)[0], lambda t: ev(t)[1], phi0, phi_prev,
                                                        slope0, c1=1e-4, c2=0.9, amax=1e100)
    return WolfeResult(stp, fval, None, len(cache), "wolfe")


def test_bfgs_has_scipys_iterates_when_the_line_searches_agree(monkeypatch):
    """scipy's BFGS with its first line search (dcsrch) off uses line_search_wolfe2 only, the algorithm of
    pinnkit.linesearch.strong_wolfe: then every iterate, the iteration count and the evaluations agree."""
    monkeypatch.setattr(scipy_opt, "line_search_wolfe1", lambda *a, **k: (None,) * 6)
    ref, path = scipy_bfgs()
    res = bfgs(rosen, torch.tensor(X0, dtype=torch.float64), gtol=1e-8)
    ours = torch.stack(res.path[1:]).numpy()
    assert ref.success and res.status == "converged"
    assert res.steps == ref.nit == len(path) and res.evals == ref.nfev
    np.testing.assert_allclose(ours, path, rtol=0, atol=1e-8)     # rounding, amplified over 37 steps: ~1e-9
    np.testing.assert_allclose(res.theta.numpy(), ref.x, rtol=0, atol=1e-12)


def test_with_scipys_line_search_bfgs_has_scipys_iterates():
    """Unpatched scipy (dcsrch first): the same iterates when pinnkit's BFGS is given scipy's line search, so the
    update, H0 = I, the first trial step and the stopping rule are scipy's; only the line search differs."""
    ref, path = scipy_bfgs()
    res = bfgs(rosen, torch.tensor(X0, dtype=torch.float64), gtol=1e-8, line_search=scipy_wolfe12)
    assert res.steps == ref.nit and res.status == "converged"
    np.testing.assert_allclose(torch.stack(res.path[1:]).numpy(), path, rtol=0, atol=1e-8)


@pytest.mark.parametrize("update", UPDATES)
def test_every_accepted_step_satisfies_the_strong_wolfe_conditions_and_reaches_the_minimum(update):
    x0 = torch.tensor(X0, dtype=torch.float64)
    res = bfgs(rosen, x0, gtol=1e-8, update=update)
    assert res.status == "converged" and set(res.reasons) <= set(BFGS_REASONS)
    np.testing.assert_allclose(res.theta.numpy(), np.ones(4), atol=1e-7)
    for a, b in zip(res.path, res.path[1:]):
        fa, ga = rosen_fg(a.numpy())
        fb, gb = rosen_fg(b.numpy())
        s = (b - a).numpy()
        assert fb <= fa + 1e-4 * ga @ s and abs(gb @ s) <= 0.9 * abs(ga @ s)


def test_strong_wolfe_takes_scipys_steps():
    """On Rosenbrock from several points along -g: the step of scipy's scalar_search_wolfe2, to rounding."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(4, generator=gen, dtype=torch.float64)
        f0, g0 = rosen_fg(x.numpy())
        d = -g0 / np.linalg.norm(g0)

        def phi(t, x=x, d=d):
            f, g = rosen_fg(x.numpy() + t * d)
            return f, float(g @ d)

        prev = f0 + 0.3 * abs(g0 @ d)
        ours = strong_wolfe(phi, f0, float(g0 @ d), prev)
        ref = scipy_ls.scalar_search_wolfe2(lambda t: phi(t)[0], lambda t: phi(t)[1], f0, prev, float(g0 @ d),
                                            amax=1e100)
        assert ours.reason == "wolfe" and ours.step == pytest.approx(ref[0], rel=1e-12)
        fa, sa = phi(ours.step)
        assert fa <= f0 + 1e-4 * ours.step * (g0 @ d) and abs(sa) <= 0.9 * abs(g0 @ d)


def exact_quadratic_search(phi, phi0, slope0, phi_prev):
    """The exact minimiser along the line of a quadratic: phi(1) fixes its curvature."""
    f1, _ = phi(1.0)
    t = -slope0 / (2 * (f1 - phi0 - slope0))
    ft, st = phi(t)
    return WolfeResult(t, ft, st, 2, "wolfe")


@pytest.mark.parametrize("update", UPDATES)
def test_finite_termination_on_a_quadratic_with_exact_line_searches(update):
    """Every member of the (self-scaled) Broyden family with exact line searches minimises a quadratic in n steps."""
    n = 8
    gen = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(0, 2, n, dtype=torch.float64)) @ Q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    f = lambda th: 0.5 * th @ A @ th - b @ th  # noqa: E731
    res = bfgs(f, torch.zeros(n, dtype=torch.float64), update=update, gtol=1e-10, max_steps=n + 1,
               line_search=exact_quadratic_search)
    grad = A @ res.theta - b
    assert res.status == "converged" and res.steps <= n + 1 and float(grad.norm()) <= 1e-10
    # negative control: steepest descent (H kept at I) is far from it after the same number of steps
    x = torch.zeros(n, dtype=torch.float64)
    for _ in range(n + 1):
        g = A @ x - b
        x = x - float(g @ g) / float(g @ A @ g) * g
    assert float((A @ x - b).norm()) > 1e-3


def _random_pair(seed, n=5, b_target=None):
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=gen, dtype=torch.float64)
    H = M @ M.T + n * torch.eye(n, dtype=torch.float64)
    s = torch.randn(n, generator=gen, dtype=torch.float64)
    y = s + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)
    assert float(y @ s) > 0
    g = -torch.linalg.solve(H, s)                   # s = t d with d = -H g and t = 1: b = s^T B s / y^T s
    if b_target is not None:                         # rescale g so that b = b_target
        g = g * b_target / float(-(s @ g) / (y @ s))
    return H, s, y, g


def _bfgs_product(H, s, y):
    rho = 1 / float(y @ s)
    eye = torch.eye(len(s), dtype=H.dtype)
    return (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)


def _dfp(H, s, y):
    Hy = H @ y
    return H - torch.outer(Hy, Hy) / float(y @ Hy) + torch.outer(s, s) / float(y @ s)


def test_ssbfgs_is_bfgs_when_its_scaling_is_one_and_bfgs_of_H_over_tau_otherwise():
    H, s, y, g = _random_pair(0, b_target=0.5)                       # b <= 1: tau = min(1, 1/b) = 1
    torch.testing.assert_close(self_scaled_update(H, s, y, g, 1.0, "bfgs")[0], _bfgs_product(H, s, y), rtol=1e-12,
                               atol=1e-12)                          # O(n^2) form = scipy's product form
    Hn, tau, phi = self_scaled_update(H, s, y, g, 1.0, "ssbfgs")
    assert tau == 1.0 and phi == 1.0
    torch.testing.assert_close(Hn, self_scaled_update(H, s, y, g, 1.0, "bfgs")[0], rtol=1e-12, atol=1e-12)
    H, s, y, g = _random_pair(1, b_target=4.0)                       # b = 4: tau = 1/4
    Hn, tau, _ = self_scaled_update(H, s, y, g, 1.0, "ssbfgs")
    assert tau == pytest.approx(0.25, rel=1e-12)
    torch.testing.assert_close(Hn, _bfgs_product(H / tau, s, y), rtol=1e-10, atol=1e-10)   # the authors' form


def _authors_ssbroyden2(H, s, y, g, t):
    """tau_k and phi_k of SSBroyden2 evaluated in NumPy from Urban, Stefanou & Pons (2025), eqs. 13-23, as stated in
    pinnkit.bfgs's docstring (an independent evaluation: NumPy arrays, the equations in their printed order)."""
    H, s, y, g = (v.numpy() for v in (H, s, y, g))
    n = s.size
    rho = 1.0 / (y @ s)
    h = rho * (y @ (H @ y))                          # h_k
    b = -t * rho * (s @ g)                           # b_k
    a = b * h - 1.0                                  # a_k
    rho_minus = np.minimum(1.0, h * (1.0 - np.sqrt(np.abs(a) / (1.0 + a))))
    theta = np.clip((1.0 - b) / b, (rho_minus - 1.0) / a, 1.0 / rho_minus)   # max(theta^-, min(theta^+, .))
    sigma = 1.0 + theta * a
    rho_bar = np.minimum(1.0, 1.0 / b)
    root = np.abs(sigma) ** (1.0 / (1.0 - n))
    tau = np.minimum(rho_bar * root, sigma) if theta <= 0 else rho_bar * np.minimum(root, 1.0 / theta)
    return float(tau), float((1.0 - theta) / (1.0 + a * theta))


@pytest.mark.parametrize("seed, b", [(2, 0.5), (3, 3.0), (4, None)])
def test_ssbroyden_is_the_scaled_broyden_family_member_with_the_authors_tau_and_phi(seed, b):
    H, s, y, g = _random_pair(seed, b_target=b)
    Hn, tau, phi = self_scaled_update(H, s, y, g, 0.7, "ssbroyden")
    ref_tau, ref_phi = _authors_ssbroyden2(H, s, y, g, 0.7)
    assert tau == pytest.approx(ref_tau, rel=1e-12) and phi == pytest.approx(ref_phi, rel=1e-12)
    family = (1 - phi) * _dfp(H / tau, s, y) + phi * _bfgs_product(H / tau, s, y)    # inverse-form Broyden class
    torch.testing.assert_close(Hn, family, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(Hn @ y, s, rtol=1e-10, atol=1e-10)                    # the secant equation
    assert float(torch.linalg.eigvalsh(0.5 * (Hn + Hn.T)).min()) > 0                  # positive definite


def test_an_update_without_positive_curvature_is_skipped():
    H, s, y, g = _random_pair(5)
    assert self_scaled_update(H, s, -y, g, 1.0, "bfgs") is None
    with pytest.raises(ValueError, match="update must be one of"):
        self_scaled_update(H, s, y, g, 1.0, "dfp")


def test_registered_steppers_count_evaluations_and_say_why_each_step_ended():
    pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=torch.float64, seed=0)
    for name in ("bfgs", "ssbfgs", "ssbroyden"):
        run = pk.train(pinn, name, steps=15, quiet=True, log_every=5)
        h = run.history
        assert h.loss[-1] < 0.5 * h.loss[0], name
        assert h.stops["step"] == list(range(15)) and set(h.stops["reason"]) <= set(BFGS_REASONS)
        assert h.evals[0] == 0 and h.evals[-1] == sum(h.stops["evals"])   # the first step's include theta0's
        assert math.isclose(h.loss[-1], float(pinn.loss(run.theta)), rel_tol=1e-12)


def test_dense_bfgs_refuses_too_many_parameters():
    with pytest.raises(ValueError, match="lbfgs64"):
        pk.train(lambda th: (th ** 2).sum(), "bfgs", steps=1, theta0=torch.ones(50, dtype=torch.float64),
                 max_params=10, quiet=True)
