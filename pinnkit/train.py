"""Training on the flat parameter vector: Adam, L-BFGS and Adam→L-BFGS, with a per-term history.

>>> import pinnkit as pk
>>> pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8)
>>> run = pk.train(pinn, "adam", steps=20, lr=1e-2, quiet=True)
>>> run.history.loss[-1] < run.history.loss[0]
True

``objective`` is a :class:`~pinnkit.PINN` (its ``terms``, ``theta0`` and ``l2re`` are used) or any
function ``theta -> dict[str, Tensor]`` (or scalar Tensor) together with ``theta0=``.
Gradients come from :func:`torch.func.grad_and_value`; ``theta`` is never modified in place.

Methods are chains of phases joined by ``+`` (``"adam+lbfgs"``); ``switch`` gives the step counts of all
phases but the last. A phase is a *stepper* registered in :data:`STEPPERS`: a factory
``(terms_fn, theta, **options) -> stepper`` whose ``step()`` advances one iteration and whose ``theta``
is the current iterate. New optimizers plug in there.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor

from .objective import TermsFn, as_terms, resolve, value_and_grad  # noqa: F401 (re-exported)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew past the divergence threshold."""


@dataclass(frozen=True)
class History:
    """What was logged: entry ``i`` describes theta after ``step[i]`` optimizer steps."""

    step: list[int] = field(default_factory=list)
    iteration: list[int] = field(default_factory=list)  # steps counted as in Rathore et al.: L-BFGS step = 20
    phase: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    grad_norm: list[float] = field(default_factory=list)
    l2re: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # wall seconds spent in optimizer steps so far
    extra: dict[str, list[Any]] = field(default_factory=dict)  # from ``log=`` callbacks (e.g. alignment)


@dataclass(frozen=True)
class TrainResult:
    theta: Tensor
    history: History
    method: str
    steps: int
    stepper: Any = None  # the last phase's stepper (e.g. torch L-BFGS with its stored (s, y) pairs)

    @property
    def loss(self) -> float:
        return self.history.loss[-1]

    @property
    def l2re(self) -> float:
        return self.history.l2re[-1] if self.history.l2re else math.nan

    @property
    def grad_norm(self) -> float:
        return self.history.grad_norm[-1]

    def seconds_per_step(self, phase: str | None = None) -> float:
        """Mean wall time per optimizer step (within one ``phase`` if given)."""
        h = self.history
        pairs = [(h.step[i] - h.step[i - 1], h.time[i] - h.time[i - 1]) for i in range(1, len(h.step))
                 if phase is None or h.phase[i - 1] == phase]
        n = sum(p[0] for p in pairs)
        return sum(p[1] for p in pairs) / n if n else math.nan


# --- steppers ------------------------------------------------------------------------------------------
class Stepper(Protocol):
    theta: Tensor
    iterations_per_step: int  # how Rathore et al. count one step (L-BFGS: its inner iterations); default 1

    def step(self) -> None: ...


class TorchStepper:
    """Any ``torch.optim`` optimizer on a leaf copy of ``theta``, fed gradients by ``torch.func``."""

    def __init__(self, terms_fn: TermsFn, theta: Tensor, make_opt: Callable[[list[Tensor]], torch.optim.Optimizer],
                 closure: bool = False, iterations_per_step: int = 1):
        self.iterations_per_step = iterations_per_step
        self.terms_fn = terms_fn
        self.param = theta.detach().clone().requires_grad_(True)
        self.opt = make_opt([self.param])
        self.closure = closure

    @property
    def theta(self) -> Tensor:
        return self.param.detach()

    def _closure(self) -> Tensor:
        loss, _, g = value_and_grad(self.terms_fn, self.param)
        self.param.grad = g
        return loss

    def step(self) -> None:
        if self.closure:
            self.opt.step(self._closure)
        else:
            self._closure()
            self.opt.step()


def adam(terms_fn: TermsFn, theta: Tensor, lr: float = 1e-3, **_: Any) -> TorchStepper:
    return TorchStepper(terms_fn, theta, lambda p: torch.optim.Adam(p, lr=lr))


def lbfgs(terms_fn: TermsFn, theta: Tensor, lbfgs_iter: int = 20, history_size: int = 100, **_: Any) -> TorchStepper:
    """torch L-BFGS as Rathore et al.: lr 1, strong Wolfe, ``history_size`` pairs, ``lbfgs_iter`` inner iterations."""
    return TorchStepper(terms_fn, theta, lambda p: torch.optim.LBFGS(
        p, lr=1.0, max_iter=lbfgs_iter, history_size=history_size, line_search_fn="strong_wolfe"), closure=True,
        iterations_per_step=lbfgs_iter)


STEPPERS: dict[str, Callable[..., Stepper]] = {"adam": adam, "lbfgs": lbfgs}


def _check_finite(loss: Tensor, step: int, method: str, first: float | None, diverge: float) -> None:
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingDiverged(f"{method}: loss became {value} at step {step}; lower the learning rate or "
                               f"train in float64 (dtype=torch.float64)")
    if first is not None and value > diverge * max(first, 1e-30):
        raise TrainingDiverged(f"{method}: loss {value:.3g} at step {step} exceeds {diverge:g} x its initial "
                               f"value {first:.3g}; lower the learning rate")


def _phases(method: str, steps: int, switch: int | Sequence[int] | None) -> list[tuple[str, int]]:
    names = method.lower().split("+")
    for name in names:
        if name not in STEPPERS:
            raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(STEPPERS)} (chain them with '+')")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if len(names) == 1:
        return [(names[0], steps)]
    counts = [switch] if isinstance(switch, int) else list(switch or [])
    if len(counts) != len(names) - 1 or any(c <= 0 for c in counts) or sum(counts) >= steps:
        raise ValueError(f"{method} needs switch= the step counts of its first {len(names) - 1} phase(s), "
                         f"positive and summing to less than steps={steps}; got switch={switch}")
    return list(zip(names, counts + [steps - sum(counts)]))


def train(objective: Any, method: str = "adam", steps: int = 1000, *, theta0: Tensor | None = None,
          switch: int | Sequence[int] | None = None, l2re: Callable[[Tensor], float] | None = None,
          log_every: int | None = None, log: dict[str, Callable[[Tensor, Tensor], Any]] | None = None,
          quiet: bool | None = None, diverge: float = 1e6, desc: str | None = None, **options: Any) -> TrainResult:
    """Optimise ``objective`` from ``theta0`` and return the final ``theta`` and a :class:`History`.

    Args:
        method: ``"adam"``, ``"lbfgs"`` or a chain such as ``"adam+lbfgs"`` (see :data:`STEPPERS`).
        steps: total optimizer steps (an L-BFGS step is ``lbfgs_iter`` inner iterations).
        switch: steps of each phase but the last, e.g. ``switch=1000`` for Adam→L-BFGS after 1000 Adam steps.
        log_every: log every this many steps (default: about 100 entries); the last step is always logged.
        log: extra quantities ``name -> f(theta, grad)`` logged into ``history.extra``.
        quiet: hide the progress bar (default: ``$PINNKIT_PROGRESS == "0"``).
        diverge: stop when the loss exceeds this multiple of its initial value.
        **options: passed to the steppers: ``lr`` (Adam, default 1e-3), ``lbfgs_iter`` (20), ``history_size`` (100).

    Raises:
        TrainingDiverged: the loss became NaN/inf or diverged; the message names the fix.
    """
    phases = _phases(method, steps, switch)
    if options.get("lr", 1.0) <= 0:
        raise ValueError(f"lr must be positive, got {options['lr']}")
    terms_fn, theta0 = resolve(objective, theta0)
    if getattr(objective, "blocks", None) is not None:
        options.setdefault("blocks", objective.blocks)  # layout of theta, for block-wise optimizers (SOAP)
    if l2re is None and getattr(objective, "u_exact", None) is not None:
        l2re = objective.l2re
    if quiet is None:
        quiet = os.environ.get("PINNKIT_PROGRESS", "1") == "0"
    log_every = log_every or max(1, steps // 100)

    hist = History()
    theta = theta0.detach().clone()
    elapsed, k, it, first = 0.0, 0, 0, None

    def record(phase: str) -> None:
        nonlocal first
        loss, terms, g = value_and_grad(terms_fn, theta)
        _check_finite(loss, k, method, first, diverge)
        first = float(loss) if first is None else first
        hist.step.append(k)
        hist.iteration.append(it)
        hist.phase.append(phase)
        hist.loss.append(float(loss))
        for name, v in terms.items():
            hist.terms.setdefault(name, []).append(float(v))
        hist.grad_norm.append(float(torch.linalg.vector_norm(g)))
        hist.time.append(elapsed)
        if l2re is not None:
            hist.l2re.append(float(l2re(theta)))
        for name, fn in (log or {}).items():
            hist.extra.setdefault(name, []).append(fn(theta, g))

    from tqdm.auto import tqdm
    with tqdm(total=steps, desc=desc or method, disable=quiet, leave=False) as bar:
        for phase, n in phases:
            stepper = STEPPERS[phase](terms_fn, theta, **options)
            for _ in range(n):
                if k % log_every == 0:
                    record(phase)
                t0 = time.perf_counter()
                stepper.step()
                elapsed += time.perf_counter() - t0
                theta = stepper.theta
                k += 1
                it += getattr(stepper, "iterations_per_step", 1)
                bar.update(1)
                if k % log_every and not math.isfinite(float(theta.sum())):
                    _check_finite(theta.sum(), k, method, None, diverge)
        record(phases[-1][0])
    return TrainResult(theta=theta.detach().clone(), history=hist, method=method, steps=steps, stepper=stepper)
