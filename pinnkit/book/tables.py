"""The book's optimizer tables (chapter 5): NNCG's per-step diagnostics and the Table 2-3 comparison with the
published numbers (:mod:`pinnkit.book.papers`).
"""
from __future__ import annotations

import math
from typing import Any

from ..nncg import NNCGStep
from .papers import RATHORE2024, RATHORE2024_SECONDS

__all__ = ["diagnostics_table", "optimizer_table"]


def diagnostics_table(steps: list[NNCGStep], digits: int = 2) -> str:
    """One line per NNCG step: CG iterations, exit reason, preconditioned residual, negative-curvature hits,
    fallback, Armijo step and the loss ratio (rounded to ``digits`` significant digits, for compared outputs).
    """
    head = f"{'step':>4} {'CG its':>6} {'exit':<18} {'P-resid':>8} {'neg':>4} {'fallback':>8} {'t':>8} {'loss ratio':>10}"
    lines = [head]
    for s in steps:
        ratio = s.loss_after / s.loss_before if s.loss_before else math.nan
        lines.append(f"{s.step:>4} {s.cg_iters:>6} {s.exit:<18} {s.precond_residual:>8.{digits - 1}e} "
                     f"{s.negative_curvature_hits:>4} {str(s.fallback):>8} {s.t:>8.{digits}g} {ratio:>10.{digits}g}")
    return "\n".join(lines)



def _seconds_per_iteration(run: Any, phase: str | None = None) -> float:
    """Wall seconds per Rathore iteration (an L-BFGS step counts its inner iterations) within ``phase``."""
    h = run.history
    pairs = [(h.iteration[i] - h.iteration[i - 1], h.time[i] - h.time[i - 1]) for i in range(1, len(h.step))
             if phase is None or h.phase[i - 1] == phase]
    n = sum(p[0] for p in pairs)
    return sum(p[1] for p in pairs) / n if n else math.nan



def optimizer_table(runs: dict[str, dict[str, Any]], paper: dict[str, dict[str, tuple[float, float]]] | None = None,
                    seconds: dict[str, dict[str, float]] | None = None) -> str:
    """A text table, one row per (problem, method): our loss, L2RE, final gradient norm and seconds per Rathore
    iteration of the last phase (``TrainResult``s in ``runs[problem][method]``; an L-BFGS step counts its 20 inner
    iterations, an NNCG step 1) beside the paper's loss / L2RE (default :data:`RATHORE2024`) and seconds per
    iteration (default :data:`RATHORE2024_SECONDS`; L-BFGS and NNCG only, on a Titan V).
    """
    paper = RATHORE2024 if paper is None else paper
    seconds = RATHORE2024_SECONDS if seconds is None else seconds
    head = (f"{'problem':<11}{'method':<17}{'loss':>9}{'L2RE':>9}{'|grad|':>9}{'s/it':>8}   "
            f"{'paper loss':>10}{'paper L2RE':>11}{'paper s/it':>11}")
    lines = [head, "-" * len(head)]
    for prob, methods in runs.items():
        for m, r in methods.items():
            pl, pe = paper.get(prob, {}).get(m, (math.nan, math.nan))
            last = m.split("+")[-1]
            ps = seconds.get(prob, {}).get(last, math.nan) if "+" not in m or last == "nncg" else math.nan
            lines.append(f"{prob:<11}{m:<17}{r.loss:>9.1e}{r.l2re:>9.1e}{r.grad_norm:>9.1e}"
                         f"{_seconds_per_iteration(r, last):>8.3f}   {pl:>10.1e}{pe:>11.1e}{ps:>11.3g}")
    return "\n".join(lines)
