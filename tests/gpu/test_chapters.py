"""One smoke test per chapter: the chapter's main computation, a few steps, paper sizes, on the GPU.

Each test checks that the computation runs on the device (results on CUDA, finite numbers, the loss going the
right way) — not the chapter's numbers, which the notebooks and the reproduction report carry.
"""
from __future__ import annotations

import math

import pytest
import torch

import pinnkit as pk
from pinnkit import alignment as al
from pinnkit import curvature as cv
from pinnkit import landscape as L
from pinnkit import newton, stationary
from pinnkit.book.regression import Regression


def _pinn(problem, sizes, device, dtype=torch.float32, **kw):
    return pk.PINN(problem, widths=list(sizes.widths), n_res=sizes.n_res, n_ic=sizes.n_ic, n_bc=sizes.n_bc, seed=0,
                   dtype=dtype, device=device, **kw)


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and bool(torch.isfinite(t).all())


def test_ch00_setup_and_network(device, sizes, monkeypatch, capsys):
    monkeypatch.delenv("PINNKIT_DEVICE", raising=False)
    P = pk.setup("paper")
    assert capsys.readouterr().out.strip() == f"pinnkit preset: paper (device: {P.device.type})"
    net = pk.flat.FlatMLP(2, sizes.widths, device=device)
    assert _on(net.predict(net.theta0, torch.rand(100, 2, device=device)), device)


def test_ch01_adam_then_lbfgs_on_a_paper_size_pinn(device, sizes):
    pinn = _pinn(pk.problems.Convection(beta=30.0), sizes, device)
    run = pk.train(pinn, "adam+lbfgs", steps=4, switch=2, lr=1e-3, lbfgs_iter=5, quiet=True, log_every=1)
    assert _on(run.theta, device) and run.history.loss[-1] < run.history.loss[0]
    assert math.isfinite(run.l2re) and run.seconds_per_iteration() > 0


def test_ch02_hvp_and_lanczos(device, sizes):
    pinn = _pinn(pk.problems.Convection(beta=30.0), sizes, device)
    v = torch.randn(pinn.n_params, device=device, generator=torch.Generator(device).manual_seed(0))
    assert _on(cv.hvp(pinn.loss, pinn.theta0, v), device)
    top = cv.top_eigenpairs(pinn.loss, pinn.theta0, k=2, steps=20)
    assert top.values.device.type == device.type and float(top.values.max()) > 0


def test_ch03_ch04_spectral_density(device, sizes):
    pinn = _pinn(pk.problems.Reaction(rho=5.0), sizes, device)
    dens = cv.spectral_density(pinn.loss, pinn.theta0, n_probes=2, steps=20, grid_size=500)
    assert bool(torch.isfinite(torch.as_tensor(dens.density)).all())
    top = cv.top_eigenpairs(pinn.loss, pinn.theta0, k=1, steps=20)
    assert top.values.device.type == device.type and float(top.values[0]) > 0


def test_ch05_nncg_step_after_lbfgs(device, sizes):
    pinn = _pinn(pk.problems.Convection(beta=30.0), sizes, device)
    run = pk.train(pinn, "lbfgs+nncg", steps=3, switch=2, lbfgs_iter=5, quiet=True, log_every=1,
                   phase_options={"nncg": {"rank": sizes.rank, "cg_iters": 10}})
    assert _on(run.theta, device) and run.history.phase[-1] == "nncg"
    assert run.history.loss[-1] <= run.history.loss[-2] * (1 + 1e-6)   # Armijo: NNCG does not raise the loss


def test_ch06_newton_step_on_the_regression_net(device, sizes):
    reg = Regression(widths=sizes.regression_widths, seed=0, device=device)
    res = newton.run(reg, "levenberg_marquardt", steps=3, residual=reg.residual_vector)
    assert _on(res.theta, device) and res.final_loss < res.history.loss[0]
    assert newton.run(reg, "newton", steps=1).theta.device.type == device.type


def test_ch07_classify_a_stationary_point(device, sizes):
    reg = Regression(widths=sizes.regression_widths, seed=0, device=device)
    point = stationary.classify(reg.loss, stationary.zero_output(reg))
    assert math.isfinite(point.loss) and point.index >= 0


def test_ch08_soap_with_alignment_loggers(device, sizes):
    pinn = _pinn(pk.problems.Convection(beta=10.0), sizes, device)
    run = pk.train(pinn, "soap", steps=3, lr=1e-3, quiet=True, log_every=1,
                   log={"intra": al.IntraStep(pinn.terms), "inter": al.InterStep()})
    assert _on(run.theta, device) and len(run.history.extra["intra"]) == 4


def test_ch09_landscape_slice(device, sizes):
    pinn = _pinn(pk.problems.Poisson1D(k=2), sizes, device, dtype=torch.float64)
    d = L.random_directions(pinn.theta0, 2, blocks=pinn.blocks)
    s = L.slice_2d(pinn.terms, pinn.theta0, d, span=0.5, n=5)
    assert s is not None
    s1 = L.slice_1d(pinn.loss, pinn.theta0, d, span=0.5, n=7)
    assert s1 is not None


@pytest.mark.parametrize("method", ["adam", "lbfgs"])
def test_timing_is_synchronised(device, sizes, method):
    pinn = _pinn(pk.problems.Convection(beta=1.0), sizes, device)
    run = pk.train(pinn, method, steps=2, quiet=True, log_every=1, **({"lbfgs_iter": 3} if method == "lbfgs" else {}))
    assert all(b >= a for a, b in zip(run.history.time, run.history.time[1:])) and run.history.time[-1] > 0
