"""Stationary points: slices through a saddle, index against loss, where runs ended, a table of endpoints."""
from __future__ import annotations

from typing import Any, Sequence, cast

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ..book.stationary_survey import Endpoint
from ..curvature import hessian
from ..objective import Loss, total
from ..stationary import StationaryPoint
from .tables import Table, table


def plot_saddle_slices(f: Loss, theta: Tensor, radius: float = 1.0, n: int = 31,
                       axes: Sequence[Axes] | None = None) -> Figure:
    r"""Left: :math:`L(\theta + t v_{\min})` along the most negative eigenvector with its quadratic model
    :math:`L + \tfrac12 \lambda_{\min} t^2`, :math:`|t| \le` ``radius``; right: contours of
    :math:`L(\theta + s v_{\max} + t v_{\min})`, the ``s`` range shrunk by
    :math:`\sqrt{|\lambda_{\min}|/\lambda_{\max}}` so that both quadratic terms span the same range.
    Returns the matplotlib figure.
    """
    f = total(f)
    theta = theta.detach()
    lam, V = torch.linalg.eigh(hessian(f, theta))
    vmin, vmax = V[:, 0], V[:, -1]
    lmin, lmax = float(lam[0]), float(lam[-1])
    t = torch.linspace(-radius, radius, n, dtype=theta.dtype, device=theta.device)
    s = t * (abs(lmin) / lmax) ** 0.5 if lmax > 0 and lmin < 0 else t
    L0 = float(f(theta))
    with torch.no_grad():
        line = torch.stack([f(theta + ti * vmin) for ti in t]).cpu()
        grid = torch.stack([torch.stack([f(theta + si * vmax + ti * vmin) for ti in t]) for si in s]).cpu()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = cast(Figure, axes[0].figure)
    tc, sc = t.cpu(), s.cpu()
    axes[0].plot(tc, line, label="loss along $v_{\\min}$")
    axes[0].plot(tc, L0 + 0.5 * lmin * tc ** 2, "--", label=f"quadratic model, $\\lambda_{{\\min}}$ = {lmin:.2g}")
    axes[0].axvline(0, color="gray", lw=0.5)
    axes[0].set_xlabel("step $t$ along the most negative eigenvector")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    cs = axes[1].contourf(sc, tc, grid.T, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=axes[1], label="loss")
    axes[1].plot([0], [0], "r*", ms=12, label="saddle")
    axes[1].set_xlabel(f"$s$ along $v_{{\\max}}$ ($\\lambda_{{\\max}}$ = {lmax:.2g})")
    axes[1].set_ylabel(f"$t$ along $v_{{\\min}}$ ($\\lambda_{{\\min}}$ = {lmin:.2g})")
    axes[1].locator_params(axis="x", nbins=5)   # readable ticks at the column width
    axes[1].legend()
    fig.tight_layout()
    return fig


def plot_index_vs_loss(points: Sequence[StationaryPoint], groups: Sequence[str] | None = None,
                       axes: Sequence[Axes] | None = None, title: str = "") -> Figure:
    """Left: index fraction against loss (log scale), one colour per group; right: stacked histogram of the index.

    Args:
        points: the classified points.
        groups: one name per point (e.g. ``"newton / saddle"``), for colours and the legend (default: the label).
        axes: two matplotlib axes (default: a new figure).
        title: the left panel's title.

    Returns:
        The matplotlib Figure.
    """
    if groups is None:
        groups = [p.label for p in points]
    if len(groups) != len(points):
        raise ValueError(f"groups must have one entry per point: {len(groups)} groups for {len(points)} points")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    else:
        fig = cast(Figure, axes[0].figure)
    names = list(dict.fromkeys(groups))
    markers = "osD^v<>ph*"
    idx_all = [p.index for p in points]
    bins = list(range(0, max(idx_all, default=0) + 2))
    stacks = []
    for i, name in enumerate(names):
        sel = [p for p, g in zip(points, groups) if g == name]
        axes[0].scatter([max(p.loss, 1e-16) for p in sel], [p.index_fraction for p in sel], s=30, alpha=0.75,
                        marker=markers[i % len(markers)], label=f"{name} ({len(sel)})")
        stacks.append([p.index for p in sel])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("loss at the point")
    axes[0].set_ylabel("index fraction (negative eigenvalues / parameters)")
    axes[0].set_title(title or "index against loss")
    axes[0].legend(fontsize=8)
    axes[1].hist(stacks, bins=bins, align="left", rwidth=0.9, stacked=True, label=names)
    axes[1].set_xlabel("index (number of negative eigenvalues)")
    axes[1].set_ylabel("number of points")
    axes[1].set_title("histogram of indices")
    fig.tight_layout()
    return fig


def plot_endpoint_fits(model: Any, endpoints: Sequence[Endpoint], seed: int, ax: Axes | None = None) -> Axes:
    """The function every run from ``seed`` ended at, with the target drawn on top (black dashes).

    Args:
        model: the model built for ``seed`` (``X_eval``, ``predict`` and ``y_eval`` or ``u_exact``).
        endpoints: from :func:`survey`.
        seed: which seed's runs to draw.
        ax: a matplotlib axis (default: a new figure).

    Returns:
        The axes.
    """
    if ax is None:
        ax = plt.subplots(figsize=(7, 3.5), layout="constrained")[1]
    X = model.X_eval
    with torch.no_grad():
        for e in endpoints:
            if e.seed == seed:
                ax.plot(X[:, 0].cpu(), model.predict(e.run.theta, X).cpu(), lw=1.5,
                        label=f"{e.name} (loss {e.point.loss:.1e})")
        target = model.y_eval if hasattr(model, "y_eval") else model.u_exact
        ax.plot(X[:, 0].cpu(), target.reshape(-1).cpu(), "k--", lw=1.5, zorder=10, label="target")
    ax.set_xlabel(r"$x$")
    ax.set_ylabel(r"$u_\theta(x)$")
    ax.set_title(f"where each run from seed {seed} ended")
    ax.legend(fontsize=8, loc="best")
    return ax



def endpoint_summary(endpoints: Sequence[Endpoint]) -> Table:
    """One row per endpoint (2 significant digits), shown as an HTML table in a notebook: method, seed (and start
    when not ``"init"``), loss, ‖∇L‖, index, smallest eigenvalue, ``tangent_align`` (‖Jᵀr‖ / ‖J‖‖r‖), max|θ|, label.
    """
    starts = any(e.start != "init" for e in endpoints)
    header = ["method", "seed", *(["start"] if starts else []), "loss", "‖∇L‖", "index", "λ_min",
              "‖Jᵀr‖/‖J‖‖r‖", "max|θ|", "label"]
    rows = [[e.name, e.seed, *([e.start] if starts else []), f"{e.point.loss:.1e}", f"{e.point.grad_norm:.1e}",
             e.point.index, f"{e.point.min_eig:.1e}", f"{e.tangent_align:.1e}",
             f"{float(e.run.theta.abs().max()):.0e}", e.point.label] for e in endpoints]
    return table(header, rows)
