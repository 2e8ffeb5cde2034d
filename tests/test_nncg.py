"""NysNewton-CG: Nyström approximation, preconditioned conditioning, convergence on quadratics, trainer plug-in."""
import dataclasses
import inspect
import math

import pytest
import torch

import pinnkit as pk
from pinnkit import nncg as nncg_module
from pinnkit.nncg import EXITS, NNCGStep, NNCGStepper, NystromPreconditioner, nncg_stepper, nystrom, pcg, step_reason

DT = torch.float64


def spd(n: int, eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    return (Q * eigenvalues) @ Q.T


def test_nystrom_matches_best_low_rank_for_fast_decay():
    """Sketch size s = k + 5 (oversampling 5) attains the best rank-k error (Eckart–Young: lambda_{k+1})."""
    n, k, s = 80, 10, 15
    ev = 1e3 * 0.3 ** torch.arange(n, dtype=DT)            # lambda_i = 1e3 * 0.3^i: fast decay
    H = spd(n, ev)
    evals, evecs = torch.linalg.eigh(H)
    for seed in range(3):
        pre = nystrom(H, n, s, mu=1e-3, generator=torch.Generator().manual_seed(seed))
        err_nys = float(torch.linalg.matrix_norm(H - pre.approximation(), 2))
        best_s = (evecs[:, -s:] * evals[-s:]) @ evecs[:, -s:].T
        assert float(torch.linalg.matrix_norm(H - best_s, 2)) == pytest.approx(float(ev[s]), rel=1e-4)
        assert float(ev[s]) <= err_nys <= float(ev[k])          # between best rank-s and best rank-k errors
        assert torch.allclose(pre.lhat[:3], ev[:3], rtol=1e-5)  # the top of the spectrum is accurate
        assert torch.allclose(pre.U.T @ pre.U, torch.eye(s, dtype=DT), atol=1e-10)


def test_nystrom_indefinite_falls_back_and_is_finite():
    ev = torch.cat([torch.logspace(3, -2, 30, dtype=DT), -torch.logspace(-1, -3, 10, dtype=DT)])
    H = spd(40, ev, seed=2)
    pre = nystrom(H, 40, 40, mu=1e-2, generator=torch.Generator().manual_seed(0))   # full rank sees lambda < 0
    assert pre.indefinite and torch.isfinite(pre.U).all() and bool((pre.lhat >= 0).all())
    assert float(pre.lhat[0]) == pytest.approx(1e3, rel=1e-6)
    assert torch.allclose(pre.U.T @ pre.U, torch.eye(pre.rank, dtype=DT), atol=1e-10)


def _shifted_core_nystrom(H, s, seed):
    """The authors' fallback (shift the core by |lambda_min|), as a negative control for the test below: the
    spectrum it claims, or ``None`` when its Cholesky breaks down (the shifted core is singular to rounding, so
    which of the two failures a machine sees depends on its rounding)."""
    n = H.shape[0]
    Q, _ = torch.linalg.qr(torch.randn(n, s, generator=torch.Generator().manual_seed(seed), dtype=DT))
    Y = H @ Q
    nu = math.sqrt(n) * torch.finfo(DT).eps * float(torch.linalg.matrix_norm(Y))
    core = Q.T @ (Y + nu * Q)
    shift = nu + float(torch.linalg.eigvalsh(0.5 * (core + core.T)).min().abs())
    Ys = Y + shift * Q
    C, info = torch.linalg.cholesky_ex(0.5 * (Q.T @ Ys + Ys.T @ Q))
    if int(info) != 0:
        return None
    S = torch.linalg.svdvals(torch.linalg.solve_triangular(C, Ys.T, upper=False).T)
    return (S ** 2 - shift).clamp_min(0)


def preconditioned_kappa(H, pre, mu):
    A = H + mu * torch.eye(H.shape[0], dtype=DT)
    S = pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(A).T).T
    sv = torch.linalg.svdvals(0.5 * (S + S.T))                        # indefinite: kappa = sigma_max / sigma_min
    return float(sv[0] / sv[-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nystrom_on_an_indefinite_low_rank_sketch_matches_the_exact_spectrum(seed):
    """H: 10 positive outliers 1e3..1e1, 5 negative eigenvalues -1..-0.1, the rest 0 (rank 15 < sketch 30 < n).

    Cholesky of the core fails; the positive part of the core must reproduce the positive spectrum of H, and the
    preconditioned damped system must be far better conditioned than the plain one. The authors' fallback (shift
    the core by |lambda_min|) fails both checks: it divides by a near-zero core eigenvalue."""
    n, s, mu = 300, 30, 1e-2
    pos = torch.logspace(3, 1, 10, dtype=DT)
    ev = torch.cat([pos, -torch.logspace(0, -1, 5, dtype=DT), torch.zeros(n - 15, dtype=DT)])
    H = spd(n, ev, seed=seed)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(seed))
    assert pre.indefinite
    assert torch.allclose(pre.lhat[:10], pos, rtol=1e-3)               # the exact positive spectrum
    assert float(pre.lhat[10:].max()) < 1e-2 * float(pos[-1])         # nothing fake beyond it
    sv = torch.linalg.svdvals(H + mu * torch.eye(n, dtype=DT))
    k_plain, k_pre = float(sv[0] / sv[-1]), preconditioned_kappa(H, pre, mu)
    assert k_plain > 5e4 and k_pre < 1e-2 * k_plain                    # ~1e5 -> ~1e2
    shifted = _shifted_core_nystrom(H, s, seed)   # negative control: a breakdown or a fake top eigenvalue
    assert shifted is None or float(shifted[0]) > 1e3 * float(pos[0])


def test_nystrom_indefinite_full_rank_bulk_still_preconditions():
    """Outliers, negative eigenvalues and a full-rank bulk (the PINN picture): top eigenvalues within 1%."""
    n, s, mu = 300, 30, 1e-2
    ev = torch.cat([torch.logspace(3, 0, 20, dtype=DT), -torch.logspace(1, -1, 10, dtype=DT),
                    torch.logspace(-2, -4, n - 30, dtype=DT)])
    H = spd(n, ev, seed=7)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(0))
    assert pre.indefinite and torch.allclose(pre.lhat[:3], ev[:3], rtol=1e-2)
    sv = torch.linalg.svdvals(H + mu * torch.eye(n, dtype=DT))
    assert preconditioned_kappa(H, pre, mu) < 1e-1 * float(sv[0] / sv[-1])


def test_apply_inverse_is_the_formula_and_sqrt_squares_to_it():
    n, s, mu = 50, 10, 1e-2
    H = spd(n, torch.logspace(4, -4, n, dtype=DT), seed=3)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(0))
    U, lh = pre.U, pre.lhat
    Pinv = (lh[-1] + mu) * (U / (lh + mu)) @ U.T + torch.eye(n, dtype=DT) - U @ U.T
    V = torch.randn(n, 3, dtype=DT)
    assert torch.allclose(pre.apply_inverse(V), Pinv @ V, atol=1e-12)
    assert torch.allclose(pre.apply_inverse(V[:, 0]), Pinv @ V[:, 0], atol=1e-12)
    assert torch.allclose(pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(V)), Pinv @ V, atol=1e-12)


def test_preconditioned_system_is_better_conditioned():
    n, s, mu = 120, 30, 1e-2
    ev = torch.cat([torch.logspace(6, 2, 20, dtype=DT), torch.logspace(0, -3, 100, dtype=DT)])  # outliers + bulk
    H = spd(n, ev, seed=4)
    pre = nystrom(H, n, s, mu, generator=torch.Generator().manual_seed(0))
    A = H + mu * torch.eye(n, dtype=DT)
    S = pre.apply_inverse_sqrt(pre.apply_inverse_sqrt(A).T).T         # P^{-1/2} A P^{-1/2}
    k_plain = torch.linalg.cond(A).item()
    k_pre = torch.linalg.cond(0.5 * (S + S.T)).item()
    assert k_plain > 1e7
    assert k_pre < 1e-4 * k_plain
    assert k_pre < 2 * (1.0 + mu) / mu                                 # ~ (lambda_{s+1} + mu) / mu
    # and PCG needs far fewer iterations than CG for the same tolerance
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(5))
    plain = pcg(lambda v: A @ v, b, tol=1e-8, max_iter=1000)
    prec = pcg(lambda v: A @ v, b, M_inv=pre.apply_inverse, tol=1e-8, max_iter=1000)
    assert prec.rel_residual <= 1e-8 and prec.iters < plain.iters / 3
    assert torch.allclose(A @ prec.x, b, atol=1e-6 * float(b.norm()))


def test_nncg_solves_a_quadratic_in_few_steps():
    n = 60
    A = spd(n, torch.logspace(3, -1, n, dtype=DT), seed=6)
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(7))
    x_star = torch.linalg.solve(A, b)
    f = lambda th: {"loss": 0.5 * th @ (A @ th) - b @ th}       # noqa: E731
    st = nncg_stepper(f, torch.zeros(n, dtype=DT), mu=1e-10, rank=20, refresh=5, cg_iters=200, cg_tol=1e-12)
    st.step()                                                   # one damped Newton step, mu ~ 0
    assert st.last.t == 1.0 and st.last.rel_residual <= 1e-12 and st.last.exit == "tolerance"   # full step
    assert float((st.theta - x_star).norm() / x_star.norm()) < 1e-8


def test_armijo_backtracks_on_a_nonconvex_loss():
    f = lambda th: {"loss": (th ** 2 - 1).pow(2).sum()}         # noqa: E731  double well, minima at +-1
    st = NNCGStepper(f, torch.full((4,), 3.0, dtype=DT), mu=1e-3, rank=2, cg_iters=20)
    losses = []
    for _ in range(15):
        st.step()
        losses.append(float(f(st.theta)["loss"]))
    assert all(b <= a + 1e-15 for a, b in zip(losses, losses[1:]))   # monotone: Armijo guarantees decrease
    assert losses[-1] < 1e-12


def test_nncg_plugs_into_train_after_lbfgs():
    assert pk.STEPPERS["nncg"] is nncg_stepper                   # registered by pinnkit/__init__.py
    torch.manual_seed(0)
    pinn = pk.PINN(pk.problems.Convection(beta=2.0), widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=DT)
    run = pk.train(pinn, "adam+lbfgs+nncg", 30, switch=(20, 5), lr=1e-2, quiet=True, log_every=1,
                   rank=10, cg_iters=30)
    h = run.history
    assert h.phase[-2] == "nncg" and isinstance(run.stepper, NNCGStepper)
    i = h.phase.index("nncg")
    assert h.loss[-1] < h.loss[i]                               # NNCG lowered the loss after L-BFGS
    assert all(b <= a * (1 + 1e-12) for a, b in zip(h.loss[i:], h.loss[i + 1:]))
    assert math.isfinite(run.l2re)
    diag = run.stepper.diagnostics
    assert len(diag) == 5 and all(isinstance(d, NNCGStep) and d.exit in EXITS for d in diag)
    assert all(d.hvps >= d.cg_iters for d in diag) and diag[0].refreshed and diag[0].hvps >= 10
    assert [d.loss_after for d in diag] == pytest.approx(h.loss[i + 1:], rel=1e-12)
    stops = h.stops                                 # L-BFGS rows and NNCG rows in aligned columns
    assert {len(v) for v in stops.values()} == {len(stops["step"])} and stops["phase"][-5:] == ["nncg"] * 5
    lbfgs = [k for k, p in enumerate(stops["phase"]) if p == "lbfgs"]
    assert lbfgs and all(stops[key][k] is None for k in lbfgs for key in ("hvps", "cg_iters", "t", "d_norm"))
    assert stops["hvps"][-5:] == [d.hvps for d in diag] and stops["cg_iters"][-5:] == [d.cg_iters for d in diag]
    assert stops["t"][-5:] == [d.t for d in diag] and all(n > 0 for n in stops["d_norm"][-5:])


def test_a_step_that_finds_no_armijo_point_reports_it():
    """An ascent direction that no trial can accept (the paper's mode uses it anyway): 42 evaluations, no step."""
    st = NNCGStepper(lambda th: {"l": -(th ** 2).sum()}, torch.ones(3, dtype=DT), mu=1.0, rank=2, max_step=0.25)
    st.step()
    assert st.last_stop[:2] == (42, "tolerance:ascent:no_step") and torch.equal(st.theta, torch.ones(3, dtype=DT))
    numbers = st.last_stop[2]                       # (H + mu I) d = g with H = -2I, mu = 1, g = -2(1, 1, 1): d = -g
    assert numbers["t"] == 0.0 and numbers["d_norm"] == pytest.approx(2 * math.sqrt(3), rel=1e-12)
    assert numbers["hvps"] == st.hvps and numbers["cg_iters"] == st.last.cg_iters
    st2 = NNCGStepper(lambda th: {"l": (th ** 2).sum()}, torch.ones(3, dtype=DT), mu=1e-8, rank=2)
    st2.step()
    assert st2.last_stop[:2] == (3, "tolerance:descent:step") and st2.last_stop[2]["t"] == 1.0


def test_diagnostics_are_frozen():
    st = NNCGStepper(lambda th: {"l": (th ** 2).sum()}, torch.ones(3, dtype=DT), rank=2)
    assert st.last is None
    st.step()
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.last.t = 0.5


def test_factory_forwards_every_option_and_rejects_unknown_ones():
    params = inspect.signature(nncg_stepper).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())   # no **_
    st = nncg_stepper(lambda th: {"l": (th ** 2).sum()}, torch.ones(3, dtype=DT), seed=5, alpha=0.3, beta=0.7,
                      max_step=0.1, chunk=3, safeguard=True)
    assert (st.alpha, st.beta, st.max_step, st.chunk, st.safeguard) == (0.3, 0.7, 0.1, 3, True)
    assert torch.equal(st.gen.get_state(), torch.Generator().manual_seed(5).get_state())
    st.step()
    assert st.last.t == 0.1                                      # max_step reached Armijo
    with pytest.raises(TypeError):
        nncg_stepper(lambda th: {"l": (th ** 2).sum()}, torch.ones(3, dtype=DT), lr=1.0)


def test_pcg_negative_curvature_exit_and_paper_mode():
    A = torch.diag(torch.tensor([3.0, 2.0, -1.0, 1.0], dtype=DT))
    b = torch.ones(4, dtype=DT)
    safe = pcg(lambda v: A @ v, b, tol=1e-12, max_iter=50)
    assert safe.exit == "negative_curvature" and safe.negative_curvature_hits == 1
    paper = pcg(lambda v: A @ v, b, tol=1e-12, max_iter=50, stop_on_negative_curvature=False)
    assert paper.exit == "tolerance" and paper.negative_curvature_hits >= 1
    assert torch.allclose(paper.x, torch.linalg.solve(A, b), atol=1e-10)   # CG ran through it and solved A x = b
    capped = pcg(lambda v: torch.diag(torch.logspace(0, 4, 4, dtype=DT)) @ v, b, tol=1e-14, max_iter=2)
    assert capped.exit == "max_iter" and capped.iters == 2 and capped.rel_residual > 1e-14


def test_safeguard_falls_back_where_the_paper_mode_cannot_descend():
    """f(x) = -x^2/2 + x^4/4 at x = 0.3: f'' < 0, so the damped Newton direction g / (f'' + mu) points uphill."""
    f = lambda th: {"l": (-0.5 * th ** 2 + 0.25 * th ** 4).sum()}   # noqa: E731
    x0 = torch.tensor([0.3], dtype=DT)
    safe = NNCGStepper(f, x0, mu=1e-3, rank=1, safeguard=True)
    safe.step()
    assert safe.last.exit == "negative_curvature" and safe.last.fallback and safe.last.t > 0
    assert safe.last.loss_after < safe.last.loss_before
    paper = NNCGStepper(f, x0, mu=1e-3, rank=1, safeguard=False)
    paper.step()
    assert not paper.last.descent and not paper.last.fallback and paper.last.negative_curvature_hits == 1
    assert paper.last.t == 0.0 and torch.equal(paper.theta, x0)   # Armijo rejects the uphill Newton direction


def test_nan_direction_stops_with_an_error_that_names_the_fix(monkeypatch):
    real = nncg_module.pcg

    def nan_pcg(*args, **kwargs):
        res = real(*args, **kwargs)
        return dataclasses.replace(res, x=torch.full_like(res.x, math.nan))

    monkeypatch.setattr(nncg_module, "pcg", nan_pcg)
    theta = torch.ones(3, dtype=DT)
    st = NNCGStepper(lambda th: {"l": (th ** 2).sum()}, theta, rank=2)
    with pytest.raises(FloatingPointError, match=r"0 with p.Ap <= 0, warm start \|d\| none.*mu=.*float64"):
        st.step()
    assert torch.equal(st.theta, theta) and st.last is None        # theta was not overwritten with NaN
    st.d = torch.tensor([3.0, 0.0, 4.0], dtype=DT)                  # a warm start from an earlier step: |d| = 5
    with pytest.raises(FloatingPointError, match=r"warm start \|d\| 5\)"):
        st.step()
    bad = NNCGStepper(lambda th: {"l": th.abs().sqrt().sum()}, torch.zeros(2, dtype=DT), rank=1)
    with pytest.raises(FloatingPointError, match="not finite"):
        bad.step()


def test_bad_options_name_the_fix():
    with pytest.raises(ValueError, match="rank"):
        nystrom(torch.eye(3, dtype=DT), 3, 5, mu=1.0)
    with pytest.raises(ValueError, match="mu"):
        NNCGStepper(lambda th: {"l": (th ** 2).sum()}, torch.zeros(2, dtype=DT), mu=0.0)
    with pytest.raises(ValueError, match="alpha"):
        NNCGStepper(lambda th: {"l": (th ** 2).sum()}, torch.zeros(2, dtype=DT), alpha=1.5)
    assert isinstance(nystrom(torch.eye(3, dtype=DT), 3, 2, 1.0), NystromPreconditioner)


def test_nncg_counts_its_evaluations_and_hvps_and_train_logs_them():
    """evals = per step 2 (the gradient and the loss at theta) + the Armijo trials; hvps = the steps' products."""
    pinn = pk.PINN(pk.problems.Convection(beta=2.0), widths=[6], n_res=32, n_ic=8, n_bc=4, dtype=DT)
    run = pk.train(pinn, "nncg", 4, quiet=True, log_every=1, rank=5, cg_iters=10, mu=1e-1)
    st, diag = run.stepper, run.stepper.diagnostics
    trials = [1 + round(math.log2(1 / d.t)) if d.t > 0 else 40 for d in diag]   # beta = 1/2, first trial t = 1
    assert st.evals == sum(2 + n for n in trials)
    assert st.hvps == sum(d.hvps for d in diag) > 0
    assert run.history.evals[-1] == st.evals and run.history.evals[0] == 0
    stops = run.history.stops                                    # each step's evaluations and how it ended
    assert stops["phase"] == ["nncg"] * 4 and stops["evals"] == [2 + n for n in trials]
    assert stops["reason"] == [step_reason(d.exit, d.descent, d.t > 0) for d in diag]
    state = st.state_dict()
    fresh = nncg_stepper(pinn.terms, run.theta, rank=5, cg_iters=10, mu=1e-1)
    fresh.load_state_dict(state)
    assert (fresh.evals, fresh.hvps) == (st.evals, st.hvps)


def test_gd_armijo_is_gradient_descent_with_the_armijo_rule():
    """On a quadratic 0.5 th^T A th the accepted step is the largest t = 2^-j with f(th - t g) <= f - 0.1 t |g|^2,
    checked against a brute-force search; it is registered for pk.train and never raises the loss."""
    from pinnkit.nncg import GDArmijoStepper, gd_armijo_stepper
    A = torch.diag(torch.tensor([10.0, 1.0], dtype=DT))
    f = lambda th: 0.5 * th @ A @ th  # noqa: E731
    th0 = torch.tensor([1.0, 1.0], dtype=DT)
    s = GDArmijoStepper(lambda th: {"f": f(th)}, th0)
    s.step()
    g = A @ th0
    expected = next(t for t in (0.5 ** j for j in range(40)) if f(th0 - t * g) <= f(th0) - 0.1 * t * float(g @ g))
    assert s.last_t == expected and torch.allclose(s.theta, th0 - expected * g)
    assert s.evals == 1 + 1 + round(math.log2(1 / expected))
    assert s.last_stop == (s.evals, "step", {"t": expected})
    assert pk.STEPPERS["gd_armijo"] is gd_armijo_stepper
    run = pk.train(lambda th: {"f": f(th)}, "gd_armijo", 20, theta0=th0, quiet=True, log_every=1)
    assert all(b <= a for a, b in zip(run.history.loss, run.history.loss[1:])) and run.loss < 1e-3 * float(f(th0))
    assert run.history.stops["reason"] == ["step"] * 20 and run.history.evals[-1] == sum(run.history.stops["evals"])
    with pytest.raises(ValueError, match="Armijo"):
        gd_armijo_stepper(lambda th: {"f": f(th)}, th0, beta=1.5)


def test_a_step_that_rounds_away_is_no_step():
    """In float32, L = 1 + 1e-12 |th|^2 at th = 1 rounds to 1 everywhere near it, yet its gradient 2e-12 th is not
    zero: every trial th - t d rounds to th, and with c1 t g.d below f0's float64 resolution a null trial would pass
    the Armijo test (the paper-setting convection runs logged 1,573 such steps). Both Armijo steppers report no step
    without evaluating a trial (GD: its gradient only; NNCG: its loss and gradient) and leave theta as it was."""
    from pinnkit.nncg import GDArmijoStepper
    flat = lambda th: {"l": 1 + 1e-12 * (th ** 2).sum()}  # noqa: E731
    th0 = torch.ones(3)
    gd = GDArmijoStepper(flat, th0)
    gd.step()
    assert gd.last_stop == (1, "no_step", {"t": 0.0}) and torch.equal(gd.theta, th0)
    st = NNCGStepper(flat, th0, mu=1e-2, rank=2)
    st.step()
    assert st.last_stop[1].endswith(":descent:no_step") and st.last_stop[0] == 2 and st.last.t == 0.0
    assert torch.equal(st.theta, th0) and st.last.loss_after == st.last.loss_before == 1.0
