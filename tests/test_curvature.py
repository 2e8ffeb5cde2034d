"""Correctness of pinnkit.curvature against independent references: torch's dense Hessian and Jacobian, finite
differences, scipy's eigsh (ARPACK) through ``to_scipy()``, closed-form spectra, and torch's own L-BFGS direction.

One case matrix (problems x dtypes x sizes, the ``case`` fixture) runs every operator through one ``compare`` helper
against a dense reference, as curvlinops does."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
import torch

import pinnkit as pk
from pinnkit import curvature as C
from pinnkit.book import spectra_study

F64, F32 = torch.float64, torch.float32
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))
RTOL = {F64: 1e-9, F32: 2e-4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny problems: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


def small_pinn(dtype=F64, device="cpu", problem=None, widths=(6, 6)) -> pk.PINN:
    problem = problem or pk.problems.Convection(beta=5.0)
    return pk.PINN(problem, widths=list(widths), n_res=48, n_ic=12, n_bc=6, seed=1, dtype=dtype, device=device)


# --- the shared case matrix --------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    pinn: pk.PINN
    theta: torch.Tensor
    H: torch.Tensor                 # torch.autograd.functional.hessian, float64
    rtol: float

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype


PROBLEMS = {"convection": lambda: pk.problems.Convection(beta=5.0), "wave": lambda: pk.problems.Wave(beta=2.0)}
SIZES = {"tiny": (4, 4), "small": (6, 6, 6)}
_CACHE: dict[str, Case] = {}


@pytest.fixture(params=[(p, d, s) for p in PROBLEMS for d in (F64, F32) for s in SIZES],
                ids=lambda t: f"{t[0]}-{str(t[1])[6:]}-{t[2]}")
def case(request) -> Case:
    problem, dtype, size = request.param
    key = f"{problem}-{dtype}-{size}"
    if key not in _CACHE:
        pinn = small_pinn(dtype, problem=PROBLEMS[problem](), widths=SIZES[size])
        th = pinn.theta0 + 0.1 * torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(0)).to(dtype)
        H = torch.autograd.functional.hessian(pinn.loss, th.double().to(dtype)).double()
        _CACHE[key] = Case(key, pinn, th, 0.5 * (H + H.T), RTOL[dtype])
    return _CACHE[key]


def compare(op: C.LinearOperator, A: torch.Tensor, rtol: float) -> None:
    """``op`` against the dense symmetric ``A``: vectors, row blocks, the scipy export (matvec and matmat) and
    determinism (two identical calls agree bit for bit)."""
    n = A.shape[0]
    assert op.shape == (n, n)
    g = torch.Generator().manual_seed(7)
    v = torch.randn(n, generator=g, dtype=F64)
    V = torch.randn(3, n, generator=g, dtype=F64)
    atol = rtol * float(A.abs().max())
    close = lambda x, y: torch.testing.assert_close(x.double().cpu(), y, rtol=rtol, atol=atol)   # noqa: E731
    vd, Vd = v.to(op.device, op.dtype), V.to(op.device, op.dtype)
    close(op(vd), A @ v)
    close(op(Vd), V @ A)
    close(op @ vd, A @ v)                      # curvlinops' spelling: the same products
    close(op @ Vd.T, A @ V.T)
    close(Vd @ op, V @ A)
    S = op.to_scipy()
    close(torch.from_numpy(S.matvec(v.numpy())), A @ v)
    close(torch.from_numpy(S.matmat(V.T.numpy())), A @ V.T)
    assert torch.equal(op(Vd), op(Vd))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_hvp_operator_matches_dense_hessian(case, mode):
    op = C.hvp_operator(case.pinn.loss, case.theta, mode=mode)
    assert (op.dtype, op.device.type, op.mode) == (case.dtype, "cpu", mode)
    compare(op, case.H, case.rtol)
    assert op.calls > 0


def test_hessian_matches_torch_reference(case):
    H = C.hessian(case.pinn.loss, case.theta, chunk=7)
    assert H.dtype == case.dtype
    torch.testing.assert_close(H.double(), case.H, rtol=case.rtol, atol=case.rtol * float(case.H.abs().max()))


def test_gauss_newton_matches_torch_jacobian(case):
    r, th = case.pinn.residual_vector, case.theta
    J = torch.autograd.functional.jacobian(r, th).double()
    G = 2 * J.T @ J
    compare(C.gauss_newton_operator(r, th), G, case.rtol)
    torch.testing.assert_close(C.gauss_newton(r, th).double(), G, rtol=case.rtol,
                               atol=case.rtol * float(G.abs().max()))


def test_extreme_eigenpairs_match_scipy_eigsh(case):
    """top/bottom_eigenpairs against ARPACK on the same operator (op.to_scipy()) and against dense eigvalsh."""
    import scipy.sparse.linalg as sla
    op = C.hvp_operator(case.pinn.loss, case.theta)
    P = op.dim
    top = C.top_eigenpairs(case.pinn.loss, case.theta, k=3)
    bottom = C.bottom_eigenpairs(case.pinn.loss, case.theta, k=2, steps=P)
    la = sla.eigsh(op.to_scipy(), k=3, which="LA", tol=1e-12)[0]
    sa = sla.eigsh(op.to_scipy(), k=2, which="SA", tol=1e-12)[0]
    ev = torch.linalg.eigvalsh(case.H)
    norm = float(ev.abs().max())
    tol = 10 * case.rtol * norm
    torch.testing.assert_close(top.values.double(), torch.from_numpy(la).flip(0), rtol=0, atol=tol)
    torch.testing.assert_close(bottom.values.double(), torch.from_numpy(sa), rtol=0, atol=tol)
    torch.testing.assert_close(top.values.double(), ev[-3:].flip(0), rtol=0, atol=tol)
    torch.testing.assert_close(bottom.values.double(), ev[:2], rtol=0, atol=tol)
    assert top.vectors.shape == (P, 3) and top.iterations == min(P, 80) and bottom.iterations == P
    assert top.converged and float(top.residuals.max()) <= math.sqrt(torch.finfo(case.dtype).eps) * norm * 1.01


def test_slq_first_moment_is_the_trace(case):
    """Hutchinson with Gauss quadrature: tr(H)/P within 4 standard errors; the whole spectrum inside [lmin, lmax]."""
    sd = C.spectral_density(case.pinn.loss, case.theta, n_probes=6, steps=15)
    est, se = sd.moment(1)
    ev = torch.linalg.eigvalsh(case.H)
    assert abs(est - float(ev.mean())) <= 4 * se + 10 * case.rtol * float(ev.abs().max())
    slack = 1e-3 * float(ev.abs().max())
    assert float(ev[0]) - slack <= sd.lmin and sd.lmax <= float(ev[-1]) + slack


# --- HVP details -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_hvp_matches_finite_differences(mode):
    pinn = small_pinn()
    th = pinn.theta0 + 0.1 * torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(0), dtype=F64)
    v = torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(1), dtype=F64)
    Hv = C.hvp(pinn.loss, th, v, mode=mode)
    grad = torch.func.grad(pinn.loss)
    h = 1e-5
    fd = (grad(th + h * v) - grad(th - h * v)) / (2 * h)
    assert float((Hv - fd).norm() / fd.norm()) < 1e-6


def test_modes_agree_on_second_order_pde_and_theta_untouched():
    pinn = small_pinn(problem=pk.problems.Wave(beta=2.0))
    th = pinn.theta0.clone()
    before = th.clone()
    V = torch.randn(2, pinn.n_params, generator=torch.Generator().manual_seed(3), dtype=F64)
    a = C.hvp_batch(pinn.terms, th, V, mode="forward")        # a terms dict is summed
    b = C.hvp_batch(pinn.loss, th, V, mode="reverse")
    assert torch.allclose(a, b, rtol=1e-8, atol=1e-10 * float(a.abs().max()))
    op = C.hvp_operator(pinn.loss, th, mode="reverse")
    assert op.block == "batched"
    op.block = "loop"                                          # one backward per row: the same products
    assert torch.allclose(op(V), b, rtol=1e-10, atol=1e-12 * float(b.abs().max())) and op.calls == 2
    assert torch.equal(th, before) and not th.requires_grad
    with pytest.raises(ValueError, match="unknown HVP mode"):
        C.hvp(pinn.loss, th, V[0], mode="sideways")
    assert C.resolve_mode("auto", "cpu") == C.DEFAULT_MODE["cpu"]


def test_block_product_falls_back_to_loop_only_on_out_of_memory(monkeypatch):
    pinn = small_pinn()
    V = torch.randn(3, pinn.n_params, generator=torch.Generator().manual_seed(4), dtype=F64)
    ref = C.hvp_batch(pinn.loss, pinn.theta0, V, mode="reverse")
    op = C.hvp_operator(pinn.loss, pinn.theta0, mode="reverse")

    def unrelated(_):
        raise RuntimeError("Expected all tensors to be on the same device")
    monkeypatch.setattr(op, "_batched", unrelated)
    with pytest.raises(RuntimeError, match="same device"):
        op(V)
    assert op.block == "batched"                               # not silently downgraded

    def oom(_):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(op, "_batched", oom)
    torch.testing.assert_close(op(V), ref, rtol=1e-10, atol=1e-12)
    assert op.block == "loop"


def test_linear_operator_algebra_and_errors():
    A = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]], dtype=F64)
    B = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=F64))
    opA, opB = C.LinearOperator.from_dense(A), C.LinearOperator.from_dense(B)
    compare(opA, A, 1e-12)
    compare(2.0 * opA - opB, 2 * A - B, 1e-12)
    compare(opA * 0.5 + opB, 0.5 * A + B, 1e-12)
    assert "shape=(3, 3)" in repr(opA)
    with pytest.raises(ValueError, match="block of rows"):
        opA(torch.ones(4, dtype=F64))
    X = torch.arange(6.0, dtype=F64).reshape(3, 2)
    torch.testing.assert_close(X.T @ (opA @ X), X.T @ A @ X)
    with pytest.raises(ValueError, match="columns"):
        opA @ torch.ones(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="sizes"):
        opA + C.LinearOperator.from_dense(torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="square"):
        C.LinearOperator.from_dense(torch.ones(2, 3))


def test_hessian_refuses_large_and_reports_peak_memory(monkeypatch):
    pinn = small_pinn()
    monkeypatch.setattr(C, "DENSE_LIMIT", 10)
    with pytest.raises(ValueError, match="at peak") as err:
        C.hessian(pinn.loss, pinn.theta0)
    P = pinn.n_params
    assert f"{2 * P * P * 8 / 1e9:.2f} GB" in str(err.value) and "spectral_density" in str(err.value)
    rosen = lambda th: ((1 - th[:-1]) ** 2 + 100 * (th[1:] - th[:-1] ** 2) ** 2).sum()   # noqa: E731
    assert C.hessian(rosen, torch.zeros(5, dtype=F64)).shape == (5, 5)


def test_jacobian_and_gauss_newton_refuse_large(monkeypatch):
    pinn = small_pinn()
    m, P = pinn.residual_vector(pinn.theta0).numel(), pinn.n_params
    monkeypatch.setattr(C, "DENSE_LIMIT", int(math.sqrt(m * P)) - 1)
    with pytest.raises(ValueError, match="gauss_newton_product"):
        C.jacobian(pinn.residual_vector, pinn.theta0)
    with pytest.raises(ValueError, match="force=True"):
        C.gauss_newton(pinn.residual_vector, pinn.theta0)
    assert C.jacobian(pinn.residual_vector, pinn.theta0, force=True).shape == (m, P)
    with pytest.raises(ValueError, match="gauss_newton_product"):     # tangent_alignment goes through jacobian
        pk.book.stationary_survey.tangent_alignment(pinn.residual_vector, pinn.theta0)


# --- Lanczos -----------------------------------------------------------------------------------------------
def known_quadratic(P: int, dtype=F64, seed: int = 0):
    """f = 1/2 th^T A th with A = Q diag(lam) Q^T: two clusters (P/3 in [1, 2], the rest in [100, 200]) and two
    negative eigenvalues; a random rotation Q so that Rademacher probes have a nonzero Hutchinson variance."""
    g = torch.Generator().manual_seed(seed)
    n1 = P // 3
    lam = torch.cat([1 + torch.rand(n1, generator=g, dtype=F64),
                     100 + 100 * torch.rand(P - n1 - 2, generator=g, dtype=F64),
                     torch.tensor([-3.0, -0.5], dtype=F64)])
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    Ad = A.to(dtype)
    return (lambda th: 0.5 * th @ (Ad @ th)), A, lam.sort().values


def test_lanczos_extremes_match_eigvalsh_to_1e8():
    _, A, lam = known_quadratic(120)
    r = C.lanczos(A, 120, 80, seed=0, vectors=True)
    assert abs(float(r.ritz_values[-1]) - float(lam[-1])) <= 1e-8 * abs(float(lam[-1]))
    assert abs(float(r.ritz_values[0]) - float(lam[0])) <= 1e-8 * abs(float(lam[0]))
    assert r.alpha.shape == (80,) and r.beta.shape == (79,) and r.iterations == 80
    assert float(r.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    Qr = r.ritz_vectors
    assert torch.allclose(Qr.T @ Qr, torch.eye(80, dtype=F64), atol=1e-10)         # full reorthogonalization
    assert torch.allclose(Qr.T @ A @ Qr, torch.diag(r.ritz_values), atol=1e-8 * float(lam.abs().max()))
    assert torch.allclose(torch.linalg.eigvalsh(r.tridiagonal()), r.ritz_values)


def test_lanczos_residual_bounds_are_the_true_residuals():
    """beta_m |S_mi| (computed without A) equals ||A y_i - theta_i y_i||; `converged` marks the extremes first."""
    lam = torch.cat([torch.tensor([-20.0]), torch.linspace(1, 10, 87), torch.tensor([50.0, 100.0])]).double()
    Q, _ = torch.linalg.qr(torch.randn(90, 90, generator=torch.Generator().manual_seed(2), dtype=F64))
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    r = C.lanczos(A, 90, 30, seed=1, vectors=True)
    Y = r.ritz_vectors
    true = torch.linalg.vector_norm(A @ Y - Y * r.ritz_values, dim=0)
    torch.testing.assert_close(r.residual_bounds, true, rtol=1e-6, atol=1e-9 * float(lam.abs().max()))
    conv = r.converged
    assert bool(conv[-1]) and bool(conv[0]) and not bool(conv.all())    # extremes done, interior not after 30 steps
    full = C.lanczos(A, 90, 90, seed=1)
    assert bool(full.converged.all())


def test_lanczos_block_equals_single_runs_and_survives_breakdown():
    _, A, _ = known_quadratic(40)
    V0 = torch.randn(3, 40, generator=torch.Generator().manual_seed(5), dtype=F64)
    block = C.lanczos(A, 40, 15, V0)
    for i in range(3):
        one = C.lanczos(A, 40, 15, V0[i])
        assert torch.allclose(block.ritz_values[i], one.ritz_values, rtol=1e-10, atol=1e-10)
    # three distinct eigenvalues: the Krylov space is exhausted after 3 steps; Lanczos restarts, beta records 0
    B = torch.diag(torch.tensor([1.0] * 10 + [5.0] * 10 + [9.0] * 10, dtype=F64))
    r = C.lanczos(B, 30, 12, torch.ones(30, dtype=F64))
    assert bool(torch.isfinite(r.ritz_values).all()) and float(r.beta[2]) == 0.0
    assert float(r.ritz_values.min()) > 1 - 1e-10 and float(r.ritz_values.max()) < 9 + 1e-10
    w = r.weights[r.weights > 1e-12]
    assert len(w) == 3 and torch.allclose(w, torch.full((3,), 1 / 3, dtype=F64))   # quadrature on the probe


def test_eigen_repr_is_short():
    e = C.hessian_eigh(lambda th: (th ** 2).sum(), torch.zeros(300, dtype=F64))
    assert repr(e) == "Eigen(k=300, P=300, values=[2, 2, 2, 2, ...], converged=True)"


def test_bottom_eigenpairs_report_non_convergence():
    pinn = small_pinn(widths=(8, 8))
    few = C.bottom_eigenpairs(pinn.loss, pinn.theta0, k=3, steps=10)
    assert few.iterations == 10 and not few.converged


# --- stochastic Lanczos quadrature -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32])
def test_slq_on_known_spectrum(dtype):
    P = 150
    f, A, lam = known_quadratic(P, dtype)
    sd = C.spectral_density(f, torch.zeros(P, dtype=dtype), n_probes=10, steps=40)
    assert sd.nodes.shape == (10, 40)
    tol = 1e-3 * float(lam.abs().max())
    assert sd.lmin >= float(lam[0]) - tol and sd.lmax <= float(lam[-1]) + tol      # Ritz values lie in the spectrum
    assert abs(sd.lmax - float(lam[-1])) < tol and abs(sd.lmin - float(lam[0])) < tol
    # mass where the eigenvalues are (fractions 2/150, 50/150, 98/150): within 4 standard errors, and relative
    for lo, hi, n in [(-4, 0, 2), (0.5, 2.5, P // 3), (99, 201, P - P // 3 - 2)]:
        assert abs(sd.mass(lo, hi) - n / P) <= 4 * sd.mass_se(lo, hi) + 1e-3
        assert abs(sd.mass(lo, hi) - n / P) <= 0.5 * n / P
    assert sd.mass(-4, 201) > 1 - 1e-6
    gap = (sd.grid > 10) & (sd.grid < 90)
    assert float(sd.density[gap].max()) < 1e-6 * float(sd.density.max())               # no mass in the gap
    for k in (1, 2):
        est, se = sd.moment(k)
        true = float((lam ** k).sum()) / P
        assert se > 0 and abs(est - true) <= 4 * se, (k, est, true, se)


def test_slq_density_matches_the_exact_smoothed_density():
    """Smoothed wider than the spacing of the Gauss nodes, the SLQ curve is close to the exact eigenvalues smoothed
    with the same kernel (L1 distance shrinks as sigma grows); narrower, it draws the nodes (the paper's sigma = 0.1
    here is below the node spacing of the [100, 200] cluster). Re-smoothing (with_sigma) equals running SLQ with
    that sigma."""
    P = 120
    f, _, lam = known_quadratic(P, seed=3)
    th = torch.zeros(P, dtype=F64)
    sd = C.spectral_density(f, th, n_probes=20, steps=60)
    l1 = []
    for sigma in (sd.sigma, 1.0, 5.0):
        l1.append(sd.with_sigma(sigma).distance(C.SpectralDensity.from_eigenvalues(lam, sigma=sigma)))
    assert l1[0] > 0.3 and l1[1] < 0.15 and l1[2] < 0.06, l1
    again = sd.with_sigma(5.0)
    ref = C.spectral_density(f, th, n_probes=20, steps=60, sigma=5.0)
    assert again.sigma == pytest.approx(5.0) and torch.allclose(again.density, ref.density, atol=1e-12)
    assert sd.distance(sd) == 0.0
    with pytest.raises(ValueError, match="sigma"):
        sd.with_sigma(0.0)
    # drawn mass vs eigenvalue mass: a wide kernel moves area out of the [1, 2] cluster (P/3 eigenvalues)
    wide = sd.with_sigma(2.0)
    assert sd.mass(1, 2) == pytest.approx(wide.mass(1, 2)) and wide.drawn_mass(1, 2) < 0.5 * wide.mass(1, 2)
    assert sd.with_sigma(0.02).drawn_mass(0.9, 2.1) == pytest.approx(sd.mass(0.9, 2.1), abs=0.02)


def test_term_densities_share_probes_and_sigma():
    pinn = small_pinn()
    dens = spectra_study.term_densities(pinn.terms, pinn.theta0, include_total=True, n_probes=3, steps=20)
    assert set(dens) == {"residual", "initial", "boundary", "total"}
    # the same probes for every term and v^T H v is linear in H: the first moments add up exactly per probe
    per = lambda sd: (sd.weights * sd.nodes).sum(1)      # noqa: E731
    assert torch.allclose(sum(per(dens[k]) for k in ("residual", "initial", "boundary")), per(dens["total"]),
                          rtol=1e-8)
    ref = torch.linalg.eigvalsh(C.hessian(pinn.loss, pinn.theta0))
    assert abs(dens["total"].lmax - float(ref[-1])) < 1e-6 * dens["total"].lmax
    one = spectra_study.term_densities(pinn.terms, pinn.theta0, n_probes=3, steps=20, sigma=0.3)
    assert {round(d.sigma, 12) for d in one.values()} == {0.3}
    assert spectra_study.shared_sigma(dens) == max(d.sigma for d in dens.values())


def test_log_density_masses_and_peaks():
    ev = torch.tensor([-1e-3] * 2 + [0.0] * 3 + [1e-6] * 5 + [10.0] * 10, dtype=F64)
    ld = C.SpectralDensity.from_eigenvalues(ev).log_density(sigma=0.05, rcut=1e-12)
    assert ld.mass_negative == pytest.approx(0.1) and ld.zero_mass == pytest.approx(0.15)
    assert ld.mass_positive == pytest.approx(0.75)
    assert float(torch.trapezoid(ld.positive, ld.grid)) == pytest.approx(0.75, rel=1e-3)
    assert float(torch.trapezoid(ld.negative, ld.grid)) == pytest.approx(0.1, rel=1e-3)
    assert float(ld.grid[ld.positive.argmax()]) == pytest.approx(1.0, abs=0.01)      # the cluster at 10
    assert float(ld.grid[ld.negative.argmax()]) == pytest.approx(-3.0, abs=0.01)     # |-1e-3|
    # the linear kernel of the paper smears the same spectrum across zero
    lin = C.SpectralDensity.from_eigenvalues(ev)
    assert lin.sigma > 1e-3 and float(lin.density[lin.grid < -2 * lin.sigma].max()) > 0


# --- L-BFGS preconditioning ----------------------------------------------------------------------------------
def random_pairs(P=30, m=6, seed=0) -> C.LBFGSPairs:
    g = torch.Generator().manual_seed(seed)
    _, A, _ = known_quadratic(P)
    A = A + 5 * torch.eye(P, dtype=F64)          # positive definite: s·y > 0
    s = torch.randn(m, P, generator=g, dtype=F64)
    y = s @ A
    return C.LBFGSPairs(s, y, float(s[-1] @ y[-1] / (y[-1] @ y[-1])))


def test_lbfgs_factor_reproduces_two_loop_recursion():
    pairs = random_pairs()
    fac = C.LBFGSFactor(pairs)
    Z = torch.randn(4, 30, generator=torch.Generator().manual_seed(1), dtype=F64)
    HtHtT = fac.apply(fac.apply_t(Z))
    for i in range(4):
        assert torch.allclose(HtHtT[i], C.lbfgs_two_loop(pairs, Z[i]), rtol=1e-10, atol=1e-12)
    Ht = fac.matrix()
    assert Ht.shape == (30, 36)
    torch.testing.assert_close(fac.apply(Z[:, :1].expand(4, 36) * 0 + torch.eye(36, dtype=F64)[:4]), Ht[:, :4].T)
    torch.testing.assert_close(fac.apply_t(Z), Z @ Ht)                                  # rows: Ht^T z


def test_lbfgs_pairs_from_torch_and_preconditioned_spectrum():
    pinn = small_pinn()
    run = pk.train(pinn, "adam+lbfgs", steps=4, switch=2, lr=1e-2, lbfgs_iter=6, history_size=5, quiet=True)
    pairs = C.lbfgs_pairs(run)
    state = run.stepper.opt.state[run.stepper.param]
    assert pairs.s.shape[1] == pinn.n_params and 1 <= len(pairs.s) <= 5
    # torch's last direction is d = -H_k g with the final memory: our factorization must reproduce it
    fac = C.LBFGSFactor(pairs)
    g = state["prev_flat_grad"]
    assert torch.allclose(fac.apply(fac.apply_t(g)), -state["d"], rtol=1e-8, atol=1e-10 * float(state["d"].abs().max()))
    # the dense preconditioned matrix Ht^T H Ht: m structural zeros, the rest = eig(H_k H); the operator matches it
    H = C.hessian(pinn.loss, run.theta)
    Ht = fac.matrix()
    M = Ht.T @ H @ Ht
    op = C.preconditioned_operator(pinn.loss, run.theta, run)
    assert op.shape == (pinn.n_params + fac.m,) * 2
    compare(op, 0.5 * (M + M.T), 1e-9)
    sd = C.preconditioned_spectrum(pinn.loss, run.theta, run, n_probes=4, steps=20)
    assert sd.dim == pinn.n_params + len(pairs.s)
    Hk = torch.stack([C.lbfgs_two_loop(pairs, e) for e in torch.eye(pinn.n_params, dtype=F64)])
    est, se = sd.moment(1)
    assert abs(est * sd.dim - float(torch.trace(Hk @ H))) <= 4 * se * sd.dim
    with pytest.raises(ValueError, match="L-BFGS"):
        C.lbfgs_pairs(pk.train(pinn, "adam", steps=2, quiet=True))


def test_private_lbfgs_state_is_guarded():
    with pytest.raises(ValueError, match="has taken a step"):
        C.lbfgs_pairs({})
    with pytest.raises(RuntimeError, match=re.escape(f"torch {torch.__version__}")):
        C.lbfgs_pairs({"d": torch.zeros(3), "history": []})
    p = random_pairs()
    assert C.lbfgs_pairs(p) is p


# --- devices -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_device_agnostic(device):
    """Same values on every device (float64), results on the operator's device."""
    pinn, ref = small_pinn(F64, device), small_pinn(F64, "cpu")
    th, v = pinn.theta0, torch.ones(pinn.n_params, dtype=F64)
    for mode in ("forward", "reverse"):
        hv = C.hvp(pinn.loss, th, v.to(th.device), mode=mode)
        assert hv.device.type == device
        torch.testing.assert_close(hv.cpu(), C.hvp(ref.loss, ref.theta0, v, mode=mode), rtol=1e-9, atol=1e-9)
    top = C.top_eigenpairs(pinn.loss, th, 2, steps=30)
    assert top.vectors.device.type == device
    torch.testing.assert_close(top.values.cpu(), C.top_eigenpairs(ref.loss, ref.theta0, 2, steps=30).values,
                               rtol=1e-8, atol=0)
    sd = C.spectral_density(pinn.loss, th, n_probes=2, steps=10)
    assert sd.moment(1)[0] == pytest.approx(C.spectral_density(ref.loss, ref.theta0, n_probes=2,
                                                               steps=10).moment(1)[0], rel=1e-8)


# --- exercise checks -----------------------------------------------------------------------------------------
def test_chapter2_exercise_checks(capsys):
    from pinnkit.exercises import ch02
    r = C.lanczos(torch.diag(torch.arange(1.0, 11.0, dtype=F64)), 10, 2, torch.ones(10, dtype=F64))
    assert ch02.check_lanczos_first_step(float(r.alpha[0]), float(r.beta[0]))
    assert not ch02.check_lanczos_first_step(5.5, 8.25)
    f = lambda th: 0.5 * (th ** 2 * torch.tensor([-1.0, 2.0, 3.0, -1e-13], dtype=F64)).sum()   # noqa: E731
    th = torch.zeros(4, dtype=F64)
    assert ch02.check_negative_count(1, f, th) and not ch02.check_negative_count(2, f, th)
    assert ch02.check_range_condition(3.0, f, th) and not ch02.check_range_condition(3e13, f, th)
    sd = C.SpectralDensity.from_eigenvalues(torch.tensor([0.0, 0.1, 10.0], dtype=F64), sigma=1.0)
    area = sd.drawn_mass(-1e9, -1.0)                       # the kernel's tail; no eigenvalue is there
    assert 0.05 < area < 0.2 and sd.mass(-1e9, -1.0) == 0.0
    assert ch02.check_kernel_tail(area, sd) and not ch02.check_kernel_tail(0.0, sd)
    for check, args in [(ch02.check_lanczos_first_step, (None, None)), (ch02.check_negative_count, (None, f, th)),
                        (ch02.check_kernel_tail, (None, sd)), (ch02.check_range_condition, (None, f, th))]:
        assert check(*args) is False
    assert "Not yet" in capsys.readouterr().out
