"""The benchmark scripts say what they measure: their references agree with pinnkit, and they print the setting."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import pinnkit as pk
from pinnkit import curvature as C

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _main(mod, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [mod.__file__, *argv])
    threads = torch.get_num_threads()
    try:
        mod.main()
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_loss_references_are_the_pinn_loss_and_both_ratios_are_printed(monkeypatch, capsys):
    loss = _load("loss")
    pinn = pk.PINN(pk.problems.Convection(40.0), widths=[8, 8], n_res=64, n_ic=16, n_bc=8, seed=0,
                   dtype=torch.float64)
    for ref in (loss.reference_loss, loss.authors_loss):   # the authors' form: x and t apart, two autograd.grad
        assert float(ref(pinn.net, pinn.points, 40.0).detach()) == pytest.approx(float(pinn.loss(pinn.theta0)), rel=1e-12)
    out = _main(loss, ["--n-res", "64", "--widths", "8", "--repeat", "1", "--lbfgs-repeat", "1"], monkeypatch,
                capsys)
    assert "n_res = 64" in out and "float32" in out and "1 threads" in out
    assert "pinnkit / fast reference" in out and "pinnkit / the authors' formulation" in out


def test_hvp_benchmark_variants_equal_the_dense_hessian_and_print_the_setting(monkeypatch, capsys):
    hvp = _load("hvp")
    pinn = pk.PINN("wave", widths=[6], n_res=32, n_ic=8, n_bc=8, seed=0, dtype=torch.float64)
    f, th = pinn.loss, pinn.theta0
    gen = torch.Generator().manual_seed(0)
    v, V = torch.randn(pinn.n_params, generator=gen, dtype=th.dtype), torch.randn(3, pinn.n_params, generator=gen,
                                                                                   dtype=th.dtype)
    H = C.hessian(f, th)
    fns, per = hvp.variants(f, th, v, V)
    for name, fn in fns.items():
        if name.startswith("gradient") or "build" in name:
            continue
        out = fn()
        out = torch.stack(out) if isinstance(out, list) else out
        torch.testing.assert_close(out, V @ H if per[name] == 3 else H @ v, rtol=1e-8, atol=1e-8, msg=name)
    out = _main(hvp, ["--widths", "4", "--n-res", "16", "--rounds", "1", "--block", "2"], monkeypatch, capsys)
    assert "'residual': 16" in out and "float32" in out and "1 threads" in out and "process CPU clock" in out
    assert "fresh HVP / gradient, default mode 'reverse'" in out
