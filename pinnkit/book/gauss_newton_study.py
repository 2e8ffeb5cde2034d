"""Chapter 12's cost table of one dense ENGD step (:mod:`pinnkit.gauss_newton`)."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from torch import Tensor

from ..gauss_newton import default_etas, dense_direction, gn_system, grid_line_search
from ..objective import total

__all__ = ["step_cost"]


def step_cost(model: Any, theta: Tensor, *, repeat: int = 3) -> dict[str, float]:
    """Process seconds (best of ``repeat``) of the parts of one dense ENGD step on a PINN at ``theta``:
    ``"jacobian"``, ``"solve"`` (form :math:`G`, ``eigh``) and ``"line_search"`` (the 30-point grid).
    """
    out: dict[str, float] = {}
    sys = gn_system(model.residual_vector, theta, dense=True, force=True, model=model)
    assert sys.J is not None
    J = sys.J
    parts: dict[str, Callable[[], object]] = {
        "jacobian": lambda: gn_system(model.residual_vector, theta, dense=True, force=True, model=model),
        "solve": lambda: dense_direction(J, sys.grad),
        "line_search": lambda: grid_line_search(total(model.terms), theta, sys.grad, default_etas()),
    }
    for name, fn in parts.items():
        best = math.inf
        for _ in range(max(1, int(repeat))):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        out[name] = best
    return out
