"""Spectra: smoothed spectral densities (Rathore et al.'s axes), sorted eigenvalues, Lanczos convergence, power laws."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ..book.spectra_study import shared_sigma
from ..conditioning import as_eigenvalues
from ..curvature import Eigen, LogSpectralDensity, Matvec, SpectralDensity, lanczos
from ..features import PowerLaw


def plot_density(density: SpectralDensity, ax: Axes | None = None, label: str | None = None, floor: float = 1e-10,
                 **kwargs: Any) -> Axes:
    """A :class:`~pinnkit.curvature.SpectralDensity` as Rathore et al. draw it: symlog eigenvalue axis (linear
    within ±1), log density (values below ``floor`` times the peak are left blank). ``kwargs`` go to ``ax.plot``.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    d = torch.where(density.density >= floor * float(density.density.max()), density.density, torch.nan)
    ax.plot(density.grid.numpy(), d.numpy(), label=label, **kwargs)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("log")
    ax.set_xlabel(r"eigenvalue $\lambda$ (symlog scale)")
    ax.set_ylabel("density (log scale)")
    if label is not None:
        ax.legend()
    return ax


def plot_log_density(density: LogSpectralDensity, ax: Axes | None = None, label: str | None = None,
                     color: Any = None, **kwargs: Any) -> Axes:
    r"""A :class:`~pinnkit.curvature.LogSpectralDensity` against :math:`|\lambda|` on a log axis: the positive
    part solid, the negative part dashed in the same colour.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    x = (10.0 ** density.grid).numpy()
    (line,) = ax.plot(x, density.positive.numpy(), color=color, label=None if label is None else rf"{label}, $\lambda > 0$",
                      **kwargs)
    if density.mass_negative > 0:
        ax.plot(x, density.negative.numpy(), "--", color=line.get_color(),
                label=None if label is None else rf"{label}, $\lambda < 0$", **kwargs)
    ax.set_xscale("log")
    ax.set_xlabel(r"$|\lambda|$ (log scale)")
    ax.set_ylabel(r"density of $\log_{10}|\lambda|$")
    if label is not None:
        ax.legend()
    return ax


def plot_spectra(densities: Mapping[str, SpectralDensity], ax: Axes | None = None, title: str | None = None,
                 sigma: float | str | None = None) -> Axes:
    """Overlay several spectral densities (e.g. :func:`pinnkit.book.spectra_study.term_densities`) on one symlog/log axis;
    each label states its kernel width σ.

    ``sigma``: ``None`` keeps each curve's own smoothing; a number re-smooths every curve with that width;
    ``"shared"`` re-smooths with :func:`shared_sigma` (curves on one axis should share σ).
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    if sigma == "shared":
        sigma = shared_sigma(densities)
    elif isinstance(sigma, str):
        raise ValueError(f"sigma must be a number, None or 'shared', got {sigma!r}")
    for name, sd in densities.items():
        sd = sd if sigma is None else sd.with_sigma(float(sigma))
        plot_density(sd, ax, label=rf"{name} ($\sigma$ = {sd.sigma:.2g})")
    if title:
        ax.set_title(title)
    return ax


def plot_lanczos_convergence(matvec: Matvec | Tensor, dim: int, steps: int, *, eigenvalues: Tensor | None = None,
                             v0: Tensor | None = None, seed: int = 0, ax: Axes | None = None) -> Axes:
    """Ritz values of one Lanczos run after each step ``j = 1..steps`` (the eigenvalues of the leading ``j x j``
    block of ``T``): the extremes converge first. ``eigenvalues`` (exact, if known) are drawn as grey lines.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    r = lanczos(matvec, dim, steps, v0, seed=seed)
    T = r.tridiagonal().cpu()
    if eigenvalues is not None:
        for e in torch.as_tensor(eigenvalues).double().cpu():
            ax.axhline(float(e), color="0.85", lw=0.5, zorder=0)
    for j in range(1, T.shape[0] + 1):
        ev = torch.linalg.eigvalsh(T[:j, :j])
        ax.plot([j] * j, ev.numpy(), ".", color="C0", ms=2)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(r"Lanczos step $j$ (number of HVPs)")
    ax.set_ylabel("Ritz values (symlog)")
    return ax



def plot_sorted_eigenvalues(spectra: Mapping[str, Tensor | Sequence[float] | Eigen], ax: Axes | None = None, *,
                            normalize: bool = True, rcut: float | None = None,
                            band: tuple[float, float] | None = None, title: str | None = None):
    r"""Eigenvalues sorted by magnitude, :math:`|\lambda|_{(1)} \ge |\lambda|_{(2)} \ge \dots`, against their index,
    on a log axis; negative eigenvalues as open circles.

    With ``normalize`` each curve is divided by its own :math:`\max|\lambda|` (a scale-invariant picture: the index
    where a curve crosses ``rcut`` is the numerical rank of :func:`range_condition`, and a curve without a gap says
    that :math:`\kappa` is set by the cutoff). ``rcut`` draws that line; ``band = (lo, hi)`` shades an interval
    (e.g. ``(0.5, 2)`` for a preconditioned operator, then use ``normalize=False``). Returns the axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    tiny = torch.finfo(torch.float64).tiny
    for name, ev in spectra.items():
        ev = as_eigenvalues(ev)
        order = ev.abs().argsort(descending=True)
        ev = ev[order]
        mag = ev.abs() / (float(ev.abs().max()) if normalize else 1.0)
        idx = torch.arange(1, ev.numel() + 1)
        (line,) = ax.plot(idx.numpy(), mag.clamp_min(tiny).numpy(), "-", lw=1.2, label=name)
        neg = ev < 0
        if bool(neg.any()):
            ax.plot(idx[neg].numpy(), mag[neg].clamp_min(tiny).numpy(), "o", mfc="none", ms=3,
                    color=line.get_color())
    if rcut is not None and normalize:
        ax.axhline(rcut, color="0.4", ls=":", lw=1, label=f"cutoff {rcut:.0e}")
    if band is not None:
        ax.axhspan(band[0], band[1], color="C2", alpha=0.15, lw=0, label=f"[{band[0]:g}, {band[1]:g}]")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("index i (eigenvalues sorted by |λ|, log scale)")
    ax.set_ylabel("|λ_i| / max|λ|" if normalize else "|λ_i|")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax



def plot_power_law(x: Any, y: Any, fit: PowerLaw | None = None, *, xlabel: str, ylabel: str, title: str = "",
                   ax: Axes | None = None, label: str | None = None, color: str | None = None, marker: str = "o",
                   ls: str = "-", fit_style: str = "--", base: float | None = None) -> Axes:
    """``y`` against ``x`` on log-log axes, with the fitted power law drawn over its fitted range only.

    Args:
        fit: a :class:`PowerLaw`; drawn in the data's colour with ``fit_style`` and its slope in the legend.
        ls: the data's line style (``"none"``: markers only, so that a fit on top of the data stays visible).
        base: the x axis's log base (e.g. 2 for ``n_res = 2^k``); default 10.

    Returns:
        The axes.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5), layout="constrained")[1]
    (line,) = ax.loglog(x, y, marker=marker, ls=ls, color=color, label=label or "measured")
    if base is not None:
        ax.set_xscale("log", base=base)
    if fit is not None:
        xs = torch.logspace(math.log10(fit.xmin), math.log10(fit.xmax), 50, dtype=torch.float64)
        ax.plot(xs, fit(xs), fit_style, color=line.get_color(), lw=1.2,
                label=f"{label + ' ' if label else ''}fit: slope {fit.rounded():.2f}")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax
