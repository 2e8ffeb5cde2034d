"""Loss-landscape slices (1-D lines, 2-D contours and surfaces) and the interactive slice explorer."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colors
from matplotlib.axes import Axes
from torch import Tensor

from ..landscape import Directions, Slice1D, Slice2D, hessian_directions, random_directions, slice_2d
from ..objective import Loss


def _use_log(values: Tensor, log: bool | None) -> bool:
    positive = bool((values > 0).all())
    if log and not positive:
        raise ValueError("log scale needs a positive loss; this one (e.g. a Deep Ritz energy) is not: pass log=False")
    return positive if log is None else log


def plot_slice_1d(s: Slice1D, ax: Axes | None = None, terms: bool = True, log: bool | None = None,
                  title: str | None = None, label: str = "loss") -> Axes:
    """The loss (and, with ``terms``, each term) along a 1-D slice; log scale when the loss is positive.
    Several slices can share ``ax`` (pass ``terms=False`` and a ``label`` each).
    """
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    a = s.alphas.numpy()
    ax.plot(a, s.loss.numpy(), "-", lw=2, label=label, color="k" if terms and len(s.terms) > 1 else None)
    if terms and len(s.terms) > 1:
        for k, v in s.terms.items():
            ax.plot(a, v.numpy(), "--", lw=1.2, label=k)
    if _use_log(torch.cat([s.loss, *(s.terms.values() if terms and len(s.terms) > 1 else [])]), log):
        ax.set_yscale("log")
    for name, x in s.marks.items():
        ax.axvline(x, color="gray", lw=0.8, ls=":")
        ax.annotate(name, (x, 1), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    xl = s.label + (f"  [λ={s.eigenvalue:.2g}]" if s.eigenvalue is not None and "λ" not in s.label else "")
    ax.set_xlabel(xl + f"   (‖δ‖={s.norm:.2g})")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_slice_2d(s: Slice2D, ax: Axes | None = None, kind: str = "contour", term: str | None = None, log: bool | None = None,
                  title: str | None = None, levels: int = 25, relative: bool = False,
                  vrange: tuple[float, float] | None = None) -> Axes:
    """Filled contours (log-spaced levels when the loss is positive) or a 3-D surface of a 2-D slice; the axes are
    labelled with the directions (and their Hessian eigenvalues), the centre is marked.

    Args:
        s: the slice.
        ax: axes to draw into (a new figure if ``None``).
        kind: ``"contour"`` or ``"surface"``.
        term: plot one loss term instead of the loss.
        log: log colour scale (default: when the plotted values are positive).
        title: axes title.
        levels: number of contour levels.
        relative: plot :math:`L - L(\text{centre})` (the rise above the centre, e.g. above a trained
            :math:`\theta^*`), which makes losses of different offsets (a Deep Ritz energy is negative) comparable
            on one log scale; values at or below ``vrange[0]`` (default: the smallest positive rise) are shown
            at that floor.
        vrange: ``(low, high)`` of the colour scale, shared between panels that must be compared; values outside
            get the end colours.

    Returns:
        The axes.
    """
    if kind not in ("contour", "surface"):
        raise ValueError(f"kind must be 'contour' or 'surface', got {kind!r}")
    if term is not None and term not in s.terms:
        raise ValueError(f"unknown term {term!r}; valid: {', '.join(s.terms) or '(none: scalar loss)'}")
    Z = (s.terms[term] if term else s.loss).to(torch.float64).numpy()
    label = term or "loss"
    if relative:
        i, j = int(torch.argmin(s.alphas.abs())), int(torch.argmin(s.betas.abs()))
        Z = Z - Z[i, j]
        positive = Z[Z > 0]
        floor = vrange[0] if vrange else (float(positive.min()) if positive.size else 1.0)
        Z = np.maximum(Z, floor)
        label = f"{label} − {label} at the centre"
    use_log = _use_log(torch.as_tensor(Z), log)
    A, B = np.meshgrid(s.alphas.numpy(), s.betas.numpy(), indexing="ij")
    xl, yl = s.directions.labels[:2]
    if kind == "surface":
        ax3: Any = ax if ax is not None else plt.figure(figsize=(5, 4)).add_subplot(projection="3d")  # Axes3D
        ax3.plot_surface(A, B, np.log10(Z) if use_log else Z, cmap="viridis", linewidth=0, antialiased=True)
        ax3.set_zlabel(("log10 " if use_log else "") + label)
        ax = ax3
    else:
        ax = ax or plt.subplots(figsize=(5, 4))[1]
        lo, hi = vrange if vrange else (float(Z.min()), float(Z.max()))
        if use_log:
            lv = np.logspace(np.log10(lo), np.log10(hi), levels)
            cs = ax.contourf(A, B, Z, levels=lv, norm=colors.LogNorm(), cmap="viridis", extend="both")
        else:
            cs = ax.contourf(A, B, Z, levels=np.linspace(lo, hi, levels), cmap="viridis", extend="both")
        ax.figure.colorbar(cs, ax=ax, label=label, format="%.0e" if use_log else None)
        ax.plot([0], [0], "r+", ms=10)
    ax.set_xlabel(f"$a_1$ along {xl}")
    ax.set_ylabel(f"$a_2$ along {yl}")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


EXPLORER_DIRECTIONS = ("random, filter-normalized", "random, layer-normalized", "random, not normalized",
                       "Hessian top-2 eigenvectors")


def explorer(losses: Mapping[str, tuple[Loss, Tensor]], blocks: Any = None, *, n: int = 21, seed: int = 0,
             kind: str = "contour", known: Mapping[tuple[str, str], Directions] | None = None) -> Callable[..., None]:
    """A function ``show(loss, directions, span)`` for ``ipywidgets.interact``: it computes and plots the 2-D
    slice of ``losses[loss] = (f, theta)`` along one of :data:`EXPLORER_DIRECTIONS` (directions cached per loss;
    ``known[(loss, directions)]`` supplies ones already computed, e.g. Hessian eigenvectors).
    """
    cache: dict[tuple[str, str], Directions] = dict(known or {})

    def show(loss: str, directions: str, span: float, ax: Axes | None = None) -> None:
        if loss not in losses:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(losses)}")
        if directions not in EXPLORER_DIRECTIONS:
            raise ValueError(f"unknown directions {directions!r}; valid: {', '.join(EXPLORER_DIRECTIONS)}")
        f, theta = losses[loss]
        key = (loss, directions)
        if key not in cache:
            if directions.startswith("Hessian"):
                cache[key] = hessian_directions(f, theta, k=2)
            else:
                how = {"filter": "filter", "layer": "layer", "not": "none"}[directions.split(", ")[1].split("-")[0]
                                                                            .split(" ")[0]]
                cache[key] = random_directions(theta, 2, blocks=blocks, normalization=how, seed=seed)
        plot_slice_2d(slice_2d(f, theta, cache[key], span=span, n=n), ax=ax, kind=kind,
                      title=f"{loss}: {directions}, span {span:g}")
        if ax is None:
            plt.show()

    return show

