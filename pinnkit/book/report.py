"""Printing numbers so that stored notebook outputs compare stably across machines.

Errors at rounding level (1e-16 here, 3e-16 there) carry one claim: they are below a tolerance. Print that claim,
not the rounding noise:

>>> bound(2.7e-16, 1e-12), bound(3.4e-3, 1e-12)
('< 1e-12', '3.4e-03')

A claim over several seeds is printed as its median and range:

>>> spread([3e-3, 1e-3, 2e-3])
'2.0e-03 [1.0e-03, 3.0e-03]'
"""
from __future__ import annotations

import statistics
from typing import Iterable


def bound(x: float, tol: float) -> str:
    """``'< tol'`` when ``|x| < tol``, else ``x`` with two significant digits."""
    x = float(x)
    return f"< {tol:.0e}" if abs(x) < tol else f"{x:.1e}"


def spread(values: Iterable[float]) -> str:
    """``'median [min, max]'`` of ``values`` (e.g. one number per seed), each with two significant digits."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("spread() needs at least one value")
    return f"{statistics.median(v):.1e} [{min(v):.1e}, {max(v):.1e}]"
