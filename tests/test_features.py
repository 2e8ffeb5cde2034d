"""Models linear in their parameters (pinnkit.features): operator matrices, null spaces, operator order, Fig. 10."""
from __future__ import annotations

import math

import pytest
import torch

import pinnkit as pk
from pinnkit import features as F
from pinnkit.book import features_study as FS
from pinnkit.book import fig10
from pinnkit.conditioning import range_condition


def _kappa(H: torch.Tensor) -> float:
    return range_condition(torch.linalg.eigvalsh(H), rcut=1e-12).kappa


@pytest.fixture(scope="module")
def conv():
    return F.random_features(pk.problems.Convection(beta=3.0), width=6, scale=2.0, n_res=80, n_ic=20, n_bc=10,
                             activation="sin")


def test_hessian_matches_autodiff(conv):
    H = conv.hessian()
    assert torch.allclose(H, pk.curvature.hessian(conv.loss, conv.theta0), atol=1e-10, rtol=1e-10)


def test_operator_factors_scale_each_feature(conv):
    """The residual column of feature j is (w_t + beta w_x) cos(w.X + b): the factor the operator applies."""
    A = conv.operator_matrices()["residual"]
    X = conv.pinn.points["residual"]
    W = FS.feature_weights(conv)
    b = conv.hidden[conv.pinn.blocks[1].start:conv.pinn.blocks[1].stop]
    expected = FS.operator_factors(conv, 3.0) * torch.cos(X @ W.T + b)
    assert torch.allclose(A[:, :-1], expected, atol=1e-12)
    assert float(A[:, -1].abs().max()) == 0.0          # the constant feature is annihilated exactly


def test_residual_term_has_the_constant_in_its_null_space(conv):
    Hres = conv.term_hessians()["residual"]
    e0 = torch.zeros(conv.n_params, dtype=Hres.dtype)
    e0[-1] = 1.0
    assert float((Hres @ e0).abs().max()) == 0.0
    assert range_condition(torch.linalg.eigvalsh(Hres), rcut=1e-12).rank == conv.n_params - 1
    assert range_condition(torch.linalg.eigvalsh(conv.hessian()), rcut=1e-12).rank == conv.n_params


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_fourier_derivative_gram_condition_is_k_to_the_2_order(order):
    K = 8
    m = FS.fourier_features(pk.problems.Poisson1D(), n_freq=K, n_res=64)
    assert math.isclose(_kappa(FS.derivative_gram(m, order)), K ** (2 * order), rel_tol=0.05)


def test_derivative_gram_constant_column():
    m = FS.fourier_features(pk.problems.Poisson1D(), n_freq=4, n_res=32)
    assert FS.derivative_gram(m, 2).shape == (4, 4)
    G = FS.derivative_gram(m, 2, constant=True)
    assert G.shape == (5, 5) and float(G[-1].abs().max()) == 0.0
    assert torch.allclose(G, m.term_hessians()["residual"], atol=1e-9)   # -u'' = f: the residual term
    with pytest.raises(ValueError, match="order"):
        FS.derivative_gram(m, -1)


def test_fourier_features_refuses_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        FS.fourier_features(pk.problems.Convection(beta=1.0), n_freq=4, n_res=64)
    with pytest.raises(ValueError, match="n_res"):
        FS.fourier_features(pk.problems.Poisson1D(), n_freq=16, n_res=20)


def test_operator_condition_uses_the_range(conv):
    k = FS.operator_condition(conv, "residual", rcut=1e-12)
    assert math.isfinite(k) and k > 1.0
    assert FS.operator_condition(conv, rcut=1e-12) == pytest.approx(_kappa(conv.hessian()))


def test_magnitude_ratio_is_smallest_magnitude():
    assert fig10.magnitude_ratio(torch.tensor([-3.0, 0.5, 2.0, 10.0])) == pytest.approx(20.0)
    assert fig10.magnitude_ratio([-0.1, 4.0]) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="zero"):
        fig10.magnitude_ratio([0.0, 1.0])


def test_power_law_fit_range_and_rounding():
    fit = F.fit_power_law([2, 4, 8], [12, 48, 192])
    assert fit.slope == pytest.approx(2.0) and fit.prefactor == pytest.approx(3.0)
    assert (fit.xmin, fit.xmax) == (2.0, 8.0)
    assert str(F.fit_power_law([1, 2, 4], [5, 5 * (1 + 1e-9), 5]).rounded()) == "0.0"
    with pytest.raises(ValueError):
        F.fit_power_law([1, 2], [1, 0])
    with pytest.raises(ValueError):
        F.fit_power_law([1], [1])


def test_residual_control_and_fig10_sweep_tiny():
    control = fig10.residual_control([64, 128], seed=0, width=4)
    assert control[-1].distance == 0.0 and control[0].distance > 0.0
    assert all(c.rank == 17 - 1 for c in control)        # P = 2*4 + 4 + 4 + 1 = 17; the output bias is annihilated
    (pt,) = fig10.fig10_sweep([64], adam_steps=3, lbfgs_steps=1, lr=1e-3, seed=0, width=4)
    assert pt.n_res == 64 and math.isfinite(pt.ratio) and pt.ratio >= 1.0
    assert pt.ratio == pytest.approx(pt.lmax / pt.min_abs)


def test_power_law_confidence_interval_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = [256, 512, 1024, 2048, 4096, 8192]
    y = [6.4e9, 4.0e10, 7.1e9, 4.9e9, 8.9e9, 3.0e10]
    fit = F.fit_power_law(x, y)
    ref = scipy_stats.linregress([math.log(v) for v in x], [math.log(v) for v in y])
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-8)
    lo, hi = fit.ci()
    t = scipy_stats.t.ppf(0.975, len(x) - 2)
    assert lo == pytest.approx(ref.slope - t * ref.stderr, rel=1e-3)
    assert hi == pytest.approx(ref.slope + t * ref.stderr, rel=1e-3)
    assert math.isnan(F.fit_power_law([1, 2], [1, 4]).ci()[0])      # two points: no interval


def test_t_quantile_table_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 4, 10, 30, 60):
        assert F.t_quantile(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-3)
    with pytest.raises(ValueError, match="three points"):
        F.t_quantile(0)


def test_operator_preconditioning_on_sines_gives_kappa_one():
    """Scaling sin(j pi x) by (j pi)^-2 undoes the second derivative exactly (orthogonal on the grid)."""
    m = FS.fourier_features(pk.problems.Poisson1D(), n_freq=8, n_res=128)
    G = FS.derivative_gram(m, 2, constant=True)
    assert _kappa(G) == pytest.approx(8 ** 4, rel=0.02)
    assert _kappa(FS.scaled(G, FS.order_scaling(m, 2))) == pytest.approx(1.0, abs=1e-6)
    # the whole PINN loss: (K pi)^4 / 2 before, 2 after (the boundary term's curvature on the constant)
    assert _kappa(m.hessian()) == pytest.approx((8 * math.pi) ** 4 / 2, rel=0.01)
    assert _kappa(FS.scaled(m.hessian(), FS.order_scaling(m, 2))) == pytest.approx(2.0, rel=0.01)


def test_random_sine_features_precondition_to_plain_regression():
    """On non-orthogonal random sines the second derivative, divided out, leaves plain regression's Gram matrix."""
    m = FS.random_sine_features(pk.problems.Poisson1D(), n_freq=12, n_res=256, seed=1)
    w = FS.feature_weights(m)[:, 0] / math.pi
    assert bool(((w - torch.arange(1, 13)).abs() <= 0.5).all())
    G2 = FS.scaled(FS.derivative_gram(m, 2, constant=True), FS.order_scaling(m, 2))
    G0 = FS.derivative_gram(m, 0)
    assert torch.allclose(G2[:-1, :-1], G0, rtol=1e-10, atol=1e-12)
    assert _kappa(G0) > 2.0                        # not orthogonal: kappa is not 1
    with pytest.raises(ValueError, match="1-D"):
        FS.random_sine_features(pk.problems.Convection(beta=1.0), n_freq=3)


def test_tangent_kernel_sweep_small():
    pts = fig10.tangent_kernel_sweep([4, 8, 200], seed=0, width=8, n_ic=4, n_bc=2)
    assert [q.n_res for q in pts] == [4, 8, 200] and pts[0].n_params == 33
    assert pts[0].n_rows == 4 + 4 + 2
    assert pts[0].rel_min_res > pts[1].rel_min_res             # the kernel's bottom falls as n_res grows
    assert abs(pts[2].rel_min_res) < 1e-13                     # n_res > p: singular
    # the periodicity residual at t = 0 is the difference of the initial residuals at x = 0 and 2 pi: singular
    assert all(abs(q.rel_min_all) < 1e-13 for q in pts)


def test_authors_estimate_on_a_tiny_network():
    pinn = pk.PINN(pk.problems.Convection(1.0), widths=[3], n_res=32, n_ic=8, n_bc=4, seed=0, dtype=torch.float64)
    est = fig10.authors_estimate(pinn, pinn.theta0, seed=0)
    ev = torch.linalg.eigvalsh(pk.curvature.hessian(pinn.loss, pinn.theta0))
    assert est.eigenvalues.shape == (pinn.n_params,)
    assert abs(float(est.eigenvalues[0])) == pytest.approx(float(ev.abs().max()), rel=1e-2)
