"""pinnkit: why physics-informed neural networks are hard to train — the library behind the book.

Every tool takes a loss as a function of one flat parameter vector ``theta``; per-term losses are a dict.
"""
from . import nets, presets, problems
from .pinn import PINN
from .presets import Preset, setup
from .train import History, TrainingDiverged, TrainResult, train

__version__ = "0.1.0"
__all__ = ["PINN", "Preset", "setup", "train", "History", "TrainResult", "TrainingDiverged", "nets", "presets",
           "problems"]
