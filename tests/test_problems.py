"""Each problem's residual and conditions vanish on its exact solution: a real check of each PDE."""
import math

import pytest
import torch

import pinnkit as pk
from pinnkit.problems import partial

CASES = [pk.problems.Poisson1D(1), pk.problems.Poisson1D(3), pk.problems.Convection(1), pk.problems.Convection(40),
         pk.problems.Reaction(5), pk.problems.Wave(1), pk.problems.Wave(5)]


@pytest.mark.parametrize("problem", CASES, ids=repr)
def test_exact_solution_has_zero_residuals(problem):
    pts = problem.sample(500, 64, 32, seed=1).points
    scale = max(1.0, float(problem.exact(problem.grid()).abs().max()))
    res = problem.residuals(problem.exact, pts)
    # derivatives of the exact solution scale like the PDE's coefficients: compare relative to them
    coef = {"Convection": problem.__dict__.get("beta", 1), "Wave": (2 * math.pi * problem.__dict__.get("beta", 1)) ** 2,
            "Poisson1D": (math.pi * problem.__dict__.get("k", 1)) ** 2}.get(type(problem).__name__, 10.0)
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
    with pytest.raises(ValueError, match="valid names: allen_cahn, convection, poisson1d, reaction, wave"):
        pk.problems.make("burgers")
    with pytest.raises(ValueError, match="positive"):
        pk.problems.Convection().sample(0, 10, 10)
    with pytest.raises(ValueError, match="valid: 'grid', 'random'"):
        pk.problems.Convection().sample(10, 10, 10, method="sobol")
    with pytest.raises(ValueError, match="exceeds"):
        pk.problems.Convection().sample(10**6, 10, 10)
    assert isinstance(pk.problems.make("Convection", beta=3), pk.problems.Convection)
