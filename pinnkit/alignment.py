r"""Gradient alignment between loss terms (Wang, Bhartari, Li, Perdikaris 2025).

The **alignment score** of :math:`n \ge 2` non-zero vectors is

.. math:: \mathcal{A}(v_1, \dots, v_n) = 2\,\Big\|\frac1n \sum_{i=1}^n \frac{v_i}{\|v_i\|}\Big\|^2 - 1
          \;\in\; [-1, 1],

the cosine similarity when :math:`n = 2`. It is 1 when all vectors point the same way, and -1 only
for two opposite vectors (for :math:`n` unit vectors the mean has norm at least 0, so :math:`\mathcal{A} \ge -1`).

- **Intra-step alignment** at a step: :math:`\mathcal{A}(\nabla L_1, \dots, \nabla L_n)`, the per-term
  gradients (e.g. residual, initial, boundary) at the same :math:`\theta`: do the terms agree on where to go?
- **Inter-step alignment** at a logged step :math:`k`: :math:`\cos(\nabla L(\theta_{k'}), \nabla L(\theta_k))`,
  the *total*-loss gradient at this logged step and at the previous logged step :math:`k'` (with
  ``log_every=1``, consecutive optimizer steps). We use the total gradient because it is what every optimizer
  is fed and what changes from one step to the next: a negative score means the last step overshot and the
  gradient flipped (the zig-zag of a first-order method across a narrow valley, where improving one term
  undoes the progress of the previous step on another); a well-preconditioned method keeps it near 1.

>>> cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))        # cos 45 degrees
0.7071067690849304
>>> alignment_score([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])])
-1.0
>>> round(alignment_score(torch.eye(3)), 6)                            # three orthogonal vectors: 2/3 - 1
-0.333333
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

TermsFn = Callable[[Tensor], dict[str, Tensor]]


# --- the score ---------------------------------------------------------------------------------------
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
    return V / norms[:, None]


def alignment_score(vectors: Sequence[Tensor] | Mapping[str, Tensor] | Tensor) -> float:
    r""":math:`\mathcal{A} = 2\|\frac1n\sum_i v_i/\|v_i\|\|^2 - 1` of ``n >= 2`` non-zero vectors of one shape
    (a sequence, a dict such as :func:`term_gradients`' output, or the rows of a 2-D tensor)."""
    U = _stack(vectors)
    return float(2.0 * torch.linalg.vector_norm(U.mean(0)) ** 2 - 1.0)


def cosine(a: Tensor, b: Tensor) -> float:
    r"""Cosine similarity :math:`a\cdot b / (\|a\|\|b\|)` of two non-zero tensors of the same shape."""
    U = _stack([a, b])
    return float(U[0] @ U[1])


# --- per-term gradients ----------------------------------------------------------------------------
def term_gradients(terms_fn: TermsFn, theta: Tensor) -> dict[str, Tensor]:
    r"""Per-term gradients :math:`\{\text{name}: \nabla_\theta L_\text{name}(\theta)\}` at one ``theta``.

    One :func:`torch.func.jacrev` of the whole term dict (its rows are vmapped vector-Jacobian products,
    sharing one forward pass).
    """
    th = theta.detach()
    jac = torch.func.jacrev(terms_fn)(th)
    if not isinstance(jac, dict):
        raise TypeError("terms_fn must return a dict of scalar loss terms (e.g. pinn.terms)")
    return {k: v.detach().reshape(th.shape) for k, v in jac.items()}


def intra_step_alignment(terms_fn: TermsFn, theta: Tensor) -> float:
    """Alignment score of the per-term gradients at ``theta`` (see the module docstring)."""
    return alignment_score(term_gradients(terms_fn, theta))


class IntraStep:
    """Logger for ``pk.train(..., log={"intra": IntraStep(pinn.terms)})``: intra-step alignment at each logged step."""

    def __init__(self, terms_fn: TermsFn):
        self.terms_fn = terms_fn

    def __call__(self, theta: Tensor, grad: Tensor | None = None) -> float:
        return intra_step_alignment(self.terms_fn, theta)


class InterStep:
    r"""Logger for ``pk.train(..., log={"inter": InterStep()})``: :math:`\cos(g_{k'}, g_k)` of the total-loss
    gradient (the ``grad`` that :func:`pinnkit.train` passes) at this and the previous logged step.

    The first call returns NaN (no previous step). Use a fresh instance per run (or :meth:`reset`); with
    ``log_every=1`` the score compares consecutive optimizer steps.
    """

    def __init__(self) -> None:
        self.previous: Tensor | None = None

    def reset(self) -> None:
        self.previous = None

    def __call__(self, theta: Tensor, grad: Tensor) -> float:
        prev, self.previous = self.previous, grad.detach().clone()
        return math.nan if prev is None else cosine(prev, grad)


# --- preconditioned term gradients -------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    """A training run in four numbers: final loss and L2RE, and the mean intra- and inter-step alignment over the
    late part of training (the ``log`` entries ``"intra"`` / ``"inter"``), where the start-up transient is over."""

    loss: float
    l2re: float
    intra: float
    inter: float

    def __str__(self) -> str:
        return (f"loss {self.loss:.1e}  L2RE {self.l2re:.1e}  intra-step A (2nd half) {self.intra:+.2f}  "
                f"inter-step A (2nd half) {self.inter:+.2f}")


def summarize(run, fraction: float = 0.5) -> RunSummary:
    """:class:`RunSummary` of a :func:`pinnkit.train` result logged with ``IntraStep`` and ``InterStep``; the
    alignments are averaged over the last ``fraction`` of the logged entries."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h = run.history
    missing = {"intra", "inter"} - set(h.extra)
    if missing:
        raise ValueError(f"the run has no {sorted(missing)} logs; train with log={{'intra': IntraStep(terms), "
                         f"'inter': InterStep()}}")
    start = min(int(len(h.step) * (1 - fraction)), len(h.step) - 1)
    late = lambda xs: sum(xs[start:]) / len(xs[start:])
    return RunSummary(loss=run.loss, l2re=run.l2re, intra=late(h.extra["intra"]), inter=late(h.extra["inter"]))


@dataclass(frozen=True)
class PreconditionedAlignment:
    r"""Alignment of the term gradients :math:`g_i` (``raw``) and of :math:`(M + \delta I)^{-1} g_i` for the
    Newton (:math:`M = H`, the Hessian of the total loss) and Gauss–Newton (:math:`M = 2J^\top J`) matrices,
    one score per relative damping :math:`\delta / \max_j|\lambda_j(M)|` in ``dampings``."""

    raw: float
    dampings: tuple[float, ...]
    newton: tuple[float, ...]
    gauss_newton: tuple[float, ...]
    terms: tuple[str, ...]


def precondition(M: Tensor, vectors: Mapping[str, Tensor], damping: float = 1e-6) -> dict[str, Tensor]:
    r""":math:`(M + \delta I)^{-1} v` for each vector, with symmetric ``M`` and
    :math:`\delta = \text{damping}\cdot\max_j |\lambda_j(M)|` (solved through ``eigh``)."""
    return _precondition_eig(torch.linalg.eigh(0.5 * (M + M.T)), vectors, damping)


def _precondition_eig(eig: tuple[Tensor, Tensor], vectors: Mapping[str, Tensor], damping: float) -> dict[str, Tensor]:
    if not damping > 0:
        raise ValueError(f"damping must be positive (the PINN Hessian is singular or indefinite), got {damping}")
    lam, V = eig
    shifted = lam + damping * lam.abs().max()
    return {k: V @ ((V.T @ v) / shifted) for k, v in vectors.items()}


def preconditioned_alignment(terms_fn: TermsFn, residual_fn: Callable[[Tensor], Tensor], theta: Tensor,
                             dampings: Sequence[float] = (1e-6,)) -> PreconditionedAlignment:
    r"""Intra-step alignment of the raw, Newton- and Gauss–Newton-preconditioned term gradients at ``theta``.

    For a PINN: ``preconditioned_alignment(pinn.terms, pinn.residual_vector, theta)``. Dense matrices
    (:func:`pinnkit.curvature.hessian`, :func:`pinnkit.curvature.gauss_newton`, one ``eigh`` each): small
    networks only. Note :math:`\sum_i M^{-1} g_i = M^{-1} \nabla L`: where the total gradient vanishes the
    preconditioned term gradients still cancel, so no preconditioner aligns them at a stationary point.
    """
    from .curvature import gauss_newton, hessian

    g = term_gradients(terms_fn, theta)
    H = hessian(lambda th: sum(terms_fn(th).values()), theta)
    G = gauss_newton(residual_fn, theta)
    eH, eG = torch.linalg.eigh(H), torch.linalg.eigh(0.5 * (G + G.T))
    ds = tuple(float(d) for d in dampings)
    return PreconditionedAlignment(
        raw=alignment_score(g), dampings=ds,
        newton=tuple(alignment_score(_precondition_eig(eH, g, d)) for d in ds),
        gauss_newton=tuple(alignment_score(_precondition_eig(eG, g, d)) for d in ds), terms=tuple(g))


# --- geometry and figures ----------------------------------------------------------------------------
def fan(n: int, spread: float, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""``n`` unit vectors in the plane at equally spaced angles from 0 to ``spread`` radians (rows of an
    ``n x 2`` tensor). With ``spread = 2\pi (n-1)/n`` they are spread evenly around the circle and cancel."""
    if n < 2:
        raise ValueError(f"a fan needs n >= 2 vectors, got {n}")
    ang = torch.linspace(0.0, float(spread), n, dtype=dtype)
    return torch.stack([ang.cos(), ang.sin()], dim=1)


def plot_score_geometry(ns: Sequence[int] = (2, 3, 5), points: int = 181):
    """Alignment score of a fan of ``n`` unit vectors against its spread (first to last vector), for each ``n``;
    the spread runs up to an even spacing around the circle, where the vectors cancel. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for n in ns:
        top = 2 * math.pi * (n - 1) / n
        phis = torch.linspace(0.0, top, points, dtype=torch.float64)
        ax.plot(torch.rad2deg(phis), [alignment_score(fan(n, float(p))) for p in phis], label=f"n = {n}")
    phis = torch.linspace(0.0, math.pi, points, dtype=torch.float64)
    ax.plot(torch.rad2deg(phis), phis.cos(), "k:", label="cos(spread)")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set(xlabel="spread of the fan of unit vectors (degrees)", ylabel="alignment score A",
           title="alignment score of n evenly fanned unit vectors")
    ax.legend()
    return fig


def plot_vectors(panels: Mapping[str, Mapping[str, Tensor]], title: str = ""):
    """2-D vectors as arrows from the origin (normalised to unit length), one panel per entry, the alignment
    score in each panel's title. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), layout="constrained", squeeze=False)
    for ax, (name, vecs) in zip(axes[0], panels.items()):
        for i, (label, v) in enumerate(vecs.items()):
            u = (v / torch.linalg.vector_norm(v)).detach().cpu().double()
            ax.annotate("", xy=(float(u[0]), float(u[1])), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=f"C{i}", lw=2))
            ax.plot([], [], color=f"C{i}", lw=2, label=label)
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", xlabel=r"$\theta_1$ direction",
               ylabel=r"$\theta_2$ direction", title=f"{name}\nA = {alignment_score(vecs):.2f}")
        ax.legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_alignment_history(runs: Mapping[str, object], intra: str = "intra", inter: str = "inter", title: str = ""):
    """Loss, L2RE, intra-step and inter-step alignment against optimizer step for several ``TrainResult`` runs
    (logged with ``log={intra: IntraStep(...), inter: InterStep()}``). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3), layout="constrained")
    for i, (name, run) in enumerate(runs.items()):
        h = run.history
        axes[0].semilogy(h.step, h.loss, color=f"C{i}", label=name)
        if h.l2re:
            axes[1].semilogy(h.step, h.l2re, color=f"C{i}", label=name)
        axes[2].plot(h.step, h.extra[intra], color=f"C{i}", label=name)
        axes[3].plot(h.step, h.extra[inter], color=f"C{i}", label=name, lw=0.8)
    for ax, ylabel in zip(axes, ["loss", "L2RE", "intra-step alignment", "inter-step alignment"]):
        ax.set(xlabel="optimizer step", ylabel=ylabel)
        ax.legend(fontsize=8)
    for ax in axes[2:]:
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="0.7", lw=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_preconditioned(results: Mapping[str, PreconditionedAlignment], title: str = ""):
    """Alignment of Newton- and Gauss–Newton-preconditioned term gradients against the relative damping, one
    panel per point (the raw score dashed). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.3), layout="constrained",
                             squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        ax.semilogx(r.dampings, r.newton, "o-", label=r"Newton $(H+\delta I)^{-1} g_i$")
        ax.semilogx(r.dampings, r.gauss_newton, "s-", label=r"Gauss–Newton $(G+\delta I)^{-1} g_i$")
        ax.axhline(r.raw, color="k", ls="--", label=r"raw $g_i$")
        ax.set(xlabel=r"relative damping $\delta / \max|\lambda|$", ylabel="alignment score", title=name,
               ylim=(-1.05, 1.05))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
