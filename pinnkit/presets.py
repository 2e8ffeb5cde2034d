"""The ``classroom`` / ``paper`` switch and the device, in one place.

``$PINNKIT_PRESET`` picks the preset (unset: ``paper`` when CUDA is available, else ``classroom``);
``$PINNKIT_DEVICE`` (``cpu``/``cuda``) the device (unset: CUDA for the paper preset when available, else the CPU).
A chapter picks its sizes with :meth:`Preset.choose`::

    preset = pinnkit.setup()
    cfg = preset.choose(classroom=dict(width=20, steps=500), paper=dict(width=200, steps=41_000))
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
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`; None: CPU) as a device, ``cuda``
    with its index; ``source`` names the setting in errors.

    Raises:
        ValueError: not a device, or CUDA (or a CUDA index) that this machine does not have.
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
    """The device of preset ``name``: ``$PINNKIT_DEVICE``, else CUDA for ``paper`` when available, else the CPU.

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
    """The :class:`Preset` ``name`` (case-insensitive), else ``$PINNKIT_PRESET``, else ``paper`` with CUDA and
    ``classroom`` without, on its :func:`default_device`.

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
    """The perturbation ``$PINNKIT_PERTURB`` asks for: 0 (none) or ``k > 0``, a stand-in for another machine
    (:data:`PERTURB_THREADS` threads and initial parameters moved by one ulp, :func:`nudge` with seed ``k``).

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
    """Pick the preset (:func:`current`), fix torch's CPU threads and print one line saying what was chosen.

    ``threads`` (else ``$PINNKIT_THREADS``, else 2; :data:`PERTURB_THREADS` when :func:`perturbed`) fixes the
    order in which reductions sum, so CPU runs repeat on any machine.

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
