"""Figures of the optimizer chapters: where L-BFGS froze and why, L2RE races, error against time."""
from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt

__all__ = ["plot_stops", "plot_race", "plot_curves"]


def plot_stops(runs: Mapping[str, Any], ax: Any = None, title: str | None = None) -> Any:
    """Loss against cumulative loss evaluations for L-BFGS runs logged every step (``log_every=1``), one line per
    run (``runs``: label -> :class:`~pinnkit.training.TrainResult`), with the steps that ended on a tolerance test
    marked by reason. Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    markers = {"tolerance_change:gd": "x", "tolerance_change:step": "o", "tolerance_change:loss": "s",
               "tolerance_grad": "^", "tolerance_grad:start": "v"}
    seen: set[str] = set()
    for i, (label, run) in enumerate(runs.items()):
        h = run.history
        ev = [0 if e is None else e for e in h.evals]
        ax.semilogy(ev, h.loss, color=f"C{i}", lw=1, label=label)
        at = {s: j for j, s in enumerate(h.step)}
        for step, reason in zip(h.stops.get("step", []), h.stops.get("reason", [])):
            j = at.get(step + 1)
            if reason in markers and j is not None:
                ax.plot(ev[j], h.loss[j], markers[reason], color=f"C{i}", ms=5, mfc="none",
                        label=reason if reason not in seen else None)
                seen.add(reason)
    ax.set(xlabel="loss evaluations", ylabel="loss", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_race(runs: Mapping[str, Any], ax: Any = None, target: float | None = 1e-2, title: str = "") -> Any:
    """L2RE against loss evaluations, one line per remedy (``runs``: label -> :class:`~pinnkit.TrainResult`, or a
    list of them run one after another, whose evaluations add up). Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for label, run in runs.items():
        parts = run if isinstance(run, (list, tuple)) else [run]
        xs, ys, offset = [], [], 0
        for r in parts:
            h = r.history
            xs += [offset + (e or 0) for e in h.evals]
            ys += h.l2re
            offset += h.evals[-1] or 0
        ax.semilogy(xs, ys, label=label)
    if target is not None:
        ax.axhline(target, color="k", ls=":", lw=1, label="target")
    ax.set(xlabel="loss evaluations", ylabel="L2RE", title=title)
    ax.legend(fontsize="small")
    return ax


def plot_curves(curves: Mapping[str, list[tuple[list[float], list[float]]]], *, ax: Any = None,
                xlabel: str = "process time (s)", ylabel: str = r"relative $L^2$ error", title: str = "") -> Any:
    """One colour per method, one line per seed: ``curves[label] = [(x, y), ...]`` on a log y-axis."""
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.6))[1]
    for i, (label, runs) in enumerate(curves.items()):
        for j, (x, y) in enumerate(runs):
            ax.semilogy(x, y, color=f"C{i}", alpha=0.85, lw=1.4, label=label if j == 0 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
