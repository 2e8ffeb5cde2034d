"""The ``classroom`` / ``paper`` switch, device and dtype selection — in one place.

``PINNKIT_PRESET`` picks the preset; unset, it is ``paper`` when CUDA is available, else ``classroom``.
The test command sets ``PINNKIT_PRESET=classroom``. Each chapter keeps its own sizes and picks them with
:meth:`Preset.choose`::

    P = pinnkit.setup()
    cfg = P.choose(classroom=dict(width=20, steps=500), paper=dict(width=200, steps=41_000))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

PRESETS = ("classroom", "paper")
ENV = "PINNKIT_PRESET"


@dataclass(frozen=True)
class Preset:
    """The active preset: its name and the device every tensor should live on."""

    name: str
    device: torch.device

    def choose(self, *, classroom: Any, paper: Any) -> Any:
        """Return the value for this preset."""
        return classroom if self.name == "classroom" else paper

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def current(name: str | None = None) -> Preset:
    """The preset named ``name``, else ``$PINNKIT_PRESET``, else ``paper`` with CUDA / ``classroom`` without."""
    name = name or os.environ.get(ENV) or ("paper" if torch.cuda.is_available() else "classroom")
    name = name.strip().lower()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (from {ENV} or the argument); valid: {', '.join(PRESETS)}")
    return Preset(name, default_device())


def setup(name: str | None = None, threads: int | None = None) -> Preset:
    """Pick the preset and make CPU runs reproducible: fix the number of torch threads (``threads``, else
    ``$PINNKIT_THREADS``, else 2 — so reductions sum in the same order on any machine) and print one line
    saying what was chosen."""
    preset = current(name)
    threads = threads or int(os.environ.get("PINNKIT_THREADS", "2"))
    if threads <= 0:
        raise ValueError(f"threads must be positive, got {threads}")
    if preset.device.type == "cpu":
        torch.set_num_threads(threads)
    print(f"pinnkit preset: {preset.name} (device: {preset.device.type})")
    return preset
