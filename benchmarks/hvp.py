"""What one Hessian-vector product costs, in gradients, on a convection PINN: every way of computing it.

    python benchmarks/hvp.py                         # 3 x 32 tanh, 2,000 residual points, float32, one thread
    python benchmarks/hvp.py --dtype float64 --problem wave    # or reaction, poisson2d, ...
    python benchmarks/hvp.py --device cuda

The unit is ONE gradient of the same loss by plain reverse-mode autograd (what ``pk.objective.value_and_grad``
and every optimizer use); ``torch.func.grad`` is timed too, as the other possible denominator. Measured:

* a fresh product at a new ``theta`` (what ``pk.curvature.hvp`` does), per mode: ``reverse`` (double backward:
  the gradient built with ``create_graph=True``, then one backward through it), ``forward`` (``torch.func.jvp``
  of ``torch.func.grad``), and, for comparison only (not pinnkit modes), reverse-over-forward with dual tensors
  (``torch.autograd.forward_ad``, then one backward of the directional derivative), forward-over-reverse with dual
  tensors, and ``torch.autograd.functional.hvp``;
* the reverse-mode product split into building the gradient graph and one product through the reused graph, and
  a product by ``torch.func.linearize`` (one-off set-up cost printed separately);
* a block of ``--block`` vectors at a new ``theta``, per vector, graph build included: ``is_grads_batched``
  (``HVPOperator.block = "batched"``, the default), a loop of backward passes (``"loop"``) and ``vmap`` of
  forward-over-reverse (``mode="forward"``).

Every result is compared with a float64 reverse-mode HVP and with central finite differences of the float64
gradient. On the CPU the clock is the process CPU time (the wall time of a shared machine mostly measures the
other jobs); the rounds are interleaved in a new random order each time and the ratio is the median over rounds
of (time / gradient time of the same round), so a drifting load cancels. Goal (issue 23 item 7): a fresh HVP
<= 2.5 gradients at one thread.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Callable

import torch
import torch.autograd.forward_ad as fwAD

import pinnkit as pk
from pinnkit import curvature as cv

Fn = Callable[[], object]


def variants(f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, v: torch.Tensor,
             V: torch.Tensor) -> tuple[dict[str, Fn], dict[str, int]]:
    """The timed functions (each returns its product(s)) and the number of vectors each multiplies."""
    def grad_autograd() -> torch.Tensor:
        x = theta.detach().requires_grad_(True)
        return torch.autograd.grad(f(x), x)[0]

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        x = theta.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        return x, g

    def rev_over_fwd() -> torch.Tensor:
        x = theta.detach().clone().requires_grad_(True)
        with fwAD.dual_level():
            df = fwAD.unpack_dual(f(fwAD.make_dual(x, v))).tangent   # D f(theta)[v], with its graph
        return torch.autograd.grad(df, x)[0]

    def fwd_over_rev_dual() -> torch.Tensor:
        with fwAD.dual_level():
            x = fwAD.make_dual(theta.detach().clone().requires_grad_(True), v)
            g = torch.autograd.grad(f(x), x)[0]
            return fwAD.unpack_dual(g).tangent

    def block_loop() -> list[torch.Tensor]:
        x, g = build()
        return [torch.autograd.grad(g, x, u, retain_graph=True)[0] for u in V]

    def block_batched() -> torch.Tensor:
        x, g = build()
        return torch.autograd.grad(g, x, V, is_grads_batched=True)[0]

    x_r, g_r = build()
    fns: dict[str, Fn] = {
        "gradient, autograd (the unit)": grad_autograd,
        "gradient, torch.func.grad": lambda: torch.func.grad(f)(theta),
        "fresh hvp, pinnkit mode='reverse'": lambda: cv.hvp(f, theta, v, mode="reverse"),
        "fresh hvp, pinnkit mode='forward'": lambda: cv.hvp(f, theta, v, mode="forward"),
        "fresh hvp, reverse-over-forward (forward_ad)": rev_over_fwd,
        "fresh hvp, forward-over-reverse (forward_ad)": fwd_over_rev_dual,
        "fresh hvp, torch.autograd.functional.hvp": lambda: torch.autograd.functional.hvp(f, theta, v)[1],
        "  reverse: build the gradient graph": lambda: build()[1],
        "  reverse: one product, graph reused": lambda: torch.autograd.grad(g_r, x_r, v, retain_graph=True)[0],
        f"fresh block of {len(V)}, is_grads_batched": block_batched,
        f"fresh block of {len(V)}, loop of backwards": block_loop,
        f"fresh block of {len(V)}, vmap forward-over-reverse": lambda: cv.hvp_batch(f, theta, V, mode="forward"),
    }
    per = {k: (len(V) if "block" in k else 1) for k in fns}
    return fns, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", default="convection",
                    help="convection (beta 40) or any name pk.problems.make knows: reaction, wave, poisson2d, ...")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 32, 32])
    ap.add_argument("--n-res", type=int, default=2000)
    ap.add_argument("--block", type=int, default=8, help="vectors per block")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--linearize", action="store_true", help="also time torch.func.linearize (seconds to set up)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    problem = pk.problems.Convection(40.0) if args.problem == "convection" else pk.problems.make(args.problem)
    pinn = pk.PINN(problem, widths=args.widths, n_res=args.n_res, seed=0, dtype=dtype, device=device)
    f, theta, P = pinn.loss, pinn.theta0, pinn.n_params
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(P, generator=gen, dtype=torch.float64)
    V = torch.randn(args.block, P, generator=gen, dtype=torch.float64)

    # --- accuracy: float64 reverse-mode HVPs and central differences of the float64 gradient -----------------
    ref64 = pk.PINN(problem, widths=args.widths, n_res=args.n_res, seed=0, dtype=torch.float64, device=device)
    th64 = ref64.theta0
    ref_v = cv.hvp(ref64.loss, th64, v.to(device))
    eps = 1e-4 / float(v.norm())
    grad64 = torch.func.grad(ref64.loss)
    fd_v = (grad64(th64 + eps * v.to(device)) - grad64(th64 - eps * v.to(device))) / (2 * eps)
    ref_V = cv.hvp_batch(ref64.loss, th64, V.to(device))

    fns, per = variants(f, theta, v.to(device, dtype), V.to(device, dtype))
    if args.linearize:
        t0 = clock()
        _, lin = torch.func.linearize(torch.func.grad(f), theta)
        t_setup = clock() - t0
        fns["  linearize: one product (set-up excluded)"] = lambda: lin(v.to(device, dtype))
        per["  linearize: one product (set-up excluded)"] = 1

    def rel(out: object) -> str:
        if isinstance(out, list):
            out = torch.stack(out)
        assert isinstance(out, torch.Tensor)
        ref = ref_V if out.ndim == 2 else ref_v
        return f"{float((out.double() - ref).norm() / ref.norm()):.1e}"

    errors = {k: ("" if k.startswith("gradient") or "build" in k else rel(fn())) for k, fn in fns.items()}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        order = list(fns.items())
        random.shuffle(order)
        for k, fn in order:
            sync()
            t0 = clock()
            fn()
            sync()
            times[k].append(clock() - t0)
    unit = times["gradient, autograd (the unit)"]
    ratio = {k: statistics.median(a / b for a, b in zip(t, unit)) / per[k] for k, t in times.items()}

    sizes = {k: int(x.shape[0]) for k, x in pinn.points.items()}
    print(f"HVP cost on {problem!r}: widths {list(args.widths)}, P = {P}, points {sizes}, {args.dtype}, {device}, "
          f"{torch.get_num_threads() if not cuda else ''} threads, torch {torch.__version__}")
    print(f"{'wall' if cuda else 'process CPU'} clock; {args.rounds} rounds in random order; ratio = median over "
          f"rounds of time / gradient time of the round, per vector for blocks; error vs the float64 reverse HVP")
    print(f"float64 reverse HVP vs central differences of the float64 gradient: "
          f"{float((ref_v - fd_v).norm() / ref_v.norm()):.1e}")
    print(f"{'operation':50s} {'ms (median)':>11s} {'gradients':>10s} {'rel. error':>11s}")
    for k, t in times.items():
        print(f"{k:50s} {1e3 * statistics.median(t):11.2f} {ratio[k]:10.2f} {errors[k]:>11s}")
    if args.linearize:
        print(f"  (torch.func.linearize set-up: {t_setup:.2f} s = {t_setup / statistics.median(unit):.0f} gradients)")
    auto = cv.resolve_mode("auto", device)
    r = ratio[f"fresh hvp, pinnkit mode='{auto}'"]
    print(f"fresh HVP / gradient, default mode '{auto}': {r:.2f} (goal <= 2.5: {'met' if r <= 2.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
