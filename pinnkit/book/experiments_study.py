r"""Chapter 3's Fig. 10 fit through the records of the paper-setting runs (:mod:`pinnkit.experiments`)."""
from __future__ import annotations

from typing import Sequence

from ..experiments import Record
from ..features import PowerLaw, fit_power_law

__all__ = ["fig10_fit"]


def fig10_fit(records: Sequence[Record]) -> PowerLaw | None:
    r"""The power law :math:`\lambda_{\max} / \min|\lambda| \approx C\,n_{\rm res}^p` through the records with the
    ``hessian_extremes`` analysis; ``None`` with fewer than two values of ``n_res``.
    """
    fig10 = [r for r in records if "ratio_max_over_min_abs" in r.analysis]
    if len({r.config.n_res for r in fig10}) < 2:
        return None
    return fit_power_law([r.config.n_res for r in fig10], [r.analysis["ratio_max_over_min_abs"] for r in fig10])
