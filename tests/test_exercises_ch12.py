"""Chapter 12's self-checks accept answers computed independently of them and reject wrong ones."""
import torch

import pinnkit as pk
from pinnkit.exercises import ch12


def test_linear_step_and_cost_ratio(capsys):
    A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64)
    r = lambda th: A @ th - b  # noqa: E731
    s = pk.gauss_newton.engd(lambda th: {"loss": (r(th) ** 2).sum()}, torch.tensor([5.0, -7.0], dtype=torch.float64),
                             residual=r)
    s.step()
    assert ch12.check_linear_step(s.theta.tolist()) and not ch12.check_linear_step((5.0, -7.0))
    P = [sum(p.numel() for p in pk.nets.mlp(2, [w]).parameters()) for w in (64, 128)]
    assert P == [257, 513]
    assert ch12.check_cost_ratio((P[1] / P[0]) ** 3) and not ch12.check_cost_ratio(2.0)
    assert not ch12.check_linear_step(None) and "Replace None" in capsys.readouterr().out


def test_poisson1d_homework():
    pinn = pk.PINN("poisson1d", widths=[16], n_res=32, dtype=torch.float64, seed=0)
    run = pk.train(pinn, "engd", 40, quiet=True)
    assert ch12.check_poisson1d(run.l2re)
    assert not ch12.check_poisson1d(pk.train(pinn, "adam", 50, lr=1e-2, quiet=True).l2re)
