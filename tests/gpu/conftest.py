"""GPU smoke tests (``make gpu-check``): each chapter's main computation, a few steps at paper sizes, on CUDA.

They are skipped without a GPU and when ``PINNKIT_DEVICE=cpu`` (as ``make test`` sets). To check the test code
itself on a machine without a GPU, ``PINNKIT_GPU_CHECK_ON_CPU=1`` runs them on the CPU at small sizes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class Sizes:
    """Paper sizes on CUDA; small ones for a dry run of the test code on the CPU."""

    widths: tuple[int, ...]
    n_res: int
    n_ic: int
    n_bc: int
    regression_widths: tuple[int, ...]
    rank: int


PAPER = Sizes(widths=(200, 200, 200), n_res=10_000, n_ic=257, n_bc=101, regression_widths=(20, 20), rank=60)
DRY_RUN = Sizes(widths=(8, 8), n_res=64, n_ic=16, n_bc=8, regression_widths=(5,), rank=5)


@pytest.fixture(scope="session")
def device() -> torch.device:
    if os.environ.get("PINNKIT_GPU_CHECK_ON_CPU") == "1":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no GPU: torch.cuda.is_available() is False (make gpu-check needs a CUDA build of torch)")
    if os.environ.get("PINNKIT_DEVICE", "").strip().lower() == "cpu":
        pytest.skip("PINNKIT_DEVICE=cpu (make test forces the CPU; run make gpu-check for these)")
    return torch.device("cuda", torch.cuda.current_device())


@pytest.fixture(scope="session")
def sizes(device: torch.device) -> Sizes:
    return PAPER if device.type == "cuda" else DRY_RUN
