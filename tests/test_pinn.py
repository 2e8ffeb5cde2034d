import pytest
import torch

import pinnkit as pk


def small(problem="convection", **kw):
    return pk.PINN(problem, widths=[8, 8], n_res=64, n_ic=16, n_bc=8, **kw)


def test_flat_parameter_round_trip():
    pinn = small()
    params = pinn.params(pinn.theta0)
    assert list(params) == [name for name, _ in pinn.net.named_parameters()]
    for (name, p), b in zip(pinn.net.named_parameters(), pinn.blocks):
        assert torch.equal(params[name], p.detach()) and b.name == name and b.stop - b.start == p.numel()
    assert pinn.n_params == sum(p.numel() for p in pinn.net.parameters()) == pinn.theta0.numel()
    # the functional network equals the module itself
    X = pinn.X_eval[:50]
    assert torch.allclose(pinn.predict(pinn.theta0, X), pinn.net(X).squeeze(-1).detach())


def test_initialisation_xavier_normal_zero_bias():
    pinn = pk.PINN("convection", widths=[200, 200], n_res=10, n_ic=4, n_bc=4, seed=1)
    params = pinn.params(pinn.theta0)
    assert all(float(v.abs().max()) == 0 for k, v in params.items() if k.endswith("bias"))
    w = params["2.weight"]  # 200 x 200: Xavier-normal std = sqrt(2 / (fan_in + fan_out)) = 0.0707
    assert abs(float(w.std()) - (2 / 400) ** 0.5) < 0.003


def test_seed_reproducible_and_theta_not_mutated():
    a, b = small(seed=5), small(seed=5)
    assert torch.equal(a.theta0, b.theta0)
    assert not torch.equal(a.theta0, small(seed=6).theta0)
    theta = a.theta0.clone()
    pk.train(a, "adam", steps=3, quiet=True)
    assert torch.equal(a.theta0, theta)


def test_loss_is_sum_of_terms_and_residual_vector():
    pinn = small("wave", dtype=torch.float64)
    th = pinn.theta0 + 0.1
    terms = pinn.terms(th)
    assert set(terms) == {"residual", "initial", "boundary"}
    assert torch.allclose(pinn.loss(th), sum(terms.values()))
    assert torch.allclose((pinn.residual_vector(th) ** 2).sum(), pinn.loss(th))


def test_l2re_of_exact_solution_is_zero():
    pinn = small(dtype=torch.float64)
    assert pinn.l2re(pinn.theta0) > 0.1
    # a "network" that is the exact solution: patch u to the exact one through a subclass
    class Exact(pk.PINN):
        def u(self, theta):
            return self.problem.exact
    ex = Exact("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=torch.float64)
    assert ex.l2re(ex.theta0) == 0.0
    assert float(ex.loss(ex.theta0)) < 1e-20


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_gradients(dtype):
    pinn = small("reaction", dtype=dtype)
    g = torch.func.grad(pinn.loss)(pinn.theta0)
    assert g.dtype == dtype and g.shape == pinn.theta0.shape and torch.isfinite(g).all()


def test_bad_inputs():
    pinn = small()
    with pytest.raises(ValueError, match=r"shape \(\d+,\)"):
        pinn.loss(pinn.theta0[:-1])
    with pytest.raises(ValueError, match="convert with theta.to"):
        pinn.loss(pinn.theta0.double())
    with pytest.raises(TypeError):
        pinn.loss(pinn.theta0.tolist())
    with pytest.raises(ValueError, match="positive"):
        pk.PINN("convection", widths=[8, 0])
    with pytest.raises(ValueError, match="positive"):
        pk.PINN("convection", widths=[8], n_res=-1)
    with pytest.raises(ValueError, match="valid names"):
        pk.PINN("navier-stokes")
    with pytest.raises(ValueError, match="dtype"):
        pk.PINN("convection", widths=[8], dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown activation"):
        pk.PINN("convection", widths=[8], activation="relu6")
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        pinn.predict(pinn.theta0, torch.zeros(5, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    pinn = small(device="cuda")
    assert pinn.loss(pinn.theta0).device.type == "cuda"
    with pytest.raises(ValueError, match="convert"):
        pinn.loss(pinn.theta0.cpu())


@pytest.mark.parametrize("problem", ["convection", "reaction", "wave", "poisson1d", "allen_cahn"])
def test_loss_composes_with_torch_func_hvp_and_vmap(problem):
    """The curvature tools take torch.func.grad / jvp / vmap of PINN.loss: HVPs (forward over reverse over the
    reverse-mode input derivatives) agree with central differences of the gradient, and vmap batches them."""
    pinn = small(problem, dtype=torch.float64, seed=1)
    th = pinn.theta0 + 0.05 * torch.randn(pinn.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grad = torch.func.grad(pinn.loss)
    hvp = lambda v: torch.func.jvp(grad, (th,), (v,))[1]
    V = torch.randn(3, pinn.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    HV = torch.func.vmap(hvp)(V)
    h = 1e-5
    for v, hv in zip(V, HV):
        fd = (grad(th + h * v) - grad(th - h * v)) / (2 * h)
        assert torch.allclose(hv, fd, rtol=1e-5, atol=1e-6 * float(fd.abs().max()))
    # symmetric: v' H w == w' H v
    assert torch.allclose(V[0] @ HV[1], V[1] @ HV[0], rtol=1e-10)


def test_numpy_integer_sizes():
    np = pytest.importorskip("numpy")
    pinn = pk.PINN("convection", widths=[4], n_res=np.int64(16), n_ic=np.int64(4), n_bc=np.int32(3))
    assert {k: v.shape[0] for k, v in pinn.points.items()} == {"residual": 16, "initial": 4, "boundary_low": 3,
                                                                "boundary_high": 3}


def test_value_and_grad_fast_path_equals_torch_func():
    """objective.value_and_grad uses plain autograd outside torch.func transforms: same numbers as torch.func.grad,
    theta untouched, and it still works inside vmap (torch.func path)."""
    pinn = small("wave", dtype=torch.float64)
    th = pinn.theta0 + 0.1
    loss, terms, g = pk.objective.value_and_grad(pinn.terms, th)
    assert torch.allclose(g, torch.func.grad(pinn.loss)(th), rtol=1e-12, atol=1e-14)
    assert torch.allclose(loss, pinn.loss(th)) and set(terms) == {"residual", "initial", "boundary"}
    assert not th.requires_grad and not g.requires_grad and not loss.requires_grad
    G = torch.func.vmap(lambda t: pk.objective.value_and_grad(pinn.terms, t)[2])(torch.stack([th, th + 0.01]))
    assert torch.allclose(G[0], g, rtol=1e-12, atol=1e-14)
    _, _, g0 = pk.objective.value_and_grad(lambda t: torch.tensor(1.0, dtype=torch.float64), th)
    assert torch.equal(g0, torch.zeros_like(th))


def test_dense_hessian_through_reverse_mode_input_derivatives():
    """pinnkit.curvature's reverse-mode HVPs (double backward through the torch.func.vjp input derivatives) agree
    with torch.func.hessian."""
    pinn = small("wave", dtype=torch.float64)
    th = pinn.theta0 + 0.1
    H = pk.curvature.hessian(pinn.loss, th, mode="reverse")
    assert torch.allclose(H, torch.func.hessian(pinn.loss)(th), rtol=1e-9, atol=1e-10 * float(H.abs().max()))
