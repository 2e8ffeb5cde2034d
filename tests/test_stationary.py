"""The stationary-point classifier on functions whose critical points are known in closed form."""
import dataclasses
import math

import pytest
import torch

import pinnkit as pk
from pinnkit import stationary as st
from pinnkit.book import stationary_survey as SS
from pinnkit.book.regression import Regression
from pinnkit.pinn import PINN

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
    assert SS.tangent_alignment(reg.residual_vector, z) < 1e-12            # J^T r = 0 while ||r||^2 ~ 0.5


def test_escape_direction_and_tables():
    f = lambda p: p[0] ** 2 - 3 * p[1] ** 2
    d = SS.escape_direction(f, torch.zeros(2, dtype=D))
    assert d.lam_min == pytest.approx(-6.0) and abs(float(d.v_min[1])) == pytest.approx(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.lam_min = 0.0
    with pytest.raises(ValueError, match="no descent direction"):
        SS.escape_direction(lambda p: (p ** 2).sum(), torch.zeros(2, dtype=D))
    text = SS.table({"origin": st.classify(f, torch.zeros(2, dtype=D))})
    assert "saddle" in text and "-6.0e+00" in text


def test_classify_accepts_a_terms_dict():
    pinn = PINN("poisson1d", widths=[6], n_res=12, dtype=D, seed=0)
    a = st.classify(pinn.terms, pinn.theta0)
    b = st.classify(pinn.loss, pinn.theta0)
    assert (a.loss, a.index, a.label) == (pytest.approx(b.loss), b.index, b.label)
    assert SS.escape_direction(pinn.terms, pinn.theta0).lam_min == pytest.approx(b.min_eig)


def test_global_minimum_is_told_apart_from_a_saturated_plateau():
    """Both points have index 0 and zero eigenvalues; only the bound on the loss separates them."""
    big = Regression(widths=[6, 6], n=8, seed=0)        # 61 parameters, 8 points: it can interpolate
    gn = SS.run(big, "gauss_newton", 60, residual=big.residual_vector, grad_tol=1e-13)
    p = st.classify(big.loss, gn.theta, grad_tol=1e-10, global_below=1e-12)
    # at r = 0, H = 2 J^T J has rank <= 8: at least 61 - 8 zero eigenvalues
    assert p.loss < 1e-20 and p.n_zero >= big.n_params - 8 and p.label == "global minimum"
    assert st.classify(big.loss, gn.theta, grad_tol=1e-10).label == "degenerate"   # no bound given: undecided
    reg = Regression(widths=[3], n=8, seed=0)
    # plateau: the hidden units saturated (pre-activations ~ +-1e3 on all of [0, 1]), output = mean(y)
    th = torch.zeros(reg.n_params, dtype=D)
    b = {blk.name: blk for blk in reg.blocks}
    th[b["0.bias"].start:b["0.bias"].stop] = torch.tensor([1e3, -1e3, 2e3], dtype=D)
    th[b["2.bias"].start] = float(reg.y.mean())
    q = st.classify(reg.loss, th, grad_tol=1e-10, global_below=1e-12)
    assert q.loss == pytest.approx(float(reg.y.var(unbiased=False))) and q.loss > 0.1
    assert q.index == 0 and q.n_zero >= reg.n_params - 4 and q.label == "degenerate"


def test_index_at_another_tolerance():
    p = st.classify(lambda x: x[0] ** 2 + 1e-3 * x[1] ** 2 - 1e-7 * x[2] ** 2, torch.zeros(3, dtype=D))
    assert [p.index_at(r) for r in (1e-9, 1e-6, 1e-2)] == [1, 0, 0]
    assert p.index == p.index_at(1e-8)


def test_curvature_split_closed_form():
    """r = theta0 theta1 - 1: at (0, 0) J = 0 and H = R = -2 [[0, 1], [1, 0]] (eigenvalues -2, 2);
    at (1, 1) r = 0, so H = G = 2 J^T J (eigenvalues 0, 4)."""
    r = lambda th: (th[0] * th[1] - 1.0)[None]
    s = SS.curvature_split(r, torch.zeros(2, dtype=D))
    assert (s.rank_J, s.null_dim, s.index, s.index_R, s.index_on_null) == (0, 2, 1, 1, 1)
    assert s.norm_R == pytest.approx(2.0) and s.min_eig == pytest.approx(-2.0) and s.norm_G == 0.0
    s = SS.curvature_split(r, torch.ones(2, dtype=D))
    assert (s.rank_J, s.null_dim, s.index, s.index_R) == (1, 1, 0, 0)
    assert s.norm_G == pytest.approx(4.0) and s.norm_R == pytest.approx(0.0, abs=1e-12)


def test_basis_fit_is_the_least_squares_fit_in_the_last_hidden_features():
    reg = Regression(widths=[5, 4], n=16, seed=1)
    th = reg.theta0
    p = reg.params(th)
    h = torch.tanh(torch.tanh(reg.X @ p["0.weight"].T + p["0.bias"]) @ p["2.weight"].T + p["2.bias"])
    Phi = torch.cat([h, torch.ones(16, 1, dtype=D)], 1) / 4.0          # r = (u - y) / sqrt(16)
    c = torch.linalg.lstsq(Phi, reg.y[:, None] / 4.0).solution
    best = float(torch.linalg.vector_norm(Phi @ c - reg.y[:, None] / 4.0))
    fit = SS.basis_fit(reg, th)
    assert fit.n_basis == 5 and fit.best_in_span == pytest.approx(best, rel=1e-8)
    assert fit.residual_norm == pytest.approx(float(reg.loss(th)) ** 0.5) and fit.best_in_span < fit.residual_norm


def test_tangent_alignment_refuses_a_jacobian_too_large(monkeypatch):
    reg = Regression(widths=[3], n=8)
    monkeypatch.setattr(pk.curvature, "DENSE_LIMIT", 5)
    with pytest.raises(ValueError, match="DENSE_LIMIT"):
        SS.tangent_alignment(reg.residual_vector, reg.theta0)


def test_survey_finds_the_global_minimum_and_keeps_the_trivial_saddle():
    """Gauss-Newton from theta0 interpolates; Newton started at u == 0 stays there (gradient exactly 0)."""
    starts = lambda m: [("init", m.theta0), ("u=0", st.zero_output(m))]
    E = SS.survey(lambda s: Regression(widths=[6, 6], n=8, seed=s), [0],
                  {"gn": ("gauss_newton", 60, {"residual": True}), "newton": ("newton", 3, {})},
                  starts=starts, grad_tol=1e-8, global_below=1e-12)
    by = {(e.start, e.name): e for e in E}
    assert [(e.start, e.name) for e in E] == [("init", "gn"), ("init", "newton"), ("u=0", "gn"), ("u=0", "newton")]
    assert by["init", "gn"].point.label == "global minimum" and by["init", "gn"].residual_norm < 1e-6
    z = by["u=0", "newton"]
    assert z.point.label == "saddle" and z.point.index == 6 and z.residual_norm > 0.5 and z.tangent_align < 1e-12
    assert "u=0" in SS.endpoint_table(E)


def test_checkpoints_follow_the_training_run():
    reg = Regression(widths=[3], n=8)
    cps = SS.checkpoints(reg, "adam", 40, every=10, lr=1e-2)
    assert [c.step for c in cps] == [0, 10, 20, 30, 40] and torch.equal(cps[0].theta, reg.theta0)
    assert cps[-1].loss < cps[0].loss and cps[2].loss == pytest.approx(float(reg.loss(cps[2].theta)))
    with pytest.raises(ValueError, match="every"):
        SS.checkpoints(reg, "adam", 40, every=0)


def test_escape_leaves_the_trivial_saddle_and_takes_keywords_only():
    reg = Regression(widths=[4, 4], n=16)
    z = st.zero_output(reg)
    e = SS.escape(reg, z, eps=1e-2, steps=10)
    assert e.lam_min < 0 and e.slice_drop == pytest.approx(e.predicted_drop, rel=0.1)
    assert e.loss_stay == pytest.approx(e.loss_saddle) and e.loss_escaped < 0.5 * e.loss_saddle
    with pytest.raises(TypeError):
        SS.escape(reg, z, 1e-2)
