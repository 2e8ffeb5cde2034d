"""The book's chapter glue, above the library: studies, surveys, tables and the papers' published numbers.

The core (``pinnkit/*.py``) never imports this package; it imports the core. ``import pinnkit`` does not load it:
``pinnkit.book`` loads on first use (``pk.book.report.bound(...)``).

Modules: :mod:`~pinnkit.book.report` (printing stable numbers), :mod:`~pinnkit.book.papers` (published numbers),
:mod:`~pinnkit.book.alignment_study` (chapter 8), :mod:`~pinnkit.book.stationary_survey` (chapters 6-7),
:mod:`~pinnkit.book.tables` and :mod:`~pinnkit.book.stall` (chapter 5), :mod:`~pinnkit.book.fig10` and
:mod:`~pinnkit.book.power_iteration` (chapter 3's Figure 10), :mod:`~pinnkit.book.benchmark` (chapter 12's
what-works tables), :mod:`~pinnkit.book.regression` (chapters 6-7's toy model), :mod:`~pinnkit.book.spectra_study`
(per-term spectral densities, chapters 2 and 4), :mod:`~pinnkit.book.conditioning_study` (chapter 4's top-k
and CG studies), :mod:`~pinnkit.book.features_study` (chapter 3's feature models),
:mod:`~pinnkit.book.tangent_study` (chapter 10's kernel studies), :mod:`~pinnkit.book.landscape_study` (chapter
9's interpolation line and Deep Ritz loss), :mod:`~pinnkit.book.gauss_newton_study` (chapter 12's ENGD step cost),
:mod:`~pinnkit.book.experiments_study` (chapter 3's Fig. 10 fit of the stored runs).
"""
from . import (
               alignment_study,
               benchmark,
               conditioning_study,
               experiments_study,
               features_study,
               fig10,
               gauss_newton_study,
               landscape_study,
               papers,
               power_iteration,
               regression,
               report,
               spectra_study,
               stall,
               stationary_survey,
               tables,
               tangent_study,
)

__all__ = ["alignment_study", "benchmark", "conditioning_study", "experiments_study", "features_study", "fig10",
           "gauss_newton_study", "landscape_study", "papers", "power_iteration", "regression", "report", "spectra_study", "stall",
           "stationary_survey", "tables", "tangent_study"]
