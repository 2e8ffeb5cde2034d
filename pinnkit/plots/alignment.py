"""Gradient alignment: the score's geometry, term gradients as arrows, alignment along training."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..alignment import PreconditionedAlignment, alignment_score
from ..book.alignment_study import Study, fan


def plot_score_geometry(ns: Sequence[int] = (2, 3, 5), points: int = 181) -> Figure:
    """Alignment score of a fan of ``n`` unit vectors against its spread (first to last vector), for each ``n``;
    the spread runs up to an even spacing around the circle, where the vectors cancel. Returns the figure.
    """
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


def plot_vectors(panels: Mapping[str, Mapping[str, Tensor]], title: str = "") -> Figure:
    """2-D vectors as arrows from the origin (normalised to unit length), one panel per entry, the alignment
    score in each panel's title. Returns the figure.
    """
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


def plot_alignment_history(runs: Mapping[str, Any], intra: str = "intra", inter: str = "inter",
                           title: str = "") -> Figure:
    """Loss, L2RE, intra-step and inter-step alignment against optimizer step for several :func:`pinnkit.train`
    runs logged with ``log={intra: IntraStep(...), inter: InterStep()}``. Returns the figure.
    """
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


def _smooth(xs: Sequence[float], width: int) -> list[float]:
    out = []
    for i in range(len(xs)):
        w = [x for x in xs[max(0, i - width + 1):i + 1] if math.isfinite(x)]
        out.append(sum(w) / len(w) if w else math.nan)
    return out


def plot_study(result: Study, title: str = "", smooth: int = 5) -> Figure:
    """Loss and the four alignments of :class:`Study` traces against optimizer step (2 x 3 panels, the legend in
    the sixth): one thin line per seed, colour per optimizer. The alignment curves are running means over
    ``smooth`` log points (a smoothing that hides step-to-step noise but not a sustained sign). Returns the figure.
    """
    panels = [("loss_history", "loss"), ("intra", r"intra-step $\mathcal{A}(g_i)$"),
              ("intra_precond", r"$\mathcal{A}(M^{-1} g_i)$, own $M$"),
              ("inter", r"inter-step $\cos(\Delta_{k-1}, \Delta_k)$"),
              ("inter_grad", r"$\cos(\nabla L_k, \nabla L_{k+1})$")]
    fig, grid = plt.subplots(2, 3, figsize=(10, 5.6), layout="constrained", sharex=True)
    axes = list(grid.flat)
    for i, (method, traces) in enumerate(result.traces.items()):
        for j, t in enumerate(traces):
            for ax, (attr, _ylabel) in zip(axes, panels):
                ys = getattr(t, attr)
                label = f"{method} (lr {t.lr:.0e})" if j == 0 else None
                if attr == "loss_history":
                    ax.semilogy(t.step, ys, color=f"C{i}", lw=0.9, label=label)
                else:
                    ax.plot(t.step, _smooth(ys, smooth), color=f"C{i}", lw=0.9, label=label)
    for k, (ax, (attr, ylabel)) in enumerate(zip(axes, panels)):
        ax.set(title=ylabel, xlabel="optimizer step" if k >= 3 else "")
        if attr != "loss_history":
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0.0, color="0.7", lw=0.8)
    axes[-1].axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, labels, loc="center", title="one line per seed")
    axes[2].tick_params(labelbottom=True)
    axes[2].set_xlabel("optimizer step")
    if title:
        fig.suptitle(title)
    return fig


def plot_preconditioned(results: Mapping[str, PreconditionedAlignment], title: str = "", ncols: int = 3) -> Figure:
    """Alignment of Newton-, saddle-free- and Gauss–Newton-preconditioned term gradients against the relative
    damping, one panel per point (``ncols`` a row; the raw score dashed), one legend below. Returns the figure.
    """
    ncols = max(1, min(ncols, len(results)))
    nrows = math.ceil(len(results) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows + 0.8), layout="constrained",
                             squeeze=False, sharex=True, sharey=True)
    flat = list(axes.flat)
    for k, (ax, (name, r)) in enumerate(zip(flat, results.items())):
        ax.semilogx(r.dampings, r.newton, "o-", label=r"Newton $(H+\delta I)^{-1} g_i$")
        ax.semilogx(r.dampings, r.saddle_free, "^-", label=r"saddle-free $(|H|+\delta I)^{-1} g_i$")
        ax.semilogx(r.dampings, r.gauss_newton, "s-", label=r"Gauss–Newton $(G+\delta I)^{-1} g_i$")
        ax.axhline(r.raw, color="k", ls="--", label=r"raw $g_i$")
        ax.set(title=name, ylim=(-1.05, 1.05))
        if k % ncols == 0:
            ax.set_ylabel(r"alignment score $\mathcal{A}$")
        if k >= len(results) - ncols:
            ax.set_xlabel(r"relative damping $\delta / \max|\lambda|$")
    for ax in flat[len(results):]:
        ax.axis("off")
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9)
    if title:
        fig.suptitle(title)
    return fig
