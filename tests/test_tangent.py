"""pinnkit.tangent against dense references: finite differences, eigvalsh, Krylov least squares, plain loops."""
from __future__ import annotations

import math

import pytest
import torch

import pinnkit as pk
from pinnkit import conditioning as K
from pinnkit import features as F
from pinnkit import tangent as T
from pinnkit.book import features_study as FS
from pinnkit.book import tangent_study as TS

f64 = torch.float64


def spd(n: int, kappa: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=f64))
    ev = torch.logspace(0, math.log10(kappa), n, dtype=f64)
    return Q @ torch.diag(ev) @ Q.T, ev


def small_pinn(seed: int = 0, width: int = 6) -> pk.PINN:
    return TS.grid_pinn(pk.problems.Convection(5.0), width, nx=8, nt=4, n_ic=8, n_bc=4, seed=seed)


def test_kernel_against_finite_differences():
    pinn = small_pinn()
    th = pinn.theta0
    r = pinn.residual_vector
    eps = 1e-6
    cols = []
    for j in range(th.numel()):
        e = torch.zeros_like(th)
        e[j] = eps
        cols.append((r(th + e) - r(th - e)) / (2 * eps))
    J_fd = torch.stack(cols, dim=1).detach()
    K = T.tangent_kernel(r, th)
    assert K.shape == (J_fd.shape[0], J_fd.shape[0])
    assert torch.allclose(K, J_fd @ J_fd.T, rtol=1e-6, atol=1e-6 * float(K.abs().max()))


@pytest.mark.parametrize("width", [3, 12])          # p < n and p > n
def test_kernel_and_gram_share_nonzero_eigenvalues(width):
    pinn = small_pinn(width=width)
    J = T.residual_jacobian(pinn.residual_vector, pinn.theta0)
    n, p = J.shape
    assert (p < n) == (width == 3)
    ek = torch.linalg.eigvalsh(T.tangent_kernel(pinn.residual_vector, pinn.theta0)).flip(0)
    eg = torch.linalg.eigvalsh(J.T @ J).flip(0)
    m = min(n, p)
    assert torch.allclose(ek[:m], eg[:m], rtol=0, atol=1e-10 * float(ek[0]))
    rest = ek[m:] if n > p else eg[m:]
    assert float(rest.abs().max()) < 1e-10 * float(ek[0])


def test_residual_jacobian_stacks_dict_in_order():
    pinn = small_pinn()
    J_dict = T.residual_jacobian(pinn.residuals, pinn.theta0)
    sizes = [v.numel() for v in pinn.residuals(pinn.theta0).values()]
    scale = torch.cat([torch.full((s,), 1 / math.sqrt(s), dtype=f64) for s in sizes])
    J_vec = T.residual_jacobian(pinn.residual_vector, pinn.theta0)
    assert torch.allclose(J_dict * scale[:, None], J_vec, atol=1e-12)


def test_pl_star_is_the_smallest_singular_value_squared():
    A = torch.randn(5, 8, generator=torch.Generator().manual_seed(1), dtype=f64)        # p >= n
    pl = T.pl_star(lambda th: A @ th, torch.zeros(8, dtype=f64))
    s = torch.linalg.svdvals(A)
    assert pl.n == 5 and pl.p == 8
    assert math.isclose(pl.mu, float(s[-1] ** 2), rel_tol=1e-10)
    assert math.isclose(pl.kappa, float(s[0] ** 2 / s[-1] ** 2), rel_tol=1e-10)
    tall = T.pl_star(lambda th: A.T @ th[:5], torch.zeros(5, dtype=f64))                  # p < n: singular
    assert abs(tall.mu) < 1e-12 * tall.lmax


def test_white_residual_error_projects_on_the_range():
    A = torch.randn(20, 4, generator=torch.Generator().manual_seed(2), dtype=f64)
    e0 = TS.white_residual_error(A, torch.Generator().manual_seed(3))
    z = torch.randn(20, generator=torch.Generator().manual_seed(3), dtype=f64)
    Q, _ = torch.linalg.qr(A)
    assert torch.allclose(A @ e0, Q @ (Q.T @ z), atol=1e-12)


def gd_loop(H, e0, tol, step):
    e, E0, k = e0.clone(), TS.energy_norm(H, e0), 0
    while TS.energy_norm(H, e) > tol * E0:
        e, k = e - step * (H @ e), k + 1
    return k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_iterations_matches_the_step_by_step_loop(seed):
    H, ev = spd(12, 300.0, seed)
    e0 = torch.randn(12, generator=torch.Generator().manual_seed(seed + 10), dtype=f64)
    for tol, step in ((1e-3, None), (1e-5, 1.5 / float(ev[-1]))):
        eta = 1.0 / float(ev[-1]) if step is None else step
        assert TS.gd_iterations(H, e0, tol, step) == gd_loop(H, e0, tol, eta)


def test_gd_iterations_closed_form_on_one_eigenvector():
    lam = torch.tensor([1e-3, 0.5, 1.0], dtype=f64)
    e0 = torch.tensor([1.0, 0.0, 0.0], dtype=f64)
    k = TS.gd_iterations(torch.diag(lam), e0, tol=1e-4)
    assert k == math.ceil(math.log(1e-4) / math.log(1 - 1e-3))
    assert k == TS.predicted_iterations(lam, tol=1e-4).gd          # the bound is attained


def test_gd_iterations_diverging_step_raises():
    H = torch.diag(torch.tensor([1.0, 2.0], dtype=f64))
    with pytest.raises(RuntimeError, match="did not reach"):
        TS.gd_iterations(H, torch.ones(2, dtype=f64), step=1.5, max_iter=1000)
    with pytest.raises(ValueError, match="zero energy"):
        TS.gd_iterations(H, torch.zeros(2, dtype=f64))


def krylov_optimum(H, e0, k):
    """min ||x||_H over x in e0 + span{H e0, ..., H^k e0}: what CG's k-th iterate attains (exact arithmetic)."""
    vs, v = [], H @ e0
    for _ in range(k):
        vs.append(v / v.norm())
        v = H @ vs[-1]
    Q, _ = torch.linalg.qr(torch.stack(vs, 1))
    L = torch.linalg.cholesky(H)
    y = torch.linalg.lstsq(L.T @ Q, -(L.T @ e0)[:, None]).solution[:, 0]
    return TS.energy_norm(H, e0 + Q @ y)


@pytest.mark.parametrize("seed", [0, 1])
def test_cg_iterations_against_krylov_least_squares(seed):
    H, _ = spd(10, 50.0, seed)
    e0 = torch.randn(10, generator=torch.Generator().manual_seed(seed + 5), dtype=f64)
    E0 = TS.energy_norm(H, e0)
    for tol in (1e-1, 1e-3):
        ref = next(k for k in range(1, 11) if krylov_optimum(H, e0, k) <= tol * E0)
        assert TS.cg_iterations(H, e0, tol) == ref


def test_cg_ends_after_the_number_of_distinct_eigenvalues():
    ev = torch.tensor([1.0] * 5 + [3.0] * 4 + [10.0] * 3 + [40.0] * 2, dtype=f64)
    Q, _ = torch.linalg.qr(torch.randn(14, 14, generator=torch.Generator().manual_seed(0), dtype=f64))
    H = Q @ torch.diag(ev) @ Q.T
    e0 = torch.randn(14, generator=torch.Generator().manual_seed(1), dtype=f64)
    assert TS.cg_iterations(H, e0, tol=1e-10) == 4


@pytest.mark.parametrize("rho", [1 / 2, 1 / 3, 1 / 5])
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_chebyshev_steps_closed_form(rho, tol):
    """The one Chebyshev count (conditioning._chebyshev_steps, used by cg_bound and predicted_iterations): with
    kappa = ((1 + rho) / (1 - rho))^2, T_m((kappa + 1) / (kappa - 1)) = (rho^-m + rho^m) / 2."""
    kappa = ((1 + rho) / (1 - rho)) ** 2
    m = next(m for m in range(1, 100) if 2 / (rho ** -m + rho ** m) <= tol)
    assert K._chebyshev_steps(kappa, tol) == m
    assert m <= next(k for k in range(1, 100) if 2 * rho ** k <= tol) <= m + 1     # the 2 rho^m bound's count
    assert K._chebyshev_steps(1.0, tol) == 1
    for bad in ((0.5, tol), (math.inf, tol), (kappa, 0.0), (kappa, 1.0)):
        with pytest.raises(ValueError):
            K._chebyshev_steps(*bad)
    assert not hasattr(T, "chebyshev_iterations")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_predictions_bound_the_measurements(seed):
    # an evenly spread spectrum, n >> sqrt(kappa): the Chebyshev regime, where rounding does not delay CG
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=f64))
    ev = torch.linspace(1.0, 100.0, 200, dtype=f64)
    H = Q @ torch.diag(ev) @ Q.T
    e0 = torch.randn(200, generator=gen, dtype=f64)
    pred = TS.predicted_iterations(ev, 1e-4)
    assert pred.rank == 200 and math.isclose(pred.kappa, 100.0, rel_tol=1e-9)
    assert pred.cg == pred.cg_chebyshev < 200
    assert TS.gd_iterations(H, e0, 1e-4) <= pred.gd
    assert pred.cg_chebyshev / 2 < TS.cg_iterations(H, e0, 1e-4) <= pred.cg


def test_rounding_delays_cg_beyond_the_dimension():
    """The exact-arithmetic bound (at most n iterations) fails in float64 on a spread-out spectrum: a known
    effect of finite precision (Meurant & Strakos 2006), which the chapter reports."""
    H, ev = spd(30, 1e3, 0)
    e0 = torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=f64)
    assert TS.predicted_iterations(ev, 1e-4).cg == 30 < TS.cg_iterations(H, e0, 1e-4)


def test_predicted_iterations_counts_outliers_and_refuses_indefinite():
    ev = torch.cat([torch.linspace(1, 2, 40, dtype=f64), torch.tensor([1e3, 1e4, 1e5], dtype=f64)])
    pred = TS.predicted_iterations(ev, 1e-6)
    assert pred.outliers == 3 and pred.cg == 3 + K._chebyshev_steps(2.0, 1e-6)
    assert pred.cg_chebyshev > 100 * pred.cg
    with pytest.raises(ValueError, match="negative"):
        TS.predicted_iterations(torch.tensor([-1.0, 1.0], dtype=f64))


def test_lbfgs_converges_and_counts_evaluations():
    H, _ = spd(20, 1e3, 0)
    e0 = torch.randn(20, generator=torch.Generator().manual_seed(0), dtype=f64)
    out = TS.lbfgs_iterations(H, e0, 1e-4)
    assert TS.cg_iterations(H, e0, 1e-4) <= out.iterations <= 100
    assert out.evaluations >= out.iterations + 1


def test_operator_scaling_conditions_the_sine_model():
    m = FS.fourier_features(pk.problems.Poisson1D(), n_freq=16, n_res=256)            # grid points
    A = T.residual_jacobian(m.residual_vector, m.theta0)
    d = TS.sine_operator_scaling(16)
    plain = TS.predicted_iterations(torch.linalg.eigvalsh(2 * A.T @ A)).kappa
    scaled = TS.predicted_iterations(torch.linalg.eigvalsh(2 * (A * d).T @ (A * d))).kappa
    assert plain > 1e6 and scaled < 3.0


def test_band_retention_is_exact_for_a_linear_model():
    gen = torch.Generator().manual_seed(4)
    A, b = torch.randn(15, 6, generator=gen, dtype=f64), torch.randn(15, generator=gen, dtype=f64)
    r = lambda th: A @ th - b                                             # noqa: E731
    th0 = torch.zeros(6, dtype=f64)
    lam, V, c0 = T.kernel_components(T.tangent_kernel(r, th0), r(th0))
    step = 0.4 / float(lam[0])
    thT = TS.gradient_descent(lambda th: (r(th) ** 2).sum(), th0, step, 25)
    for band in TS.band_retention(lam, c0, V.T @ r(thT), step, 25, [0, 2, 4, 15]):
        assert math.isclose(band.predicted, band.measured, rel_tol=1e-8, abs_tol=1e-14)


def test_grid_frequencies_of_pure_modes_and_noise():
    nx, nt = 16, 8
    X = TS.grid_points(pk.problems.Convection(1.0), nx, nt)
    for mx, lt in ((0, 0), (2, 1), (5, 3)):
        v = torch.cos(mx * X[:, 0]) * torch.cos(lt * math.pi * X[:, 1])
        fx, ft = TS.grid_frequencies(v[:, None], nx, nt)
        assert abs(float(fx[0]) - mx) < 1e-9 and abs(float(ft[0]) - lt) < 1e-9
    noise = torch.randn(nx * nt, 200, generator=torch.Generator().manual_seed(0), dtype=f64)
    fx, ft = TS.grid_frequencies(noise, nx, nt)
    assert abs(float(fx.mean()) - 4.0) < 0.3 and abs(float(ft.mean()) - 3.5) < 0.3


def test_slow_share_and_band_edges():
    K = torch.diag(torch.tensor([4.0, 1.0, 1e-5, 1e-9], dtype=f64))
    r = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=f64)
    assert TS.slow_share(K, r, 1e-4) == 0.5
    assert TS.band_edges(torch.tensor([4.0, 1.0, 1e-5, 1e-9], dtype=f64), [1e-2, 1e-8]) == [0, 2, 3]


def test_chapter10_exercise_checks(capsys):
    from pinnkit.exercises import ch10

    assert ch10.check_kernel_zeros(250) and not ch10.check_kernel_zeros(50)
    assert ch10.check_outlier_cg(12) and not ch10.check_outlier_cg(2295)
    kp, ks = ch10.convection_kappas(40.0)
    assert kp > 2 * ks                                  # the scaling helps at beta = 40 ...
    assert ch10.check_convection_preconditioning(kp, ks) and not ch10.check_convection_preconditioning(ks, kp)
    assert not ch10.check_kernel_zeros(None)
    assert "Replace None" in capsys.readouterr().out


def test_core_keeps_the_kernel_and_the_book_the_studies():
    assert set(T.__all__) == {"residual_jacobian", "tangent_kernel", "PLStar", "pl_star", "kernel_components"}
    assert {"grid_pinn", "iteration_study", "predicted_iterations", "captured_fraction"} <= set(TS.__all__)
    assert not any(hasattr(T, n) for n in TS.__all__) and not hasattr(pk.remedies, "captured_fraction")
    assert not any(hasattr(F, n) for n in FS.__all__)
