"""Training: solution, exact solution and error panels; loss and error histories."""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..pinn import PINN
from ..training import TrainResult


def plot_solution(pinn: PINN, theta: Tensor, title: str | None = None) -> Figure:
    """Prediction, exact solution and absolute error on the evaluation grid.

    Space-time problems give three heat maps (t horizontal, x vertical, as in Rathore et al.); 1-D problems give
    the two curves and the error. The grid is the PINN's own ``eval_shape``. Returns the figure.
    """
    if pinn.u_exact is None:
        raise ValueError(f"{pinn.problem.name} has no exact solution to compare with")
    with torch.no_grad():
        pred = pinn.predict(theta, pinn.X_eval).cpu().double()
    exact = pinn.u_exact.cpu().double()
    err = (pred - exact).abs()
    axes = [a.cpu().numpy() for a in pinn.problem.axes(pinn.eval_shape)]
    names = pinn.problem.input_names
    if pinn.problem.dim == 1:
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        a0.plot(axes[0], exact.numpy(), "k-", lw=2, label="exact")
        a0.plot(axes[0], pred.numpy(), "C1--", label="PINN")
        a0.set(xlabel=names[0], ylabel="u", title="solution")
        a0.legend()
        a1.semilogy(axes[0], err.clamp_min(1e-16).numpy(), "C3")
        a1.set(xlabel=names[0], ylabel="|u - u*|", title="absolute error")
    else:
        shape = tuple(len(a) for a in axes)
        x, t = axes[0], axes[1]
        fig, panels = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
        vmin, vmax = float(exact.min()), float(exact.max())
        for ax, field, name, kw in [(panels[0], pred, "PINN prediction", dict(vmin=vmin, vmax=vmax, cmap="RdBu_r")),
                                    (panels[1], exact, "exact solution", dict(vmin=vmin, vmax=vmax, cmap="RdBu_r")),
                                    (panels[2], err, "absolute error", dict(cmap="magma"))]:  # type: ignore[assignment]
            im = ax.pcolormesh(t, x, field.reshape(shape).numpy(), shading="auto", rasterized=True, **kw)  # type: ignore[arg-type]
            ax.set(xlabel=f"{names[1]} (time)", ylabel=f"{names[0]} (space)", title=name)
            fig.colorbar(im, ax=ax)
    l2re = float(torch.linalg.vector_norm(pred - exact) / torch.linalg.vector_norm(exact))
    fig.suptitle(f"{title + ': ' if title else ''}{pinn.problem!r}, L2RE = {l2re:.2e}")
    return fig


def plot_history(runs: Mapping[str, TrainResult], metrics: tuple[str, ...] = ("loss", "l2re"), title: str = "",
                 x: str = "iteration", ncols: int | None = None) -> Figure:
    """Loss (and L2RE, gradient norm, or a term name) against iterations for several runs, log scale.

    ``x="iteration"`` counts as Rathore et al. (one L-BFGS step = its 20 inner iterations); ``x="step"`` counts
    optimizer steps. A dotted vertical line marks where a chained method switches optimizer (e.g. Adam → L-BFGS).
    ``ncols`` panels a row (default: all in one row); e.g. ``ncols=2`` puts four metrics in a 2 × 2 grid.
    """
    if x not in ("iteration", "step"):
        raise ValueError(f"x must be 'iteration' or 'step', got {x!r}")
    if ncols is not None and ncols < 1:
        raise ValueError(f"ncols must be a positive number of panels a row, got {ncols}")
    labels = {"loss": "loss", "l2re": "relative L2 error", "grad_norm": "gradient norm"}
    ncols = min(ncols or len(metrics), len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), layout="constrained",
                             squeeze=False)
    axes = grid.reshape(1, -1)
    for ax in axes[0][len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, run) in enumerate(runs.items()):
            h = run.history
            values = getattr(h, metric) if metric in labels else h.terms[metric]
            xs = getattr(h, x)
            ax.semilogy(xs, values, color=f"C{i}", label=name)
            for j in range(1, len(h.phase)):
                if h.phase[j] != h.phase[j - 1]:
                    ax.axvline(xs[j], color=f"C{i}", ls=":", lw=1)
        ax.set(xlabel="iterations (L-BFGS step = 20)" if x == "iteration" else "optimizer step",
               ylabel=labels.get(metric, f"{metric} term"))
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
