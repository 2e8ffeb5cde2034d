"""Rathore et al.'s optimizer comparison at the paper's sizes, on a GPU, with a shortened schedule.

    python benchmarks/paper_scale.py --fraction 0.125 --device cuda

Paper sizes (3 hidden tanh layers of width 200, 10,000 residual points, 257 initial, 101 per boundary;
convection beta=40, reaction rho=5, wave beta=5) and the paper's schedule scaled by ``--fraction``
(full: Adam 41,000 steps; Adam 11,000 steps then L-BFGS for 30,000 iterations = 1,500 steps of 20;
NNCG then continues from the Adam+L-BFGS point). Prints one table beside Tables 1-3 of the paper.
"""
from __future__ import annotations

import argparse
import time

import torch

import pinnkit as pk
from pinnkit.book.papers import RATHORE2024_SECONDS
from pinnkit.book.tables import optimizer_table

PROBLEMS = {"convection": pk.problems.Convection(40.0), "reaction": pk.problems.Reaction(5.0),
            "wave": pk.problems.Wave(5.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=0.125, help="fraction of the paper's schedule")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--problems", default="convection,reaction,wave")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--nncg-steps", type=int, default=None, help="NNCG steps after Adam+L-BFGS")
    args = ap.parse_args()
    f = args.fraction
    adam, switch, lbfgs = int(41_000 * f), int(11_000 * f), int(1_500 * f)
    nncg_steps = args.nncg_steps if args.nncg_steps is not None else max(10, int(2_000 * f) // 20)
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}; schedule fraction {f}: Adam {adam}; Adam {switch} + L-BFGS {lbfgs} steps; "
          f"then NNCG {nncg_steps} steps", flush=True)
    runs: dict[str, dict] = {}
    for name in args.problems.split(","):
        pinn = pk.PINN(PROBLEMS[name], widths=[args.width] * 3, n_res=10_000, n_ic=257, n_bc=101, seed=123,
                       device=args.device)
        t = time.perf_counter()
        r = {"adam": pk.train(pinn, "adam", steps=adam, lr=args.lr, quiet=True),
             "lbfgs": pk.train(pinn, "lbfgs", steps=max(1, adam // 20), quiet=True)}  # 41,000 iterations
        r["adam+lbfgs"] = pk.train(pinn, "adam+lbfgs", steps=switch + lbfgs, switch=switch, lr=args.lr, quiet=True)
        r["adam+lbfgs+nncg"] = pk.train(pinn, "nncg", steps=nncg_steps, theta0=r["adam+lbfgs"].theta, mu=1e-1,
                                        rank=60, refresh=20, cg_iters=100, cg_tol=1e-8, quiet=True)
        runs[name] = r
        print(f"{name}: {time.perf_counter() - t:.0f} s\n{optimizer_table({name: r})}\n", flush=True)
    print("\nseconds per iteration (an L-BFGS iteration is one of its 20 inner iterations; an NNCG step is one "
          "iteration): L-BFGS vs NNCG (paper, Titan V)")
    for name, r in runs.items():
        lbfgs_it = r["adam+lbfgs"].seconds_per_iteration("lbfgs")
        nncg_it = r["adam+lbfgs+nncg"].seconds_per_iteration()
        print(f"{name:<11}{lbfgs_it:8.3f} {nncg_it:8.3f}"
              f"   ({RATHORE2024_SECONDS[name]['lbfgs']} vs {RATHORE2024_SECONDS[name]['nncg']})")


if __name__ == "__main__":
    main()
