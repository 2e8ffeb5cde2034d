"""Bad input gets an error that names the fix (issue 13, item 3): one test per case."""
import numpy as np
import pytest
import torch

import pinnkit as pk
from pinnkit.book.regression import Regression
from pinnkit.flat import FlatMLP


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def pinn():
    return pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4)


@pytest.mark.parametrize("build", [lambda: FlatMLP(2, [3], device="cuda"),
                                   lambda: pk.PINN("convection", widths=[3], n_res=16, device="cuda:0"),
                                   lambda: Regression(widths=[3], device=torch.device("cuda"))])
def test_cuda_without_a_gpu_names_the_check_and_the_fix(no_gpu, build):
    with pytest.raises(ValueError, match=r"torch\.cuda\.is_available\(\) is False.*device='cpu'"):
        build()


def test_pinnkit_device_is_validated(no_gpu, monkeypatch):
    monkeypatch.setenv("PINNKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"PINNKIT_DEVICE='cuda'.*torch\.cuda\.is_available\(\)"):
        pk.setup("classroom")
    monkeypatch.setenv("PINNKIT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="PINNKIT_DEVICE='tpu'; valid: cpu, cuda"):
        pk.presets.current("paper")
    with pytest.raises(ValueError, match="not a device"):
        FlatMLP(2, [3], device="gpu")


def test_numpy_integers_are_accepted_as_sizes():
    net = FlatMLP(np.int64(2), np.array([3, 4]), seed=np.int32(1))
    assert net.widths == (3, 4) and all(type(w) is int for w in net.widths) and net.n_params == 9 + 16 + 5
    assert sum(p.numel() for p in pk.nets.mlp(np.int64(1), [np.int16(5)]).parameters()) == 16
    assert Regression(widths=[np.int64(3)], n=np.int64(8)).y.numel() == 8
    f = lambda th: (th ** 2).sum()
    run = pk.train(f, "adam+lbfgs", steps=np.int64(5), switch=np.int64(3), theta0=torch.ones(2), quiet=True,
                   log_every=np.int64(1), lbfgs_iter=np.int64(2))
    assert run.steps == 5 and type(run.steps) is int
    with pytest.raises(ValueError, match="steps must be a non-negative integer, got 2.5"):
        pk.train(f, "adam", steps=2.5, theta0=torch.ones(2))
    with pytest.raises(ValueError, match="layer sizes must be positive integers"):
        FlatMLP(2, [3.0])


def test_threads_must_be_a_positive_integer(monkeypatch):
    before = torch.get_num_threads()
    try:
        with pytest.raises(ValueError, match="threads must be a positive integer.*got 0"):
            pk.setup("classroom", threads=0)
        monkeypatch.setenv("PINNKIT_THREADS", "two")
        with pytest.raises(ValueError, match="PINNKIT_THREADS='two' is not an integer"):
            pk.setup("classroom")
        monkeypatch.setenv("PINNKIT_THREADS", "-1")
        with pytest.raises(ValueError, match="PINNKIT_THREADS must be a positive integer"):
            pk.setup("classroom")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("log_every", [0, -3])
def test_log_every_must_be_positive(pinn, log_every):
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        pk.train(pinn, "adam", steps=3, log_every=log_every)


def test_switch_with_one_phase_is_an_error(pinn):
    with pytest.raises(ValueError, match="'adam' has one phase: drop switch"):
        pk.train(pinn, "adam", steps=3, switch=1)


def test_an_unknown_option_lists_the_valid_ones(pinn):
    with pytest.raises(TypeError, match=r"'lr_'.*valid options: adam: lr$"):
        pk.train(pinn, "adam", steps=2, lr_=5.0)
    with pytest.raises(TypeError, match="soap: lr, betas, eps, weight_decay, precondition_frequency, shampoo_beta"):
        pk.train(pinn, "adam+soap", steps=2, switch=1, dampning=1.0)
    with pytest.raises(TypeError, match="damping"):
        pk.book.stationary_survey.run(Regression(widths=[2], n=4), "saddle_free_newton", steps=1, dampning=1.0)


def test_nan_at_step_0_blames_the_objective_not_the_learning_rate():
    f = lambda th: (th ** 2).sum() * torch.sqrt(th[0] - 2.0)  # sqrt of a negative number: NaN at theta0
    with pytest.raises(pk.TrainingDiverged, match="starting point.*theta0") as err:
        pk.train(f, "adam", steps=3, theta0=torch.ones(2), quiet=True, on_diverge="stop")
    assert "learning rate" not in str(err.value)
    # a NaN after a Newton step (a method without a learning rate) does not blame one either
    g = lambda th: torch.where(th < 0.5, torch.full_like(th, float("nan")), th ** 2).sum()   # Newton: 1 -> 0
    with pytest.raises(pk.TrainingDiverged, match="loss became nan at step 1") as err:
        pk.train(g, "newton", steps=3, theta0=torch.ones(1, dtype=torch.float64), quiet=True, log_every=1)
    assert "learning rate" not in str(err.value) and "float64" in str(err.value)
