"""pinnkit.landscape: directions, batched slices, and checks against closed forms."""
import math

import pytest
import torch

import pinnkit as pk
from pinnkit import landscape as L
from pinnkit.book import landscape_study as LS

F64 = torch.float64


def quadratic(P=6, seed=0):
    """f(theta) = 1/2 (theta - c)^T A (theta - c) with A = Q diag(lam) Q^T, eigenvalues known (one negative)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    lam = torch.tensor([7.0, 3.0, 1.5, 0.5, 0.25, -2.0], dtype=F64)[:P]
    A = Q @ torch.diag(lam) @ Q.T
    c = torch.randn(P, generator=g, dtype=F64)
    return (lambda th: 0.5 * (th - c) @ A @ (th - c)), A, lam, Q, c


@pytest.fixture(scope="module")
def pinn():
    return pk.PINN(pk.problems.Poisson1D(1), widths=[5, 4], n_res=16, seed=0, dtype=F64)


@pytest.fixture(scope="module")
def theta(pinn):
    g = torch.Generator().manual_seed(1)
    return pinn.theta0 + 0.3 * torch.randn(pinn.n_params, generator=g, dtype=F64)   # non-zero biases


def test_eigenvector_slice_is_the_analytic_paraboloid():
    f, A, lam, Q, c = quadratic()
    d = L.hessian_directions(f, c, k=2)
    assert d.eigenvalues == pytest.approx([7.0, 3.0], abs=1e-10)
    assert d.vectors.shape == (6, 2)                                  # columns (P, k), like torch.linalg.eigh
    assert torch.allclose(d.vectors.T @ d.vectors, torch.eye(2, dtype=F64), atol=1e-12)
    assert torch.allclose(A @ d[0], 7.0 * d[0], atol=1e-10) and torch.equal(d[1], d.vectors[:, 1])
    assert [v.shape for v in d] == [(6,), (6,)] and len(d) == 2
    s = L.slice_2d(f, c, d, span=1.5, n=7)
    a, b = torch.meshgrid(s.alphas, s.betas, indexing="ij")
    assert torch.allclose(s.loss, 0.5 * (7.0 * a ** 2 + 3.0 * b ** 2), atol=1e-11)
    assert s.directions.eigenvalues == d.eigenvalues and "λ=7" in s.directions.labels[0]
    # the finite-difference Hessian of the slice is exact on a quadratic: D^T A D = diag(7, 3)
    assert torch.allclose(s.curvature(), torch.diag(torch.tensor([7.0, 3.0], dtype=F64)), atol=1e-9)


def test_most_negative_direction_and_plane_curvature():
    f, A, lam, Q, c = quadratic()
    d = L.hessian_directions(f, c, k=1, which="smallest")
    assert d.eigenvalues[0] == pytest.approx(-2.0, abs=1e-10)
    s = L.slice_1d(f, c, d, span=1.0, n=5)
    assert s.curvature() == pytest.approx(-2.0, abs=1e-9)
    assert torch.allclose(s.loss, -1.0 * s.alphas ** 2, atol=1e-11)
    # away from the minimum the slope dominates; without it the eigenvalue's parabola is left, exactly
    s = L.slice_1d(f, c + 0.7, d, span=1.0, n=5)
    assert torch.allclose(s.without_slope().loss, -1.0 * s.alphas ** 2, atol=1e-11)
    assert not torch.allclose(s.loss - s.loss[2], -1.0 * s.alphas ** 2, atol=1e-3)
    r = L.random_directions(c, 2, seed=3)
    pc = L.plane_curvature(f, c, r[0], r[1])
    assert -2.0 - 1e-9 <= float(pc[0]) <= float(pc[1]) <= 7.0 + 1e-9      # Cauchy interlacing
    Qp, _ = torch.linalg.qr(r.vectors)
    assert torch.allclose(pc, torch.linalg.eigvalsh(Qp.T @ A @ Qp), atol=1e-10)


def test_terms_are_sliced_and_sum_to_the_loss():
    f, A, lam, Q, c = quadratic()
    terms = lambda th: {"quad": f(th), "lin": th.sum()}
    d = L.random_directions(c, 2, seed=1)
    s = L.slice_2d(terms, c, d, span=0.5, n=5)
    assert set(s.terms) == {"quad", "lin"}
    assert torch.allclose(s.loss, s.terms["quad"] + s.terms["lin"], atol=1e-12)
    assert L.slice_2d(f, c, d, span=0.5, n=5).terms == {}


def test_filter_normalized_blocks_have_the_right_norms(pinn, theta):
    d = L.random_directions(theta, 2, blocks=pinn.blocks, normalization="filter", seed=0)
    assert d.vectors.shape == (pinn.n_params, 2)
    for v in d:
        for b in pinn.blocks:
            db, tb = v[b.start:b.stop].view(b.shape), theta[b.start:b.stop].view(b.shape)
            if len(b.shape) == 2:   # every row (filter) of a weight matrix
                assert torch.allclose(db.norm(dim=1), tb.norm(dim=1), rtol=1e-12)
            else:                   # a bias vector as a whole
                assert db.norm() == pytest.approx(float(tb.norm()), rel=1e-12)
    assert not torch.allclose(d[0], d[1])


def test_layer_global_and_no_normalization(pinn, theta):
    lay = L.random_directions(theta, 1, blocks=pinn.blocks, normalization="layer", seed=4)[0]
    for b in pinn.blocks:
        assert lay[b.start:b.stop].norm() == pytest.approx(float(theta[b.start:b.stop].norm()), rel=1e-12)
    glo = L.random_directions(theta, 1, blocks=pinn, normalization="global", seed=4)[0]
    assert glo.norm() == pytest.approx(float(theta.norm()), rel=1e-12)
    raw = L.random_directions(theta, 1, normalization="none", seed=4)[0]
    expected = torch.randn(1, theta.numel(), generator=torch.Generator().manual_seed(4), dtype=F64)[0]
    assert torch.equal(raw, expected)
    # filter-normalization of a row-wise differing direction changes the direction, not only its length
    fil = L.random_directions(theta, 1, blocks=pinn.blocks, normalization="filter", seed=4)[0]
    assert abs(float(fil @ lay / (fil.norm() * lay.norm()))) < 0.999


def test_biases_stay_in_the_directions(pinn, theta):
    assert all(float(pinn.theta0[b.start:b.stop].abs().max()) == 0 for b in pinn.blocks if b.name.endswith("bias"))
    for th in (theta, pinn.theta0):          # trained-like and zero-bias initialization
        for how in ("filter", "layer"):
            d = L.random_directions(th, 1, blocks=pinn.blocks, normalization=how, seed=0)[0]
            for b in pinn.blocks:
                assert float(d[b.start:b.stop].abs().min()) > 0, (how, b.name)
    # zero blocks fall back to the root-mean-square size of theta (documented in normalize)
    d = L.random_directions(pinn.theta0, 1, blocks=pinn.blocks, seed=0)[0]
    b = pinn.blocks[1]
    rms = pinn.theta0.norm() / math.sqrt(pinn.n_params)
    assert d[b.start:b.stop].norm() == pytest.approx(float(rms * math.sqrt(b.stop - b.start)), rel=1e-12)


def test_batched_and_looped_evaluation_agree(pinn, theta):
    d = L.random_directions(theta, 2, blocks=pinn.blocks, seed=2)
    fast = L.slice_2d(pinn.terms, theta, d, span=0.7, n=4, chunk=5)          # 16 points in chunks of 5
    slow = L.slice_2d(pinn.terms, theta, d, span=0.7, n=4, batched=False)
    assert torch.allclose(fast.loss, slow.loss, rtol=1e-10, atol=1e-12)
    for k in slow.terms:
        assert torch.allclose(fast.terms[k], slow.terms[k], rtol=1e-10, atol=1e-12)
    # and both equal a direct call at one grid point
    i, j = 3, 1
    th = theta + fast.alphas[i] * d[0] + fast.betas[j] * d[1]
    assert float(fast.loss[i, j]) == pytest.approx(float(pinn.loss(th)), rel=1e-12)
    # the Deep Ritz terms also vectorise
    ritz = LS.ritz_terms(pinn)
    r1 = L.slice_1d(ritz, theta, d[0], span=0.5, n=3)
    assert float(r1.loss[0]) == pytest.approx(float(sum(ritz(theta - 0.5 * d[0]).values())), rel=1e-12)
    assert set(r1.terms) == {"energy", "boundary"}


def test_slice_curvature_matches_hessian_vector_products(pinn, theta):
    d = L.random_directions(theta, 2, blocks=pinn.blocks, seed=5)
    s = L.slice_2d(pinn.loss, theta, d, span=1e-3, n=3)
    exact = d.vectors.T @ pk.curvature.hvp_batch(pinn.loss, theta, d.vectors.T).T
    assert torch.allclose(s.curvature(), exact, rtol=1e-4, atol=1e-6 * float(exact.abs().max()))


def test_interpolation_line():
    f, A, lam, Q, c = quadratic()
    th0 = c + 1.0
    s = LS.interpolate(f, th0, c, span=(0.0, 1.0), n=5)
    assert float(s.loss[-1]) == pytest.approx(0.0, abs=1e-12)
    assert float(s.loss[0]) == pytest.approx(float(f(th0)), rel=1e-12)
    assert s.marks == {"init": 0.0, "trained": 1.0}


def test_float32_and_errors(pinn, theta):
    p32 = pk.PINN(pk.problems.Poisson1D(1), widths=[5, 4], n_res=16, seed=0)
    t32 = theta.float()
    s = L.slice_1d(p32.loss, t32, L.random_directions(t32, 1, blocks=p32.blocks)[0], n=3)
    assert s.loss.dtype == torch.float32 and torch.isfinite(s.loss).all()
    with pytest.raises(ValueError, match="valid: filter"):
        L.random_directions(theta, 2, normalization="batch")
    with pytest.raises(ValueError, match="pinn.blocks"):
        L.random_directions(theta, 2, blocks=pinn.blocks[:-1])
    with pytest.raises(ValueError, match="odd n"):
        L.slice_1d(pinn.loss, theta, theta, n=4).curvature()
    with pytest.raises(ValueError, match="Poisson1D"):
        LS.ritz_terms(pk.PINN("convection", widths=[4], n_res=8, n_ic=4, n_bc=4))


def test_evaluate_returns_a_frozen_result_and_checks_column_shapes():
    import dataclasses
    f, A, lam, Q, c = quadratic()
    terms = lambda th: {"quad": f(th), "lin": th.sum()}
    D = L.random_directions(c, 2, seed=0).vectors
    ev = L.evaluate(terms, c, torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=F64), D)
    assert isinstance(ev, L.Evaluation) and ev.loss.shape == (2,) and set(ev.terms) == {"quad", "lin"}
    assert float(ev.loss[1]) == pytest.approx(float(f(c + D[:, 0] - D[:, 1]) + (c + D[:, 0] - D[:, 1]).sum()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.loss = None
    with pytest.raises(ValueError, match=r"directions \(P, k\)"):
        L.evaluate(f, c, torch.zeros(2, 2, dtype=F64), D.T)
    with pytest.raises(ValueError, match="columns"):
        L.Directions(D.T, "custom", "none", ("a", "b"))
    with pytest.raises(IndexError):
        L.Directions(D, "custom", "none", ("a", "b"))[2]


def test_reweighted_line_and_per_term_barrier():
    alphas = torch.linspace(0, 1, 5, dtype=F64)
    terms = {"energy": torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0], dtype=F64),      # decreasing: no climb
             "boundary": torch.tensor([1.0, 2.0, 3.0, 0.5, 0.0], dtype=F64)}    # climbs by 2
    s = L.Slice1D(alphas, terms["energy"] + terms["boundary"], terms, "α", 1.0)
    assert s.barrier(term="energy") == 0.0 and s.barrier(term="boundary") == 2.0
    assert s.barrier() == 0.0                                  # 5, 5, 5, 1.5, 0: the sum never climbs
    heavy = s.reweighted({"boundary": 10.0})
    assert torch.allclose(heavy.loss, terms["energy"] + 10 * terms["boundary"]) and heavy.barrier() == pytest.approx(18.0)
    assert torch.equal(heavy.terms["energy"], terms["energy"])
    with pytest.raises(ValueError, match="valid: energy, boundary"):
        s.reweighted({"penalty": 1.0})
    with pytest.raises(ValueError, match="unknown term"):
        s.barrier(term="penalty")


def test_slice_hessian_is_DtAD_and_matches_the_finite_difference_curvature():
    f, A, lam, Q, c = quadratic()
    r = L.random_directions(c, 2, seed=5)
    D = r.vectors
    M = L.slice_hessian(f, c, r)
    assert M.dtype == F64 and M.shape == (2, 2)
    assert torch.allclose(M, D.T @ A @ D, atol=1e-10)
    assert torch.allclose(L.slice_hessian(f, c, [r[0], r[1]]), M, atol=1e-12)        # a list of tensors works too
    s = L.slice_2d(f, c, r, span=0.5, n=5)
    assert torch.allclose(s.curvature(), M, atol=1e-8)                               # exact on a quadratic
    terms = lambda th: {"quad": f(th), "lin": th.sum()}                               # a linear term adds nothing
    assert torch.allclose(L.slice_hessian(terms, c, r), M, atol=1e-10)


def test_chapter_9_helpers_live_in_the_book_and_plane_curvature_is_the_eigenvalues_of_slice_hessian():
    assert not hasattr(L, "interpolate") and not hasattr(L, "ritz_terms")      # moved to pinnkit.book
    assert {"interpolate", "ritz_terms"} <= set(LS.__all__)
    f, A, lam, Q, c = quadratic()
    r = L.random_directions(c, 2, seed=4)
    Qp, _ = torch.linalg.qr(r.vectors)
    plane = L.Directions(Qp, "custom", "none", ("q1", "q2"))
    assert torch.equal(L.plane_curvature(f, c, r[0], r[1]), torch.linalg.eigvalsh(L.slice_hessian(f, c, plane)))
    s = L.slice_2d(f, c, r, span=0.5, n=4)
    with pytest.raises(ValueError, match="odd n"):
        s.curvature()
