"""pinnkit: why physics-informed neural networks are hard to train — the library behind the book.

Every tool takes a loss as a function of one flat parameter vector ``theta``; per-term losses are a dict.
"""
# training imports the optimizers of newton, nncg, soap, bfgs and gauss_newton for its registry (STEPPERS): the
# function pk.train lives in the module pinnkit.training (no function shadows a module of the same name)
from .training import STEPPERS, History, TrainingDiverged, TrainResult, TrainState, train  # noqa: I001

# pinnkit.experiments is not imported here: it is also a command, `python -m pinnkit.experiments` (import it as
# `from pinnkit import experiments`)
from . import (alignment, conditioning, curvature, features, gauss_newton, landscape, linesearch, nets, newton, nncg,
               objective, presets, problems, remedies, soap, stationary, tangent, training)
from .pinn import PINN
from .presets import Preset, setup

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``pinnkit.plots`` and ``pinnkit.book`` load on first use, so that ``import pinnkit`` does not import matplotlib
    (plots) or the book's chapter helpers (book).
    """
    if name in ("plots", "book"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'pinnkit' has no attribute {name!r}")


__all__ = ["PINN", "Preset", "setup", "train", "History", "TrainResult", "TrainState", "TrainingDiverged", "STEPPERS",
           "alignment", "book", "conditioning", "curvature", "features", "gauss_newton", "landscape", "linesearch", "nets",
           "newton", "nncg", "objective", "plots", "presets", "problems", "remedies", "soap", "stationary",
           "tangent", "training"]
