r"""Chapter 3's Fig. 10 fit through the records of the paper-setting runs (:mod:`pinnkit.experiments`)."""
from __future__ import annotations

from typing import Sequence

from ..experiments import Record, _fig10_fit
from ..features import PowerLaw

__all__ = ["fig10_fit"]


def fig10_fit(records: Sequence[Record]) -> PowerLaw | None:
    r"""The power law :math:`\lambda_{\max} / \min|\lambda| \approx C\,n_{\rm res}^p` through the records with the
    ``hessian_extremes`` analysis; ``None`` with fewer than two values of ``n_res``.
    """
    return _fig10_fit(records)   # the fit the reproduction report prints (pinnkit.experiments.report)
