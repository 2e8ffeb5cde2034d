"""Printing numbers so that stored notebook outputs compare stably across machines.

Errors at rounding level (1e-16 here, 3e-16 there) carry one claim: they are below a tolerance. Print that claim,
not the rounding noise:

>>> bound(2.7e-16, 1e-12), bound(3.4e-3, 1e-12)
('< 1e-12', '3.4e-03')
"""
from __future__ import annotations


def bound(x: float, tol: float) -> str:
    """``'< tol'`` when ``|x| < tol``, else ``x`` with two significant digits."""
    x = float(x)
    return f"< {tol:.0e}" if abs(x) < tol else f"{x:.1e}"
