"""SOAP: against an independent published implementation, plain Adam on 1-D tensors, rotation equivariance."""
import pytest
import torch

import pinnkit as pk
from pinnkit.soap import SOAP, soap_stepper


def _problem(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(64, 3, generator=g, dtype=dtype), torch.randn(64, 2, generator=g, dtype=dtype)

    def params():
        h = torch.Generator().manual_seed(1)
        return [torch.randn(*s, generator=h, dtype=dtype).requires_grad_() for s in [(5, 3), (5,), (2, 5), (2,)]]

    def loss(ps):
        W1, b1, W2, b2 = ps
        return ((torch.tanh(X @ W1.T + b1) @ W2.T + b2 - Y) ** 2).mean()
    return params, loss


def _run(opt_cls, params, loss, steps, **kw):
    ps = params()
    opt = opt_cls(ps, **kw)
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        loss(ps).backward()
        opt.step()
        traj.append(torch.cat([p.detach().reshape(-1) for p in ps]).clone())
    return torch.stack(traj)


HYPER = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, precondition_frequency=2)


def test_matches_pytorch_optimizer_soap():
    """Same trajectory as the SOAP of pytorch-optimizer (an independent port of the reference) for 60 steps.

    pytorch-optimizer computes the QR refresh in float32, so float64 runs agree to ~1e-6, not to rounding.
    """
    ref = pytest.importorskip("pytorch_optimizer")
    params, loss = _problem()
    ours = _run(SOAP, params, loss, 60, **HYPER)
    theirs = _run(ref.SOAP, params, loss, 60, shampoo_beta=None, **HYPER)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # the comparison can fail: plain AdamW from the same start leaves the SOAP trajectory
    adamw = _run(torch.optim.AdamW, params, loss, 61, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.01)[:-1]
    assert (adamw - theirs).abs().max() > 1e-2


def test_first_step_only_builds_preconditioner_and_1d_is_adam():
    """Reference behaviour: step 1 does not move; afterwards a 1-D tensor follows torch Adam exactly.

    (eps=0: SOAP adds eps to sqrt(v) before the bias correction, torch Adam after it.)"""
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    a = b.detach().clone().requires_grad_()
    soap = SOAP([b], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0)
    adam = torch.optim.Adam([a], lr=0.1, betas=(0.9, 0.999), eps=0.0)
    f = lambda v: (v ** 4).sum() + v.prod()
    b.grad = torch.func.grad(f)(b.detach())
    soap.step()
    assert torch.equal(b.detach(), a.detach())
    for _ in range(10):
        b.grad = torch.func.grad(f)(b.detach())
        a.grad = torch.func.grad(f)(a.detach())
        soap.step()
        adam.step()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-12, atol=1e-12)


def test_rotation_equivariance():
    """SOAP commutes with orthogonal changes of basis W -> U W V^T (Adam does not): the defining property."""
    torch.manual_seed(0)
    A, T = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    U = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    f = lambda W: ((torch.tanh(W) * A - T) ** 2).sum() + (W ** 2).sum() * 0.1
    g = lambda W2: f(U.T @ W2 @ V)                       # the same loss in rotated coordinates
    W0 = torch.randn(5, 5, dtype=torch.float64)   # square: G G^T and G^T G have no degenerate eigenspaces

    def run(loss, W, cls, **kw):
        p = W.clone().requires_grad_()
        opt = cls([p], **kw)
        for _ in range(12):
            p.grad = torch.func.grad(loss)(p.detach())
            opt.step()
        return p.detach()
    kw = dict(lr=0.05, betas=(0.9, 0.99), weight_decay=0.0, precondition_frequency=3)
    torch.testing.assert_close(U @ run(f, W0, SOAP, **kw) @ V.T, run(g, U @ W0 @ V.T, SOAP, **kw),
                               rtol=0, atol=1e-7)
    adam = dict(lr=0.05, betas=(0.9, 0.99))
    assert (U @ run(f, W0, torch.optim.Adam, **adam) @ V.T - run(g, U @ W0 @ V.T, torch.optim.Adam, **adam)).abs().max() > 1e-3


def test_stepper_on_pinn_decreases_loss_and_needs_blocks():
    pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=torch.float64)
    with pytest.raises(ValueError, match="blocks=pinn.blocks"):
        soap_stepper(pinn.terms, pinn.theta0)
    bad = [pinn.blocks[1], pinn.blocks[0], *pinn.blocks[2:]]
    with pytest.raises(ValueError, match="tile theta"):
        soap_stepper(pinn.terms, pinn.theta0, blocks=bad)
    s = soap_stepper(pinn.terms, pinn.theta0, blocks=pinn.blocks, lr=1e-2)
    s.step()
    assert torch.equal(s.theta, pinn.theta0)          # first step builds the preconditioner only
    for _ in range(30):
        s.step()
    assert pinn.loss(s.theta) < 0.5 * pinn.loss(pinn.theta0)
    assert pinn.theta0.data_ptr() != s.theta.data_ptr()


def test_train_registered():
    assert pk.STEPPERS["soap"] is soap_stepper
    pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8, dtype=torch.float64)
    run = pk.train(pinn, "soap", steps=20, lr=1e-2, blocks=pinn.blocks, quiet=True)
    assert run.history.loss[-1] < run.history.loss[0]


def test_bad_hyperparameters():
    p = [torch.zeros(2, 2)]
    for kw, msg in [(dict(lr=0), "lr"), (dict(betas=(1.0, 0.9)), "betas"), (dict(precondition_frequency=0),
                                                                           "precondition_frequency")]:
        with pytest.raises(ValueError, match=msg):
            SOAP(p, **kw)


def test_precondition_is_adam_in_the_eigenbasis():
    """Linear loss <C, W> + c.b: constant gradients. C = diag(3, 1) has eigenbases Q_L = Q_R = I (up to signs,
    which cancel), so after SOAP's update P X = X / (sqrt(1 - beta2) |C| + eps) entry by entry; plain Adam on b."""
    from types import SimpleNamespace as B

    C, c = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), torch.tensor([2.0, -0.5], dtype=torch.float64)
    blocks = [B(start=0, stop=4, shape=(2, 2)), B(start=4, stop=6, shape=(2,))]
    st = soap_stepper(lambda th: C.reshape(-1) @ th[:4] + c @ th[4:], torch.zeros(6, dtype=torch.float64),
                      lr=1e-2, blocks=blocks)
    v = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    assert st.precondition(v) is None
    st.step()
    assert st.precondition(v) is None                    # the first step only builds the eigenbases
    st.step()
    scale = 0.001 ** 0.5 * torch.cat([C.reshape(-1), c]).abs() + 1e-8
    torch.testing.assert_close(st.precondition(v), v / scale, rtol=1e-12, atol=0)
