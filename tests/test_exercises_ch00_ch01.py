"""Self-checks of chapters 0 and 1 (pinnkit.exercises.ch00, ch01): each accepts an independently computed answer
and rejects a wrong one."""
from __future__ import annotations

import math

import torch

import pinnkit as pk
import pinnkit.exercises.ch00 as ch00
import pinnkit.exercises.ch01 as ch01


def reaction_terms(net, X_res, X_ic, X_lo, X_hi, rho, initial=None):
    """The reaction loss written from scratch, as exercise 1 of chapter 1 asks."""
    X = X_res.clone().requires_grad_(True)
    u = net(X)[:, 0]
    u_t = torch.autograd.grad(u.sum(), X, create_graph=True)[0][:, 1]
    h = torch.exp(-((X_ic[:, 0] - math.pi) ** 2) / (2 * (math.pi / 4) ** 2)) if initial is None else initial(X_ic)
    return {"residual": ((u_t - rho * u * (1 - u)) ** 2).mean(),
            "initial": ((net(X_ic)[:, 0] - h) ** 2).mean(),
            "boundary": ((net(X_lo) - net(X_hi)) ** 2).mean()}


def small(problem, dtype=torch.float32):
    return pk.PINN(problem, widths=[16, 16], n_res=128, n_ic=32, n_bc=16, seed=0, dtype=dtype)


def test_bias_shift_scans_the_output_bias():
    pinn = small(pk.problems.Convection(beta=10))
    b = pinn.blocks[-1]
    assert b.name.endswith("bias") and b.stop - b.start == 1

    def loss_at(c):
        theta = pinn.theta0.clone()
        theta[b.start:b.stop] += c
        return float(pinn.loss(theta))

    best = min(loss_at(c) for c in torch.linspace(-5, 5, 2001).tolist())   # a scan, not the closed form
    assert ch00.check_bias_shift(best, pinn)
    assert not ch00.check_bias_shift(loss_at(0.0), pinn)   # the unshifted loss is not the minimum
    assert not ch00.check_bias_shift(None, pinn)


def test_zero_network():
    pinn = small(pk.problems.Convection(beta=10))
    terms = pinn.terms(torch.zeros_like(pinn.theta0))
    assert float(terms["residual"]) == 0 and float(terms["boundary"]) == 0
    assert ch00.check_zero_network(float(terms["initial"]), n_ic=32)
    assert not ch00.check_zero_network(0.25, n_ic=32)


def test_reaction_terms_from_scratch():
    pinn = small(pk.problems.Reaction(rho=5), dtype=torch.float64)
    net = pinn.net
    net.load_state_dict(pinn.params(pinn.theta0))
    p = pinn.points
    args = (p["residual"], p["initial"], p["boundary_low"], p["boundary_high"])
    assert ch01.check_reaction_terms(reaction_terms(net, *args, rho=5.0), pinn)
    wrong = reaction_terms(net, *args, rho=5.0, initial=lambda X: torch.sin(X[:, 0]))
    assert not ch01.check_reaction_terms(wrong, pinn)
    assert not ch01.check_reaction_terms(reaction_terms(net, *args, rho=1.0), pinn)   # the wrong rate
    assert not ch01.check_reaction_terms({"residual": 0.0}, pinn)


def test_constant_loss():
    xs = torch.linspace(0, 2 * math.pi, 100, dtype=torch.float64)
    c = float(torch.sin(xs).mean())
    assert ch01.check_constant_loss(float(((c - torch.sin(xs)) ** 2).mean()))
    assert not ch01.check_constant_loss(float((torch.sin(xs) ** 2).mean() + 0.1))
