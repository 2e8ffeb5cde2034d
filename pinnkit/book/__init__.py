"""The book's chapter glue, above the library: studies, surveys, tables and the papers' published numbers.

The core (``pinnkit/*.py``) never imports this package; it imports the core. ``import pinnkit`` does not load it:
``pinnkit.book`` loads on first use (``pk.book.report.bound(...)``).

Modules: :mod:`~pinnkit.book.report` (printing stable numbers), :mod:`~pinnkit.book.papers` (published numbers),
:mod:`~pinnkit.book.alignment_study` (chapter 8), :mod:`~pinnkit.book.stationary_survey` (chapters 6-7),
:mod:`~pinnkit.book.tables` and :mod:`~pinnkit.book.stall` (chapter 5), :mod:`~pinnkit.book.fig10` and
:mod:`~pinnkit.book.power_iteration` (chapter 3's Figure 10), :mod:`~pinnkit.book.benchmark` (chapter 12's
what-works tables).
"""
from . import alignment_study, benchmark, fig10, papers, power_iteration, report, stall, stationary_survey, tables

__all__ = ["alignment_study", "benchmark", "fig10", "papers", "power_iteration", "report", "stall",
           "stationary_survey", "tables"]
