import math

import pytest
import torch

import pinnkit as pk


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
    assert all(math.isclose(sum(h.terms[k][i] for k in h.terms), h.loss[i], rel_tol=1e-5) for i in range(len(h.loss)))
    assert h.time == sorted(h.time) and h.step[-1] == run.steps
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
    f = lambda th: (th ** 2).sum() * torch.sqrt(th[0] - 2.0)  # sqrt of a negative number: NaN
    with pytest.raises(pk.TrainingDiverged, match="loss became nan at step 0"):
        pk.train(f, "adam", steps=3, theta0=torch.ones(2), quiet=True)
    # a learning rate far too large makes Adam overshoot a steep valley: the loss grows past 10x its start
    steep = lambda th: (th ** 4).sum()
    with pytest.raises(pk.TrainingDiverged, match="lower the learning rate"):
        pk.train(steep, "adam", steps=50, theta0=torch.ones(2), lr=100.0, quiet=True, diverge=10.0, log_every=1)
    # a sane learning rate on the same function does not raise
    pk.train(steep, "adam", steps=50, theta0=torch.ones(2), lr=1e-2, quiet=True, diverge=10.0, log_every=1)


def test_bad_inputs(pinn):
    with pytest.raises(ValueError, match="valid: adam, lbfgs"):
        pk.train(pinn, "sgd", steps=3)
    with pytest.raises(ValueError, match="positive integer"):
        pk.train(pinn, "adam", steps=0)
    with pytest.raises(ValueError, match="switch"):
        pk.train(pinn, "adam+lbfgs", steps=10)
    with pytest.raises(ValueError, match="switch"):
        pk.train(pinn, "adam+lbfgs", steps=10, switch=10)
    with pytest.raises(ValueError, match="lr must be positive"):
        pk.train(pinn, "adam", steps=3, lr=-1.0)
    with pytest.raises(ValueError, match="theta0"):
        pk.train(lambda th: th.sum(), "adam", steps=3)
