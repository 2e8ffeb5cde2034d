"""Self-check functions for the end-of-chapter exercises: ``pinnkit.exercises.chNN.check_...``.

Each check prints a verdict and returns ``True``/``False``, so a student can call it from the notebook.
"""
from __future__ import annotations

import math

from typing_extensions import TypeIs


def verdict(ok: bool, hint: str = "") -> bool:
    """Print a one-line verdict (with a hint when wrong) and return ``ok``."""
    print("Correct!" if ok else f"Not yet. {hint}".rstrip())
    return bool(ok)


def close(answer: float, expected: float, rtol: float = 0.05, atol: float = 0.0) -> bool:
    """``answer`` within ``rtol`` (relative) or ``atol`` of ``expected``; NaN is never close."""
    answer = float(answer)
    return math.isfinite(answer) and abs(answer - expected) <= max(atol, rtol * abs(expected))


def missing(answer: object) -> TypeIs[None]:
    """``True`` (after telling the reader what to do) while the exercise's placeholder ``None`` is unanswered."""
    if answer is None:
        print("Replace None with your answer, then run the cell again.")
        return True
    return False


def pending(answer: object, what: str) -> TypeIs[None]:
    """Like :func:`missing`, naming what to compute: ``True`` while the placeholder ``None`` is unanswered."""
    if answer is None:
        print(f"Set answer to {what}, then run this cell again.")
        return True
    return False
