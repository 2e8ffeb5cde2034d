"""pinnkit: why physics-informed neural networks are hard to train — the library behind the book.

Every tool takes a loss as a function of one flat parameter vector ``theta``; per-term losses are a dict.
"""
from . import (alignment, curvature, features, landscape, nets, newton, nncg, plots, presets, problems, regression,
               report, soap, stationary)
from .pinn import PINN
from .presets import Preset, setup
from .train import STEPPERS, History, TrainingDiverged, TrainResult, train

# --- optimizers defined in their own modules, registered for pk.train(method=...) ---
STEPPERS.update(
    soap=soap.soap_stepper,
    nncg=nncg.nncg_stepper,
    newton=newton.newton,
    damped_newton=newton.damped_newton,
    saddle_free_newton=newton.saddle_free_newton,
    gauss_newton=newton.gauss_newton,            # needs residual=
    levenberg_marquardt=newton.levenberg_marquardt,  # needs residual=
    gradient_norm=newton.gradient_norm,
)

__version__ = "0.1.0"
__all__ = ["PINN", "Preset", "setup", "train", "History", "TrainResult", "TrainingDiverged", "STEPPERS", "alignment",
           "curvature", "features", "landscape", "nets", "newton", "nncg", "plots", "presets", "problems", "regression", "report", "soap",
           "stationary"]
