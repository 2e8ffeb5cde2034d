"""Figures of the tangent-kernel chapter: predicted against measured iteration counts, kernel eigenvectors."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["plot_predicted_vs_measured", "plot_grid_modes"]


def plot_predicted_vs_measured(rows: Sequence[Mapping[str, float]], ax: Axes | None = None) -> Axes:
    r"""Measured against predicted iteration counts on log-log axes, one marker per method: rows with keys
    ``gd_pred``, ``gd``, ``cg_pred``, ``cg`` (e.g. one row per model and seed); the diagonal is "as predicted",
    points below it beat the bound.
    """
    ax = ax or plt.subplots(figsize=(4.6, 4.0), layout="constrained")[1]
    for key, label, marker in (("gd", "gradient descent", "o"), ("cg", "conjugate gradients", "s")):
        ax.loglog([r[f"{key}_pred"] for r in rows], [r[key] for r in rows], marker, ls="none", alpha=0.7,
                  label=label)
    lo = min(min(r["gd"], r["cg"], r["cg_pred"]) for r in rows)
    hi = max(max(r["gd"], r["gd_pred"]) for r in rows)
    ax.loglog([lo, hi], [lo, hi], "k:", lw=1, label="measured = predicted")
    ax.set(xlabel="predicted iterations (from the spectrum)", ylabel="measured iterations",
           title="Prediction against measurement")
    ax.legend(fontsize="small")
    return ax


def plot_grid_modes(V: Tensor, indices: Sequence[int], nx: int, nt: int, lam: Tensor | None = None) -> Figure:
    r"""The residual-grid part of kernel eigenvectors ``V[:, i]`` as images over :math:`(x, t)` (one panel per
    index, at most 3), titled with :math:`\lambda_i/\lambda_1` when ``lam`` is given.
    """
    idx = list(indices)[:3]
    fig, axes = plt.subplots(1, len(idx), figsize=(3.4 * len(idx), 2.8), layout="constrained", squeeze=False)
    for ax, i in zip(axes[0], idx):
        img = V[: nx * nt, i].reshape(nt, nx).detach().cpu()
        vmax = float(img.abs().max())
        ax.imshow(img, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                  extent=(0.0, 2 * math.pi, 0.0, 1.0))
        title = f"$v_{{{i + 1}}}$"
        if lam is not None:
            title += rf", $\lambda/\lambda_1$ = {float(lam[i] / lam[0]):.0e}"
        ax.set(xlabel="$x$", ylabel="$t$", title=title)
    return fig
