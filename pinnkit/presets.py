"""The ``classroom`` / ``paper`` switch, device and dtype selection — in one place.

``PINNKIT_PRESET`` picks the preset; unset, it is ``paper`` when CUDA is available, else ``classroom``.
``PINNKIT_DEVICE`` (``cpu`` or ``cuda``) picks the device; unset, the classroom preset runs on the CPU (its
stored outputs are CPU numbers) and the paper preset on CUDA when available. ``make test`` sets
``PINNKIT_PRESET=classroom PINNKIT_DEVICE=cpu``; ``make gpu-check`` runs the GPU smoke tests. Each chapter keeps
its own sizes and picks them with :meth:`Preset.choose`::

    P = pinnkit.setup()
    cfg = P.choose(classroom=dict(width=20, steps=500), paper=dict(width=200, steps=41_000))
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any

import torch

PRESETS = ("classroom", "paper")
ENV = "PINNKIT_PRESET"
DEVICE_ENV = "PINNKIT_DEVICE"
THREADS_ENV = "PINNKIT_THREADS"
PERTURB_ENV = "PINNKIT_PERTURB"
#: the torch thread count of a perturbed run (``PINNKIT_PERTURB=1``), whatever ``threads`` asks for
PERTURB_THREADS = 2


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
        """True for the paper preset (the papers' sizes)."""
        return self.name == "paper"


def check_device(device: str | torch.device | None, source: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` (default CPU), with a clear error when CUDA is asked for without one.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device` or ``None`` (CPU).
        source: how the caller names the setting in the error message (``"device"``, ``"PINNKIT_DEVICE"``).

    Returns:
        The device; ``cuda`` without an index becomes the current CUDA device (``cuda:0``).

    Raises:
        ValueError: not a device name, CUDA while ``torch.cuda.is_available()`` is False, or a CUDA index that
            does not exist.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{source}={device!r} is not a device; use 'cpu' or 'cuda'") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"{source}={device!r}: pinnkit runs on 'cpu' or 'cuda', got device type {dev.type!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"{source}={device!r} asks for a GPU, but torch.cuda.is_available() is False (no GPU, "
                         f"or a CPU-only torch build); use device='cpu' (or unset {DEVICE_ENV}), or install a CUDA "
                         f"build of torch (see README)")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise ValueError(f"{source}={device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def default_device(name: str = "paper") -> torch.device:
    """The device of preset ``name``: ``$PINNKIT_DEVICE`` if set, else CUDA for the paper preset when available,
    else the CPU (the classroom preset's stored outputs are CPU numbers).

    Raises:
        ValueError: ``$PINNKIT_DEVICE`` is not ``cpu``/``cuda``, or asks for CUDA without a GPU.
    """
    env = os.environ.get(DEVICE_ENV, "").strip()
    if env:
        if env.lower().split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"{DEVICE_ENV}={env!r}; valid: cpu, cuda")
        return check_device(env, DEVICE_ENV)
    return check_device("cuda" if name == "paper" and torch.cuda.is_available() else "cpu")


def current(name: str | None = None) -> Preset:
    """The preset named ``name``, else ``$PINNKIT_PRESET``, else ``paper`` with CUDA / ``classroom`` without.

    Args:
        name: ``"classroom"`` or ``"paper"`` (case-insensitive), or ``None``.

    Returns:
        The :class:`Preset` with its device (:func:`default_device`).

    Raises:
        ValueError: an unknown preset name or a bad ``$PINNKIT_DEVICE``.
    """
    name = name or os.environ.get(ENV) or ("paper" if torch.cuda.is_available() else "classroom")
    name = name.strip().lower()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (from {ENV} or the argument); valid: {', '.join(PRESETS)}")
    return Preset(name, default_device(name))


def _threads(threads: Any) -> int:
    source = "threads"
    if threads is None:
        threads, source = os.environ.get(THREADS_ENV, "2").strip(), THREADS_ENV
        try:
            threads = int(threads)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={threads!r} is not an integer; set it to a positive number such as "
                             f"2") from None
    try:
        n = operator.index(threads) if not isinstance(threads, bool) else None
    except TypeError:
        n = None
    if n is None or n <= 0:
        raise ValueError(f"{source} must be a positive integer (the number of torch CPU threads), got {threads!r}")
    return n


def perturbed() -> int:
    """Which rounding-level perturbation ``$PINNKIT_PERTURB`` asks for: 0 (none, the default) or a positive
    integer ``k`` that picks one of many equally plausible "other machines".

    ``make test`` executes every chapter twice: once as stored, once with ``PINNKIT_PERTURB=1``. A perturbed run
    stands in for another CPU, whose vector width and BLAS kernels sum in another order and so round differently:
    it uses :data:`PERTURB_THREADS` torch threads (other reduction orders, as another CPU's kernels) and nudges
    every nonzero initial parameter by one ulp (:func:`nudge`, signs drawn from ``k``), a rounding-level difference
    at the very start that a long chaotic run amplifies as it would amplify another CPU's. A claim that survives
    several ``k`` is a property of the method, not of one floating-point trajectory.

    Raises:
        ValueError: ``$PINNKIT_PERTURB`` is not a non-negative integer.
    """
    value = os.environ.get(PERTURB_ENV, "").strip() or "0"
    if not value.isdigit():
        raise ValueError(f"{PERTURB_ENV}={value!r}; set it to 0 (no perturbation) or a positive integer k "
                         f"(perturbation number k)")
    return int(value)


def nudge(theta: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``theta`` with every nonzero entry moved by one ulp up or down (signs from ``seed``); zeros stay.

    >>> t = torch.tensor([1.0, -2.0, 0.0])
    >>> d = nudge(t) - t
    >>> bool(d[2] == 0), bool((d[:2].abs() == torch.tensor([2.0**-23, 2.0**-22])).all())
    (True, True)
    """
    gen = torch.Generator().manual_seed(seed)
    up = torch.rand(theta.shape, generator=gen) < 0.5
    inf = torch.tensor(float("inf"), dtype=theta.dtype, device=theta.device)
    target = torch.where(up.to(theta.device), inf, -inf)
    return torch.where(theta == 0, theta, torch.nextafter(theta, target))


def setup(name: str | None = None, threads: int | None = None) -> Preset:
    """Pick the preset and make CPU runs reproducible, then print one line saying what was chosen.

    Fixes the number of torch threads (``threads``, else ``$PINNKIT_THREADS``, else 2 — so reductions sum in
    the same order on any machine); under ``PINNKIT_PERTURB=1`` (:func:`perturbed`) it is
    :data:`PERTURB_THREADS`, whatever ``threads`` asks for.

    Args:
        name: the preset (default ``$PINNKIT_PRESET``, see :func:`current`).
        threads: torch CPU threads (a positive integer).

    Returns:
        The active :class:`Preset`.

    Raises:
        ValueError: unknown preset, bad ``$PINNKIT_DEVICE``, or ``threads``/``$PINNKIT_THREADS`` not a positive
            integer.
    """
    preset = current(name)
    n = _threads(threads)
    if perturbed():
        n = PERTURB_THREADS
    if preset.device.type == "cpu":
        torch.set_num_threads(n)
    print(f"pinnkit preset: {preset.name} (device: {preset.device.type})")
    return preset
