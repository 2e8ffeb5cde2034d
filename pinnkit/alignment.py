r"""Gradient alignment between loss terms (Wang, Bhartari, Li, Perdikaris 2025).

The alignment score of :math:`n \ge 2` non-zero vectors,

.. math:: \mathcal{A}(v_1, \dots, v_n) = 2\,\Big\|\frac1n \sum_{i=1}^n \frac{v_i}{\|v_i\|}\Big\|^2 - 1
          \;\in\; [-1, 1],

is the cosine when :math:`n = 2`, 1 for parallel vectors, -1 when the unit vectors cancel and :math:`2/n - 1` for
:math:`n` orthonormal ones. Intra-step: :math:`\mathcal{A}(\nabla L_1, \dots, \nabla L_n)` at one
:math:`\theta`; inter-step: :math:`\cos(\Delta_{k-1}, \Delta_k)` of consecutive updates.

>>> round(cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])), 6)        # cos 45 degrees
0.707107
>>> alignment_score([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])])
-1.0
>>> round(alignment_score(torch.eye(3)), 6)                                       # three orthonormal: 2/3 - 1
-0.333333
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

import torch
from torch import Tensor

from .objective import Loss, TermsFn, as_terms, total

__all__ = ["alignment_score", "cosine", "term_gradients", "intra_step_alignment", "IntraStep", "InterStep",
           "optimizer_directions", "precondition", "preconditioned_alignment", "PreconditionedAlignment"]


def _stack(vectors: Sequence[Tensor] | Mapping[str, Tensor] | Tensor) -> Tensor:
    if isinstance(vectors, Mapping):
        vectors = list(vectors.values())
    if isinstance(vectors, Tensor):
        if vectors.dim() < 2:
            raise ValueError(f"pass n >= 2 vectors as a sequence or as the rows of a 2-D tensor; got a tensor of "
                             f"shape {tuple(vectors.shape)}")
        rows = list(vectors.reshape(vectors.shape[0], -1))
    else:
        rows = list(vectors)
        if not all(isinstance(v, Tensor) for v in rows):
            raise TypeError("alignment_score takes tensors (a sequence, a dict or the rows of a 2-D tensor)")
        shapes = {tuple(v.shape) for v in rows}
        if len(shapes) > 1:
            raise ValueError(f"vectors must all have the same shape, got {sorted(shapes)}")
        rows = [v.reshape(-1) for v in rows]
    if len(rows) < 2:
        raise ValueError(f"alignment needs at least 2 vectors, got {len(rows)}")
    V = torch.stack(rows)
    norms = torch.linalg.vector_norm(V, dim=1)
    bad = [i for i, n in enumerate(norms.tolist()) if not (n > 0 and math.isfinite(n))]
    if bad:
        raise ValueError(f"vector(s) {bad} have zero or non-finite norm, so their direction (and the alignment) is "
                         f"undefined; drop those terms (e.g. a loss term that is identically zero)")
    return cast(Tensor, V / norms[:, None])


def alignment_score(vectors: Sequence[Tensor] | Mapping[str, Tensor] | Tensor) -> float:
    r""":math:`\mathcal{A} = 2\|\frac1n\sum_i v_i/\|v_i\|\|^2 - 1` of ``n >= 2`` non-zero tensors of one shape
    (a sequence, a dict or the rows of a 2-D tensor); ``ValueError`` otherwise.
    """
    U = _stack(vectors)
    return float(2.0 * torch.linalg.vector_norm(U.mean(0)) ** 2 - 1.0)


def cosine(a: Tensor, b: Tensor) -> float:
    r""":math:`a\cdot b / (\|a\|\|b\|)` of two non-zero tensors of one shape (flattened)."""
    U = _stack([a, b])
    return float(U[0] @ U[1])


def term_gradients(objective: Any, theta: Tensor) -> dict[str, Tensor]:
    r""":math:`\{\text{name}: \nabla_\theta L_\text{name}(\theta)\}` by one :func:`torch.func.jacrev` of the terms.

    ``objective``: a terms function, a scalar loss (one term ``"loss"``) or a model with ``.terms``.
    """
    terms_fn = as_terms(objective.terms if hasattr(objective, "terms") else objective)
    th = theta.detach()
    jac = torch.func.jacrev(terms_fn)(th)
    return {k: v.detach().reshape(th.shape) for k, v in jac.items()}


def intra_step_alignment(objective: Any, theta: Tensor) -> float:
    r""":math:`\mathcal{A}(\nabla L_1(\theta), \dots, \nabla L_n(\theta))`."""
    return alignment_score(term_gradients(objective, theta))


class IntraStep:
    """Logger for ``pk.train(..., log={"intra": IntraStep(pinn.terms)})``: intra-step alignment at each log point."""

    def __init__(self, terms_fn: TermsFn):
        self.terms_fn = terms_fn

    def __call__(self, theta: Tensor, grad: Tensor | None = None) -> float:
        """The intra-step alignment at ``theta``."""
        return intra_step_alignment(self.terms_fn, theta)


class InterStep:
    r"""Logger for ``pk.train(..., log={"inter": InterStep()})``: :math:`\cos(g_{k'}, g_k)` of the total gradient
    at this and the previous *logged* step (lag ``log_every``; NaN at the first call). One instance per run.
    """

    def __init__(self) -> None:
        self.previous: Tensor | None = None

    def reset(self) -> None:
        """Forget the previous gradient (start a new run)."""
        self.previous = None

    def __call__(self, theta: Tensor, grad: Tensor) -> float:
        """The cosine of ``grad`` with the previous call's gradient."""
        prev, self.previous = self.previous, grad.detach().clone()
        return math.nan if prev is None else cosine(prev, grad)


def optimizer_directions(stepper: Any, vectors: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    r"""``{name: P v}`` with the optimizer's current preconditioner :math:`P` (its ``precondition(v)``: Adam's
    :math:`v / (\sqrt{\hat v} + \epsilon)`, SOAP's rotated version). :math:`P` is linear, so
    :math:`\sum_i P g_i = P \nabla L`. ``None`` before the optimizer has a second moment; ``TypeError`` for a
    stepper without ``precondition``.
    """
    if not callable(getattr(stepper, "precondition", None)):
        raise TypeError(f"optimizer_directions needs a stepper with precondition(v) (Adam and SOAP steppers), got "
                        f"{type(stepper).__name__}")
    out = {k: stepper.precondition(v) for k, v in vectors.items()}
    return None if any(d is None for d in out.values()) else out


@dataclass(frozen=True)
class PreconditionedAlignment:
    r"""Alignment of the term gradients :math:`g_i` (``raw``) and of :math:`(M + \delta I)^{-1} g_i` for Newton
    (:math:`M = H`), saddle-free Newton (:math:`M = |H|`) and Gauss–Newton (:math:`M = 2J^\top J`), one score per
    relative damping :math:`\delta / \max_j|\lambda_j(M)|`; ``cancel`` is :math:`\|\sum_i g_i\| / \sum_i \|g_i\|`.
    """

    raw: float
    dampings: tuple[float, ...]
    newton: tuple[float, ...]
    saddle_free: tuple[float, ...]
    gauss_newton: tuple[float, ...]
    terms: tuple[str, ...]
    cancel: float = math.nan


def precondition(M: Tensor, vectors: Mapping[str, Tensor], damping: float = 1e-6,
                 absolute: bool = False) -> dict[str, Tensor]:
    r""":math:`(M + \delta I)^{-1} v` for each vector, :math:`\delta = \text{damping}\cdot\max_j |\lambda_j(M)| > 0`,
    for symmetric ``M`` (through ``eigh``); ``absolute``: :math:`|M|` instead (saddle-free Newton).
    """
    return _precondition_eig(torch.linalg.eigh(0.5 * (M + M.T)), vectors, damping, absolute)


def _precondition_eig(eig: tuple[Tensor, Tensor], vectors: Mapping[str, Tensor], damping: float,
                      absolute: bool = False) -> dict[str, Tensor]:
    if not damping > 0:
        raise ValueError(f"damping must be positive (the PINN Hessian is singular or indefinite), got {damping}")
    lam, V = eig
    shifted = (lam.abs() if absolute else lam) + damping * lam.abs().max()
    return {k: V @ ((V.T @ v) / shifted) for k, v in vectors.items()}


def preconditioned_alignment(terms_fn: Loss, residual_fn: Callable[[Tensor], Tensor], theta: Tensor,
                             dampings: Sequence[float] = (1e-6,)) -> PreconditionedAlignment:
    """:class:`PreconditionedAlignment` at ``theta`` from the dense Hessian and Gauss–Newton matrix (small
    networks only), e.g. ``preconditioned_alignment(pinn.terms, pinn.residual_vector, theta)``.
    """
    from .curvature import gauss_newton, hessian

    g = term_gradients(terms_fn, theta)
    H = hessian(total(terms_fn), theta)
    G = gauss_newton(residual_fn, theta)
    eH, eG = torch.linalg.eigh(H), torch.linalg.eigh(0.5 * (G + G.T))
    ds = tuple(float(d) for d in dampings)
    cancel = float(torch.linalg.vector_norm(sum(g.values())) / sum(torch.linalg.vector_norm(v) for v in g.values()))
    return PreconditionedAlignment(
        raw=alignment_score(g), dampings=ds,
        newton=tuple(alignment_score(_precondition_eig(eH, g, d)) for d in ds),
        saddle_free=tuple(alignment_score(_precondition_eig(eH, g, d, absolute=True)) for d in ds),
        gauss_newton=tuple(alignment_score(_precondition_eig(eG, g, d)) for d in ds), terms=tuple(g),
        cancel=cancel)
