r"""Per-term spectral densities and one kernel width for curves that share an axis (chapters 2 and 4).

>>> import torch
>>> from pinnkit.curvature import SpectralDensity
>>> a = SpectralDensity.from_eigenvalues(torch.tensor([0.0, 1.0]), sigma=0.1)
>>> shared_sigma({"a": a, "b": a.with_sigma(0.3)})
0.3
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from torch import Tensor

from ..curvature import SpectralDensity, spectral_density
from ..objective import term

__all__ = ["term_densities", "shared_sigma"]


def term_densities(terms_fn: Callable[[Tensor], Mapping[str, Tensor]], theta: Tensor, *, include_total: bool = False,
                   **kwargs: Any) -> dict[str, SpectralDensity]:
    """One :func:`~pinnkit.curvature.spectral_density` per loss term (same probes), plus ``"total"`` if asked.

    Each term gets its own kernel width unless ``sigma=`` is passed; re-smooth with :func:`shared_sigma` to compare.
    """
    names = list(terms_fn(theta.detach()).keys())
    out = {name: spectral_density(term(terms_fn, name), theta, **kwargs) for name in names}
    if include_total:
        out["total"] = spectral_density(terms_fn, theta, **kwargs)
    return out


def shared_sigma(densities: Mapping[str, SpectralDensity] | Sequence[SpectralDensity]) -> float:
    r"""The largest :math:`\sigma` of ``densities``: re-smooth all with it
    (:meth:`~pinnkit.curvature.SpectralDensity.with_sigma`) so curves on one axis differ by spectrum, not kernel.
    """
    ds = list(densities.values()) if isinstance(densities, Mapping) else list(densities)
    if not ds:
        raise ValueError("no densities given")
    return max(d.sigma for d in ds)
