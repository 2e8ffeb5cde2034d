"""train()'s one callback mechanism: Callback objects; log=, on_step= and checkpoint= are shorthands for three of
them and give the same runs."""
from __future__ import annotations

import pytest
import torch

import pinnkit as pk
from pinnkit.training import STEPPERS, Callback, Checkpoint, Log, OnStep, TrainState


@pytest.fixture(scope="module")
def pinn():
    return pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=torch.float64)


class Recorder(Callback):
    """Every hook, recorded."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def logged(self, k, theta, grad, history):
        self.events.append(("log", k, history.step[-1], float(grad.norm()), history.grad_norm[-1]))

    def stepped(self, k, before, after, stepper):
        self.events.append(("step", k, before.clone(), after.clone()))

    def checkpoint(self, state):
        self.events.append(("checkpoint", state.k))


def test_shorthands_and_callbacks_give_the_same_run(pinn):
    kw = dict(steps=6, switch=3, log_every=2, lbfgs_iter=2, lr=1e-2, quiet=True)
    seen_short, seen_cb = [], []
    short = pk.train(pinn, "adam+lbfgs", log={"norm": lambda th, g: float(th.norm())},
                     on_step=lambda k, a, b, s: seen_short.append((k, a, b)), **kw)
    cb = pk.train(pinn, "adam+lbfgs", callbacks=[Log({"norm": lambda th, g: float(th.norm())}),
                                                 OnStep(lambda k, a, b, s: seen_cb.append((k, a, b)))], **kw)
    same = ("step", "loss", "grad_norm", "terms", "extra", "evals", "stops")        # all but the clock
    assert all(getattr(short.history, f) == getattr(cb.history, f) for f in same)
    assert torch.equal(short.theta, cb.theta)
    assert short.history.extra["norm"] == [float(t.norm()) for t in _logged_thetas(pinn, kw)]
    assert [s[0] for s in seen_short] == [s[0] for s in seen_cb] == list(range(6))
    for (_, a1, b1), (_, a2, b2) in zip(seen_short, seen_cb):
        assert torch.equal(a1, a2) and torch.equal(b1, b2)


def _logged_thetas(pinn, kw):
    thetas = []
    pk.train(pinn, "adam+lbfgs", callbacks=[Log({"theta": lambda th, g: thetas.append(th.clone())})], **kw)
    return thetas


def test_a_callback_sees_every_log_point_step_and_checkpoint(pinn, tmp_path):
    rec = Recorder()
    kw = dict(steps=7, log_every=3, lr=1e-2, quiet=True)
    run = pk.train(pinn, "adam", stop_after=5, callbacks=[rec], **kw)
    logs = [e for e in rec.events if e[0] == "log"]
    steps = [e for e in rec.events if e[0] == "step"]
    assert [e[1] for e in logs] == [e[2] for e in logs] == [0, 3]           # k == the step just logged
    assert all(e[3] == pytest.approx(e[4]) for e in logs)                  # the gradient of that theta
    assert [e[1] for e in steps] == [0, 1, 2, 3, 4]
    for a, b in zip(steps, steps[1:]):
        assert torch.equal(a[3], b[2])                                     # consecutive iterates
    assert rec.events[-1] == ("checkpoint", 5) and run.status == "interrupted"


def test_checkpoint_callback_resumes_exactly(pinn, tmp_path):
    path = tmp_path / "s.pt"
    kw = dict(steps=8, log_every=2, lr=1e-2, quiet=True)
    whole = pk.train(pinn, "adam", **kw)
    pk.train(pinn, "adam", stop_after=3, callbacks=[Checkpoint(lambda s: s.save(path))], **kw)
    resumed = pk.train(pinn, "adam", resume=TrainState.load(path), **kw)
    assert resumed.history.loss == whole.history.loss and torch.equal(resumed.theta, whole.theta)


def test_a_checkpointing_callback_needs_a_stepper_with_state(pinn, monkeypatch):
    class Plain:
        def __init__(self, terms_fn, theta):
            self.theta = theta

        def step(self):
            self.theta = self.theta * 0.5

    monkeypatch.setitem(STEPPERS, "_plain", Plain)
    pk.train(pinn, "_plain", 2, callbacks=[Recorder.__base__()], quiet=True)   # a no-op callback: fine
    with pytest.raises(TypeError, match="state_dict"):
        pk.train(pinn, "_plain", 2, callbacks=[Recorder()], quiet=True)
