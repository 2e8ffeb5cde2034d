"""Alignment score, per-term gradients, training loggers and preconditioned alignment."""
import copy
import math

import pytest
import torch

import pinnkit as pk
from pinnkit import alignment as al
from pinnkit.book import alignment_study as AS


def test_score_closed_forms():
    e = torch.eye(4, dtype=torch.float64)
    assert al.alignment_score([e[0], 3 * e[0], 0.1 * e[0]]) == pytest.approx(1.0)
    assert al.alignment_score([e[0], -e[0]]) == pytest.approx(-1.0)
    for n in (2, 3, 4):                                   # n orthonormal vectors: 2/n - 1
        assert al.alignment_score(e[:n]) == pytest.approx(2 / n - 1)
    # three unit vectors at 120 degrees: they cancel, the minimum -1
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    assert al.alignment_score(torch.stack([ang.cos(), ang.sin()], 1)) == pytest.approx(-1.0, abs=1e-12)


def test_score_equals_cosine_for_two_and_is_scale_invariant():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
        c = float(a @ b / (a.norm() * b.norm()))
        assert al.cosine(a, b) == pytest.approx(c, abs=1e-12)
        assert al.alignment_score({"x": a, "y": b}) == pytest.approx(c, abs=1e-12)
        assert al.alignment_score([2.5 * a, 0.1 * b]) == pytest.approx(c, abs=1e-12)
    # n vectors: equals the mean pairwise cosine formula 2|m|^2 - 1 = (2/n^2)(n + 2 sum_{i<j} cos_ij) - 1
    V = torch.randn(5, 6, generator=g, dtype=torch.float64)
    U = V / V.norm(dim=1, keepdim=True)
    C = U @ U.T
    n = 5
    assert al.alignment_score(V) == pytest.approx(2 / n ** 2 * float(C.sum()) - 1, abs=1e-12)


def test_score_errors():
    with pytest.raises(ValueError, match="at least 2"):
        al.alignment_score([torch.ones(3)])
    with pytest.raises(ValueError, match="same shape"):
        al.alignment_score([torch.ones(3), torch.ones(4)])
    with pytest.raises(ValueError, match="zero or non-finite norm"):
        al.cosine(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="at least 2|2-D"):
        al.alignment_score(torch.ones(3))


def test_term_gradients_match_finite_differences_and_sum():
    pinn = pk.PINN("convection", widths=[6], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64, seed=1)
    th = pinn.theta0
    g = al.term_gradients(pinn.terms, th)
    assert set(g) == set(pinn.terms(th))
    total = torch.func.grad(pinn.loss)(th)
    torch.testing.assert_close(sum(g.values()), total, rtol=1e-12, atol=1e-12)
    h = 1e-6
    for k in g:
        for j in (0, 5, th.numel() - 1):
            e = torch.zeros_like(th)
            e[j] = h
            fd = (pinn.terms(th + e)[k] - pinn.terms(th - e)[k]) / (2 * h)
            assert float(g[k][j]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
    assert torch.equal(th, pinn.theta0)


def test_loggers_in_train():
    pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=torch.float64)
    inter = al.InterStep()
    run = pk.train(pinn, "adam", steps=6, lr=1e-2, log_every=2, quiet=True,
                   log={"intra": al.IntraStep(pinn.terms), "inter": inter})
    h = run.history
    assert h.step == [0, 2, 4, 6]
    assert h.extra["intra"][0] == pytest.approx(al.intra_step_alignment(pinn.terms, pinn.theta0))
    assert math.isnan(h.extra["inter"][0]) and all(-1 <= x <= 1 for x in h.extra["inter"][1:])
    # the logger keeps the last total gradient it was given: that of the final theta
    gl = torch.func.grad(pinn.loss)(run.theta)
    torch.testing.assert_close(inter.previous, gl, rtol=1e-10, atol=1e-12)
    # and the last score is the cosine of the total gradients at steps 4 and 6 (Adam is deterministic)
    theta4 = pk.train(pinn, "adam", steps=4, lr=1e-2, quiet=True).theta
    assert h.extra["inter"][-1] == pytest.approx(al.cosine(torch.func.grad(pinn.loss)(theta4), gl), abs=1e-10)
    assert h.extra["intra"][-1] == pytest.approx(al.alignment_score(al.term_gradients(pinn.terms, run.theta)))


def test_inter_step_definition():
    inter = al.InterStep()
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert math.isnan(inter(None, a))
    assert inter(None, b) == pytest.approx(math.sqrt(0.5))
    assert inter(None, -b) == pytest.approx(-1.0)
    inter.reset()
    assert math.isnan(inter(None, a))


def test_precondition_solves_damped_system():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    M = A @ A.T
    v = {"a": torch.randn(5, generator=g, dtype=torch.float64)}
    d = 1e-3
    lam_max = float(torch.linalg.eigvalsh(M).abs().max())
    x = al.precondition(M, v, damping=d)["a"]
    torch.testing.assert_close((M + d * lam_max * torch.eye(5, dtype=torch.float64)) @ x, v["a"])
    with pytest.raises(ValueError, match="damping"):
        al.precondition(M, v, damping=0.0)


def test_newton_undoes_a_shared_ill_conditioned_map():
    """L_i = 1/2 |W theta - a_i|^2 with W = diag(1, 100): the residuals (1, 0.01) and (1, -0.01) almost agree,
    W^T amplifies their disagreement into orthogonal gradients (1, 1) and (1, -1); with the Hessian of the sum
    H = 2 W^T W, H^{-1} g_i = W^{-1}(W theta - a_i) / 2 = (1, +-1e-4) / 2 undoes it: cosine (1 - 1e-8) / (1 + 1e-8).
    Gauss-Newton equals the Hessian here."""
    W = torch.diag(torch.tensor([1.0, 100.0], dtype=torch.float64))
    a, b = torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.02], dtype=torch.float64)
    terms = lambda th: {"one": 0.5 * ((W @ th - a) ** 2).sum(), "two": 0.5 * ((W @ th - b) ** 2).sum()}
    r = lambda th: torch.cat([W @ th - a, W @ th - b]) / 2 ** 0.5
    theta = torch.tensor([1.0, 1e-4], dtype=torch.float64)
    out = al.preconditioned_alignment(terms, r, theta, dampings=(1e-14, 1e6))
    assert out.saddle_free[0] == pytest.approx(out.newton[0], abs=1e-10)   # H is positive definite here
    assert out.raw == pytest.approx(0.0, abs=1e-12)
    assert out.newton[0] == pytest.approx((1 - 1e-8) / (1 + 1e-8), abs=1e-10)
    assert out.gauss_newton[0] == pytest.approx(out.newton[0], abs=1e-10)
    assert out.newton[1] == pytest.approx(out.raw, abs=1e-6)     # heavy damping: back to the raw gradients
    assert out.terms == ("one", "two")


def test_summarize_averages_the_late_logs():
    import types
    hist = pk.History(step=[0, 1, 2, 3, 4], loss=[5, 4, 3, 2, 1.0], l2re=[1, 1, 1, 1, 0.5],
                      extra={"intra": [0, 0, 1.0, 0.5, 0.0], "inter": [float("nan"), 1, -1.0, 1.0, 0.0]})
    run = types.SimpleNamespace(history=hist, loss=1.0, l2re=0.5)
    s = AS.summarize(run)  # the last half of 5 entries: indices 2, 3, 4
    assert (s.loss, s.l2re, s.intra, s.inter) == (1.0, 0.5, 0.5, 0.0)
    assert "L2RE 5.0e-01" in str(s)
    full = AS.summarize(run, fraction=1.0)   # the NaN first inter-step entry is skipped, not propagated
    assert full.inter == pytest.approx(0.25) and full.intra == pytest.approx(0.3)
    with pytest.raises(ValueError, match="IntraStep"):
        AS.summarize(types.SimpleNamespace(history=pk.History(), loss=0.0, l2re=0.0))
    with pytest.raises(ValueError, match="fraction"):
        AS.summarize(run, fraction=0.0)


def test_score_reaches_minus_one_for_more_than_two_vectors():
    for n in (3, 4, 7):
        assert al.alignment_score(AS.fan(n, 2 * math.pi * (n - 1) / n)) == pytest.approx(-1.0, abs=1e-12)


def test_term_gradients_accepts_models_losses_and_terms():
    pinn = pk.PINN("convection", widths=[5], n_res=16, n_ic=4, n_bc=4, dtype=torch.float64, seed=0)
    th = pinn.theta0
    a, b = al.term_gradients(pinn, th), al.term_gradients(pinn.terms, th)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    one = al.term_gradients(pinn.loss, th)
    assert list(one) == ["loss"]
    torch.testing.assert_close(one["loss"], sum(b.values()))
    assert al.cosine(th.reshape(1, -1), 2 * th.reshape(1, -1)) == pytest.approx(1.0)   # any matching shape


def test_track_measures_lag_one_at_every_log_point():
    """inter = cos(theta_k - theta_{k-1}, theta_{k+1} - theta_k), inter_grad = cos(g_k, g_{k+1}), whatever
    log_every is; checked against Adam steps taken by hand."""
    pinn = pk.PINN("convection", widths=[6], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64, seed=2)
    tr = AS.track(pinn, "adam", 7, lr=1e-2, log_every=3)
    assert tr.step == (0, 3, 6) and math.isnan(tr.inter[0])
    stepper = pk.STEPPERS["adam"](pinn.terms, pinn.theta0, lr=1e-2)
    thetas, pre = [pinn.theta0], []
    for _ in range(7):
        d = al.optimizer_directions(stepper, al.term_gradients(pinn.terms, thetas[-1]))  # the state before the step
        pre.append(math.nan if d is None else al.alignment_score(d))
        stepper.step()
        thetas.append(stepper.theta.clone())
    grad = torch.func.grad(pinn.loss)
    for i, k in enumerate(tr.step):
        assert tr.inter_grad[i] == pytest.approx(al.cosine(grad(thetas[k]), grad(thetas[k + 1])), abs=1e-10)
        if k > 0:
            want = al.cosine(thetas[k] - thetas[k - 1], thetas[k + 1] - thetas[k])
            assert tr.inter[i] == pytest.approx(want, abs=1e-10)
        assert tr.intra[i] == pytest.approx(al.intra_step_alignment(pinn.terms, thetas[k]), abs=1e-10)
        assert tr.intra_precond[i] == pytest.approx(pre[k], abs=1e-10, nan_ok=True)
    torch.testing.assert_close(tr.theta, thetas[-1])
    assert tr.loss == pytest.approx(float(pinn.loss(thetas[-1])))
    assert math.isnan(tr.intra_precond[0]) and all(-1 <= x <= 1 for x in tr.intra_precond[1:])
    assert set(tr.snapshots) >= {7}
    with pytest.raises(ValueError, match="positive"):
        AS.track(pinn, "adam", 0, lr=1e-2)
    with pytest.raises(TypeError, match="precondition_frequency"):      # runs through pk.train: no option ignored
        AS.track(pinn, "adam", 3, lr=1e-2, precondition_frequency=2)


def test_optimizer_directions_is_the_optimizers_linear_preconditioner():
    pinn = pk.PINN("convection", widths=[4, 4], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64, seed=3)
    g = al.term_gradients(pinn, pinn.theta0)
    adam = pk.STEPPERS["adam"](pinn.terms, pinn.theta0, lr=1e-3)
    assert al.optimizer_directions(adam, g) is None              # no second moment yet
    adam.step()
    d = al.optimizer_directions(adam, g)
    v = adam.opt.state[adam.param]["exp_avg_sq"]
    torch.testing.assert_close(d["residual"], g["residual"] / (v.sqrt() + 1e-8))
    soap = pk.STEPPERS["soap"](pinn.terms, pinn.theta0, lr=1e-3, blocks=pinn.blocks)
    soap.step()
    assert al.optimizer_directions(soap, g) is None              # SOAP's first step only builds Q
    for _ in range(3):
        soap.step()
    d = al.optimizer_directions(soap, g)
    both = al.optimizer_directions(soap, {"sum": sum(g.values())})["sum"]
    torch.testing.assert_close(sum(d.values()), both)           # linear: sum_i P g_i = P grad L
    with pytest.raises(TypeError, match="Adam and SOAP"):
        al.optimizer_directions(object(), g)


def test_tune_picks_the_lowest_final_loss_and_study_runs_every_seed():
    make = lambda s: pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=torch.float64, seed=s)
    t = AS.tune(make, "adam", (1e-4, 1e-2), 5, seed=9)
    assert t.best == t.lrs[t.losses.index(min(t.losses))]
    st = AS.study(make, ("adam",), (1e-2,), 4, seeds=(0, 1, 2), tune_seed=9, log_every=2)
    assert [tr.seed for tr in st.traces["adam"]] == [0, 1, 2]
    sp = st.summary("adam")
    assert len(sp.loss) == 3 and "[" in str(sp)
    fixed = AS.Tuning(method="adam", lrs=(1e-3,), losses=(0.0,), best=1e-3)   # reused, not re-tuned
    again = AS.study(make, ("adam",), (1e-2,), 2, seeds=(0,), tune_seed=9, log_every=1, tunings={"adam": fixed})
    assert again.tunings["adam"] is fixed and again.traces["adam"][0].lr == 1e-3


def test_saddle_free_uses_absolute_eigenvalues():
    M = torch.diag(torch.tensor([2.0, -4.0], dtype=torch.float64))
    v = {"a": torch.tensor([1.0, 1.0], dtype=torch.float64)}
    torch.testing.assert_close(al.precondition(M, v, damping=1e-12)["a"], torch.tensor([0.5, -0.25], dtype=torch.float64))
    torch.testing.assert_close(al.precondition(M, v, damping=1e-12, absolute=True)["a"],
                               torch.tensor([0.5, 0.25], dtype=torch.float64))


def test_track_with_resampled_points_uses_each_steps_own_points():
    """resample=True (Wang et al.'s fresh batches): step k's gradients use step k's points; checked against Adam
    steps taken by hand on a copy whose residual points are redrawn the same way. The caller's model is unchanged."""
    pinn = pk.PINN("convection", widths=[6], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64, seed=2)
    before = {k: v.clone() for k, v in pinn.points.items()}
    tr = AS.track(pinn, "adam", 5, lr=1e-2, log_every=2, seed=4, resample=True)
    assert all(torch.equal(before[k], pinn.points[k]) for k in before)
    by_hand = copy.copy(pinn)
    redraw = AS._Redraw(by_hand, 4)
    batches = []
    for k in range(6):
        redraw(k)
        batches.append(dict(by_hand.points))
        assert k == 0 or not torch.equal(batches[k]["residual"], batches[k - 1]["residual"])
        assert torch.equal(batches[k]["initial"], before["initial"])
    by_hand.points = batches[0]
    stepper = pk.STEPPERS["adam"](by_hand.terms, pinn.theta0, lr=1e-2)
    thetas = [pinn.theta0]
    for k in range(5):
        by_hand.points = batches[k]
        stepper.step()
        thetas.append(stepper.theta.clone())
    torch.testing.assert_close(tr.theta, thetas[-1])

    def at(k, f):
        by_hand.points = batches[k]
        return f(thetas[k])

    grad = torch.func.grad(by_hand.loss)
    for i, k in enumerate(tr.step):
        assert tr.intra[i] == pytest.approx(at(k, lambda th: al.intra_step_alignment(by_hand.terms, th)), abs=1e-10)
        want = al.cosine(at(k, grad), at(k + 1, grad))
        assert tr.inter_grad[i] == pytest.approx(want, abs=1e-10)
    fixed = AS.track(pinn, "adam", 5, lr=1e-2, log_every=2, seed=4)
    assert abs(fixed.intra[-1] - tr.intra[-1]) > 1e-6       # the fresh points change what is measured
    with pytest.raises(TypeError, match="PINN-like"):
        AS.track(pinn.terms, "adam", 3, lr=1e-2, resample=True)


def _old_optimizer_directions(stepper, vectors):
    """optimizer_directions as it read the optimizers' private state before they had precondition()."""
    from pinnkit.soap import SOAPStepper

    opt = stepper.opt
    if isinstance(stepper, SOAPStepper):
        out = {k: [] for k in vectors}
        for p, b in zip(stepper.params, stepper.blocks):
            st = opt.state.get(p, {})
            if "exp_avg_sq" not in st or st.get("step", 0) == 0:
                return None
            Q, denom = st["Q"], st["exp_avg_sq"].sqrt() + opt.param_groups[0]["eps"]
            for k, v in vectors.items():
                x = v[b.start:b.stop].reshape(p.shape)
                out[k].append(opt.project_back(opt.project(x, Q) / denom, Q).reshape(-1))
        return {k: torch.cat(parts) for k, parts in out.items()}
    st = opt.state.get(stepper.param, {})
    if "exp_avg_sq" not in st:
        return None
    denom = st["exp_avg_sq"].sqrt() + opt.param_groups[0]["eps"]
    return {k: v / denom.reshape(v.shape) for k, v in vectors.items()}


@pytest.mark.parametrize("method", ["adam", "soap"])
def test_optimizer_directions_through_precondition_equal_the_old_state_reading(method):
    pinn = pk.PINN("convection", widths=[4, 4], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64, seed=5)
    g = al.term_gradients(pinn, pinn.theta0)
    stepper = pk.STEPPERS[method](pinn.terms, pinn.theta0, lr=1e-2, **({"blocks": pinn.blocks} if method == "soap" else {}))
    for k in range(6):
        new, old = al.optimizer_directions(stepper, g), _old_optimizer_directions(stepper, g)
        assert (new is None) == (old is None) == (k == 0 or (method == "soap" and k == 1))
        if new is not None:
            assert all(torch.equal(new[name], old[name]) for name in g)     # bit for bit
        stepper.step()


def test_adam_precondition_is_v_over_root_second_moment():
    """A linear loss c.theta has the constant gradient c; after one Adam step s = (1 - beta2) c^2."""
    c = torch.tensor([3.0, -0.5, 2e-3], dtype=torch.float64)
    adam = pk.STEPPERS["adam"](lambda th: c @ th, torch.zeros(3, dtype=torch.float64), lr=1e-2)
    v = torch.tensor([1.0, 2.0, -4.0], dtype=torch.float64)
    assert adam.precondition(v) is None
    adam.step()
    torch.testing.assert_close(adam.precondition(v), v / (0.001 ** 0.5 * c.abs() + 1e-8), rtol=1e-14, atol=0)


def test_alignment_reads_no_optimizer_state_and_the_book_holds_the_study():
    import inspect

    src = inspect.getsource(al)
    assert ".state" not in src and "exp_avg" not in src and "._state" not in src
    for name in ("track", "Trace", "Tuning", "Study", "Spread", "seed_spread", "fan"):
        assert not hasattr(al, name) and hasattr(AS, name)
