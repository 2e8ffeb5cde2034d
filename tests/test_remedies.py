"""Remedies (pinnkit.remedies): embeddings, loss weights, causal weights; the kernel's captured fraction
(pinnkit.book.tangent_study) — each against an independent reference (closed forms, dense Jacobians, finite
differences, a hand-written loop)."""
from __future__ import annotations

import math

import pytest
import torch

import pinnkit as pk
from pinnkit import remedies as R
from pinnkit.book import tangent_study as TS

F64 = torch.float64


@pytest.fixture(scope="module")
def conv():
    return pk.problems.Convection(beta=5.0)


def small(problem, embedding=None, seed=0):
    kw = dict(widths=[8, 8], n_res=64, n_ic=16, n_bc=8, seed=seed, dtype=F64)
    return pk.PINN(problem, **kw) if embedding is None else R.EmbeddedPINN(problem, embedding, **kw)


def test_periodic_embedding_makes_the_boundary_term_vanish(conv):
    plain, per = small(conv), small(conv, R.Periodic())
    assert float(plain.terms(plain.theta0)["boundary"]) > 1e-6       # a plain network is not periodic
    assert float(per.terms(per.theta0)["boundary"]) < 1e-28
    X = torch.rand(20, 2, dtype=F64)
    shifted = X + torch.tensor([2 * math.pi, 0.0], dtype=F64)
    assert torch.allclose(per.predict(per.theta0, X), per.predict(per.theta0, shifted), atol=1e-13)


def test_embedded_residual_matches_finite_differences(conv):
    """u_t + beta u_x through the embedding (autograd chain rule) against central differences of u."""
    pinn = small(conv, R.Concat(R.Periodic(harmonics=2), R.FourierFeatures(4, 3.0, dims=[1], keep_rest=False)))
    theta = pinn.theta0 + 0.1 * torch.randn(pinn.n_params, dtype=F64, generator=torch.Generator().manual_seed(1))
    X = pinn.points["residual"][:10]
    u = pinn.u(theta)
    h = 1e-5
    ex, et = torch.tensor([h, 0.0], dtype=F64), torch.tensor([0.0, h], dtype=F64)
    fd = (u(X + et) - u(X - et)) / (2 * h) + conv.beta * (u(X + ex) - u(X - ex)) / (2 * h)
    assert torch.allclose(pinn.residuals(theta)["residual"][:10], fd, atol=1e-7)


def test_embedding_keeps_points_and_seeded_sizes(conv):
    plain, per = small(conv), small(conv, R.Periodic())
    assert all(torch.equal(plain.points[k], per.points[k]) for k in plain.points)
    assert per.n_params == plain.n_params + 8 * (3 - 2)
    with pytest.raises(ValueError, match="n_in=2"):
        R.EmbeddedPINN(conv, R.Periodic(n_in=1), widths=[4], n_res=8, n_ic=4, n_bc=2)


def test_fourier_features_closed_form():
    e = R.FourierFeatures(3, sigma=2.0, dims=[1], n_in=2, seed=4)
    X = torch.rand(7, 2, dtype=F64)
    b = e.B[:, 0]
    expected = torch.cat([torch.cos(X[:, 1:] * b), torch.sin(X[:, 1:] * b), X[:, :1]], dim=1)
    assert torch.allclose(e(X), expected)
    assert e.n_out == 7
    big = R.FourierFeatures(4000, sigma=2.0, n_in=1, seed=0)
    assert abs(float(big.B.std()) - 2.0) < 0.1                 # B ~ N(0, sigma^2)
    with pytest.raises(ValueError, match="sigma"):
        R.FourierFeatures(3, sigma=0.0)


def test_weighted_terms_scale_each_term(conv):
    pinn = small(conv)
    w = R.Weights({"initial": 3.0})
    f = R.weighted_terms(pinn, w)
    t, tw = pinn.terms(pinn.theta0), f(pinn.theta0)
    assert torch.isclose(tw["initial"], 3 * t["initial"]) and torch.isclose(tw["residual"], t["residual"])
    w.set({"initial": 1.0, "residual": 0.5})            # read at every call
    assert torch.isclose(f(pinn.theta0)["residual"], 0.5 * t["residual"])


def test_grad_norm_weights_equalise_gradient_norms(conv):
    pinn = small(conv)
    w = R.grad_norm_weights(pinn, pinn.theta0)
    g = {k: torch.func.grad(pk.objective.term(R.weighted_terms(pinn, w), k))(pinn.theta0) for k in w}
    norms = [float(torch.linalg.vector_norm(v)) for v in g.values()]
    assert max(norms) / min(norms) < 1 + 1e-10


def test_max_mean_weights_against_a_hand_computation(conv):
    pinn = small(conv)
    th = pinn.theta0
    g = {k: torch.func.grad(pk.objective.term(pinn.terms, k))(th) for k in ("residual", "initial")}
    w = R.grad_norm_weights(pinn, th, kind="max/mean")
    assert w["residual"] == 1.0
    assert math.isclose(w["initial"], float(g["residual"].abs().max() / g["initial"].abs().mean()), rel_tol=1e-10)
    with pytest.raises(ValueError, match="'norm' or 'max/mean'"):
        R.grad_norm_weights(pinn, th, kind="max")


def test_term_traces_against_the_dense_kernel(conv):
    """tr K_kk of the scaled residuals = the block traces of J J^T with J the Jacobian of residual_vector."""
    pinn = small(conv)
    J = torch.func.jacrev(pinn.residual_vector)(pinn.theta0)
    K = J @ J.T
    sizes = [r.numel() for r in pinn.residuals(pinn.theta0).values()]
    blocks, start = {}, 0
    for name, n in zip(pinn.residuals(pinn.theta0), sizes):
        blocks[name] = float(K[start:start + n, start:start + n].trace())
        start += n
    tr = R.term_traces(pinn, pinn.theta0)
    assert all(math.isclose(tr[k], blocks[k], rel_tol=1e-10) for k in tr)
    w = R.ntk_weights(pinn, pinn.theta0)
    assert math.isclose(w["initial"] * tr["initial"], sum(tr.values()), rel_tol=1e-12)


def test_weight_update_moving_average_every_m_steps(conv):
    pinn = small(conv)
    w = R.Weights()
    calls = []

    def rule(th):
        calls.append(1)
        return {"initial": 10.0 * len(calls)}
    upd = R.WeightUpdate(w, rule, every=5, alpha=0.5, until=12)
    upd.start(pinn.theta0)
    assert w["initial"] == 10.0
    run = pk.train(R.weighted_terms(pinn, w), "adam", 20, theta0=pinn.theta0, on_step=upd, quiet=True)
    assert run.steps == 20
    assert [s for s, _ in w.history] == [0, 5, 10]                 # every 5 steps, none after step 12
    assert w["initial"] == 0.5 * (0.5 * 10 + 0.5 * 20) + 0.5 * 30  # moving averages of 10, 20, 30


def test_slice_losses_and_causal_weights_against_a_loop():
    gen = torch.Generator().manual_seed(0)
    r, t = torch.randn(200, generator=gen, dtype=F64), torch.rand(200, generator=gen, dtype=F64)
    L = R.slice_losses(r, t, 5)
    for i in range(5):
        inside = (t >= i / 5) & (t < (i + 1) / 5)
        assert math.isclose(float(L[i]), float((r[inside] ** 2).mean()), rel_tol=1e-12)
    w = R.causal_weights(L, eps=2.0)
    for i in range(5):
        assert math.isclose(float(w[i]), math.exp(-2.0 * float(L[:i].sum())), rel_tol=1e-12)
    with pytest.raises(ValueError, match="no residual point"):
        R.slice_losses(r[:3], torch.tensor([0.1, 0.2, 0.3], dtype=F64), 5)


def test_causal_weights_carry_no_gradient(conv):
    """The gradient of the causal residual term is sum_i w_i grad L_r(t_i) / M with w held fixed."""
    pinn = small(conv)
    th = pinn.theta0
    f = R.causal_terms(pinn, n_slices=4, eps=5.0)
    t = pinn.points["residual"][:, 1]
    L = R.slice_losses(pinn.residuals(th)["residual"], t, 4)
    w = R.causal_weights(L, 5.0)
    expected = torch.func.grad(lambda p: (w * R.slice_losses(pinn.residuals(p)["residual"], t, 4)).mean())(th)
    got = torch.func.grad(pk.objective.term(f, "residual"))(th)
    assert torch.allclose(got, expected, atol=1e-12)
    assert float(w[-1]) < 1.0 and float(w[0]) == 1.0
    assert set(f(th)) == set(pinn.terms(th))


def test_captured_fraction_against_a_direct_projection(conv):
    pinn = small(conv)
    X = conv.grid((6, 5))
    y = conv.exact(X)
    c = TS.captured_fraction(pinn, pinn.theta0, X, y, k=5)
    J = torch.func.jacrev(lambda th: pinn.u(th)(X))(pinn.theta0)
    U, S, _ = torch.linalg.svd(J, full_matrices=False)         # eigenvectors of J J^T = left singular vectors
    assert math.isclose(c.fraction, float((U[:, :5].T @ y).pow(2).sum() / y.pow(2).sum()), rel_tol=1e-8)
    assert torch.allclose(c.eigenvalues[:5], S[:5] ** 2, rtol=1e-8)


def test_chapter_11_checks_accept_the_solutions_and_reject_wrong_answers(capsys):
    from pinnkit.exercises import ch11
    assert ch11.check_ntk_weights({"residual": 910 / 900, "initial": 455.0, "boundary": 113.75})
    assert not ch11.check_ntk_weights({"residual": 1.0, "initial": 1.0, "boundary": 1.0})
    assert ch11.check_feature_frequency(math.erfc(3 / math.sqrt(2)))
    assert not ch11.check_feature_frequency(0.05)
    assert ch11.check_causal_homework([1e-2, 2e-2, 4e-2])
    assert not ch11.check_causal_homework([1e-2, 2e-2])
    assert not ch11.check_causal_homework([1e-2, 2e-2, 0.9])
    assert not ch11.check_ntk_weights(None)
    assert "Replace None" in capsys.readouterr().out
