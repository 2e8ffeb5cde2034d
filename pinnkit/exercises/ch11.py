"""Checks for the exercises of chapter 11 (Remedies that work in practice)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from . import close, missing, verdict


def check_ntk_weights(answer: Mapping[str, float] | None,
                      traces: Mapping[str, float] = {"residual": 900.0, "initial": 2.0, "boundary": 8.0}) -> bool:
    """Exercise 1: NTK weights ``lambda_k = sum_j tr K_jj / tr K_kk`` for the given term traces."""
    if missing(answer):
        return False
    total = sum(traces.values())
    ok = set(answer) == set(traces) and all(close(answer[k], total / v, rtol=0.01) for k, v in traces.items())
    return verdict(ok, "Divide the sum of all traces by each term's own trace; the residual's weight is the "
                       "smallest.")


def check_feature_frequency(answer: float | None, sigma: float = 10.0, beta: float = 30.0) -> bool:
    """Exercise 2: the probability that one Fourier frequency ``b ~ N(0, sigma^2)`` has ``|b| > beta``:
    ``erfc(beta / (sigma sqrt 2))``."""
    if missing(answer):
        return False
    expected = math.erfc(beta / (sigma * math.sqrt(2)))
    return verdict(close(answer, expected, rtol=0.05),
                   "|b| > beta means more than beta / sigma standard deviations from 0, on either side.")


def check_causal_homework(l2re: Sequence[float] | None, target: float = 5e-2, seeds: int = 3) -> bool:
    """Exercise 3 (homework): one final L2RE per seed, at least ``seeds`` of them, every one below ``target``."""
    if missing(l2re):
        return False
    values = [float(v) for v in l2re]
    if len(values) < seeds:
        return verdict(False, f"Give one L2RE per seed, for at least {seeds} seeds (got {len(values)}).")
    bad = [v for v in values if not (math.isfinite(v) and v < target)]
    return verdict(not bad, f"{len(bad)} of {len(values)} seeds end above {target:g}: try a larger eps late in "
                            f"training, more slices, or the Fourier embedding in t with the causal loss.")
