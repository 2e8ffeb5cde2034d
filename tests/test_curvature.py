"""Correctness of pinnkit.curvature against independent references: finite differences, torch's dense Hessian,
dense eigensolvers, closed-form spectra, and torch's own L-BFGS two-loop recursion."""
from __future__ import annotations

import math

import pytest
import torch

import pinnkit as pk
from pinnkit import curvature as C

F64 = torch.float64
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny problems: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


def small_pinn(dtype=F64, device="cpu", problem=None) -> pk.PINN:
    problem = problem or pk.problems.Convection(beta=5.0)
    return pk.PINN(problem, widths=[6, 6], n_res=48, n_ic=12, n_bc=6, seed=1, dtype=dtype, device=device)


def known_quadratic(P: int, dtype=F64, seed: int = 0):
    """f = 1/2 th^T A th with A = Q diag(lam) Q^T: two clusters (P/3 in [1, 2], the rest in [100, 200]) and two
    negative eigenvalues; a random rotation Q so that Rademacher probes have a nonzero Hutchinson variance."""
    g = torch.Generator().manual_seed(seed)
    n1 = P // 3
    lam = torch.cat([1 + torch.rand(n1, generator=g, dtype=F64), 100 + 100 * torch.rand(P - n1 - 2, generator=g,
                                                                                           dtype=F64),
                     torch.tensor([-3.0, -0.5], dtype=F64)])
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    Ad = A.to(dtype)
    return (lambda th: 0.5 * th @ (Ad @ th)), A, lam.sort().values


# --- HVPs and dense Hessians ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_hvp_matches_dense_hessian_and_finite_differences(mode):
    pinn = small_pinn()
    th = pinn.theta0 + 0.1 * torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(0), dtype=F64)
    v = torch.randn(pinn.n_params, generator=torch.Generator().manual_seed(1), dtype=F64)
    Hv = C.hvp(pinn.loss, th, v, mode=mode)
    H = torch.autograd.functional.hessian(pinn.loss, th)
    assert torch.allclose(Hv, H @ v, rtol=1e-9, atol=1e-9 * float(H.abs().max()))
    grad = torch.func.grad(pinn.loss)
    h = 1e-5
    fd = (grad(th + h * v) - grad(th - h * v)) / (2 * h)
    assert float((Hv - fd).norm() / fd.norm()) < 1e-6
    V = torch.randn(3, pinn.n_params, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.allclose(C.hvp_batch(pinn.loss, th, V, mode=mode), V @ H, rtol=1e-9, atol=1e-9)


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


def test_hessian_equals_torch_reference_and_refuses_large(monkeypatch):
    rosen = lambda th: ((1 - th[:-1]) ** 2 + 100 * (th[1:] - th[:-1] ** 2) ** 2).sum()
    th = torch.linspace(-1, 1, 7, dtype=F64)
    assert torch.allclose(C.hessian(rosen, th), torch.autograd.functional.hessian(rosen, th), rtol=1e-12, atol=1e-10)
    pinn = small_pinn()
    H = C.hessian(pinn.loss, pinn.theta0, chunk=17)
    ref = torch.autograd.functional.hessian(pinn.loss, pinn.theta0)
    assert torch.allclose(H, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))
    assert torch.equal(H, H.T)
    eig = C.hessian_eigh(pinn.loss, pinn.theta0)
    assert eig.values.dtype == F64 and bool((eig.values[1:] >= eig.values[:-1]).all())
    assert torch.allclose((eig.vectors * eig.values) @ eig.vectors.T, H, atol=1e-10 * float(H.abs().max()))
    monkeypatch.setattr(C, "DENSE_LIMIT", 10)
    with pytest.raises(ValueError, match="spectral_density"):
        C.hessian(pinn.loss, pinn.theta0)
    assert C.hessian(rosen, th[:5]).shape == (5, 5)


# --- Lanczos and extreme eigenpairs --------------------------------------------------------------------------
def test_lanczos_extremes_match_eigvalsh_to_1e8():
    _, A, lam = known_quadratic(120)
    r = C.lanczos(A, 120, 80, seed=0, vectors=True)
    assert abs(float(r.ritz_values[-1]) - float(lam[-1])) <= 1e-8 * abs(float(lam[-1]))
    assert abs(float(r.ritz_values[0]) - float(lam[0])) <= 1e-8 * abs(float(lam[0]))
    assert r.alpha.shape == (80,) and r.beta.shape == (79,) and torch.allclose(r.weights.sum(), torch.tensor(1.0,
                                                                                                      dtype=F64))
    T = r.tridiagonal()
    Qr = r.ritz_vectors
    assert torch.allclose(Qr.T @ Qr, torch.eye(80, dtype=F64), atol=1e-10)         # full reorthogonalization
    assert torch.allclose(Qr.T @ A @ Qr, torch.diag(r.ritz_values), atol=1e-8 * float(lam.abs().max()))
    assert torch.allclose(torch.linalg.eigvalsh(T), r.ritz_values)


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


@pytest.mark.parametrize("dtype,rtol", [(F64, 1e-8), (torch.float32, 1e-4)])
def test_top_and_bottom_eigenpairs_of_pinn_hessian(dtype, rtol):
    pinn = small_pinn(dtype)
    ev = torch.linalg.eigvalsh(torch.autograd.functional.hessian(pinn.loss, pinn.theta0).double())
    top = C.top_eigenpairs(pinn.loss, pinn.theta0, k=3)
    assert torch.allclose(top.values, ev[-3:].flip(0), rtol=rtol)
    assert top.vectors.shape == (pinn.n_params, 3)
    assert float(top.residuals.max()) < 10 * rtol * float(ev.abs().max())
    bottom = C.bottom_eigenpairs(pinn.loss, pinn.theta0, k=2, steps=pinn.n_params)
    assert torch.allclose(bottom.values, ev[:2], rtol=rtol, atol=rtol * float(ev.abs().max()))


# --- stochastic Lanczos quadrature ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_slq_on_known_spectrum(dtype):
    P = 150
    f, A, lam = known_quadratic(P, dtype)
    sd = C.spectral_density(f, torch.zeros(P, dtype=dtype), n_probes=10, steps=40)
    assert sd.nodes.shape == (10, 40)
    assert abs(sd.integral() - 1) < 1e-3
    tol = 1e-3 * float(lam.abs().max())
    assert sd.lmin >= float(lam[0]) - tol and sd.lmax <= float(lam[-1]) + tol      # Ritz values lie in the spectrum
    assert abs(sd.lmax - float(lam[-1])) < tol and abs(sd.lmin - float(lam[0])) < tol
    # mass where the eigenvalues are: cluster fractions 2/150, 50/150, 98/150
    for lo, hi, n in [(-4, 0, 2), (0.5, 2.5, P // 3), (99, 201, P - P // 3 - 2)]:
        per = ((sd.nodes >= lo) & (sd.nodes <= hi)).double().mul(sd.weights).sum(1)
        se = float(per.std()) / math.sqrt(len(per))
        assert abs(sd.mass(lo, hi) - n / P) <= 4 * se + 1e-3
    assert sd.mass(-4, 201) > 1 - 1e-6
    gap = (sd.grid > 10) & (sd.grid < 90)
    assert float(sd.density[gap].max()) < 1e-6 * float(sd.density.max())               # no mass in the gap
    for k in (1, 2):
        est, se = sd.moment(k)
        true = float((lam ** k).sum()) / P
        assert se > 0 and abs(est - true) <= 4 * se, (k, est, true, se)


def test_slq_sigma_and_term_densities_add_up():
    pinn = small_pinn()
    dens = C.term_densities(pinn.terms, pinn.theta0, include_total=True, n_probes=3, steps=20)
    assert set(dens) == {"residual", "initial", "boundary", "total"}
    total = dens["total"]
    assert total.sigma2 == pytest.approx(5e-5 * max(1.0, total.lmax - total.lmin))
    # the same probes for every term and v^T H v is linear in H: the first moments add up exactly per probe
    per = lambda sd: (sd.weights * sd.nodes).sum(1)
    assert torch.allclose(sum(per(dens[k]) for k in ("residual", "initial", "boundary")), per(total), rtol=1e-8)
    ref = C.hessian(pinn.loss, pinn.theta0)
    assert abs(total.lmax - float(torch.linalg.eigvalsh(ref)[-1])) < 1e-6 * total.lmax


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
    # adjointness: <Ht x, z> = <x, Ht^T z>
    X = torch.randn(30 + 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert float(fac.apply(X) @ Z[0]) == pytest.approx(float(X @ fac.apply_t(Z[0])), rel=1e-12)


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
    sd = C.preconditioned_spectrum(pinn.loss, run.theta, run, n_probes=4, steps=20)
    assert sd.dim == pinn.n_params + len(pairs.s)
    # tr(Ht^T H Ht) = tr(H_k H) from dense matrices, within the SLQ error
    H = C.hessian(pinn.loss, run.theta)
    Hk = torch.stack([C.lbfgs_two_loop(pairs, e) for e in torch.eye(pinn.n_params, dtype=F64)])
    est, se = sd.moment(1)
    assert abs(est * sd.dim - float(torch.trace(Hk @ H))) <= 4 * se * sd.dim
    with pytest.raises(ValueError, match="L-BFGS"):
        C.lbfgs_pairs(pk.train(pinn, "adam", steps=2, quiet=True))


# --- condition numbers and Gauss-Newton ----------------------------------------------------------------------
def test_condition_number():
    ev = torch.tensor([-2.0, 0.0, 1e-3, 0.1, 10.0], dtype=F64)
    assert C.condition_number(ev) == pytest.approx(1e4)
    assert C.condition_number(ev, cutoff=0.01) == pytest.approx(100.0)
    assert C.condition_number(C.Eigen(ev, torch.eye(5, dtype=F64))) == pytest.approx(1e4)
    with pytest.raises(ValueError, match="cutoff"):
        C.condition_number(torch.tensor([-1.0, -2.0]))


def test_gauss_newton_product_matches_dense():
    pinn = small_pinn()
    G = C.gauss_newton(pinn.residual_vector, pinn.theta0)
    V = torch.randn(3, pinn.n_params, generator=torch.Generator().manual_seed(4), dtype=F64)
    assert torch.allclose(C.gauss_newton_product(pinn.residual_vector, pinn.theta0, V[0]), G @ V[0], rtol=1e-10,
                          atol=1e-12)
    assert torch.allclose(C.gauss_newton_product(pinn.residual_vector, pinn.theta0, V), V @ G, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.eigvalsh(G)[0]) > -1e-10 * float(G.abs().max())          # PSD


# --- devices -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_device_agnostic(device):
    pinn = small_pinn(torch.float32, device)
    th = pinn.theta0
    v = torch.ones_like(th)
    for mode in ("forward", "reverse"):
        assert C.hvp(pinn.loss, th, v, mode=mode).device.type == device
    top = C.top_eigenpairs(pinn.loss, th, 2, steps=30)
    assert top.vectors.device.type == device
    sd = C.spectral_density(pinn.loss, th, n_probes=2, steps=10)
    assert abs(sd.integral() - 1) < 1e-3


# --- exercise checks -----------------------------------------------------------------------------------------
def test_chapter2_exercise_checks(capsys):
    from pinnkit.exercises import ch02
    r = C.lanczos(torch.diag(torch.arange(1.0, 11.0, dtype=F64)), 10, 2, torch.ones(10, dtype=F64))
    assert ch02.check_lanczos_first_step(float(r.alpha[0]), float(r.beta[0]))
    assert not ch02.check_lanczos_first_step(5.5, 8.25)
    f = lambda th: 0.5 * (th ** 2 * torch.tensor([-1.0, 2.0, 3.0, 1e-9], dtype=F64)).sum()
    th = torch.zeros(4, dtype=F64)
    assert ch02.check_negative_fraction(0.25, f, th) and not ch02.check_negative_fraction(0.5, f, th)
    assert ch02.check_condition_number(3.0 / 2.0, f, th) and not ch02.check_condition_number(3e9, f, th)
    assert "Not yet" in capsys.readouterr().out
