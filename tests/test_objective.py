"""One way to pass a loss: every tool accepts a function of theta, a terms function, a PINN, or a dict of losses."""
import pytest
import torch

import pinnkit as pk
from pinnkit import curvature
from pinnkit.objective import function, value_and_grad


@pytest.fixture(scope="module")
def pinn():
    return pk.PINN("convection", widths=[6], n_res=32, n_ic=8, n_bc=4, dtype=torch.float64)


def _forms(pinn):
    return {"pinn": pinn, "terms": pinn.terms, "loss": pinn.loss,
            "dict": {name: (lambda th, n=name: pinn.terms(th)[n]) for name in pinn.terms(pinn.theta0)}}


@pytest.mark.parametrize("tool", ["hvp", "hessian", "top_eigenpairs", "value_and_grad", "train"])
def test_every_tool_takes_every_form_of_objective(pinn, tool):
    theta = pinn.theta0
    v = torch.linspace(-1, 1, theta.numel(), dtype=theta.dtype)
    calls = {
        "hvp": lambda f: curvature.hvp(f, theta, v),
        "hessian": lambda f: curvature.hessian(f, theta),
        "top_eigenpairs": lambda f: curvature.top_eigenpairs(f, theta, k=1, steps=30).values,
        "value_and_grad": lambda f: value_and_grad(f, theta)[2],
        "train": lambda f: pk.train(f, "adam", steps=3, theta0=theta, quiet=True, lr=1e-2).theta,
    }
    out = {name: calls[tool](f) for name, f in _forms(pinn).items()}
    for name, value in out.items():
        assert torch.allclose(value, out["loss"], rtol=1e-10, atol=1e-12), name


def test_a_non_objective_is_refused_with_what_is_accepted():
    with pytest.raises(TypeError, match=r"object with a \.terms method"):
        function(3.0)
    with pytest.raises(TypeError, match="not callable"):
        function({"a": 1.0})
