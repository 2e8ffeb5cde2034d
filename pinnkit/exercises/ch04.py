"""Checks for the exercises of chapter 4 (the spectrum of the PINN loss, term by term, and L-BFGS preconditioning).

Each check takes the reader's answer (``None`` before it is computed) and what the answer is about, recomputes the
reference, prints a verdict and returns ``True``/``False``.
"""
from __future__ import annotations

import math
from typing import Any

from . import close, verdict

_NOT_YET = "Compute the answer first (it is still None)."


def check_gd_directions(answer: int | None, eigenvalues: Any, steps: int = 1000) -> bool:
    r"""Exercise 1: directions that gradient descent with step :math:`1/\lambda_{\max}` reduces by at least a factor
    :math:`e` within ``steps`` steps, i.e. :math:`(1 - \lambda_i/\lambda_{\max})^{\text{steps}} \le e^{-1}`.

    Args:
        answer: the reader's count.
        eigenvalues: all eigenvalues of the Hessian (a Tensor).
        steps: number of gradient steps.

    Returns:
        Whether ``answer`` is the count, within 1 (eigenvalues on the boundary).

    >>> import torch
    >>> check_gd_directions(2, torch.tensor([-1e-5, 1e-6, 2e-3, 1.0]), steps=1000)
    Correct!
    True
    """
    if answer is None:
        return verdict(False, _NOT_YET)
    import torch
    ev = torch.as_tensor(eigenvalues).double().reshape(-1)
    lmax = float(ev.max())
    threshold = (1.0 - math.exp(-1.0 / steps)) * lmax
    expected = int((ev >= threshold).sum())
    return verdict(abs(int(answer) - expected) <= 1,
                   f"Count the eigenvalues with lambda_i / lambda_max >= 1 - exp(-1/{steps}), about 1/{steps}.")


def check_second_order(answer: float | None, pinn: Any, theta: Any, term: str = "initial") -> bool:
    r"""Exercise 2: :math:`\|\nabla^2 L_k - G_k\|_2 / \|\nabla^2 L_k\|_2` of one term at ``theta``
    (:func:`pinnkit.conditioning.term_conditioning`), within 5%.

    Args:
        answer: the reader's ratio.
        pinn: the :class:`~pinnkit.PINN` (its ``residuals`` define the terms).
        theta: the point (e.g. the end of Adam).
        term: which loss term.

    Returns:
        Whether ``answer`` matches the dense reference.
    """
    if answer is None:
        return verdict(False, _NOT_YET)
    from ..conditioning import term_conditioning
    expected = term_conditioning(pinn.residuals, theta)[term].second_order
    return verdict(close(answer, expected, rtol=0.05),
                   f"Use cd.term_conditioning(pinn.residuals, theta)['{term}'].second_order.")


def check_preconditioned_share(answer: float | None, pinn: Any, run: Any, lo: float = 0.5, hi: float = 2.0) -> bool:
    r"""Exercise 3: the share of eigenvalues of :math:`H_k\nabla^2 L` in ``[lo, hi]`` at the end of an L-BFGS ``run``
    (:func:`pinnkit.conditioning.lbfgs_preconditioned` with the run's own pairs), within 0.005.

    Args:
        answer: the reader's share (a fraction, not a percentage).
        pinn: the :class:`~pinnkit.PINN` that was trained.
        run: the :class:`~pinnkit.TrainResult` of an ``"lbfgs"`` (or ``"adam+lbfgs"``) run.
        lo, hi: the interval.

    Returns:
        Whether ``answer`` matches.
    """
    if answer is None:
        return verdict(False, _NOT_YET)
    from ..conditioning import lbfgs_preconditioned
    from ..curvature import hessian, lbfgs_pairs
    pairs = lbfgs_pairs(run)
    expected = lbfgs_preconditioned(hessian(pinn.loss, run.theta), pairs, lo=lo, hi=hi).lbfgs.share
    return verdict(close(answer, expected, atol=0.005, rtol=0.0),
                   "Use cd.lbfgs_preconditioned(cv.hessian(pinn.loss, run.theta), cv.lbfgs_pairs(run)).lbfgs.share "
                   f"(m = {pairs.s.shape[0]} pairs here).")
