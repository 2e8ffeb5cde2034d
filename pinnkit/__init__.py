"""pinnkit: why physics-informed neural networks are hard to train — the library behind the book.

Every tool takes a loss as a function of one flat parameter vector ``theta``; per-term losses are a dict.
"""
from . import curvature, nets, plots, presets, problems
from .pinn import PINN
from .presets import Preset, setup
from .train import STEPPERS, History, TrainingDiverged, TrainResult, train

# --- optimizers defined in their own modules, registered for pk.train(method=...) ---
# (each line: `from .module import stepper_factory as _x; STEPPERS["name"] = _x`)
from .soap import soap_stepper as _soap; STEPPERS["soap"] = _soap  # noqa: E702
from .nncg import nncg_stepper as _nncg; STEPPERS["nncg"] = _nncg  # noqa: E702

__version__ = "0.1.0"
__all__ = ["PINN", "Preset", "setup", "train", "History", "TrainResult", "TrainingDiverged", "curvature", "nets",
           "plots", "presets", "problems"]
