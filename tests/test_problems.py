"""Each problem's residual and conditions vanish on its exact solution: a real check of each PDE."""
import math

import pytest
import torch

import pinnkit as pk
from pinnkit.problems import partial

CASES = [pk.problems.Poisson1D(1), pk.problems.Poisson1D(3), pk.problems.Convection(1), pk.problems.Convection(40),
         pk.problems.Reaction(5), pk.problems.Wave(1), pk.problems.Wave(5), pk.problems.Poisson2D()]


@pytest.mark.parametrize("problem", CASES, ids=repr)
def test_exact_solution_has_zero_residuals(problem):
    pts = problem.sample(500, 64, 32, seed=1).points
    scale = max(1.0, float(problem.exact(problem.grid()).abs().max()))
    res = problem.residuals(problem.exact, pts)
    # derivatives of the exact solution scale like the PDE's coefficients: compare relative to them
    coef = {"Convection": problem.__dict__.get("beta", 1), "Wave": (2 * math.pi * problem.__dict__.get("beta", 1)) ** 2,
            "Poisson1D": (math.pi * problem.__dict__.get("k", 1)) ** 2,
            "Poisson2D": 2 * math.pi ** 2}.get(type(problem).__name__, 10.0)
    for name, r in res.items():
        assert r.dtype == torch.float64 and r.numel() > 0
        assert float(r.abs().max()) < 1e-12 * coef * scale, (name, float(r.abs().max()))


@pytest.mark.parametrize("problem", CASES, ids=repr)
def test_residual_detects_a_wrong_solution(problem):
    """The check above is not vacuous: perturbing the exact solution gives a clearly non-zero residual."""
    pts = problem.sample(500, 64, 32, seed=1).points
    wrong = lambda X: problem.exact(X) + 0.1 * torch.sin(3 * X[:, 0] + 1) * (1 + X[:, -1])
    res = problem.residuals(wrong, pts)
    assert float(res["residual"].abs().max()) > 1e-2


def test_paper_settings():
    c, r, w = pk.problems.Convection(), pk.problems.Reaction(), pk.problems.Wave()
    assert c.beta == 40 and r.rho == 5 and w.beta == 5
    assert c.bounds == ((0.0, 2 * math.pi), (0.0, 1.0)) and w.bounds == ((0.0, 1.0), (0.0, 1.0))
    x = torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64)
    X0 = torch.stack([x, torch.zeros_like(x)], 1)
    assert torch.allclose(c.exact(X0), torch.sin(x))
    h = torch.exp(-(x - math.pi) ** 2 / (2 * (math.pi / 4) ** 2))
    assert torch.allclose(r.exact(X0), h)
    # wave: u_t(x, 0) = 0 and u(0, t) = u(1, t) = 0 hold for the exact solution
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    assert w.exact(torch.stack([torch.zeros_like(t), t], 1)).abs().max() < 1e-12
    assert partial(w.exact, 1)(torch.stack([torch.rand(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)],
                                           1)).abs().max() < 1e-12


def test_sampling_is_seeded_and_inside_the_domain():
    p = pk.problems.Convection(10)
    a, b = p.sample(300, 20, 10, seed=3), p.sample(300, 20, 10, seed=3)
    c = p.sample(300, 20, 10, seed=4)
    assert all(torch.equal(a.points[k], b.points[k]) for k in a.points)
    assert not torch.equal(a.points["residual"], c.points["residual"])
    for method in ("grid", "random"):
        X = p.sample(300, 20, 10, seed=0, method=method).points["residual"]
        assert X.shape == (300, 2) and len(torch.unique(X, dim=0)) == 300
        assert (X[:, 0] > 0).all() and (X[:, 0] < 2 * math.pi).all() and (X[:, 1] > 0).all() and (X[:, 1] < 1).all()


def test_allen_cahn_initial_condition_and_no_exact():
    p = pk.problems.AllenCahn()
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(p.initial(x), torch.tensor([0.0, -1.0], dtype=torch.float64))
    with pytest.raises(NotImplementedError):
        p.exact(torch.zeros(1, 2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="valid names: allen_cahn, convection, poisson1d, poisson2d, reaction, wave"):
        pk.problems.make("burgers")
    with pytest.raises(ValueError, match="positive"):
        pk.problems.Convection().sample(0, 10, 10)
    with pytest.raises(ValueError, match="valid: 'grid', 'authors', 'random'"):
        pk.problems.Convection().sample(10, 10, 10, method="sobol")
    with pytest.raises(ValueError, match="exceeds"):
        pk.problems.Convection().sample(10**6, 10, 10)
    assert isinstance(pk.problems.make("Convection", beta=3), pk.problems.Convection)


def test_wave_terms_are_sums_of_mean_squares():
    """Wave (Rathore et al.'s code): initial = MSE(u - g) + MSE(u_t), boundary = MSE(u(0,t)) + MSE(u(1,t))."""
    w = pk.problems.Wave(2)
    pts = w.sample(50, 20, 10, seed=0).points
    u = lambda X: 1.0 + X[:, 0] ** 2 + 0.5 * X[:, 1] ** 2 * (1 + X[:, 0])   # u(0,t) = 1 + t^2/2, u(1,t) = 2 + t^2
    r = w.residuals(u, pts)
    t = pts["boundary_low"][:, 1]
    expected_bc = ((1 + 0.5 * t ** 2) ** 2).mean() + ((2 + t ** 2) ** 2).mean()
    assert torch.allclose((r["boundary"] ** 2).mean(), expected_bc, rtol=1e-14)
    x = pts["initial"][:, 0]
    g = torch.sin(math.pi * x) + 0.5 * torch.sin(2 * math.pi * x)
    u_t0 = torch.zeros_like(x)                                               # u_t = t (1 + x) = 0 at t = 0
    expected_ic = ((1 + x ** 2 - g) ** 2).mean() + (u_t0 ** 2).mean()
    assert torch.allclose((r["initial"] ** 2).mean(), expected_ic, rtol=1e-14)
    # parts of different sizes keep weight 1 each
    a, b = torch.tensor([1.0, 3.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    assert float((pk.problems.sum_of_mean_squares(a, b) ** 2).mean()) == pytest.approx(5.0 + 4.0)


def test_periodic_problems_have_one_mean_square_per_term():
    c = pk.problems.Convection(1)
    pts = c.sample(30, 12, 9, seed=0).points
    u = lambda X: X[:, 0] + X[:, 1]
    r = c.residuals(u, pts)
    assert r["boundary"].numel() == 9 and torch.allclose(r["boundary"], torch.full((9,), -2 * math.pi,
                                                                                      dtype=torch.float64))
    assert torch.allclose(r["initial"], pts["initial"][:, 0] - torch.sin(pts["initial"][:, 0]))


def _forward_mode_residual(problem, u, X):
    """The PDE residual written independently with one forward-mode pass per derivative (`partial`)."""
    d = lambda f, i: partial(f, i)
    if isinstance(problem, pk.problems.Convection):
        return d(u, 1)(X) + problem.beta * d(u, 0)(X)
    if isinstance(problem, pk.problems.Reaction):
        return d(u, 1)(X) - problem.rho * u(X) * (1 - u(X))
    if isinstance(problem, pk.problems.Wave):
        return d(d(u, 1), 1)(X) - 4 * d(d(u, 0), 0)(X)
    if isinstance(problem, pk.problems.AllenCahn):
        return d(u, 1)(X) - problem.diffusion * d(d(u, 0), 0)(X) + problem.reaction * (u(X) ** 3 - u(X))
    if isinstance(problem, pk.problems.Poisson2D):
        return -d(d(u, 0), 0)(X) - d(d(u, 1), 1)(X) - problem.forcing(X)
    return -d(d(u, 0), 0)(X) - problem.forcing(X[:, 0])


@pytest.mark.parametrize("problem", CASES + [pk.problems.AllenCahn()], ids=repr)
def test_reverse_mode_jet_matches_forward_mode_and_finite_differences(problem):
    """`jet` (one reverse pass for all first derivatives) equals forward mode to rounding on a tanh network."""
    net = pk.nets.mlp(problem.dim, [16, 16]).double()
    u = lambda X: net(X).squeeze(-1)
    pts = problem.sample(40, 8, 8, seed=2).points
    r = problem.residuals(u, pts)["residual"]
    ref = _forward_mode_residual(problem, u, pts["residual"])
    assert torch.allclose(r, ref, rtol=1e-12, atol=1e-12 * float(ref.detach().abs().max()))
    # and the derivatives themselves against central differences
    X = pts["residual"]
    j = pk.problems.jet(u, X, second=range(problem.dim))
    h = 1e-4
    for i in range(problem.dim):
        e = torch.zeros_like(X)
        e[:, i] = h
        fd1 = (u(X + e) - u(X - e)) / (2 * h)
        fd2 = (u(X + e) - 2 * u(X) + u(X - e)) / h ** 2
        assert torch.allclose(j.grad[:, i], fd1, atol=1e-6) and torch.allclose(j.second[i], fd2, atol=1e-5)
    assert torch.equal(j.value, u(X))


def test_sizes_accept_numpy_integers():
    np = pytest.importorskip("numpy")
    pts = pk.problems.Convection().sample(np.int64(16), np.int32(4), np.int64(3)).points
    assert pts["residual"].shape == (16, 2) and pts["boundary_low"].shape == (3, 2)
    assert pk.problems.Poisson1D().sample(np.int64(5)).points["residual"].shape == (5, 1)
    for bad in (2.0, True, "3"):
        with pytest.raises(ValueError, match="positive integer"):
            pk.problems.Convection().sample(bad, 4, 4)


def test_authors_sampling_draws_their_points():
    """Rathore et al.'s get_data: meshgrid(x[1:-1], t[1:]) of the 257 x 101 grid, np.random.choice after seeding."""
    import numpy as np

    from pinnkit.problems import make

    for name, seed in (("convection", 123), ("wave", 234)):
        prob = make(name)
        (x0, x1), (t0, t1) = prob.bounds
        x, t = np.linspace(x0, x1, 257)[:, None], np.linspace(t0, t1, 101)[:, None]
        xm, tm = np.meshgrid(x[1:-1], t[1:])
        mesh = np.hstack([xm.reshape(-1, 1), tm.reshape(-1, 1)])
        np.random.seed(seed)
        want = mesh[np.random.choice(mesh.shape[0], 1000, replace=False)]
        got = prob.sample(1000, 257, 101, seed=seed, method="authors").points["residual"].numpy()
        assert np.abs(got - want).max() < 1e-12
    with pytest.raises(ValueError, match="exceeds the 25500 interior points"):
        make("convection").sample(25501, 4, 4, method="authors")


def test_poisson2d_points_and_boundary():
    """Müller & Zeinhofer's 2D Poisson problem: interior points inside the square, n_bc points on each edge where
    the exact solution vanishes, and a PINN on it whose loss is the sum of its two mean squares."""
    p = pk.problems.make("poisson2d")
    pts = p.sample(100, n_bc=10, seed=0).points
    X, B = pts["residual"], pts["boundary"]
    assert X.shape == (100, 2) and ((X > 0) & (X < 1)).all()
    assert B.shape == (40, 2) and (((B == 0) | (B == 1)).sum(1) == 1).all()
    assert float(p.exact(B).abs().max()) < 1e-15
    pinn = pk.PINN(p, widths=[8], n_res=50, n_bc=5, dtype=torch.float64)
    t = pinn.terms(pinn.theta0)
    assert sorted(t) == ["boundary", "residual"]
    assert torch.allclose(pinn.loss(pinn.theta0), (pinn.residual_vector(pinn.theta0) ** 2).sum())
