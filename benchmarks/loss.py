"""Speed of the pinnkit PINN loss against plain ``torch.autograd.grad`` PINN losses: a fast one and the authors'.

    python benchmarks/loss.py                       # convection beta = 40, 3 x 50 tanh, 10,000 residual points
    python benchmarks/loss.py --n-res 2000 --repeat 9 --threads 1
    python benchmarks/loss.py --device cuda

Two references are written here. The fast one (``reference_loss``): an ``nn.Module``, the residual points with
``requires_grad``, ``u_x`` and ``u_t`` from ONE ``torch.autograd.grad(u.sum(), X, create_graph=True)``, the loss
``MSE(residual) + MSE(initial) + MSE(periodic boundary)`` and ``loss.backward()``. It uses the same network
weights, the same points and the same dtype as the pinnkit PINN, and the two losses are checked to agree before
anything is timed. The authors' own formulation (``authors_loss``): ``x`` and ``t`` as separate leaf tensors joined
in the forward pass, one ``autograd.grad`` call per input derivative, as Rathore et al.'s code. Measured side by
side, interleaved (the load of a shared machine drifts), median of the repeats:

* loss + gradient: ``pk.objective.value_and_grad(pinn.terms, theta)`` (``torch.func``) vs ``loss.backward()``;
  also the former pinnkit implementation (one forward-mode ``jvp`` pass per input derivative, gradient by
  ``torch.func.grad_and_value``) for comparison, in all three measurements;
* one Adam step: pinnkit's ``adam`` stepper vs ``torch.optim.Adam`` on the module;
* one L-BFGS step (lr 1, 20 inner iterations, history 100, strong Wolfe), from the same start: pinnkit's
  ``lbfgs`` stepper vs ``torch.optim.LBFGS`` on the module; the loss evaluations per step are printed, and the
  ratio is given per evaluation too (line searches may take a different number of evaluations).

On the CPU the clock is the process CPU time with one thread by default: on a machine shared with other jobs,
wall time mostly measures the others. Goal (issue 13 item 7): pinnkit / reference <= 1.2 for loss + gradient. The
report ends with both ratios, pinnkit / fast reference and pinnkit / the authors' formulation.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Callable

import torch

import pinnkit as pk
from pinnkit.problems import partial
from pinnkit.training import STEPPERS


def reference_loss(net: torch.nn.Module, pts: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    """The convection PINN loss with ``torch.autograd.grad``, fast: ``u_x``, ``u_t`` from ONE call on the joined
    points (faster than the authors' two calls, :func:`authors_loss`)."""
    X = pts["residual"].detach().clone().requires_grad_(True)
    u = net(X)
    du = torch.autograd.grad(u.sum(), X, create_graph=True)[0]      # (N, 2): u_x, u_t of every row at once
    res = du[:, 1] + beta * du[:, 0]
    x0 = pts["initial"]
    ic = net(x0).squeeze(-1) - torch.sin(x0[:, 0])
    bc = net(pts["boundary_low"]) - net(pts["boundary_high"])
    return (res ** 2).mean() + (ic ** 2).mean() + (bc ** 2).mean()


def authors_loss(net: torch.nn.Module, pts: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    """The convection loss as Rathore et al.'s code computes it: ``x`` and ``t`` as separate leaf tensors joined
    in the forward pass, and one ``torch.autograd.grad`` call per input derivative (two for ``u_x``, ``u_t``)."""
    X = pts["residual"]
    x = X[:, :1].detach().clone().requires_grad_(True)
    t = X[:, 1:].detach().clone().requires_grad_(True)
    u = net(torch.cat([x, t], dim=1))
    ones = torch.ones_like(u)
    u_x = torch.autograd.grad(u, x, grad_outputs=ones, create_graph=True)[0]
    u_t = torch.autograd.grad(u, t, grad_outputs=ones, create_graph=True)[0]
    res = u_t + beta * u_x
    x0 = pts["initial"]
    ic = net(x0).squeeze(-1) - torch.sin(x0[:, 0])
    bc = net(pts["boundary_low"]) - net(pts["boundary_high"])
    return (res ** 2).mean() + (ic ** 2).mean() + (bc ** 2).mean()


def forward_mode_terms(pinn: pk.PINN) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The former pinnkit implementation: one forward-mode jvp pass per input derivative (for comparison)."""
    beta, pts = pinn.problem.beta, pinn.points

    def terms(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        u = pinn.u(theta)
        X, x0 = pts["residual"], pts["initial"]
        r = {"residual": partial(u, 1)(X) + beta * partial(u, 0)(X), "initial": u(x0) - torch.sin(x0[:, 0]),
             "boundary": u(pts["boundary_low"]) - u(pts["boundary_high"])}
        return {k: (v ** 2).mean() for k, v in r.items()}
    return terms


def former_value_and_grad(terms: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                          theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The former gradient path: ``torch.func.grad_and_value`` of the summed terms (now used only inside transforms)."""
    g, loss = torch.func.grad_and_value(lambda th: sum(terms(th).values()))(theta.detach())
    return loss.detach(), g.detach()


class FormerStepper:
    """pinnkit's torch-optimizer stepper as it was: a leaf copy of theta fed gradients by the former path."""

    def __init__(self, terms: Callable[[torch.Tensor], dict[str, torch.Tensor]], theta: torch.Tensor,
                 make_opt: Callable[[list[torch.Tensor]], torch.optim.Optimizer], closure: bool,
                 counter: dict[str, int] | None = None):
        self.terms, self.closure, self.counter = terms, closure, counter
        self.param = theta.detach().clone().requires_grad_(True)
        self.opt = make_opt([self.param])

    def _closure(self) -> torch.Tensor:
        if self.counter is not None:
            self.counter["former"] += 1
        loss, g = former_value_and_grad(self.terms, self.param)
        self.param.grad = g
        return loss

    def step(self) -> None:
        if self.closure:
            self.opt.step(self._closure)
        else:
            self._closure()
            self.opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-res", type=int, default=10_000)
    ap.add_argument("--widths", type=int, nargs="+", default=[50, 50, 50])
    ap.add_argument("--beta", type=float, default=40.0)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--lbfgs-repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="cpu: process CPU time (default on CPU: robust on a shared, loaded machine); wall: "
                         "wall time (default on CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    clock_name = args.clock or ("wall" if device.type == "cuda" else "cpu")
    clock = time.perf_counter if clock_name == "wall" else time.process_time

    pinn = pk.PINN(pk.problems.Convection(args.beta), widths=args.widths, n_res=args.n_res, n_ic=257, n_bc=101,
                   seed=0, dtype=dtype, device=device)
    theta = pinn.theta0
    net = copy.deepcopy(pinn.net)                        # same weights (pinn.theta0 is read from this module)
    pts = pinn.points

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # --- the two losses agree --------------------------------------------------------------------------------
    L_pk, _, g_pk = pk.objective.value_and_grad(pinn.terms, theta)
    net.zero_grad()
    L_ref = reference_loss(net, pts, args.beta)
    L_ref.backward()
    g_ref = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    rel_L = abs(float(L_pk) - float(L_ref.detach())) / abs(float(L_ref.detach()))
    rel_g = float(torch.linalg.vector_norm(g_pk - g_ref) / torch.linalg.vector_norm(g_ref))
    assert rel_L < tol and rel_g < tol, (rel_L, rel_g)

    # --- loss + gradient -------------------------------------------------------------------------------------
    old_terms = forward_mode_terms(pinn)

    def ref_lg() -> None:
        net.zero_grad()
        reference_loss(net, pts, args.beta).backward()

    def authors_lg() -> None:
        net.zero_grad()
        authors_loss(net, pts, args.beta).backward()

    L_auth = authors_loss(net, pts, args.beta)
    assert abs(float(L_auth.detach()) - float(L_ref.detach())) / abs(float(L_ref.detach())) < tol
    fns = {"fast reference (one autograd.grad)": ref_lg,
           "authors' formulation (x, t apart)": authors_lg,
           "pinnkit (objective.value_and_grad)": lambda: pk.objective.value_and_grad(pinn.terms, theta),
           "former pinnkit (jvp per derivative)": lambda: former_value_and_grad(old_terms, theta)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(args.repeat):
        for k, f in fns.items():
            sync()
            t0 = clock()
            f()
            sync()
            times[k].append(clock() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}

    # --- one Adam step ---------------------------------------------------------------------------------------
    adam_pk = STEPPERS["adam"](pinn.terms, theta, lr=1e-3)
    net_adam = copy.deepcopy(pinn.net)
    opt = torch.optim.Adam(net_adam.parameters(), lr=1e-3)

    def adam_ref() -> None:
        opt.zero_grad()
        reference_loss(net_adam, pts, args.beta).backward()
        opt.step()

    adam_old = FormerStepper(old_terms, theta, lambda p: torch.optim.Adam(p, lr=1e-3), closure=False)
    adam_t: dict[str, list[float]] = {"ref": [], "pk": [], "former": []}
    adam_pk.step()
    adam_ref()
    adam_old.step()
    for _ in range(args.repeat):
        for k, f in (("ref", adam_ref), ("pk", adam_pk.step), ("former", adam_old.step)):
            sync()
            t0 = clock()
            f()
            sync()
            adam_t[k].append(clock() - t0)
    adam_med = {k: statistics.median(v) for k, v in adam_t.items()}

    # --- one L-BFGS step from theta0 (a fresh optimizer each repeat) ------------------------------------------
    evals = {"ref": 0, "pk": 0, "former": 0}

    def counted_terms(th: torch.Tensor) -> dict[str, torch.Tensor]:
        evals["pk"] += 1
        return pinn.terms(th)

    def lbfgs_pk() -> None:
        STEPPERS["lbfgs"](counted_terms, theta, lbfgs_iter=20, history_size=100).step()

    def lbfgs_ref() -> None:
        m = copy.deepcopy(pinn.net)
        o = torch.optim.LBFGS(m.parameters(), lr=1.0, max_iter=20, history_size=100, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            evals["ref"] += 1
            o.zero_grad()
            loss = reference_loss(m, pts, args.beta)
            loss.backward()
            return loss
        o.step(closure)

    def lbfgs_old() -> None:
        FormerStepper(old_terms, theta, lambda p: torch.optim.LBFGS(
            p, lr=1.0, max_iter=20, history_size=100, line_search_fn="strong_wolfe"), closure=True,
            counter=evals).step()

    lb_t: dict[str, list[float]] = {"ref": [], "pk": [], "former": []}
    n_ev: dict[str, list[int]] = {"ref": [], "pk": [], "former": []}
    for _ in range(args.lbfgs_repeat):
        for k, f in (("ref", lbfgs_ref), ("pk", lbfgs_pk), ("former", lbfgs_old)):
            evals[k] = 0
            sync()
            t0 = clock()
            f()
            sync()
            lb_t[k].append(clock() - t0)
            n_ev[k].append(evals[k])
    lb_med = {k: statistics.median(v) for k, v in lb_t.items()}
    lb_ev = {k: statistics.median(v) for k, v in n_ev.items()}

    # --- report ----------------------------------------------------------------------------------------------
    print(f"convection beta = {args.beta:g}, widths {args.widths}, P = {pinn.n_params}, n_res = {args.n_res}, "
          f"n_ic = 257, n_bc = 101, {args.dtype}, {device}, {torch.get_num_threads()} threads; "
          f"{clock_name} clock, median of {args.repeat} repeats (L-BFGS: {args.lbfgs_repeat})")
    print(f"losses agree: |dL|/L = {rel_L:.1e}, |dg|/|g| = {rel_g:.1e}")
    ref = med["fast reference (one autograd.grad)"]
    print(f"{'loss + gradient':40s} {'ms':>9s} {'/ reference':>12s}")
    for k, v in med.items():
        print(f"  {k:38s} {1e3 * v:9.2f} {v / ref:12.2f}")
    print(f"{'Adam step':40s} {'ms':>9s} {'/ reference':>12s}")
    print(f"  {'reference (torch.optim.Adam)':38s} {1e3 * adam_med['ref']:9.2f} {1.0:12.2f}")
    print(f"  {'pinnkit adam stepper':38s} {1e3 * adam_med['pk']:9.2f} {adam_med['pk'] / adam_med['ref']:12.2f}")
    print(f"  {'former pinnkit adam stepper':38s} {1e3 * adam_med['former']:9.2f} "
          f"{adam_med['former'] / adam_med['ref']:12.2f}")
    print(f"{'L-BFGS step (20 inner iterations)':40s} {'ms':>9s} {'/ reference':>12s} {'evals':>6s} "
          f"{'ratio per eval':>15s}")
    print(f"  {'reference (torch.optim.LBFGS)':38s} {1e3 * lb_med['ref']:9.1f} {1.0:12.2f} {lb_ev['ref']:6.0f}")
    for k, name in (("pk", "pinnkit lbfgs stepper"), ("former", "former pinnkit lbfgs stepper")):
        per = (lb_med[k] / lb_ev[k]) / (lb_med["ref"] / lb_ev["ref"])
        print(f"  {name:38s} {1e3 * lb_med[k]:9.1f} {lb_med[k] / lb_med['ref']:12.2f} {lb_ev[k]:6.0f} {per:15.2f}")
    ratio = med["pinnkit (objective.value_and_grad)"] / ref
    print(f"loss + gradient ratio pinnkit / fast reference (one autograd.grad) = {ratio:.2f} (goal <= 1.2): "
          f"{'OK' if ratio <= 1.2 else 'MISSED'}")
    authors = med["pinnkit (objective.value_and_grad)"] / med["authors' formulation (x, t apart)"]
    print(f"loss + gradient ratio pinnkit / the authors' formulation = {authors:.2f}")


if __name__ == "__main__":
    main()
