"""Speed of pinnkit.curvature on the convection PINN: HVP vs gradient, dense Hessian, SLQ vs a PyHessian-style loop.

    python benchmarks/curvature.py                 # CPU, float32, one thread, process CPU time
    python benchmarks/curvature.py --device cuda

Prints a table of timings (on the CPU: process CPU time, --threads default 1, robust on a shared machine;
on CUDA: wall time; --clock overrides) and the three ratios of issue 3 with their goals:
  HVP / gradient <= 2.5 (the gradient by plain reverse-mode autograd, as ``pk.objective.value_and_grad``; the
  slower ``torch.func.grad`` is timed too);  dense Hessian by batched HVPs / P separate HVP calls <= 0.3;
  pinnkit SLQ vs a PyHessian-style baseline (double-backward HVPs through one retained graph, one probe at a time,
  Python loops for the re-orthogonalisation, as PyHessian's ``density``) >= 5x at equal probes, steps and accuracy.
The ``pyhessian`` package itself (0.1, 2021) calls ``torch.eig``, removed from torch 2, so the baseline is written
here in its image. P separate HVPs are timed on a sample of calls (before and after the dense Hessian) and
extrapolated to P; the gradient and single HVPs are timed interleaved, as the load of a shared machine drifts.
``benchmarks/hvp.py`` measures the HVP alone at one thread in process CPU time, every mode and block variant.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

import pinnkit as pk
from pinnkit import curvature as cv

CLOCK: Callable[[], float] = time.process_time      # set by main(): process CPU time or wall time


def timer(device: torch.device) -> Callable[[Callable[[], object], int], float]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def measure(fn: Callable[[], object], repeat: int = 5) -> float:
        fn()                                   # warm-up
        times = []
        for _ in range(repeat):
            sync()
            t0 = CLOCK()
            fn()
            sync()
            times.append(CLOCK() - t0)
        return statistics.median(times)
    return measure


def once(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Time (``CLOCK``) and result of one call (for the long operations; the kernels are warm by then)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = CLOCK()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return CLOCK() - t0, out


def pyhessian_style_slq(f, theta: torch.Tensor, probes: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SLQ as PyHessian's ``hessian.density``: gradient graph built once (create_graph), then for each probe in turn
    ``steps`` Lanczos steps with one ``autograd.grad(..., retain_graph=True)`` HVP each, Gram-Schmidt against the
    list of previous vectors one at a time, scalars moved to Python; eigen-decomposition of T per probe."""
    x = theta.detach().clone().requires_grad_(True)
    (gradsH,) = torch.autograd.grad(f(x), x, create_graph=True)
    def hv(v):
        return torch.autograd.grad(gradsH, x, v, retain_graph=True)[0]

    def orthnormal(w, v_list):
        for v in v_list:
            w = w - torch.dot(w, v) * v
        return w / (w.norm() + 1e-6)

    nodes, weights = [], []
    for p in probes:
        v = p / p.norm()
        v_list, alpha_list, beta_list = [v], [], []
        w = None
        for i in range(steps):
            if i == 0:
                w_prime = hv(v)
                alpha = torch.dot(w_prime, v)
                alpha_list.append(alpha.cpu().item())
                w = w_prime - alpha * v
            else:
                beta = torch.sqrt(torch.dot(w, w))
                beta_list.append(beta.cpu().item())
                v = orthnormal(w, v_list) if beta_list[-1] != 0.0 else orthnormal(torch.randn_like(w), v_list)
                v_list.append(v)
                w_prime = hv(v)
                alpha = torch.dot(w_prime, v)
                alpha_list.append(alpha.cpu().item())
                w = w_prime - alpha * v - beta * v_list[-2]
        T = torch.zeros(steps, steps, dtype=torch.float64)
        for i in range(steps):
            T[i, i] = alpha_list[i]
            if i < steps - 1:
                T[i + 1, i] = T[i, i + 1] = beta_list[i]
        a, b = torch.linalg.eigh(T)
        nodes.append(a)
        weights.append(b[0, :] ** 2)
    return torch.stack(nodes), torch.stack(weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--widths", type=int, nargs="+", default=[50, 50])
    ap.add_argument("--n-res", type=int, default=500)
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sample", type=int, default=50, help="separate HVP calls timed, then extrapolated to P")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="cpu: process CPU time (default on the CPU); wall: wall time (default on CUDA)")
    args = ap.parse_args()
    global CLOCK

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    pinn = pk.PINN(pk.problems.Convection(beta=40.0), widths=args.widths, n_res=args.n_res, n_ic=257, n_bc=101,
                   seed=0, dtype=dtype, device=device)
    f, theta, P = pinn.loss, pinn.theta0, pinn.n_params
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(P, generator=gen).to(device, dtype)
    V = torch.randn(args.probes, P, generator=gen).to(device, dtype)
    clock_name = args.clock or ("wall" if device.type == "cuda" else "cpu")
    CLOCK = time.perf_counter if clock_name == "wall" else time.process_time
    measure = timer(device)
    rows: list[tuple[str, float, str]] = []

    # gradient and single HVPs timed interleaved (a shared machine's load drifts; medians of alternating calls)
    def grad() -> torch.Tensor:
        x = theta.detach().requires_grad_(True)
        return torch.autograd.grad(f(x), x)[0]

    fns = {"grad": grad, "func.grad": lambda: torch.func.grad(f)(theta),
           "forward": lambda: cv.hvp(f, theta, v, mode="forward"),
           "reverse": lambda: cv.hvp(f, theta, v, mode="reverse")}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(11):
        for name, fn in fns.items():
            samples[name].append(measure(fn, 1))
    t_grad = statistics.median(samples["grad"])
    rows.append(("gradient (autograd, the unit)", t_grad, "1.00 grad"))
    t_fgrad = statistics.median(samples["func.grad"])
    rows.append(("gradient (torch.func.grad)", t_fgrad, f"{t_fgrad / t_grad:.2f} grad"))
    t_mode = {}
    for mode in ("forward", "reverse"):
        t_mode[mode] = statistics.median(samples[mode])
        rows.append((f"hvp, {mode}, one fresh call", t_mode[mode], f"{t_mode[mode] / t_grad:.2f} grad"))
    op = cv.hvp_operator(f, theta, mode="reverse")
    t_reuse = measure(lambda: op(v), 10)
    rows.append(("hvp, reverse, graph reused (per vector)", t_reuse, f"{t_reuse / t_grad:.2f} grad"))
    k = args.probes
    t_fwd_block = measure(lambda: cv.hvp_batch(f, theta, V, mode="forward"), 3) / k
    rows.append((f"hvp block of {k}, forward vmap (per vector)", t_fwd_block, f"{t_fwd_block / t_grad:.2f} grad"))
    x = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    t_batched = measure(lambda: torch.autograd.grad(g, x, V, retain_graph=True, is_grads_batched=True), 3) / k
    rows.append((f"hvp block of {k}, reverse is_grads_batched (per vector)", t_batched,
                 f"{t_batched / t_grad:.2f} grad"))
    t_loop = measure(lambda: [torch.autograd.grad(g, x, u, retain_graph=True) for u in V], 3) / k
    rows.append((f"hvp block of {k}, reverse loop (per vector)", t_loop, f"{t_loop / t_grad:.2f} grad"))
    best = min(t_mode, key=t_mode.get)

    # dense Hessian: batched HVPs vs P separate calls (sampled)
    ns = min(args.sample, P)
    eye = torch.eye(P, dtype=dtype, device=device)
    def separate() -> float:
        return once(lambda: [cv.hvp(f, theta, e) for e in eye[:ns]], device)[0] / ns * P

    t_sep = separate()
    t_dense = once(lambda: cv.hessian(f, theta, force=True), device)[0]
    t_sep = 0.5 * (t_sep + separate())                # sampled before and after the dense Hessian
    rows.append((f"P = {P} separate hvp calls (from 2 x {ns})", t_sep, f"{t_sep / t_grad:.0f} grad"))
    rows.append(("dense Hessian, batched HVPs (cv.hessian)", t_dense, f"{t_dense / t_grad:.0f} grad"))

    # SLQ: pinnkit (all probes together) vs PyHessian-style loop; the same Rademacher probes
    probes = (2.0 * torch.randint(0, 2, (k, P), generator=torch.Generator().manual_seed(0)) - 1).to(device, dtype)
    t_slq, sd = once(lambda: cv.spectral_density(f, theta, n_probes=k, steps=args.steps, seed=0), device)
    t_base, (nodes_b, weights_b) = once(lambda: pyhessian_style_slq(f, theta, probes, args.steps), device)
    rows.append((f"SLQ pinnkit ({k} probes x {args.steps} steps)", t_slq, f"{t_slq / t_grad:.0f} grad"))
    rows.append(("SLQ PyHessian-style baseline (same probes)", t_base, f"{t_base / t_grad:.0f} grad"))
    lmax_b = float(nodes_b.max())
    tr_b = float((weights_b * nodes_b).sum(1).mean())

    print(f"pinnkit curvature benchmark: {pinn!r}\ndevice {device}, {args.dtype}, "
          f"{torch.get_num_threads() if device.type == 'cpu' else ''} threads, torch {torch.__version__}; "
          f"{clock_name} clock; gradient and single HVPs: median of 11 interleaved calls")
    print(f"{'operation':58s} {'seconds':>10s}  {'cost':>10s}")
    for name, t, cost in rows:
        print(f"{name:58s} {t:10.4f}  {cost:>10s}")
    r1 = t_mode[cv.resolve_mode('auto', device)] / t_grad
    r2 = t_dense / t_sep
    r3 = t_base / t_slq
    print("\nratios (goal):")
    print(f"  HVP / autograd gradient, default mode '{cv.resolve_mode('auto', device)}' (fastest here: {best}):"
          f" {r1:.2f}  (<= 2.5: {'met' if r1 <= 2.5 else 'MISSED'})")
    print(f"  dense Hessian / P separate HVPs:        {r2:.2f}  (<= 0.3: {'met' if r2 <= 0.3 else 'MISSED'})")
    print(f"  SLQ speed-up over PyHessian-style loop: {r3:.2f}x (>= 5: {'met' if r3 >= 5 else 'MISSED'})")
    print(f"  equal accuracy: lambda_max pinnkit {sd.lmax:.6g} vs baseline {lmax_b:.6g} "
          f"(rel. diff {abs(sd.lmax - lmax_b) / abs(lmax_b):.1e}); tr(H)/P {sd.moment(1)[0]:.6g} vs {tr_b:.6g}")
    if not math.isfinite(r3):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
