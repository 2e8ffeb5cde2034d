"""Published numbers of the papers the book reproduces, in one place (quoted, never computed).

Rathore et al. (2024), *Challenges in training PINNs: a loss landscape perspective* (ICML):
Table 1 (best loss and L2RE over widths 50-400 and five seeds, 41,000 iterations), Table 2 (Adam+L-BFGS, then
NNCG) and Table 3 (seconds per iteration on an NVIDIA Titan V, L-BFGS vs NNCG; an L-BFGS "iteration" is one of
its 20 inner iterations per step, the unit the paper counts its 41,000-iteration budget in).

>>> RATHORE2024["wave"]["adam+lbfgs"]
(0.00112, 0.0552)
"""
from __future__ import annotations

__all__ = ["RATHORE2024", "RATHORE2024_SECONDS"]

#: problem -> method -> (loss, L2RE); Tables 1 and 2 of Rathore et al. (2024)
RATHORE2024: dict[str, dict[str, tuple[float, float]]] = {
    "convection": {"adam": (1.40e-4, 5.96e-2), "lbfgs": (1.51e-5, 8.26e-3), "adam+lbfgs": (5.95e-6, 4.19e-3),
                   "adam+lbfgs+nncg": (3.63e-7, 1.94e-3)},
    "reaction": {"adam": (4.73e-6, 2.12e-2), "lbfgs": (8.93e-6, 3.83e-2), "adam+lbfgs": (3.26e-6, 1.92e-2),
                 "adam+lbfgs+nncg": (2.89e-7, 9.92e-3)},
    "wave": {"adam": (2.03e-2, 3.49e-1), "lbfgs": (1.84e-2, 3.35e-1), "adam+lbfgs": (1.12e-3, 5.52e-2),
             "adam+lbfgs+nncg": (6.13e-5, 1.27e-2)},
}

#: problem -> method -> seconds per iteration on a Titan V; Table 3 of Rathore et al. (2024)
RATHORE2024_SECONDS: dict[str, dict[str, float]] = {
    "convection": {"lbfgs": 0.046, "nncg": 0.25}, "reaction": {"lbfgs": 0.036, "nncg": 0.72},
    "wave": {"lbfgs": 0.090, "nncg": 29.0},
}
