r"""Loss-landscape slices: the loss on a line or a plane through parameter space.

.. math:: \ell(\alpha) = L(\theta + \alpha\delta), \qquad \ell(\alpha, \beta) = L(\theta + \alpha\delta + \beta\eta),

on a grid, in ``vmap`` chunks. Directions: :func:`random_directions` (seeded, filter-normalized as Li et al. 2018,
or by layer, globally, or not at all) and :func:`hessian_directions` (unit Hessian eigenvectors).

On a quadratic :math:`L = \tfrac12 (\theta - \theta^*)^\top A (\theta - \theta^*)` the slice through
:math:`\theta^*` along two unit eigenvectors is exactly the paraboloid :math:`\tfrac12(\lambda_1\alpha^2 + \lambda_2\beta^2)`:

>>> A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
>>> f = lambda th: 0.5 * th @ A @ th
>>> d = hessian_directions(f, torch.zeros(3, dtype=torch.float64), k=2)
>>> d.eigenvalues, tuple(d.vectors.shape)          # eigenvectors as columns (P, k), like torch.linalg.eigh
((9.0, 4.0), (3, 2))
>>> s = slice_2d(f, torch.zeros(3, dtype=torch.float64), d, span=1.0, n=3)
>>> s.loss[2, 2].item()                      # alpha = beta = 1: (9 + 4) / 2
6.5
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, cast

import torch
from torch import Tensor

from . import curvature
from .objective import Loss, total

NORMALIZATIONS = ("filter", "layer", "global", "none")
WHICH = ("largest", "smallest", "both")

__all__ = ["NORMALIZATIONS", "WHICH", "Directions", "from_eigenpairs", "Slice1D", "Slice2D", "normalize",
           "random_directions", "hessian_directions", "Evaluation", "evaluate", "slice_1d", "slice_2d",
           "plane_curvature", "slice_hessian"]


@dataclass(frozen=True, eq=False)
class Directions:
    """``k`` directions as the columns of ``vectors`` ``(P, k)`` (``d[i]`` and iteration give columns); ``kind``
    (``"random"``, ``"hessian"``, ``"custom"``), ``normalization`` (``"unit"`` for eigenvectors) and the
    ``eigenvalues`` of eigenvectors.
    """

    vectors: Tensor
    kind: str
    normalization: str
    labels: tuple[str, ...]
    eigenvalues: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[1] != len(self.labels):
            raise ValueError(f"vectors must be columns (P, k) with one label per column; got shape "
                             f"{tuple(self.vectors.shape)} and {len(self.labels)} labels")

    def __len__(self) -> int:
        return self.vectors.shape[1]

    def __getitem__(self, i: int) -> Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"direction {i} out of range for {len(self)} directions")
        return self.vectors[:, i]

    def __iter__(self) -> Iterator[Tensor]:
        return (self.vectors[:, i] for i in range(len(self)))

    def to(self, like: Tensor) -> "Directions":
        """The same directions with ``like``'s dtype and device."""
        return Directions(self.vectors.to(like.device, like.dtype), self.kind, self.normalization, self.labels,
                          self.eigenvalues)


def _blocks(blocks: Any, P: int) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(start, stop, shape)`` of each parameter block; ``None`` means one 1-D block of all of theta."""
    if blocks is None:
        return [(0, P, (P,))]
    blocks = getattr(blocks, "blocks", blocks)          # a PINN is accepted for its .blocks
    out, pos = [], 0
    for b in blocks:
        start, stop, shape = int(b.start), int(b.stop), tuple(b.shape)
        if start != pos or stop - start != math.prod(shape):
            raise ValueError(f"blocks must tile theta contiguously (pass pinn.blocks); block {b} starts at {start}, "
                             f"expected {pos}")
        out.append((start, stop, shape))
        pos = stop
    if pos != P:
        raise ValueError(f"blocks cover {pos} parameters but theta has {P}; pass the blocks of this network "
                         "(pinn.blocks)")
    return out


def normalize(d: Tensor, theta: Tensor, blocks: Any = None, how: str = "filter") -> Tensor:
    r"""Rescale direction ``d`` to the scale of ``theta`` (a new tensor).

    ``"filter"`` (Li et al. 2018): each row :math:`d_{b,i}` of a weight block, and each bias vector as a whole,
    becomes :math:`d_{b,i}\,\|\theta_{b,i}\| / \|d_{b,i}\|`; ``"layer"``: :math:`\|d_b\| = \|\theta_b\|` per block;
    ``"global"``: :math:`\|d\| = \|\theta\|`; ``"none"``: unchanged. An all-zero filter of ``theta`` is given the
    norm :math:`\|\theta\|\sqrt{n_{b,i}/P}` (else it would drop out of the slice). ``blocks``: ``pinn.blocks`` (or
    the PINN); ``None`` treats ``theta`` as one block.

    >>> theta = torch.tensor([3.0, 4.0, 0.0, 1.0]); d = torch.tensor([1.0, 0.0, 1.0, 1.0])
    >>> from types import SimpleNamespace as B
    >>> blocks = [B(start=0, stop=4, shape=(2, 2))]      # one 2x2 weight: rows (3, 4) and (0, 1)
    >>> normalize(d, theta, blocks, "filter")
    tensor([5.0000, 0.0000, 0.7071, 0.7071])
    """
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {how!r}; valid: {', '.join(NORMALIZATIONS)}")
    if d.shape != theta.shape or theta.ndim != 1:
        raise ValueError(f"d and theta must be flat vectors of the same shape, got {tuple(d.shape)} and "
                         f"{tuple(theta.shape)}")
    d, theta = d.detach(), theta.detach()
    if how == "none":
        return d.clone()
    P = theta.numel()
    rms = torch.linalg.vector_norm(theta) / math.sqrt(P)
    if how == "global":
        return cast(Tensor, d * (torch.linalg.vector_norm(theta) / torch.linalg.vector_norm(d)))
    parts = []
    for start, stop, shape in _blocks(blocks, P):
        db, tb = d[start:stop], theta[start:stop]
        rows = shape[0] if (how == "filter" and len(shape) >= 2) else 1
        db, tb = db.reshape(rows, -1), tb.reshape(rows, -1)
        target = torch.linalg.vector_norm(tb, dim=1, keepdim=True)
        fallback = rms * math.sqrt(tb.shape[1])
        target = torch.where(target > 0, target, fallback)
        parts.append((db * target / torch.linalg.vector_norm(db, dim=1, keepdim=True)).reshape(-1))
    return torch.cat(parts)


def random_directions(theta: Tensor, k: int = 2, *, blocks: Any = None, normalization: str = "filter",
                      seed: int = 0) -> Directions:
    """``k`` seeded Gaussian directions (drawn on the CPU in float64: the same on every device), :func:`normalize`-d."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(k, theta.numel(), generator=gen, dtype=torch.float64).to(theta.device, theta.dtype)
    vecs = torch.stack([normalize(r, theta, blocks, normalization) for r in raw])
    names = "δη" if k == 2 else [f"d{i + 1}" for i in range(k)]
    labels = tuple(f"{names[i]} (random, {normalization} norm.)" for i in range(k))
    return Directions(vecs.T.contiguous(), "random", normalization, labels)


def hessian_directions(f: Loss, theta: Tensor, k: int = 2, *, which: str = "largest",
                       method: str = "auto") -> Directions:
    r"""Unit eigenvectors of :math:`\nabla^2 L(\theta)` for the ``k`` largest eigenvalues (descending), the ``k``
    most negative (``which="smallest"``, ascending) or ``"both"``; ``method``: ``"dense"`` (``eigh``),
    ``"lanczos"`` or ``"auto"`` (dense up to :data:`pinnkit.curvature.DENSE_LIMIT` parameters).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}")
    theta = theta.detach()
    if method == "auto":
        method = "dense" if theta.numel() <= curvature.DENSE_LIMIT else "lanczos"
    if method == "dense":
        H = curvature.hessian(total(f), theta).to(torch.float64)
        values, vectors = torch.linalg.eigh(H)                 # ascending, columns
        return from_eigenpairs(values, vectors, k, which=which).to(theta)
    if which == "both":
        top = hessian_directions(f, theta, k, which="largest", method="lanczos")
        bottom = hessian_directions(f, theta, k, which="smallest", method="lanczos")
        return Directions(torch.cat([top.vectors, bottom.vectors], dim=1), "hessian", "unit",
                          top.labels + bottom.labels, (top.eigenvalues or ()) + (bottom.eigenvalues or ()))
    extreme = curvature.top_eigenpairs if which == "largest" else curvature.bottom_eigenpairs
    eig = extreme(total(f), theta, k)
    vals = tuple(float(v) for v in eig.values)
    first = 1 if which == "largest" else theta.numel()
    labels = tuple(f"v{first + i if which == 'largest' else first - i} (λ={v:.2g})" for i, v in enumerate(vals))
    return Directions(eig.vectors.to(theta.device, theta.dtype).contiguous(), "hessian", "unit", labels, vals)


def from_eigenpairs(values: Tensor, vectors: Tensor, k: int = 2, *, which: str = "largest") -> Directions:
    """:func:`hessian_directions` from the output of ``torch.linalg.eigh(H)`` (one ``eigh`` for spectrum and slices)."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    P = values.numel()
    if values.ndim != 1 or vectors.shape != (P, P):
        raise ValueError(f"pass the full output of torch.linalg.eigh(H): values ({P},) and vectors ({P}, {P}); got "
                         f"{tuple(values.shape)} and {tuple(vectors.shape)}")
    if not isinstance(k, int) or not 1 <= k <= P:
        raise ValueError(f"k must be an integer in [1, {P}], got {k!r}")
    top, bottom = list(range(P - 1, P - 1 - k, -1)), list(range(k))
    idx = {"largest": top, "smallest": bottom, "both": top + bottom}[which]
    vals = tuple(float(values[i]) for i in idx)
    labels = tuple(f"v{P - i} (λ={v:.2g})" for i, v in zip(idx, vals))     # v1 = largest eigenvalue
    return Directions(vectors[:, idx].contiguous(), "hessian", "unit", labels, vals)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Losses at ``n`` points (CPU): ``loss`` ``(n,)``, the sum of ``terms`` ``{name: (n,)}`` (empty for a scalar loss)."""

    loss: Tensor
    terms: dict[str, Tensor]


def evaluate(f: Loss, theta: Tensor, coeffs: Tensor, directions: Tensor, *, chunk: int = 64,
             batched: bool = True) -> Evaluation:
    r"""The :class:`Evaluation` of ``f`` at :math:`\theta + \sum_j c_{ij} d_j` for every row ``c_i`` of ``coeffs``
    ``(n, k)``, ``directions`` ``(P, k)`` as columns; ``chunk`` points per ``vmap`` call (``batched=False``: a loop).
    """
    if coeffs.ndim != 2 or directions.ndim != 2 or coeffs.shape[1] != directions.shape[1]:
        raise ValueError(f"coeffs (n, k) and directions (P, k) (columns) do not match: {tuple(coeffs.shape)}, "
                         f"{tuple(directions.shape)}")
    if directions.shape[0] != theta.numel():
        raise ValueError(f"directions have {directions.shape[0]} entries but theta has {theta.numel()}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    theta, D = theta.detach(), directions.detach().to(theta.device, theta.dtype)
    coeffs = coeffs.to(theta.device, theta.dtype)

    def terms(th: Tensor) -> dict[str, Tensor]:
        out = f(th)
        return dict(out) if isinstance(out, Mapping) else {"": out}

    fn = torch.func.vmap(terms) if batched else None
    pieces: list[dict[str, Tensor]] = []
    with torch.no_grad():
        for i in range(0, coeffs.shape[0], chunk):
            thetas = theta + coeffs[i:i + chunk] @ D.T
            if batched:
                assert fn is not None
                try:
                    out = fn(thetas)
                except RuntimeError as err:
                    raise RuntimeError(f"the loss cannot be vmapped over theta ({err}); make it a pure torch function "
                                       "of theta (no .item(), no in-place writes into theta) or pass batched=False") from err
                pieces.append({k: v.reshape(-1) for k, v in out.items()})
            else:
                rows = [terms(th) for th in thetas]
                pieces.append({k: torch.stack([r[k].reshape(()) for r in rows]) for k in rows[0]})
    out = {k: torch.cat([p[k] for p in pieces]).detach().cpu() for k in pieces[0]}
    loss = out[""] if "" in out else torch.stack(list(out.values())).sum(0)   # term values summed point by point
    return Evaluation(loss, {} if "" in out else out)


@dataclass(frozen=True, eq=False)
class Slice1D:
    r""":math:`\ell(\alpha) = L(\theta + \alpha\delta)`: ``loss[i]`` at ``alphas[i]``, ``terms`` per term, ``norm``
    :math:`= \|\delta\|`, the ``eigenvalue`` of an eigenvector :math:`\delta`, ``marks``: named alphas.
    """

    alphas: Tensor
    loss: Tensor
    terms: dict[str, Tensor]
    label: str
    norm: float
    eigenvalue: float | None = None
    marks: dict[str, float] = field(default_factory=dict)

    def curvature(self) -> float:
        r""":math:`\delta^\top H \delta / \|\delta\|^2` by a central difference at :math:`\alpha = 0` (an interior point)."""
        i = _zero(self.alphas)
        h = float(self.alphas[i + 1] - self.alphas[i])
        return float(self.loss[i + 1] - 2 * self.loss[i] + self.loss[i - 1]) / h ** 2 / self.norm ** 2

    def without_slope(self) -> "Slice1D":
        r""":math:`\ell(\alpha) - \ell(0) - \alpha\,\ell'(0)` (central-difference slope at :math:`\alpha = 0`; each term
        likewise): the curvature a large gradient hides.

        >>> s = Slice1D(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5) * 3 + torch.linspace(-1, 1, 5) ** 2, {}, "α", 1.0)
        >>> s.without_slope().loss
        tensor([1.0000, 0.2500, 0.0000, 0.2500, 1.0000])
        """
        i = _zero(self.alphas)
        h = float(self.alphas[i + 1] - self.alphas[i - 1])

        def detrend(v: Tensor) -> Tensor:
            return v - v[i] - self.alphas.to(v.dtype) * (v[i + 1] - v[i - 1]) / h

        return Slice1D(self.alphas, detrend(self.loss), {k: detrend(v) for k, v in self.terms.items()},
                       self.label, self.norm, self.eigenvalue, dict(self.marks))

    def reweighted(self, weights: Mapping[str, float]) -> "Slice1D":
        r"""The line of :math:`\sum_k w_k \ell_k(\alpha)` (missing terms keep weight 1; the terms are rescaled too).

        >>> s = Slice1D(torch.zeros(2), torch.tensor([3.0, 5.0]), {"a": torch.tensor([1.0, 1.0]),
        ...             "b": torch.tensor([2.0, 4.0])}, "α", 1.0)
        >>> s.reweighted({"b": 0.5}).loss
        tensor([2., 3.])
        """
        unknown = set(weights) - set(self.terms)
        if unknown:
            raise ValueError(f"unknown terms {sorted(unknown)}; valid: {', '.join(self.terms) or '(none)'}")
        terms = {k: v * float(weights.get(k, 1.0)) for k, v in self.terms.items()}
        return Slice1D(self.alphas, torch.stack(list(terms.values())).sum(0), terms, self.label, self.norm,
                       self.eigenvalue, dict(self.marks))

    def at(self, alpha: float) -> float:
        """The loss at the grid point nearest to ``alpha``."""
        return float(self.loss[int(torch.argmin((self.alphas - alpha).abs()))])

    def barrier(self, lo: float = 0.0, hi: float = 1.0, term: str | None = None) -> float:
        r"""The largest climb :math:`\max_{\alpha_i \le \alpha_j} (\ell(\alpha_j) - \ell(\alpha_i))` over grid points in
        ``[lo, hi]`` (of one ``term`` if given); 0 when the loss never increases.

        >>> s = Slice1D(torch.linspace(0, 1, 5), torch.tensor([4.0, 2.0, 3.0, 1.0, 0.0]), {}, "α", 1.0)
        >>> s.barrier()
        1.0
        """
        sel = (self.alphas >= lo - 1e-12) & (self.alphas <= hi + 1e-12)
        if int(sel.sum()) < 2:
            raise ValueError(f"fewer than two grid points in [{lo}, {hi}]; widen the range or raise n")
        if term is not None and term not in self.terms:
            raise ValueError(f"unknown term {term!r}; valid: {', '.join(self.terms) or '(none: scalar loss)'}")
        ell = (self.terms[term] if term else self.loss)[sel].to(torch.float64)
        return float((ell - torch.cummin(ell, dim=0).values).max())


@dataclass(frozen=True, eq=False)
class Slice2D:
    r"""``loss[i, j]`` :math:`= L(\theta + \alpha_i\delta + \beta_j\eta)`, ``terms`` per term, the two ``directions``."""

    alphas: Tensor
    betas: Tensor
    loss: Tensor
    terms: dict[str, Tensor]
    directions: Directions

    @property
    def center(self) -> float:
        """The loss at the grid point nearest to :math:`\\alpha = \\beta = 0`."""
        return float(self.loss[int(torch.argmin(self.alphas.abs())), int(torch.argmin(self.betas.abs()))])

    def curvature(self) -> Tensor:
        r""":math:`D^\top H D`, :math:`D = [\delta, \eta]`, by central differences at the centre (an interior point)."""
        i, j = _zero(self.alphas), _zero(self.betas)
        L = self.loss.to(torch.float64)
        ha, hb = float(self.alphas[1] - self.alphas[0]), float(self.betas[1] - self.betas[0])
        faa = (L[i + 1, j] - 2 * L[i, j] + L[i - 1, j]) / ha ** 2
        fbb = (L[i, j + 1] - 2 * L[i, j] + L[i, j - 1]) / hb ** 2
        fab = (L[i + 1, j + 1] - L[i + 1, j - 1] - L[i - 1, j + 1] + L[i - 1, j - 1]) / (4 * ha * hb)
        return torch.stack([torch.stack([faa, fab]), torch.stack([fab, fbb])])


def _zero(grid: Tensor) -> int:
    i = int(torch.argmin(grid.abs()))
    if abs(float(grid[i])) > 1e-12 or not 0 < i < len(grid) - 1:
        raise ValueError("the grid must contain 0 as an interior point: use an odd n and a symmetric span")
    return i


def _grid(span: float | tuple[float, float], n: int) -> Tensor:
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    lo, hi = (-float(span), float(span)) if not isinstance(span, (tuple, list)) else map(float, span)
    if not hi > lo:
        raise ValueError(f"span must be positive (or an increasing pair), got {span!r}")
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def slice_1d(f: Loss, theta: Tensor, direction: Tensor | Directions, *, span: float | tuple[float, float] = 1.0,
             n: int = 41, chunk: int = 64, batched: bool = True, label: str | None = None) -> Slice1D:
    r""":math:`L(\theta + \alpha\delta)` for ``n`` values of :math:`\alpha` in ``[-span, span]`` (or ``span=(lo, hi)``);
    ``direction``: a ``(P,)`` tensor or a :class:`Directions` (its first).
    """
    eig = None
    if isinstance(direction, Directions):
        eig = direction.eigenvalues[0] if direction.eigenvalues else None
        label = label or direction.labels[0]
        direction = direction[0]
    if direction.shape != theta.shape:
        raise ValueError(f"direction must have the shape of theta {tuple(theta.shape)}, got {tuple(direction.shape)}")
    alphas = _grid(span, n)
    ev = evaluate(f, theta, alphas[:, None], direction[:, None], chunk=chunk, batched=batched)
    return Slice1D(alphas, ev.loss, ev.terms, label or "α", float(torch.linalg.vector_norm(direction)), eig)


def slice_2d(f: Loss, theta: Tensor, directions: Directions | Sequence[Tensor], *,
             span: float | tuple[float, float] = 1.0, n: int = 21, chunk: int = 64, batched: bool = True) -> Slice2D:
    r""":math:`L(\theta + \alpha\delta + \beta\eta)` on an ``n x n`` grid of :math:`[-span, span]^2`;
    ``directions``: a :class:`Directions` (its first two) or two tensors.
    """
    if not isinstance(directions, Directions):
        if len(directions) != 2:
            raise ValueError(f"slice_2d needs two directions, got {len(directions)}")
        directions = Directions(torch.stack([d.detach() for d in directions], dim=1), "custom", "none", ("δ", "η"))
    if len(directions) < 2:
        raise ValueError("slice_2d needs two directions: random_directions(theta, k=2) or hessian_directions(f, theta, k=2)")
    D = directions.vectors[:, :2]
    if D.shape[0] != theta.numel():
        raise ValueError(f"directions have {D.shape[0]} entries but theta has {theta.numel()}")
    a = _grid(span, n)
    A, B = torch.meshgrid(a, a, indexing="ij")
    coeffs = torch.stack([A.reshape(-1), B.reshape(-1)], dim=1)
    ev = evaluate(f, theta, coeffs, D, chunk=chunk, batched=batched)
    two = Directions(D, directions.kind, directions.normalization, directions.labels[:2],
                     directions.eigenvalues[:2] if directions.eigenvalues else None)
    return Slice2D(a, a.clone(), ev.loss.reshape(n, n), {k: v.reshape(n, n) for k, v in ev.terms.items()}, two)


def _projected(f: Loss, theta: Tensor, D: Tensor) -> Tensor:
    HD = curvature.hvp_batch(total(f), theta.detach(), D.T.contiguous())
    M = (D.T @ HD.T).to(torch.float64)
    return 0.5 * (M + M.T)


def plane_curvature(f: Loss, theta: Tensor, d1: Tensor, d2: Tensor) -> Tensor:
    r""":math:`\mathrm{eig}(Q^\top H Q)` (ascending, float64), :math:`Q` an orthonormal basis of
    :math:`\mathrm{span}\{d_1, d_2\}`: the extreme curvatures any line in that plane shows (within
    :math:`[\lambda_{\min}, \lambda_{\max}]` by interlacing).
    """
    Q, _ = torch.linalg.qr(torch.stack([d1.detach(), d2.detach()], dim=1).to(theta.dtype))
    return cast(Tensor, torch.linalg.eigvalsh(_projected(f, theta, Q)))


def slice_hessian(f: Loss, theta: Tensor, directions: Directions | Sequence[Tensor]) -> Tensor:
    r""":math:`D^\top H D` (float64, symmetrized) for the directions as columns of :math:`D`, not orthonormalized:
    the exact Hessian in the slice's coordinates (:meth:`Slice2D.curvature` by finite differences).
    """
    D = directions.vectors if isinstance(directions, Directions) else torch.stack([d.detach() for d in directions], 1)
    return _projected(f, theta, D.to(theta.dtype))
