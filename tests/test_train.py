import math

import pytest
import torch

import pinnkit as pk
from pinnkit.training import TrainState


@pytest.fixture(scope="module")
def pinn():
    return pk.PINN(pk.problems.Convection(1.0), widths=[16, 16], n_res=128, n_ic=32, n_bc=16, seed=0)


@pytest.mark.parametrize("method, kw", [("adam", dict(lr=1e-2)), ("lbfgs", {}), ("adam+lbfgs", dict(switch=20))])
def test_training_lowers_the_loss(pinn, method, kw):
    run = pk.train(pinn, method, steps=25 if method != "lbfgs" else 5, quiet=True, log_every=1, **kw)
    h = run.history
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert len(h.step) == len(h.loss) == len(h.l2re) == len(h.grad_norm) == len(h.time) == len(h.iteration)
    assert set(h.terms) == {"residual", "initial", "boundary"}
    # the first and last entries describe theta0 and the returned theta: recompute them independently
    for i, th in ((0, pinn.theta0), (-1, run.theta)):
        terms = pinn.terms(th)
        assert all(math.isclose(h.terms[k][i], float(terms[k]), rel_tol=1e-5) for k in terms)
        g = torch.func.grad(pinn.loss)(th)
        assert math.isclose(h.grad_norm[i], float(g.norm()), rel_tol=1e-4)
        assert math.isclose(h.l2re[i], pinn.l2re(th), rel_tol=1e-5)
    assert h.time == sorted(h.time) and h.step[-1] == run.steps == h.step[0] + run.steps
    assert run.status == "max_steps"
    assert torch.allclose(torch.tensor(run.loss), pinn.loss(run.theta), rtol=1e-5)


def test_chain_switches_and_counts_iterations(pinn):
    run = pk.train(pinn, "adam+lbfgs", steps=12, switch=10, quiet=True, log_every=1)
    h = run.history
    assert h.phase[:10] == ["adam"] * 10 and h.phase[10:] == ["lbfgs"] * 3
    assert h.iteration[-1] == 10 + 2 * 20  # an L-BFGS step counts its 20 inner iterations


def test_plain_function_objective_and_extra_logs():
    A = torch.diag(torch.tensor([1.0, 10.0]))
    f = lambda th: 0.5 * th @ A @ th
    run = pk.train(f, "lbfgs", steps=3, theta0=torch.tensor([1.0, 1.0]), quiet=True,
                   log={"norm": lambda th, g: float(th.norm())})
    assert run.loss < 1e-10 and list(run.history.terms) == ["loss"]
    assert len(run.history.extra["norm"]) == len(run.history.loss)


def test_nan_and_divergence_raise_clear_errors():
    # a learning rate far too large makes Adam overshoot a steep valley: the loss grows past 10x its start
    steep = lambda th: (th ** 4).sum()
    with pytest.raises(pk.TrainingDiverged, match="lower the learning rate"):
        pk.train(steep, "adam", steps=50, theta0=torch.ones(2), lr=100.0, quiet=True, diverge=10.0, log_every=1)
    # a sane learning rate on the same function does not raise
    pk.train(steep, "adam", steps=50, theta0=torch.ones(2), lr=1e-2, quiet=True, diverge=10.0, log_every=1)
    # with on_diverge="stop" the run ends with the last finite logged iterate instead
    run = pk.train(steep, "adam", steps=50, theta0=torch.ones(2), lr=100.0, quiet=True, diverge=10.0, log_every=1,
                   on_diverge="stop")
    assert run.status == "diverged" and run.steps < 50 and len(run.history.loss) == run.steps + 1
    assert run.reason.startswith("loss ") and "rose from its initial" in run.reason
    assert float(steep(run.theta)) == run.loss <= 11 * float(steep(torch.ones(2)))


def test_a_loss_that_starts_negative_is_judged_by_its_rise():
    # Deep Ritz energies start negative; rising through zero is not divergence (it was: 1e6 x max(first, 1e-30))
    f = lambda th: (th ** 2).sum() - 1
    run = pk.train(f, "adam", steps=20, theta0=torch.tensor([0.1]), lr=1.5, quiet=True, log_every=1)
    assert run.history.loss[0] < 0 < max(run.history.loss) and run.status == "max_steps"
    # the rise (-0.99 -> 0.96) is measured against |first| = 0.99: it exceeds 1 x 0.99 but not 2 x 0.99
    with pytest.raises(pk.TrainingDiverged, match="rose from its initial"):
        pk.train(f, "adam", steps=20, theta0=torch.tensor([0.1]), lr=1.5, quiet=True, log_every=1, diverge=1.0)
    pk.train(f, "adam", steps=20, theta0=torch.tensor([0.1]), lr=1.5, quiet=True, log_every=1, diverge=2.0)


def test_grad_tol_stops_a_converged_run():
    A = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))
    f = lambda th: 0.5 * th @ A @ th
    run = pk.train(f, "lbfgs", steps=50, theta0=torch.ones(2, dtype=torch.float64), grad_tol=1e-4, quiet=True,
                   log_every=1)
    assert run.status == "converged" and run.steps == 1 and run.grad_norm <= 1e-4 < run.history.grad_norm[0]
    assert run.final_loss == run.loss and run.final_grad_norm == run.grad_norm


def test_options_are_routed_to_the_phases_that_declare_them(monkeypatch):
    seen = []

    def rec(terms_fn, theta, lr=0.1, blocks=None):
        seen.append({"lr": lr, "blocks": blocks})
        return pk.training.adam(terms_fn, theta, lr=lr)

    monkeypatch.setitem(pk.STEPPERS, "rec", rec)
    pinn = pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4)
    run = pk.train(pinn, "lbfgs+rec", steps=3, switch=1, lr=0.5, lbfgs_iter=2, quiet=True, log_every=1)
    assert seen == [{"lr": 0.5, "blocks": pinn.blocks}]          # blocks from the model, only where declared
    assert run.history.iteration == [0, 2, 3, 4]                  # lbfgs_iter=2 reached L-BFGS
    seen.clear()
    pk.train(pinn, "rec+ADAM", steps=3, switch=1, lr=0.5, phase_options={"Rec": {"lr": 0.01}}, quiet=True)
    assert seen[0]["lr"] == 0.01                                  # per-phase value wins for that phase
    with pytest.raises(TypeError, match=r"'lr_'.*valid options: adam: lr; lbfgs: lbfgs_iter, history_size"):
        pk.train(pinn, "adam+lbfgs", steps=3, switch=1, lr_=5.0)
    with pytest.raises(TypeError, match="lbfgs_iters"):
        pk.train(pinn, "lbfgs", steps=1, lbfgs_iters=1)
    with pytest.raises(TypeError, match=r"phase_options\['adam'\].*history_size"):
        pk.train(pinn, "adam+lbfgs", steps=3, switch=1, phase_options={"adam": {"history_size": 3}})
    with pytest.raises(ValueError, match="not a phase"):
        pk.train(pinn, "adam", steps=3, phase_options={"lbfgs": {}})


def test_soap_chain_with_per_phase_learning_rates():
    pinn = pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4)
    run = pk.train(pinn, "adam+soap", steps=4, switch=2, quiet=True, phase_options={"adam": {"lr": 1e-2},
                                                                                      "soap": {"lr": 3e-4}})
    assert run.stepper.opt.param_groups[0]["lr"] == 3e-4 and run.history.phase[-1] == "soap"


def test_seconds_per_iteration_counts_inner_lbfgs_iterations():
    pinn = pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4)
    run = pk.train(pinn, "adam+lbfgs", steps=6, switch=3, lbfgs_iter=5, quiet=True, log_every=1)
    h = run.history
    lb = [i for i in range(1, len(h.step)) if h.phase[i - 1] == "lbfgs"]
    seconds = sum(h.time[i] - h.time[i - 1] for i in lb)
    assert run.seconds_per_iteration("lbfgs") == pytest.approx(seconds / (5 * len(lb)))
    assert run.seconds_per_step("lbfgs") == pytest.approx(seconds / len(lb))
    assert run.seconds_per_iteration() == pytest.approx(h.time[-1] / (3 + 5 * 3))


def test_bad_inputs(pinn):
    with pytest.raises(ValueError, match="valid: adam, lbfgs"):
        pk.train(pinn, "sgd", steps=3)
    with pytest.raises(ValueError, match="non-negative integer"):
        pk.train(pinn, "adam", steps=-1)
    with pytest.raises(ValueError, match="switch"):
        pk.train(pinn, "adam+lbfgs", steps=10)
    with pytest.raises(ValueError, match="switch"):
        pk.train(pinn, "adam+lbfgs", steps=10, switch=10)
    with pytest.raises(ValueError, match="lr must be positive"):
        pk.train(pinn, "adam", steps=3, lr=-1.0)
    with pytest.raises(ValueError, match="theta0"):
        pk.train(lambda th: th.sum(), "adam", steps=3)
    with pytest.raises(ValueError, match="on_diverge"):
        pk.train(pinn, "adam", steps=3, on_diverge="ignore")
    assert pk.train(pinn, "adam", steps=0, quiet=True).history.step == [0]


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    pinn = pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=torch.float64)
    kw = dict(steps=9, switch=4, phase_options={"adam": {"lr": 1e-2}}, quiet=True, log_every=2)
    whole = pk.train(pinn, "adam+soap", **kw)
    path = tmp_path / "state.pt"
    saved = []
    part = pk.train(pinn, "adam+soap", stop_after=3, checkpoint=lambda s: (s.save(path), saved.append(s)), **kw)
    assert part.status == "interrupted" and part.steps == 3 and saved[-1].k == 3
    part = pk.train(pinn, "adam+soap", resume=TrainState.load(path), stop_after=3,
                    checkpoint=lambda s: s.save(path), **kw)                         # stops inside SOAP
    assert part.status == "interrupted" and part.steps == 6
    resumed = pk.train(pinn, "adam+soap", resume=TrainState.load(path), **kw)
    assert resumed.status == "max_steps" and resumed.history.step == whole.history.step
    assert resumed.history.loss == whole.history.loss and torch.equal(resumed.theta, whole.theta)
    with pytest.raises(ValueError, match="resume= is a state of"):
        pk.train(pinn, "adam+soap", resume=saved[-1], **{**kw, "steps": 10})


def _resume_options(name, model):
    """Options each registered optimizer needs on a small regression problem (Gauss-Newton and LM: the residual)."""
    return {"gauss_newton": {"residual": model.residual_vector},
            "levenberg_marquardt": {"residual": model.residual_vector},
            "nncg": {"rank": 5, "refresh": 2, "cg_iters": 5, "mu": 1e-1}}.get(name, {})


@pytest.mark.parametrize("name", sorted(pk.STEPPERS))
def test_every_registered_optimizer_resumes_exactly(name, tmp_path):
    """Interrupted twice (state saved and loaded from disk) = never interrupted, for every optimizer in STEPPERS."""
    from pinnkit.book.regression import Regression

    model = Regression(widths=[5], n=24, target=lambda x: torch.sin(3 * x), dtype=torch.float64, seed=1)
    kw = dict(theta0=model.theta0, quiet=True, log_every=1, **_resume_options(name, model))
    whole = pk.train(model, name, steps=6, on_diverge="stop", **kw)
    path = tmp_path / "state.pt"
    part = pk.train(model, name, steps=6, on_diverge="stop", stop_after=2,
                    checkpoint=lambda s: s.save(path), **kw)
    if part.status != "interrupted":            # a Newton variant that converged or stalled before step 2
        assert part.history.loss == whole.history.loss[: len(part.history.loss)]
        return
    for _ in range(2):
        part = pk.train(model, name, steps=6, on_diverge="stop", resume=TrainState.load(path), stop_after=2,
                        checkpoint=lambda s: s.save(path), **kw)
    assert part.history.loss == whole.history.loss and torch.equal(part.theta, whole.theta), name


def test_a_stepper_without_state_is_refused_for_checkpoints():
    class Stateless:
        def __init__(self, terms_fn, theta):
            self.theta = theta.clone()

        def step(self):
            self.theta = self.theta * 0.5

    pk.STEPPERS["_stateless"] = Stateless
    try:
        f = lambda t: (t ** 2).sum()  # noqa: E731
        assert pk.train(f, "_stateless", steps=3, theta0=torch.ones(2), quiet=True).status == "max_steps"
        with pytest.raises(TypeError, match="has no state_dict"):
            pk.train(f, "_stateless", steps=3, theta0=torch.ones(2), quiet=True, stop_after=1)
    finally:
        del pk.STEPPERS["_stateless"]


def test_the_clock_waits_for_the_gpu(monkeypatch):
    import types

    from pinnkit.training import _synchronize
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    _synchronize(torch.zeros(1))                                               # CPU tensor: nothing to wait for
    _synchronize(types.SimpleNamespace(is_cuda=True, device="cuda:1"))
    assert calls == ["cuda:1"]


def test_on_step_sees_every_step_with_consecutive_iterates(pinn):
    calls = []
    run = pk.train(pinn, "adam+lbfgs", 5, switch=3, log_every=2, lbfgs_iter=2,
                   on_step=lambda k, a, b, stepper: calls.append((k, a, b, id(stepper))))
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4]
    torch.testing.assert_close(calls[0][1], pinn.theta0)
    for (_, _, after, _), (_, before, _, _) in zip(calls, calls[1:]):
        torch.testing.assert_close(after, before)                 # theta_{k+1} of one call is theta_k of the next
    torch.testing.assert_close(calls[-1][2], run.theta)
    assert calls[0][3] == calls[2][3] != calls[3][3]              # one stepper per phase


# --- L-BFGS: evaluations and stop reasons ------------------------------------------------------------------
def _labelled_torch_lbfgs() -> type:
    """torch's own ``LBFGS.step``, with ``self.why = <reason>`` written before each of its exits: an independent
    reference for :class:`pinnkit.training.LBFGSStepper`'s reasons, which are read off the state torch leaves."""
    import inspect
    import textwrap

    import torch.optim.lbfgs as L

    lines = textwrap.dedent(inspect.getsource(L.LBFGS.step)).splitlines()
    tests = [("if opt_cond:", "tolerance_grad:start"), ("if gtd > -tolerance_change", "tolerance_change:gd"),
             ("if n_iter == max_iter:", "max_iter"), ("if current_evals >= max_eval", "max_eval"),
             ("if opt_cond:", "tolerance_grad"), ("if d.mul(t).abs().max() <= tolerance_change", "tolerance_change:step"),
             ("if abs(loss - prev_loss) < tolerance_change", "tolerance_change:loss")]
    out, pending = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if tests and s.startswith(tests[0][0]) and lines[i + 1].strip() in ("break", "return orig_loss"):
            pending = tests.pop(0)[1]
        elif pending and s in ("break", "return orig_loss"):
            out.append(line[: len(line) - len(line.lstrip())] + f"self.why = {pending!r}")
            pending = None
        out.append(line)
    assert not tests, f"torch's LBFGS.step changed shape; labels not placed: {tests}"
    ns = dict(vars(L))
    exec("\n".join(ln for ln in out if not ln.strip().startswith("@_use_grad")), ns)   # keeps @torch.no_grad()
    return type("LabelledLBFGS", (L.LBFGS,), {"step": ns["step"]})


@pytest.mark.parametrize("dtype,beta,steps", [(torch.float32, 10.0, 120), (torch.float64, 10.0, 40),
                                              (torch.float32, 40.0, 120)])
def test_lbfgs_reports_evaluations_and_why_each_step_ended(dtype, beta, steps):
    from pinnkit.objective import value_and_grad

    pinn = pk.PINN(pk.problems.Convection(beta=beta), widths=[10, 10], n_res=128, n_ic=32, n_bc=16, dtype=dtype)
    run = pk.train(pinn, "lbfgs", steps=steps, quiet=True, log_every=10)
    p = pinn.theta0.clone().requires_grad_(True)
    ref = _labelled_torch_lbfgs()([p], lr=1, max_iter=20, history_size=100, line_search_fn="strong_wolfe")
    calls = []

    def closure():
        calls.append(1)
        loss, _, g = value_and_grad(pinn.terms, p)
        p.grad = g
        return loss

    why, evals = [], []
    for _ in range(steps):
        before = len(calls)
        ref.step(closure)
        why.append(ref.why)
        evals.append(len(calls) - before)
    assert torch.equal(run.theta, p.detach())               # the same iterates as torch's L-BFGS
    assert run.history.stops["reason"] == why and run.history.stops["evals"] == evals
    assert run.history.stops["step"] == list(range(steps)) and set(run.history.stops["phase"]) == {"lbfgs"}
    assert run.history.evals[-1] == len(calls) == sum(evals)
    assert set(why) <= set(pk.training.LBFGS_REASONS)


def test_a_frozen_float32_lbfgs_says_so_and_zero_tolerances_do_not_freeze():
    """Past its float32 floor, torch's L-BFGS ends every step after one evaluation on g.d > -tolerance_change."""
    pinn = pk.PINN(pk.problems.Convection(beta=1.0), widths=[8], n_res=32, n_ic=16, n_bc=8)
    run = pk.train(pinn, "lbfgs", steps=300, quiet=True)
    tail = run.history.stops["reason"][-20:]
    assert tail == ["tolerance_change:gd"] * 20 and run.history.stops["evals"][-20:] == [1] * 20
    p64 = pk.PINN(pk.problems.Convection(beta=1.0), widths=[8], n_res=32, n_ic=16, n_bc=8, dtype=torch.float64)
    run64 = pk.train(p64, "lbfgs", steps=20, quiet=True, tolerance_grad=0.0, tolerance_change=0.0)
    assert "tolerance_change:gd" not in run64.history.stops["reason"]
    with pytest.raises(ValueError, match="tolerance_change must be a number >= 0"):
        pk.train(pinn, "lbfgs", steps=1, quiet=True, tolerance_change=-1.0)


def test_evaluations_are_counted_across_a_chain(pinn):
    run = pk.train(pinn, "adam+lbfgs", steps=12, switch=10, quiet=True, log_every=1)
    h = run.history
    assert h.evals[:11] == list(range(11))                   # Adam: one loss + gradient per step
    lbfgs = sum(h.stops["evals"])
    assert h.evals[-1] == 10 + lbfgs and len(h.stops["evals"]) == 2 and h.stops["step"] == [10, 11]


@pytest.fixture
def bad_stepper():
    """Registers ``"_bad"``: a stepper whose every step reports a non-finite direction (as NNCG's may)."""
    class Bad:
        def __init__(self, terms_fn, theta):
            self.theta = theta.clone()

        def step(self):
            raise FloatingPointError("direction is not finite")

    pk.training.STEPPERS["_bad"] = Bad
    yield "_bad"
    del pk.training.STEPPERS["_bad"]


def test_a_stepper_that_reports_a_non_finite_step_ends_the_run_as_diverged(bad_stepper):
    run = pk.train(lambda t: (t ** 2).sum(), "_bad", steps=5, theta0=torch.ones(2), quiet=True, on_diverge="stop")
    assert run.status == "diverged" and run.steps == 0 and "direction is not finite" in run.reason
    with pytest.raises(pk.TrainingDiverged, match="direction is not finite"):
        pk.train(lambda t: (t ** 2).sum(), "_bad", steps=5, theta0=torch.ones(2), quiet=True)


def test_divergence_advice_names_the_phase_that_failed(bad_stepper):
    """A second phase that fails at its first step is advised about, not the first phase's learning rate (before,
    the advice quoted Adam's ``lr`` when the phase after Adam failed)."""
    with pytest.raises(pk.TrainingDiverged) as err:
        pk.train(lambda t: (t ** 2).sum(), "adam+_bad", steps=4, switch=2, theta0=torch.ones(2), quiet=True,
                 lr=0.1)
    assert "direction is not finite" in str(err.value) and "lr=" not in str(err.value)
    with pytest.raises(pk.TrainingDiverged, match=r"lr=0\.1"):      # an Adam step that diverges: its lr
        pk.train(lambda t: (t ** 2).sum() * float("inf") if t.abs().max() < 0.95 else (t ** 2).sum(), "adam",
                 steps=4, theta0=torch.ones(2), quiet=True, lr=0.1, log_every=1)


def test_a_loss_rising_from_near_zero_is_not_divergence():
    """2.7e-12 -> 3e-4 is a rise of 1e8 x the initial loss but tiny in absolute terms (the floor is 1)."""
    values = iter([2.7e-12, 3e-4, 3e-4])
    f = lambda t: (t ** 2).sum() * 0 + next(values, 3e-4)  # noqa: E731
    run = pk.train(f, "adam", steps=2, theta0=torch.ones(2), quiet=True, log_every=1)
    assert run.status == "max_steps" and run.loss == pytest.approx(3e-4)


def test_lbfgs_stepper_pairs_are_the_curvature_pairs():
    A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    st = pk.STEPPERS["lbfgs"](lambda th: 0.5 * th @ A @ th, torch.ones(3, dtype=torch.float64), lbfgs_iter=5)
    st.step()
    p = st.pairs()
    ref = pk.curvature.lbfgs_pairs(st.opt)
    assert torch.equal(p.s, ref.s) and torch.equal(p.y, ref.y) and p.gamma == ref.gamma
    torch.testing.assert_close(p.y, p.s @ A)              # y_i = A s_i on a quadratic


def test_no_function_shadows_its_module():
    """The driver's module is ``pinnkit.training`` and the function is ``pk.train``: before, the function ``train``
    shadowed its module ``pinnkit.train``, so ``import pinnkit.train as T`` bound the function (``T.STEPPERS`` failed).
    """
    import importlib.util
    import types

    import pinnkit.training as T

    assert isinstance(T, types.ModuleType) and T.STEPPERS is pk.STEPPERS and pk.train is T.train
    assert isinstance(pk.train, types.FunctionType)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pinnkit.train")
    for name in pk.__all__:                       # no public function or class named like a submodule
        obj = getattr(pk, name)
        if not isinstance(obj, types.ModuleType):
            assert importlib.util.find_spec(f"pinnkit.{name}") is None, name
    run = pk.train(lambda th: (th ** 2).sum(), "adam", 3, theta0=torch.ones(2), quiet=True)
    assert run.status == "max_steps" and run.steps == 3
