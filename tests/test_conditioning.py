"""pinnkit.conditioning against closed forms: diagonal spectra, conjugate L-BFGS pairs on a quadratic (where
H_k is known exactly), the dense (P+m)x(P+m) preconditioned matrix, and CG / gradient descent actually run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pinnkit import conditioning as K
from pinnkit import curvature as C
from pinnkit.book import conditioning_study as KS

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def spd(P: int, kappa: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A = Q diag(lam) Q^T with log-spaced lam in [1, kappa]; returns A, lam, Q."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.logspace(0, math.log10(kappa), P, dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    A = (Q * lam) @ Q.T
    return 0.5 * (A + A.T), lam, Q


# --- range_condition ---------------------------------------------------------------------------------------
def test_range_condition_closed_form():
    ev = torch.tensor([-3.0, -1e-12, 0.0, 1e-10, 0.02, 0.5, 10.0], dtype=F64)
    rc = K.range_condition(ev, rcut=1e-6)              # cutoff 1e-5: the three tiny values are "zero"
    assert rc.cutoff == pytest.approx(1e-5)
    assert (rc.rank, rc.n_negative, rc.n) == (4, 1, 7)
    assert rc.smallest == pytest.approx(0.02) and rc.kappa == pytest.approx(10.0 / 0.02)
    assert (rc.lmax, rc.lmin, rc.norm) == (10.0, -3.0, 10.0)
    # a larger cutoff drops 0.02: kappa on the range depends on the stated cutoff
    assert K.range_condition(ev, rcut=0.01).kappa == pytest.approx(10.0 / 0.5)
    # the norm is max |lambda|: a dominant negative eigenvalue counts
    assert K.range_condition([-8.0, 1.0, 2.0]).kappa == pytest.approx(8.0)


def test_range_condition_is_scale_invariant_and_lmax_is_not():
    _, lam, _ = spd(40, 1e5)
    ev = torch.cat([lam, -lam[:3] * 1e-3, torch.zeros(5, dtype=F64)])
    a, b = K.range_condition(ev), K.range_condition(1234.5 * ev)
    for field in ("kappa", "rank", "n_negative", "effective_rank", "stable_rank", "intrinsic_dim"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12), field
    assert b.lmax == pytest.approx(1234.5 * a.lmax)


def test_effective_ranks_closed_forms():
    ev = torch.tensor([4.0, 4.0, 4.0, 4.0, 0.0, 0.0], dtype=F64)   # 4 equal eigenvalues and 2 zeros
    rc = K.range_condition(ev)
    assert rc.effective_rank == pytest.approx(4.0) and rc.stable_rank == pytest.approx(4.0)
    assert rc.intrinsic_dim == pytest.approx(4.0) and rc.rank == 4 and rc.rank_fraction == pytest.approx(4 / 6)
    ev = torch.tensor([1.0, 0.5, 0.5], dtype=F64)              # p = (1/2, 1/4, 1/4): H = 1.5 ln 2
    rc = K.range_condition(ev)
    assert rc.effective_rank == pytest.approx(2 ** 1.5)
    assert rc.stable_rank == pytest.approx(1.5) and rc.intrinsic_dim == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[], [0.0, 0.0], [1.0, float("nan")]])
def test_range_condition_rejects(bad):
    with pytest.raises(ValueError):
        K.range_condition(torch.tensor(bad, dtype=F64))
    with pytest.raises(ValueError, match="rcut"):
        K.range_condition([1.0, 2.0], rcut=0.0)


def test_cluster_share():
    ev = torch.tensor([0.49, 0.5, 1.0, 2.0, 2.01, -1.0, 0.0, 1.5], dtype=F64)
    assert K.cluster_share(ev) == pytest.approx(4 / 8)
    assert K.cluster_share(ev, 0.1, 10.0) == pytest.approx(6 / 8)
    with pytest.raises(ValueError):
        K.cluster_share(ev, lo=2.0, hi=1.0)


# --- iterations_predicted: the bounds hold when CG and GD are actually run ----------------------------------
def _cg(A, b, iters):
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), r @ r
    for _ in range(iters):
        Ap = A @ p
        a = rr / (p @ Ap)
        x, r = x + a * p, r - a * Ap
        rr, rr_old = r @ r, rr
        p = r + rr / rr_old * p
    return x


@pytest.mark.parametrize("kappa", [10.0, 1e3])
def test_iteration_bounds_are_upper_bounds(kappa):
    A, lam, _ = spd(60, kappa, seed=1)
    tol = 1e-6
    it = K.iterations_predicted(kappa, tol)
    assert it.cg == math.ceil(math.sqrt(kappa) / 2 * math.log(2 / tol))
    assert it.gd == math.ceil(kappa / 2 * math.log(1 / tol))
    x_star = torch.randn(60, generator=torch.Generator().manual_seed(2), dtype=F64)
    b = A @ x_star
    anorm = lambda e: float(torch.sqrt(e @ A @ e))           # noqa: E731
    e_cg = _cg(A, b, it.cg) - x_star
    assert anorm(e_cg) <= tol * anorm(x_star)               # Chebyshev bound in the A-norm
    step, x = 2.0 / float(lam.min() + lam.max()), torch.zeros(60, dtype=F64)
    for _ in range(it.gd):
        x = x - step * (A @ x - b)
    assert float((x - x_star).norm()) <= tol * float(x_star.norm())
    # and GD is far from converged after the CG count: the gap is what conditioning costs
    x = torch.zeros(60, dtype=F64)
    for _ in range(it.cg):
        x = x - step * (A @ x - b)
    assert kappa < 100 or float((x - x_star).norm()) > 1e3 * tol * float(x_star.norm())


def test_iterations_predicted_rejects():
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="kappa"):
            K.iterations_predicted(bad)
    with pytest.raises(ValueError, match="tol"):
        K.iterations_predicted(10.0, tol=1.0)


# --- lbfgs_preconditioned ----------------------------------------------------------------------------------
def test_lbfgs_with_conjugate_pairs_closed_form():
    """Pairs along m eigenvectors q_i of A (y_i = A q_i) give H_k = gamma (I - QQ^T) + sum q_i q_i^T / lam_i, so
    H_k A has m eigenvalues exactly 1 and the others gamma * lam_j; gamma = 1 / lam of the newest pair."""
    P, m = 30, 8
    A, lam, Q = spd(P, 1e4, seed=3)
    idx = torch.tensor([29, 27, 25, 20, 15, 10, 5, 12])     # oldest first; the newest is lam[12]
    S = Q[:, idx].T.contiguous()
    pairs = C.LBFGSPairs(S, S @ A, gamma=float(1.0 / lam[12]))
    r = K.lbfgs_preconditioned(A, pairs)
    rest = torch.ones(P, dtype=torch.bool)
    rest[idx] = False
    expected = torch.cat([torch.ones(m, dtype=F64), lam[rest] / lam[12]]).sort().values
    torch.testing.assert_close(r.lbfgs.eigenvalues, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.baseline.eigenvalues, lam / lam[12], rtol=1e-9, atol=1e-12)
    assert r.m == m and r.gamma == pytest.approx(1 / float(lam[12]))
    assert r.baseline.range.kappa == pytest.approx(r.hessian.range.kappa)    # a scalar cannot change kappa
    assert r.lbfgs.range.kappa == pytest.approx(float(expected.max() / expected.min()))
    assert r.lbfgs.share == pytest.approx(K.cluster_share(expected))
    assert r.lbfgs.share > r.baseline.share


def test_lbfgs_matches_dense_factor_product_with_structural_zeros():
    """Against the (P+m)x(P+m) matrix H~^T A H~ built from LBFGSFactor: it has m (near-)zeros more, the rest
    agree. Pairs from torch's own L-BFGS on a quadratic."""
    P = 25
    A, _, _ = spd(P, 50.0, seed=4)
    b = torch.randn(P, generator=torch.Generator().manual_seed(5), dtype=F64)
    x = torch.zeros(P, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=12, history_size=6)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ A @ x - b @ x
        loss.backward()
        return loss
    opt.step(closure)
    pairs = C.lbfgs_pairs(opt)
    assert pairs.s.shape[0] == 6
    fac = C.LBFGSFactor(pairs)
    Ht = fac.apply(torch.eye(P + fac.m, dtype=F64)).T
    dense = torch.linalg.eigvalsh(Ht.T @ A @ Ht)
    keep = dense.abs().argsort()[fac.m:]                    # drop the m eigenvalues nearest 0
    assert float(dense.abs().sort().values[fac.m - 1]) < 1e-10 * float(dense.abs().max())
    r = K.lbfgs_preconditioned(A, pairs)
    torch.testing.assert_close(r.lbfgs.eigenvalues, dense[keep].sort().values, rtol=1e-8, atol=1e-10)
    # H_k H has the spectrum of the two-loop recursion applied to A's columns
    HkA = torch.stack([C.lbfgs_two_loop(pairs, A[:, j]) for j in range(P)], 1)
    torch.testing.assert_close(r.lbfgs.eigenvalues, torch.linalg.eigvals(HkA).real.sort().values,
                               rtol=1e-8, atol=1e-10)


def test_lbfgs_preconditioned_guards(monkeypatch):
    A, _, Q = spd(6, 10.0)
    pairs = C.LBFGSPairs(Q[:, :2].T.contiguous(), (A @ Q[:, :2]).T.contiguous(), gamma=0.1)
    with pytest.raises(ValueError, match="shape"):
        K.lbfgs_preconditioned(A[:5, :5], pairs)
    with pytest.raises(ValueError, match="symmetric"):
        K.lbfgs_preconditioned(A + torch.triu(torch.ones(6, 6, dtype=F64), 1), pairs)
    monkeypatch.setattr(K, "DENSE_LIMIT", 5)
    with pytest.raises(ValueError, match="DENSE_LIMIT"):
        K.lbfgs_preconditioned(A, pairs)
    assert K.lbfgs_preconditioned(A, pairs, force=True).m == 2


# --- term_conditions ---------------------------------------------------------------------------------------
def test_term_conditions_rank_of_few_points():
    """A mean of n squared linear residuals over P > n parameters has a Hessian of rank n: (2/n) X^T X."""
    P, n = 12, 3
    g = torch.Generator().manual_seed(6)
    X, Z = torch.randn(n, P, generator=g, dtype=F64), torch.randn(40, P, generator=g, dtype=F64)

    def terms(th):
        return {"few": ((X @ th - 1.0) ** 2).mean(), "many": ((Z @ th) ** 2).mean()}
    out = K.term_conditions(terms, torch.zeros(P, dtype=F64), rcut=1e-10)
    assert list(out) == ["few", "many", "total"]
    assert out["few"].rank == n and out["many"].rank == P and out["total"].rank == P
    sv = torch.linalg.svdvals(X)
    assert out["few"].kappa == pytest.approx(float(sv[0] / sv[-1]) ** 2, rel=1e-8)
    assert out["few"].norm == pytest.approx(2.0 / n * float(sv[0]) ** 2, rel=1e-10)


# --- term_hessians, term_gauss_newton (chapter 4) -----------------------------------
def test_term_hessians_and_gauss_newton_of_linear_residuals():
    """Linear residuals r_k = A_k theta - b_k: Hessian == Gauss-Newton == (2/N_k) A_k^T A_k, rank <= N_k."""
    P = 9
    g = torch.Generator().manual_seed(7)
    A = {"res": torch.randn(20, P, generator=g, dtype=F64), "ic": torch.randn(3, P, generator=g, dtype=F64)}

    def residuals(th):
        return {k: M @ th - 1.0 for k, M in A.items()}

    def terms(th):
        return {k: (r ** 2).mean() for k, r in residuals(th).items()}
    th = torch.randn(P, generator=g, dtype=F64)
    H, G = K.term_hessians(terms, th), K.term_gauss_newton(residuals, th)
    assert list(H) == list(G) == ["res", "ic", "total"]
    for k, M in A.items():
        exact = 2.0 / M.shape[0] * M.T @ M
        assert torch.allclose(H[k], exact, atol=1e-12) and torch.allclose(G[k], exact, atol=1e-12)
    assert torch.allclose(H["total"], H["res"] + H["ic"]) and torch.allclose(G["total"], G["res"] + G["ic"])
    assert K.range_condition(torch.linalg.eigvalsh(G["ic"]), rcut=1e-10).rank == 3
    assert "total" not in K.term_hessians(terms, th, include_total=False)


def test_term_gauss_newton_matches_stacked_residual_and_bounds_rank():
    """On a PINN the per-term G_k sum to gauss_newton(residual_vector); rank G_k <= N_k; at theta0 H != G."""
    import pinnkit as pk
    pinn = pk.PINN("convection", widths=[6, 6], n_res=30, n_ic=5, n_bc=4, seed=0, dtype=F64)
    th = pinn.theta0
    G = K.term_gauss_newton(pinn.residuals, th)
    assert torch.allclose(G["total"], C.gauss_newton(pinn.residual_vector, th).to(F64), atol=1e-10)
    for k, N in (("residual", 30), ("initial", 5), ("boundary", 4)):
        assert K.range_condition(torch.linalg.eigvalsh(G[k]), rcut=1e-10).rank <= N
    H = K.term_hessians(pinn.terms, th)
    assert float((H["initial"] - G["initial"]).abs().max()) > 1e-6   # the second-order part is not zero here


def test_term_conditioning_on_a_pinn():
    """Per-term report: N_k, GN rank <= N_k, eigenvalues of the term Hessian, and H == G + second-order part."""
    import pinnkit as pk
    pinn = pk.PINN("reaction", widths=[6, 6], n_res=30, n_ic=5, n_bc=4, seed=1, dtype=F64)
    th = pinn.theta0
    tc = K.term_conditioning(pinn.residuals, th, rcut=1e-8)
    assert list(tc) == ["residual", "initial", "boundary", "total"]
    assert [tc[k].n_residuals for k in tc] == [30, 5, 4, 39]
    for v in tc.values():
        assert v.gauss_newton.rank <= min(v.n_residuals, th.numel()) and v.gauss_newton.n_negative == 0
        assert v.eigenvalues.shape == (th.numel(),) and 0.0 < v.second_order < 10.0
    ev = torch.linalg.eigvalsh(C.hessian(pinn.loss, th).to(F64))
    assert torch.allclose(tc["total"].eigenvalues, ev, atol=1e-10)
    assert tc["total"].hessian.kappa == pytest.approx(K.range_condition(ev, rcut=1e-8).kappa, rel=1e-6)


def test_term_matrices_refuse_sizes_beyond_the_dense_limit():
    big = torch.zeros(K.DENSE_LIMIT + 1, dtype=F64)
    with pytest.raises(ValueError, match="DENSE_LIMIT"):
        K.term_hessians(lambda th: {"a": (th ** 2).sum()}, big)
    with pytest.raises(ValueError, match="DENSE_LIMIT"):
        K.term_gauss_newton(lambda th: {"a": th}, big)


# --- top-k comparison and the best scalar -------------------------------------------------------------------
def test_top_condition_closed_form_and_scale_invariance():
    ev = torch.tensor([-3e-9, 0.0, 1e-4, 0.01, 0.5, 2.0, 8.0], dtype=F64)
    assert KS.top_condition(ev, 1) == 1.0
    assert KS.top_condition(ev, 3) == pytest.approx(16.0)
    assert KS.top_condition(ev, 5) == pytest.approx(8e4)
    assert KS.top_condition(7.0 * ev, 4) == pytest.approx(KS.top_condition(ev, 4))     # a scalar cannot change it
    assert KS.top_condition(-ev, 3) == pytest.approx(16.0)                            # by magnitude
    with pytest.raises(ValueError):
        KS.top_condition(ev, 0)
    with pytest.raises(ValueError):
        KS.top_condition(ev, 8)
    with pytest.raises(ValueError):
        KS.top_condition(torch.tensor([1.0, 0.0, 0.0], dtype=F64), 2)


def test_best_scalar_share_beats_every_scalar_on_a_grid():
    ev = 10 ** torch.empty(200, dtype=F64).uniform_(-6, 3, generator=torch.Generator().manual_seed(0))
    ev = torch.cat([ev, torch.zeros(50, dtype=F64), -ev[:10] * 1e-6])
    share, c = KS.best_scalar_share(ev)
    assert K.cluster_share(c * ev) == pytest.approx(share)                     # c achieves the share ...
    grid = 10 ** torch.linspace(-4, 7, 2001, dtype=F64)
    assert share >= max(K.cluster_share(float(g) * ev) for g in grid) - 1e-12   # ... and no scalar does better
    assert KS.best_scalar_share(torch.tensor([-1.0, 0.0], dtype=F64)) == (0.0, 1.0)


def test_compare_top_with_conjugate_pairs():
    """Pairs along the top m eigenvectors make H_k A equal to 1 there: on the top m, kappa_k(H_k A) = 1 and every
    eigenvalue is in [1/2, 2], while the best scalar multiple of A can place at most those within a ratio 4."""
    P, m = 30, 8
    A, lam, Q = spd(P, 1e6, seed=3)
    order = lam.argsort(descending=True)
    S = Q[:, order[:m].flip(0)].T.contiguous()
    pairs = C.LBFGSPairs(S, S @ A, gamma=float(1.0 / lam[order[m - 1]]))
    r = K.lbfgs_preconditioned(A, pairs)
    t = KS.compare_top(r.hessian.eigenvalues, r.lbfgs.eigenvalues, m)
    top = lam[order[:m]]
    assert t.k == m and t.kappa_hessian == pytest.approx(float(top[0] / top[-1]))
    assert t.kappa_preconditioned == pytest.approx(1.0) and t.share_preconditioned == 1.0
    assert t.gain == pytest.approx(float(top[0] / top[-1]))
    assert t.share_best_scalar == pytest.approx(KS.best_scalar_share(top)[0])
    assert t.share_best_scalar < 1.0


# --- cg_bound / cg_check: the outlier-aware bound against CG actually run ----------------------------------
def _cg_iters(lam: torch.Tensor, w: torch.Tensor, tol: float) -> int:
    """Plain float64 CG on diag(lam) x = w from 0: first iteration with A-norm error <= tol (independent code)."""
    x_star = w / lam
    anorm = lambda e: float(torch.sqrt((lam * e * e).sum()))   # noqa: E731
    x, r = torch.zeros_like(w), w.clone()
    p, rr = r.clone(), r @ r
    for i in range(1, 10 * lam.numel()):
        Ap = lam * p
        a = rr / (p @ Ap)
        x, r = x + a * p, r - a * Ap
        if anorm(x - x_star) <= tol * anorm(x_star):
            return i
        rr, rr_old = r @ r, rr
        p = r + rr / rr_old * p
    raise AssertionError("CG did not converge")


@pytest.mark.parametrize("n_out", [0, 3, 8])
def test_cg_bound_counts_outliers_and_holds_for_cg_run(n_out):
    """k outliers at 10..20 above a bulk in [1, 4]: plain float64 CG behaves as in exact arithmetic here (outliers
    further out delay it: see test_cg_check_exact_arithmetic_within_bound_and_float64_delay)."""
    g = torch.Generator().manual_seed(n_out)
    bulk = torch.linspace(1.0, 4.0, 200, dtype=F64)
    out = torch.linspace(10.0, 20.0, n_out, dtype=F64) if n_out else torch.zeros(0, dtype=F64)
    lam = torch.cat([bulk, out])
    tol = 1e-6
    b = KS.cg_bound(lam, tol)
    measured = _cg_iters(lam, torch.randn(lam.numel(), generator=g, dtype=F64), tol)
    assert b.outliers == n_out and b.kappa_rest == pytest.approx(4.0)
    assert measured <= b.iterations <= measured + n_out + 5          # a bound, and a tight one
    if n_out:
        assert b.chebyshev > b.iterations                               # counting the outliers is sharper
        assert b.chebyshev == K._chebyshev_steps(float(lam.max() / lam.min()), tol)


def test_cg_bound_caps_at_distinct_eigenvalues_and_rejects():
    lam = torch.tensor([1.0, 1.0, 1e3, 1e3, 1e6, 1e6, 1e6], dtype=F64)
    b = KS.cg_bound(lam, 1e-10)
    assert b.distinct == 3 and b.iterations == 3
    assert _cg_iters(lam, torch.ones(7, dtype=F64), 1e-10) <= 3
    assert K._chebyshev_steps(1.0, 1e-6) == 1
    # sqrt(kappa)/2 ln(2/tol) is the large-kappa form of the exact Chebyshev count
    assert K._chebyshev_steps(1e8, 1e-6) == pytest.approx(K.iterations_predicted(1e8, 1e-6).cg, rel=1e-3)
    with pytest.raises(ValueError, match="positive-definite"):
        KS.cg_bound([0.0, 1.0])
    with pytest.raises(ValueError, match="tol"):
        KS.cg_bound([1.0, 2.0], tol=0.0)


def test_cg_check_exact_arithmetic_within_bound_and_float64_delay():
    """A rotated matrix whose top 30 eigenvalues span six decades (a trained PINN's Hessian at k = Gauss-Newton
    rank) above a null space: CG with re-orthogonalised residuals ends within k = 30 as the bound says, plain
    float64 CG loses orthogonality and needs more; on a spectrum within a factor 4 both agree with the bound."""
    P, k = 120, 30
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    lam = torch.cat([torch.logspace(0, 6, k, dtype=F64), torch.zeros(P - k, dtype=F64)])
    c = KS.cg_check((Q * lam) @ Q.T, k, 1e-6)
    assert c.bound.iterations == k and c.bound.chebyshev > 100 * k
    assert c.measured_exact is not None and c.measured_exact <= c.bound.iterations
    assert c.measured is not None and c.measured > c.bound.iterations
    assert bool((c.errors_exact[1:] <= c.errors_exact[:-1] * (1 + 1e-8)).all())   # A-norm error never grows
    lam2 = torch.cat([torch.linspace(1, 4, k, dtype=F64), torch.zeros(P - k, dtype=F64)])
    c2 = KS.cg_check((Q * lam2) @ Q.T, k, 1e-6)
    assert c2.measured == c2.measured_exact and c2.measured is not None and c2.measured <= c2.bound.iterations
    # outliers 30..1000 times the bulk: exact arithmetic within the bound, float64 delayed by them
    lam3 = torch.cat([torch.linspace(1.0, 4.0, 100, dtype=F64), 10 ** torch.linspace(1.5, 3, 8, dtype=F64)])
    c3 = KS.cg_check(torch.diag(lam3), lam3.numel(), 1e-6)
    assert c3.bound.outliers == 8 and c3.measured_exact is not None and c3.measured_exact <= c3.bound.iterations
    assert c3.measured is not None and c3.measured > c3.bound.iterations
    with pytest.raises(ValueError, match="k must be"):
        KS.cg_check(torch.eye(3, dtype=F64), 4)


# --- the one condition number ----------------------------------------------------------------------------------
def _numpy_kappa(A: np.ndarray, rcut: float) -> float:
    """||A||_2 ||A_c^+||_2 by numpy: the pseudo-inverse drops the singular values at or below rcut * ||A||."""
    return float(np.linalg.norm(A, 2) * np.linalg.norm(np.linalg.pinv(A, rcond=rcut, hermitian=True), 2))


@pytest.mark.parametrize("rcut", [0.0, 1e-3, 1e-6, 1e-9])
def test_condition_number_against_numpy_on_a_known_spectrum(rcut):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    lam = np.concatenate([np.logspace(-12, 2, 30), -np.logspace(-3.5, 1, 8), [0.0, 0.0]])   # indefinite, singular
    A = (Q * lam) @ Q.T
    kappa = K.condition_number(torch.linalg.eigvalsh(torch.from_numpy((A + A.T) / 2)), rcut)
    if rcut == 0.0:   # rounding moves the zeros off zero; on the exact spectrum rcut = 0 keeps all nonzero values
        kappa = K.condition_number(lam, 0.0)
        assert kappa == pytest.approx(1e2 / 1e-12)
    else:
        assert kappa == pytest.approx(_numpy_kappa(A, rcut), rel=1e-6)
        assert kappa <= 1 / rcut                                     # the ceiling
        assert K.range_condition(lam, rcut).kappa == K.condition_number(lam, rcut)   # a thin call of it


def test_condition_number_ceiling_is_reached_by_a_continuous_spectrum():
    lam = torch.logspace(-14, 0, 2001, dtype=F64)                   # ratio 1.016 between neighbours
    for rcut in (1e-4, 1e-8, 1e-12):
        kappa = K.condition_number(lam, rcut)
        assert kappa <= 1 / rcut and kappa > 0.98 / rcut


def test_condition_number_by_magnitude_and_errors():
    assert K.condition_number([-8.0, 0.5, 2.0], 0.0) == 16.0               # |-8| / 0.5
    assert K.condition_number(C.Eigen(torch.tensor([1.0, 4.0], dtype=F64), torch.eye(2, dtype=F64)), 0.1) == 4.0
    with pytest.raises(ValueError, match="rcut"):
        K.condition_number([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="zero"):
        K.condition_number([0.0, 0.0], 0.0)


def test_every_condition_number_is_the_one_function():
    from pinnkit.book import features_study as FS
    from pinnkit.book import fig10

    ev = torch.tensor([-2e-3, 1e-12, 0.5, 4.0], dtype=F64)
    assert KS.top_condition(ev, 2) == K.condition_number(torch.tensor([4.0, 0.5]), 0.0)
    assert fig10.magnitude_ratio(ev) == K.condition_number(ev, 0.0)
    model = FS.fourier_features("poisson1d", 6, n_res=32)
    assert FS.operator_condition(model, rcut=1e-10) == K.condition_number(torch.linalg.eigvalsh(model.hessian()), 1e-10)
    assert not hasattr(C, "condition_number")                                       # the old second definition
