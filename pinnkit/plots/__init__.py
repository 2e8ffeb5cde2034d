"""Every figure of the book, in one place: ``pk.plots.<name>``, grouped by topic in the submodules.

Conventions: a function that draws into one axes takes ``ax=None`` (a new figure when ``None``) and returns the
:class:`~matplotlib.axes.Axes`, so several calls can share one panel; a function that draws several panels takes
``axes=None`` where it accepts existing ones and returns the :class:`~matplotlib.figure.Figure`. Every axis is
labelled (with its scale when not linear) and every curve named in a legend. The analysis modules never import
matplotlib; they return result objects that these functions draw.

- :mod:`~pinnkit.plots.training`: :func:`plot_solution`, :func:`plot_history`;
- :mod:`~pinnkit.plots.spectra`: :func:`plot_density`, :func:`plot_log_density`, :func:`plot_spectra`,
  :func:`plot_lanczos_convergence`, :func:`plot_sorted_eigenvalues`, :func:`plot_power_law`;
- :mod:`~pinnkit.plots.stationary`: :func:`plot_saddle_slices`, :func:`plot_index_vs_loss`,
  :func:`plot_endpoint_fits`, :func:`endpoint_summary` (a table);
- :mod:`~pinnkit.plots.alignment`: :func:`plot_score_geometry`, :func:`plot_vectors`,
  :func:`plot_alignment_history`, :func:`plot_study`, :func:`plot_preconditioned`;
- :mod:`~pinnkit.plots.landscape`: :func:`plot_slice_1d`, :func:`plot_slice_2d` and the widget callback
  :func:`explorer`;
- :mod:`~pinnkit.plots.kernel`: :func:`plot_predicted_vs_measured`, :func:`plot_grid_modes`;
- :mod:`~pinnkit.plots.optimizers`: :func:`plot_stops`, :func:`plot_race`, :func:`plot_curves`;
- :mod:`~pinnkit.plots.tables`: tables shown as HTML in a notebook (a
  :class:`~pinnkit.plots.tables.Table`): :func:`table`,
  :func:`tuning_table`, :func:`spread_table`.
"""
from .alignment import plot_alignment_history, plot_preconditioned, plot_score_geometry, plot_study, plot_vectors
from .kernel import plot_grid_modes, plot_predicted_vs_measured
from .landscape import EXPLORER_DIRECTIONS, explorer, plot_slice_1d, plot_slice_2d
from .optimizers import plot_curves, plot_race, plot_stops
from .spectra import (
                      plot_density,
                      plot_lanczos_convergence,
                      plot_log_density,
                      plot_power_law,
                      plot_sorted_eigenvalues,
                      plot_spectra,
)
from .stationary import endpoint_summary, plot_endpoint_fits, plot_index_vs_loss, plot_saddle_slices
from .tables import spread_table, table, tuning_table
from .training import plot_history, plot_solution

__all__ = ["plot_solution", "plot_history", "plot_density", "plot_log_density", "plot_spectra",
           "plot_lanczos_convergence", "plot_sorted_eigenvalues", "plot_power_law", "plot_saddle_slices",
           "plot_index_vs_loss", "plot_endpoint_fits", "plot_score_geometry", "plot_vectors", "plot_alignment_history",
           "plot_study", "plot_preconditioned", "plot_slice_1d", "plot_slice_2d", "EXPLORER_DIRECTIONS", "explorer",
           "plot_predicted_vs_measured", "plot_grid_modes", "plot_stops", "plot_race", "plot_curves",
           "endpoint_summary", "table", "spread_table", "tuning_table"]
