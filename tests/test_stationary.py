"""The stationary-point classifier on functions whose critical points are known in closed form."""
import math

import pytest
import torch

from pinnkit import stationary as st
from pinnkit.regression import Regression

D = torch.float64


def t(*xs):
    return torch.tensor(xs, dtype=D)


@pytest.mark.parametrize("f, x, label, index, lo, hi", [
    (lambda p: p[0] ** 2 + 3 * p[1] ** 2, t(0.0, 0.0), "minimum", 0, 2.0, 6.0),
    (lambda p: -(p[0] ** 2) - 3 * p[1] ** 2, t(0.0, 0.0), "maximum", 2, -6.0, -2.0),
    (lambda p: p[0] ** 2 - p[1] ** 2, t(0.0, 0.0), "saddle", 1, -2.0, 2.0),
    # Rosenbrock: minimum at (1, 1), Hessian [[802, -400], [-400, 200]]
    (lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2, t(1.0, 1.0), "minimum", 0,
     501 - math.sqrt(301 ** 2 + 400 ** 2), 501 + math.sqrt(301 ** 2 + 400 ** 2)),
    # sin x sin y: saddle at the origin, maximum at (pi/2, pi/2)
    (lambda p: torch.sin(p[0]) * torch.sin(p[1]), t(0.0, 0.0), "saddle", 1, -1.0, 1.0),
    (lambda p: torch.sin(p[0]) * torch.sin(p[1]), t(math.pi / 2, math.pi / 2), "maximum", 2, -1.0, -1.0),
    # monkey saddle x^3 - 3 x y^2: the Hessian vanishes, the second-order test cannot decide
    (lambda p: p[0] ** 3 - 3 * p[0] * p[1] ** 2, t(0.0, 0.0), "degenerate", 0, 0.0, 0.0),
    (lambda p: p[0] ** 2 + p[1] ** 2, t(1.0, 0.0), "not stationary", 0, 2.0, 2.0),
])
def test_known_critical_points(f, x, label, index, lo, hi):
    p = st.classify(f, x)
    assert p.label == label and p.index == index
    assert p.min_eig == pytest.approx(lo, abs=1e-9) and p.max_eig == pytest.approx(hi, abs=1e-9)
    assert p.n_negative + p.n_zero + p.n_positive == p.n_params == 2


def test_flat_directions_and_tolerances():
    f = lambda p: p[0] ** 2 + p[1] ** 4 - 1e-6 * p[2] ** 2
    x = torch.zeros(3, dtype=D)
    assert st.classify(f, x).label == "saddle"                               # -2e-6 counts as negative
    assert st.classify(f, x, eig_atol=1e-5).label == "degenerate"            # ...unless below the tolerance
    assert st.classify(f, x, eig_atol=1e-5, flat_ok=True).label == "minimum"
    assert st.classify(lambda p: p[0] ** 2 + p[1] ** 4, t(1e-4, 0.0), grad_tol=1e-3).label == "degenerate"
    assert st.classify(lambda p: p[0] ** 2 + p[1] ** 4, t(1e-4, 0.0), grad_tol=1e-5).label == "not stationary"
    p = st.classify(lambda p: -(p ** 2).sum() + 2 * p[0] ** 2 + 2 * p[1] ** 2, torch.zeros(4, dtype=D))
    assert (p.index, p.index_fraction) == (2, 0.5)
    with pytest.raises(ValueError, match="tolerances"):
        st.classify(f, x, grad_tol=-1.0)


def test_the_trivial_saddle_of_the_regression_network_matches_its_closed_form():
    """At W2 = W3 = 0 (output u == 0) the Hessian couples W3_j with W2_jk by c_k = -2 mean(y h1_k): eigenvalues
    +-||c||, each once per unit of the last hidden layer, plus 2 for the output bias."""
    reg = Regression(seed=0)
    z = st.zero_output(reg)
    assert float(reg.u(z)(reg.X).abs().max()) == 0.0
    p = st.classify(reg.loss, z, grad_tol=1e-12)
    h1 = torch.tanh(reg.X @ reg.params(z)["0.weight"].T)                    # (64, 10) first-layer features
    c = -2 * (reg.y[:, None] * h1).mean(0)
    assert p.label == "saddle" and p.index == reg.widths[-1] and p.loss == pytest.approx(float((reg.y ** 2).mean()))
    assert p.min_eig == pytest.approx(-float(c.norm()), rel=1e-10)
    assert p.max_eig == pytest.approx(2.0)
    assert st.tangent_alignment(reg.residual_vector, z) < 1e-12            # J^T r = 0 while ||r||^2 ~ 0.5


def test_escape_direction_and_tables():
    f = lambda p: p[0] ** 2 - 3 * p[1] ** 2
    lam, v = st.escape_direction(f, torch.zeros(2, dtype=D))
    assert lam == pytest.approx(-6.0) and abs(float(v[1])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no descent direction"):
        st.escape_direction(lambda p: (p ** 2).sum(), torch.zeros(2, dtype=D))
    text = st.table({"origin": st.classify(f, torch.zeros(2, dtype=D))})
    assert "saddle" in text and "-6.0e+00" in text


def test_survey_classifies_endpoints():
    E = st.survey(lambda s: Regression(widths=[3], n=8, seed=s), [0], {"gn": ("gauss_newton", 3, {"residual": True})})
    assert len(E) == 1 and E[0].point.loss == pytest.approx(E[0].residual_norm ** 2)
    assert "gn" in st.endpoint_table(E)
