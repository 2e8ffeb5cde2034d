"""The one training driver: any registered optimizer, or a chain of them, on the flat parameter vector.

>>> import pinnkit as pk
>>> pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8)
>>> run = pk.train(pinn, "adam", steps=20, lr=1e-2, quiet=True)
>>> run.history.loss[-1] < run.history.loss[0], run.status
(True, 'max_steps')

``objective`` is a :class:`~pinnkit.PINN` (its ``terms``, ``theta0``, ``blocks`` and ``l2re`` are used) or any
function ``theta -> dict[str, Tensor]`` (or scalar Tensor) together with ``theta0=``.
Gradients come from :func:`pinnkit.objective.value_and_grad`; ``theta`` is never modified in place.

Methods are chains of phases joined by ``+`` (``"adam+lbfgs"``, case-insensitive); ``switch`` gives the step
counts of all phases but the last. A phase is a *stepper* registered in :data:`STEPPERS`: a factory
``(terms_fn, theta, *, options) -> stepper`` whose ``step()`` advances one iteration and whose ``theta`` is the
current iterate. Options are routed by name: ``train(..., lr=1e-2)`` goes to every phase whose factory declares
``lr``; ``phase_options={"adam": {"lr": 1e-2}, "soap": {"lr": 3e-3}}`` sets values for one phase; an option no
phase declares is a ``TypeError`` that lists the valid ones. New optimizers plug in by adding a factory to
:data:`STEPPERS`.

Every run ends with a ``status``: ``"converged"`` (gradient norm at most ``grad_tol``), ``"max_steps"``,
``"diverged"`` (``on_diverge="stop"``), ``"stalled"`` (a Newton-family step found no acceptable step) or
``"interrupted"`` (``stop_after``; continue with ``resume=`` a :class:`TrainState`), or ``"max_seconds"`` (the
``max_seconds=`` time budget was spent). Step times are wall-clock
seconds of ``step()`` alone, with ``torch.cuda.synchronize`` before each clock reading on a GPU.

Imports: this module imports the optimizers of :mod:`~pinnkit.newton`, :mod:`~pinnkit.nncg` and
:mod:`~pinnkit.soap` for its registry; those import only :mod:`~pinnkit.objective` (and curvature, linesearch),
never this module, so there is no import cycle.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .bfgs import bfgs_stepper, ssbfgs_stepper, ssbroyden_stepper
from .gauss_newton import METHODS as _GAUSS_NEWTON_METHODS
from .nets import size
from .newton import METHODS as _NEWTON_METHODS
from .nncg import gd_armijo_stepper, nncg_stepper
from .objective import TermsFn, as_terms, resolve, value_and_grad  # noqa: F401 (re-exported)
from .soap import soap_stepper

__all__ = ["train", "TrainResult", "TrainState", "History", "TrainingDiverged", "STEPPERS", "Callback", "Log",
           "OnStep", "Checkpoint", "Stepper", "TorchStepper", "LBFGSStepper", "LBFGS_REASONS", "adam", "lbfgs",
           "lbfgs64", "stepper_factory", "valid_options", "TermsFn", "value_and_grad", "resolve", "as_terms"]

#: divergence is judged relative to ``max(|initial loss|, DIVERGE_FLOOR)``: an absolute floor, so that a loss
#: that starts near zero (a resumed or well-initialised run) and rises to a small value is not called diverged
DIVERGE_FLOOR = 1.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew past the divergence threshold."""


@dataclass(frozen=True)
class History:
    """What was logged: entry ``i`` describes theta after ``step[i]`` optimizer steps."""

    step: list[int] = field(default_factory=list)
    iteration: list[int] = field(default_factory=list)  # as Rathore et al. count: an L-BFGS step = lbfgs_iter
    phase: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    grad_norm: list[float] = field(default_factory=list)
    l2re: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # wall seconds spent in optimizer steps so far
    extra: dict[str, list[Any]] = field(default_factory=dict)  # from ``log=`` callbacks (e.g. alignment)
    evals: list[int | None] = field(default_factory=list)  # loss+gradient evaluations so far (None: not counted)
    #: one entry per step of a stepper that reports how its step ended (L-BFGS): ``{"step": [...], "phase":
    #: [...], "evals": [...], "reason": [...]}`` with the step's loss evaluations and why it stopped
    stops: dict[str, list[Any]] = field(default_factory=dict)


Status = Literal["converged", "max_steps", "diverged", "stalled", "interrupted", "max_seconds"]


@dataclass(frozen=True)
class TrainResult:
    """A training run: the last logged iterate ``theta``, its step count ``steps``, the :class:`History` and why
    the run ended (``status``: ``"converged"``, ``"max_steps"``, ``"diverged"``, ``"stalled"``, or
    ``"interrupted"`` by ``stop_after``; then ``theta`` is the current iterate, continue with ``resume=``).

    ``loss``, ``grad_norm`` and ``l2re`` are those of ``theta`` (the last history entry); ``final_loss`` and
    ``final_grad_norm`` are the same numbers under older names. ``stepper`` is the
    last phase's stepper (e.g. torch L-BFGS with its stored ``(s, y)`` pairs).
    """

    theta: Tensor
    history: History
    method: str
    steps: int
    stepper: Any = None
    status: Status = "max_steps"

    @property
    def loss(self) -> float:
        """The loss at ``theta`` (the last history entry for a run)."""
        return self.history.loss[-1]

    @property
    def l2re(self) -> float:
        """The relative L2 error at ``theta`` (NaN when not logged)."""
        return self.history.l2re[-1] if self.history.l2re else math.nan

    @property
    def grad_norm(self) -> float:
        """The gradient norm at ``theta``."""
        return self.history.grad_norm[-1]

    @property
    def final_loss(self) -> float:
        """Alias of :attr:`loss` (the name older code used)."""
        return self.history.loss[-1]

    @property
    def final_grad_norm(self) -> float:
        """Alias of :attr:`grad_norm` (the name older code used)."""
        return self.history.grad_norm[-1]

    def _per(self, counts: list[int], phase: str | None) -> float:
        h = self.history
        pairs = [(counts[i] - counts[i - 1], h.time[i] - h.time[i - 1]) for i in range(1, len(h.step))
                 if phase is None or h.phase[i - 1] == phase]
        n = sum(p[0] for p in pairs)
        return sum(p[1] for p in pairs) / n if n else math.nan

    def seconds_per_step(self, phase: str | None = None) -> float:
        """Mean wall time per optimizer step (within one ``phase`` if given; NaN when no step was timed).

        Args:
            phase: a phase name of the chain (``"adam"``, ``"lbfgs"``, ...); ``None`` for the whole run.

        Returns:
            Seconds per step (GPU work is synchronised before each clock reading).
        """
        return self._per(self.history.step, phase)

    def seconds_per_iteration(self, phase: str | None = None) -> float:
        """Mean wall time per iteration as Rathore et al. count them (an L-BFGS step = its ``lbfgs_iter`` inner
        iterations, any other step = 1), within one ``phase`` if given.

        Args:
            phase: a phase name of the chain; ``None`` for the whole run.

        Returns:
            Seconds per iteration (NaN when no step was timed).
        """
        return self._per(self.history.iteration, phase)


@dataclass(frozen=True)
class TrainState:
    """A checkpoint of :func:`train`: enough to continue the run exactly where it stopped.

    ``phase`` is the index of the current phase of the chain and ``done`` the steps it has made; ``stepper`` is
    that phase's ``state_dict()`` (:func:`train` refuses to checkpoint a stepper without one);
    ``first`` is the first logged loss (the divergence reference); ``evals_done`` the loss evaluations of the
    finished phases. The ``log=`` callbacks' own state is not kept.
    """

    method: str
    steps: int
    switch: tuple[int, ...]
    k: int
    iteration: int
    phase: int
    done: int
    theta: Tensor
    stepper: dict[str, Any] | None
    history: History
    elapsed: float
    first: float | None
    evals_done: int = 0   # loss evaluations of the phases before ``phase``
    cpu: float = 0.0      # process CPU seconds spent in optimizer steps so far (``budget_clock="cpu"``)

    def save(self, path: str | Path) -> None:
        """Write the state with :func:`torch.save` (plain containers and tensors only)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["history"] = dataclasses.asdict(self.history)
        torch.save(d, path)

    @classmethod
    def load(cls, path: str | Path, map_location: Any = None) -> "TrainState":
        """Read a state written by :meth:`save` (``map_location`` as for :func:`torch.load`)."""
        d = torch.load(path, map_location=map_location, weights_only=True)
        d["history"] = History(**d["history"])
        d["switch"] = tuple(d["switch"])
        return cls(**d)


# --- callbacks -----------------------------------------------------------------------------------------
class Callback:
    r"""The one way to watch or extend a :func:`train` run: subclass it and override the hooks you need.

    Every hook is a no-op here. :func:`train` calls, for each callback in ``callbacks=`` (in order):

    * :meth:`logged` when it logs ``theta`` at step ``k`` (every ``log_every`` steps and at the end);
    * :meth:`stepped` after every optimizer step :math:`k \to k+1`;
    * :meth:`checkpoint` every ``checkpoint_every`` seconds and when ``stop_after`` interrupts the run.

    ``train``'s ``log=``, ``on_step=`` and ``checkpoint=`` arguments are shorthands for the callbacks :class:`Log`,
    :class:`OnStep` and :class:`Checkpoint`.

    >>> import torch, pinnkit as pk
    >>> class Count(Callback):
    ...     steps = 0
    ...     def stepped(self, k, before, after, stepper):
    ...         self.steps += 1
    >>> c = Count()
    >>> _ = pk.train(lambda th: (th ** 2).sum(), "adam", 5, theta0=torch.ones(2), callbacks=[c], quiet=True)
    >>> c.steps
    5
    """

    def logged(self, k: int, theta: Tensor, grad: Tensor, history: History) -> None:
        """At a log point: ``theta`` after ``k`` steps, its gradient, and the history with this entry logged."""

    def stepped(self, k: int, before: Tensor, after: Tensor, stepper: Any) -> None:
        r"""After step :math:`k \to k+1`: copies of the two iterates; ``stepper`` holds its state after the step."""

    def checkpoint(self, state: TrainState) -> None:
        """A :class:`TrainState` to save (e.g. ``state.save(path)``); continue with ``train(..., resume=state)``."""

    def _overrides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Callback, hook)


class Log(Callback):
    """Log quantities ``name -> f(theta, grad)`` into ``history.extra[name]`` at every log point (``log=``)."""

    def __init__(self, fns: Mapping[str, Callable[[Tensor, Tensor], Any]]) -> None:
        self.fns = dict(fns)

    def logged(self, k: int, theta: Tensor, grad: Tensor, history: History) -> None:
        """Append ``f(theta, grad)`` to ``history.extra[name]`` for every ``name, f``."""
        for name, fn in self.fns.items():
            history.extra.setdefault(name, []).append(fn(theta, grad))


class OnStep(Callback):
    """Call ``fn(k, theta_k, theta_k1, stepper)`` after every step (``on_step=``)."""

    def __init__(self, fn: Callable[[int, Tensor, Tensor, Any], None]) -> None:
        self.fn = fn

    def stepped(self, k: int, before: Tensor, after: Tensor, stepper: Any) -> None:
        """Pass the step on to ``fn``."""
        self.fn(k, before, after, stepper)


class Checkpoint(Callback):
    """Call ``fn(state)`` with each :class:`TrainState` (``checkpoint=``)."""

    def __init__(self, fn: Callable[[TrainState], None]) -> None:
        self.fn = fn

    def checkpoint(self, state: TrainState) -> None:
        """Pass the state on to ``fn``."""
        self.fn(state)


# --- steppers ------------------------------------------------------------------------------------------
class Stepper(Protocol):
    """What :func:`train` needs from an optimizer: ``step()`` and the current iterate ``theta``.

    Optional: ``iterations_per_step`` (how Rathore et al. count one step; L-BFGS: its inner iterations; default
    1), ``stalled`` (True after a step that found no acceptable point: the run stops), ``evals`` (loss and
    gradient evaluations so far, logged in :attr:`History.evals`), ``last_stop`` (``(evals, reason)`` of the
    latest step, logged in :attr:`History.stops`), ``state_dict()`` / ``load_state_dict()`` (for
    :class:`TrainState` checkpoints).
    """

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""

    def step(self) -> None:
        """Advance one optimizer step (updates :attr:`theta`)."""


class TorchStepper:
    """Any ``torch.optim`` optimizer on a leaf copy of ``theta``, fed gradients by ``torch.func``."""

    def __init__(self, terms_fn: TermsFn, theta: Tensor, make_opt: Callable[[list[Tensor]], torch.optim.Optimizer],
                 closure: bool = False, iterations_per_step: int = 1):
        self.iterations_per_step = iterations_per_step
        self.terms_fn = terms_fn
        self.param = theta.detach().clone().requires_grad_(True)
        self.opt = make_opt([self.param])
        self.closure = closure
        self.evals = 0   # loss + gradient evaluations so far

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self.param.detach()

    def _closure(self) -> Tensor:
        self.evals += 1
        loss, _, g = value_and_grad(self.terms_fn, self.param)
        self.param.grad = g
        return loss

    def step(self) -> None:
        """Advance one optimizer step (updates :attr:`theta`)."""
        if self.closure:  # torch types the closure as returning float; L-BFGS calls float() on our Tensor
            self.opt.step(self._closure)  # type: ignore[arg-type]
        else:
            self._closure()
            self.opt.step()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (for :class:`TrainState`; ``theta`` is saved separately)."""
        return {"opt": self.opt.state_dict(), "evals": self.evals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.opt.load_state_dict(state["opt"])
        self.evals = int(state.get("evals", 0))


#: why a torch L-BFGS step ended, in the order torch checks (``torch.optim.LBFGS.step``)
LBFGS_REASONS = {
    "tolerance_grad:start": "max |gradient| <= tolerance_grad at the step's first evaluation (no iteration)",
    "tolerance_change:gd": "directional derivative g.d > -tolerance_change: no descent left in float precision",
    "max_iter": "max_iter inner iterations done (the normal end of a step)",
    "max_eval": "max_eval loss evaluations used",
    "tolerance_grad": "max |gradient| <= tolerance_grad after the line search",
    "tolerance_change:step": "max |t d| <= tolerance_change: the step is below tolerance",
    "tolerance_change:loss": "|loss change| < tolerance_change",
}


class _ReportingLBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS`` (its iterates, unchanged) that also says why each ``step()`` ended.

    torch returns silently when one of its stopping tests fires; :attr:`last_reason` names which (a key of
    :data:`LBFGS_REASONS`). It is read off the state torch leaves behind: the last direction ``d`` and step
    ``t``, the gradient ``prev_flat_grad`` the last direction was computed from, and the loss and gradient at
    the accepted point of the last line search (recorded in :meth:`_directional_evaluate`).
    """

    last_reason: str = ""
    _accepted: dict[float, tuple[float, float]]

    def _directional_evaluate(self, closure: Any, x: Any, t: Any, d: Any) -> Any:
        loss, flat_grad = super()._directional_evaluate(closure, x, t, d)  # type: ignore[no-untyped-call]
        self._accepted[float(t)] = (float(loss), float(flat_grad.abs().max()))
        return loss, flat_grad

    def step(self, closure: Any) -> Any:  # type: ignore[override]
        self._accepted = {}
        state = self.state[self._params[0]]
        n0 = state.get("n_iter", 0)
        out = super().step(closure)  # type: ignore[no-untyped-call]
        self.last_reason = self._reason(state, state.get("n_iter", 0) - n0)
        return out

    def _reason(self, state: Mapping[str, Any], n: int) -> str:
        group = self.param_groups[0]
        if n == 0:
            return "tolerance_grad:start"
        d, t, g = state["d"], state["t"], state["prev_flat_grad"]
        if float(g.dot(d)) > -group["tolerance_change"]:   # the break before any line search of the last iteration
            return "tolerance_change:gd"
        if n == group["max_iter"]:
            return "max_iter"
        if state["func_evals_step"] >= group["max_eval"]:
            return "max_eval"
        loss, gmax = self._accepted.get(float(t), (math.nan, math.nan))
        if gmax <= group["tolerance_grad"]:
            return "tolerance_grad"
        if float(d.mul(t).abs().max()) <= group["tolerance_change"]:
            return "tolerance_change:step"
        return "tolerance_change:loss"


def adam(terms_fn: TermsFn, theta: Tensor, lr: float = 1e-3) -> TorchStepper:
    """``torch.optim.Adam`` with learning rate ``lr`` (other constants torch's defaults).

    Args:
        terms_fn: the loss (terms dict or scalar).
        theta: the starting point (copied).
        lr: learning rate.

    Returns:
        A :class:`TorchStepper`.
    """
    return TorchStepper(terms_fn, theta, lambda p: torch.optim.Adam(p, lr=lr))


class LBFGSStepper(TorchStepper):
    """Torch L-BFGS that reports, after every step, its loss evaluations and why it ended (:attr:`last_stop`)."""

    opt: _ReportingLBFGS

    def step(self) -> None:
        """Advance one optimizer step (updates :attr:`theta`)."""
        before = self.evals
        state = self.opt.state[self.param]
        state["func_evals_step"] = 0

        def closure() -> Tensor:
            state["func_evals_step"] = state.get("func_evals_step", 0) + 1
            return self._closure()

        self.opt.step(closure)
        self.last_stop = (self.evals - before, self.opt.last_reason)


def lbfgs(terms_fn: TermsFn, theta: Tensor, lbfgs_iter: int = 20, history_size: int = 100,
          tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9) -> LBFGSStepper:
    """Torch L-BFGS as Rathore et al.: lr 1, strong Wolfe line search, torch's tolerances.

    torch ends a step early, silently, when a tolerance test fires (:data:`LBFGS_REASONS`); in float32 the test
    ``g.d > -tolerance_change`` can fire at every step from some point on, and the run stands still. Each step's
    loss evaluations and the reason it ended go to :attr:`History.stops`. ``tolerance_grad=0,
    tolerance_change=0`` (with float64) lets every step run its ``lbfgs_iter`` iterations.

    Args:
        terms_fn: the loss (terms dict or scalar).
        theta: the starting point (copied).
        lbfgs_iter: inner iterations per step (``max_iter`` of torch; one step counts as this many iterations).
        history_size: stored ``(s, y)`` pairs.
        tolerance_grad: torch's ``tolerance_grad`` (on max |gradient|).
        tolerance_change: torch's ``tolerance_change`` (on g.d, the step and the loss change).

    Returns:
        An :class:`LBFGSStepper`.
    """
    lbfgs_iter, history_size = size(lbfgs_iter, "lbfgs_iter", 1), size(history_size, "history_size", 1)
    for name, tol in (("tolerance_grad", tolerance_grad), ("tolerance_change", tolerance_change)):
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"{name} must be a number >= 0 (0 turns the test off), got {tol!r}")
    return LBFGSStepper(terms_fn, theta, lambda p: _ReportingLBFGS(
        p, lr=1.0, max_iter=lbfgs_iter, history_size=history_size, line_search_fn="strong_wolfe",
        tolerance_grad=float(tolerance_grad), tolerance_change=float(tolerance_change)), closure=True,
        iterations_per_step=lbfgs_iter)


def lbfgs64(terms_fn: TermsFn, theta: Tensor, lbfgs_iter: int = 20, history_size: int = 100) -> LBFGSStepper:
    """:func:`lbfgs` in float64 with both tolerances at zero (``"lbfgs64"``): no step ends early on a rounding test,
    so every step runs its ``lbfgs_iter`` iterations (arXiv 2505.10949's setting; ``History.stops`` says so).

    Raises:
        ValueError: ``theta`` is not float64 (build the model with ``dtype=torch.float64``).
    """
    if theta.dtype != torch.float64:
        raise ValueError(f"lbfgs64 runs in float64, but theta is {theta.dtype}; build the model with "
                         f"dtype=torch.float64 (e.g. pk.PINN(..., dtype=torch.float64)) or use 'lbfgs'")
    return lbfgs(terms_fn, theta, lbfgs_iter, history_size, tolerance_grad=0.0, tolerance_change=0.0)


#: every optimizer :func:`train` knows, by name: ``factory(terms_fn, theta, *, options) -> stepper``
STEPPERS: dict[str, Callable[..., Stepper]] = {"adam": adam, "lbfgs": lbfgs, "soap": soap_stepper,
                                               "nncg": nncg_stepper, **_NEWTON_METHODS,
                                               **_GAUSS_NEWTON_METHODS, "bfgs": bfgs_stepper,
                                               "ssbfgs": ssbfgs_stepper, "ssbroyden": ssbroyden_stepper,
                                               "lbfgs64": lbfgs64, "gd_armijo": gd_armijo_stepper}


# --- options -------------------------------------------------------------------------------------------
def stepper_factory(name: str) -> Callable[..., Stepper]:
    """The factory registered as ``name`` in :data:`STEPPERS` (case-insensitive).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    names = _names(name)
    if len(names) != 1:
        raise ValueError(f"{name!r} is a chain; stepper_factory takes one optimizer name")
    return STEPPERS[names[0]]


def valid_options(name: str) -> tuple[str, ...] | None:
    """The keyword options of the stepper ``name`` (``None`` when its factory takes ``**kwargs``).

    Args:
        name: a key of :data:`STEPPERS` (case-insensitive).

    Returns:
        The option names its factory declares after ``(terms_fn, theta)``.

    Raises:
        ValueError: unknown name.
    """
    factory = STEPPERS[_names(name)[0]]
    params = list(inspect.signature(factory).parameters.values())[2:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       inspect.Parameter.KEYWORD_ONLY))


def _names(method: str) -> list[str]:
    if not isinstance(method, str):
        raise TypeError(f"method must be a string such as 'adam' or 'adam+lbfgs', got {type(method).__name__}")
    names = [n.strip().lower() for n in method.split("+")]
    for name in names:
        if name not in STEPPERS:
            raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(STEPPERS)} (chain them with '+')")
    return names


def _describe(names: list[str]) -> str:
    parts = []
    for n in dict.fromkeys(names):
        acc = valid_options(n)
        parts.append(f"{n}: " + ("any (its factory takes **kwargs)" if acc is None else
                                 ", ".join(a for a in acc if a != "blocks") or "none"))
    return "; ".join(parts)


def _route(method: str, names: list[str], options: Mapping[str, Any],
           phase_options: Mapping[str, Mapping[str, Any]] | None, blocks: Any) -> list[dict[str, Any]]:
    """The keyword options of each phase: flat ``options`` to every phase that declares them, then
    ``phase_options[name]``, then ``blocks`` to phases that declare it.
    """
    accepted = [valid_options(n) for n in names]
    unknown = [k for k in options if not any(a is None or k in a for a in accepted)]
    if unknown:
        raise TypeError(f"train({method!r}) got option(s) {', '.join(map(repr, unknown))} that no phase accepts; "
                        f"valid options: {_describe(names)}")
    per: dict[str, dict[str, Any]] = {}
    for key, opts in (phase_options or {}).items():
        name = str(key).strip().lower()
        if name not in names:
            raise ValueError(f"phase_options has key {key!r}, which is not a phase of {method!r}; "
                             f"phases: {', '.join(dict.fromkeys(names))}")
        acc = accepted[names.index(name)]
        bad = [k for k in opts if acc is not None and k not in acc]
        if bad:
            raise TypeError(f"phase_options[{key!r}] has option(s) {', '.join(map(repr, bad))} that {name} does not "
                            f"accept; valid options: {_describe([name])}")
        per[name] = dict(opts)
    routed = []
    for name, acc in zip(names, accepted):
        opts = {k: v for k, v in options.items() if acc is None or k in acc}
        opts.update(per.get(name, {}))
        if blocks is not None and acc is not None and "blocks" in acc:
            opts.setdefault("blocks", blocks)
        lr = opts.get("lr")
        if lr is not None and not lr > 0:
            raise ValueError(f"lr must be positive, got {lr} ({name})")
        routed.append(opts)
    return routed


def _phases(method: str, names: list[str], steps: int, switch: int | Sequence[int] | None) -> list[tuple[str, int]]:
    if len(names) == 1:
        if switch is not None:
            raise ValueError(f"switch= gives the step counts of the first phases of a chain such as 'adam+lbfgs'; "
                             f"{method!r} has one phase: drop switch (steps={steps} is its length)")
        return [(names[0], steps)]
    try:
        counts = [size(switch, "switch", 1)]
    except ValueError:
        try:
            items = list(switch)  # type: ignore[arg-type]
        except TypeError:
            items = []
        counts = [size(c, "switch", 1) for c in items]
    if len(counts) != len(names) - 1 or sum(counts) >= steps:
        raise ValueError(f"{method} needs switch= the step counts of its first {len(names) - 1} phase(s), "
                         f"positive and summing to less than steps={steps}; got switch={switch}")
    return list(zip(names, counts + [steps - sum(counts)]))


def _advice(opts: Mapping[str, Any]) -> str:
    if "lr" in opts:
        return f"lower the learning rate (lr={opts['lr']:g}) or train in float64 (dtype=torch.float64)"
    return ("train in float64 (dtype=torch.float64) or use a damped method; on_diverge='stop' keeps the last "
            "finite iterate")


def _synchronize(theta: Tensor) -> None:
    if theta.is_cuda:  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(theta.device)


# --- the driver ----------------------------------------------------------------------------------------
def train(objective: Any, method: str = "adam", steps: int = 1000, *, theta0: Tensor | None = None,
          switch: int | Sequence[int] | None = None, phase_options: Mapping[str, Mapping[str, Any]] | None = None,
          blocks: Sequence[Any] | None = None, grad_tol: float | None = None,
          on_diverge: Literal["raise", "stop"] = "raise", diverge: float = 1e6,
          l2re: Callable[[Tensor], float] | None = None, log_every: int | None = None,
          log: dict[str, Callable[[Tensor, Tensor], Any]] | None = None, quiet: bool | None = None,
          desc: str | None = None, resume: TrainState | None = None,
          checkpoint: Callable[[TrainState], None] | None = None, checkpoint_every: float | None = None,
          stop_after: int | None = None, on_step: Callable[[int, Tensor, Tensor, Any], None] | None = None,
          max_seconds: float | None = None, budget_clock: Literal["wall", "cpu"] = "wall",
          callbacks: Sequence[Callback] = (), **options: Any) -> TrainResult:
    """Optimise ``objective`` from ``theta0`` with ``method`` and return the last iterate and its :class:`History`.

    Args:
        objective: a model with ``terms`` and ``theta0`` (``PINN``, ``Regression``) or a function of ``theta``
            returning a scalar or a dict of terms (then pass ``theta0``).
        method: a name in :data:`STEPPERS` or a chain such as ``"adam+lbfgs"`` (case-insensitive).
        steps: total optimizer steps (0 only evaluates ``theta0``); an L-BFGS step is ``lbfgs_iter`` iterations.
        theta0: the starting point (default ``objective.theta0``); never modified.
        switch: steps of each phase but the last, e.g. ``switch=1000`` for Adam→L-BFGS after 1000 Adam steps.
        phase_options: per-phase options, ``{"adam": {"lr": 1e-2}, "lbfgs": {"history_size": 50}}``; they
            override the flat ``**options`` for that phase.
        blocks: the layout of ``theta`` for block-wise optimizers (SOAP); default ``objective.blocks``. Passed
            only to the phases whose factory declares ``blocks``.
        grad_tol: stop (``status="converged"``) when the gradient norm of a logged iterate is at most this.
        on_diverge: ``"raise"`` a :class:`TrainingDiverged`, or ``"stop"`` with ``status="diverged"`` and
            ``theta`` = the last finite logged iterate.
        diverge: the loss diverged when ``loss - loss0 > diverge * max(|loss0|, DIVERGE_FLOOR)`` (``loss0``: the
            first logged loss; the floor is 1, so a loss starting at 1e-12 must rise by more than ``diverge`` in
            absolute terms), when it or the gradient is not finite, or when a stepper reports a non-finite
            quantity (``FloatingPointError``, e.g. NNCG's direction). Judged on the rise, so a loss that starts
            negative (a Ritz energy) and rises through zero is not flagged.
        l2re: ``theta -> relative L2 error`` logged with the loss (default ``objective.l2re`` for a PINN).
        log_every: log every this many steps (default: about 100 entries); the last step is always logged.
        log: extra quantities ``name -> f(theta, grad)`` logged into ``history.extra`` (shorthand for the callback
            ``Log(log)``).
        quiet: hide the progress bar (default: ``$PINNKIT_PROGRESS == "0"``).
        desc: progress-bar label (default ``method``).
        resume: a :class:`TrainState` of this run (same method, steps, switch) to continue from.
        checkpoint: called with a :class:`TrainState` every ``checkpoint_every`` seconds and when ``stop_after``
            interrupts the run (e.g. ``lambda s: s.save(path)``; shorthand for ``Checkpoint(checkpoint)``).
        checkpoint_every: seconds between checkpoints (default: only at interruptions).
        stop_after: interrupt after this many steps of this call (``status="interrupted"``).
        on_step: called after every optimizer step :math:`k \to k+1` as ``on_step(k, theta_k, theta_k1, stepper)``
            (copies of the two iterates; the stepper holds its state after the step), e.g. to measure consecutive
            updates at lag 1 (:func:`pinnkit.alignment.track`; shorthand for ``OnStep(on_step)``).
        max_seconds: a time budget: stop (``status="max_seconds"``, the iterate logged) after the first step at
            which the optimizer time (``History.time``: seconds inside ``step()``, the logging excluded) reaches
            it; ``steps`` stays an upper bound. For comparisons at equal wall-clock time.
        budget_clock: the clock of ``max_seconds``: ``"wall"`` (``History.time``) or ``"cpu"`` (the process's CPU
            seconds inside ``step()``, :func:`time.process_time`, logged as ``History.extra["cpu_time"]``): on a
            shared CPU, where other processes slow the wall clock, one thread's CPU time is the budget a quiet
            machine's wall clock would give (not on a GPU, whose work the CPU clock does not see).
        callbacks: :class:`Callback` objects, called in order after the shorthands ``log``, ``on_step`` and
            ``checkpoint`` (the one callback mechanism: those three become callbacks).
        **options: passed to every phase whose factory declares them: ``lr`` (Adam 1e-3, SOAP 3e-3),
            ``lbfgs_iter`` (20), ``history_size`` (100), NNCG's ``mu``/``rank``/..., Newton's ``residual``/
            ``damping``/... (see :func:`valid_options`).

    Returns:
        A :class:`TrainResult` with ``theta``, ``history``, ``steps`` (those of ``theta``) and ``status``.

    Raises:
        ValueError: unknown method, bad ``steps``/``switch``/``log_every``/``on_diverge``, a non-positive ``lr``,
            or a ``resume`` state of another run.
        TypeError: an option that no phase of ``method`` accepts (the message lists the valid ones).
        TrainingDiverged: the loss became NaN/inf or diverged and ``on_diverge="raise"``; always when the loss is
            not finite at ``theta0``.
    """
    names = _names(method)
    steps = size(steps, "steps", 0)
    phases = _phases(method, names, steps, switch)
    if on_diverge not in ("raise", "stop"):
        raise ValueError(f"on_diverge must be 'raise' or 'stop', got {on_diverge!r}")
    if grad_tol is not None and not grad_tol >= 0:
        raise ValueError(f"grad_tol must be >= 0, got {grad_tol}")
    if not diverge > 0:
        raise ValueError(f"diverge must be positive, got {diverge}")
    log_every = max(1, steps // 100) if log_every is None else size(log_every, "log_every", 1)
    stop_after = None if stop_after is None else size(stop_after, "stop_after", 1)
    if budget_clock not in ("wall", "cpu"):
        raise ValueError(f"budget_clock must be 'wall' or 'cpu', got {budget_clock!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds}")
    if checkpoint_every is not None and not checkpoint_every > 0:
        raise ValueError(f"checkpoint_every must be a positive number of seconds, got {checkpoint_every}")
    terms_fn, theta0 = resolve(objective, theta0)
    if blocks is None:
        blocks = getattr(objective, "blocks", None)
    routed = _route(method, names, options, phase_options, blocks)
    if l2re is None and getattr(objective, "u_exact", None) is not None:
        l2re = objective.l2re
    if quiet is None:
        quiet = os.environ.get("PINNKIT_PROGRESS", "1") == "0"
    counts = tuple(n for _, n in phases[:-1])
    calls: list[Callback] = [*([Log(log)] if log else []), *([OnStep(on_step)] if on_step is not None else []),
                             *([Checkpoint(checkpoint)] if checkpoint is not None else []), *callbacks]
    watch_steps = [c for c in calls if c._overrides("stepped")]
    savers = [c for c in calls if c._overrides("checkpoint")]

    hist = History()
    theta = theta0.detach().clone()
    elapsed, k, it, start_phase, start_done = 0.0, 0, 0, 0, 0
    cpu = 0.0
    first: float | None = None
    resume_stepper: dict[str, Any] | None = None
    if resume is not None:
        if (resume.method.lower(), resume.steps, resume.switch) != (method.lower(), steps, counts):
            raise ValueError(f"resume= is a state of train({resume.method!r}, steps={resume.steps}, "
                             f"switch={resume.switch}), not of train({method!r}, steps={steps}, switch={counts})")
        hist = History(**dataclasses.asdict(resume.history))   # a private copy of the lists
        theta = resume.theta.detach().clone().to(theta0.device, theta0.dtype)
        elapsed, k, it, first = resume.elapsed, resume.k, resume.iteration, resume.first
        cpu = resume.cpu
        start_phase, start_done, resume_stepper = resume.phase, resume.done, resume.stepper
    good = theta                      # the last logged (finite) iterate
    status: Status = "max_steps"
    last_opts: Mapping[str, Any] = routed[start_phase]   # options of the phase that made the latest step

    def diverged(what: str) -> bool:
        """Raise, or (on_diverge="stop") return True; at step 0 always raise: theta0 itself is bad."""
        if first is None:
            raise TrainingDiverged(f"{method}: {what} at the starting point (step 0, before any optimizer step): "
                                   f"the objective is not finite at theta0; check the loss (e.g. sqrt or log of a "
                                   f"negative number, a division by zero) and theta0")
        if on_diverge == "raise":
            raise TrainingDiverged(f"{method}: {what} at step {k}; {_advice(last_opts)}")
        return True

    def record(phase: str) -> bool:
        """Log ``theta`` at step ``k``; True when the run must stop (diverged or converged)."""
        nonlocal first, good, status
        loss, terms, g = value_and_grad(terms_fn, theta)
        value, gn = float(loss), float(torch.linalg.vector_norm(g))
        if not math.isfinite(value):
            what = f"loss became {value}" if first is not None else f"the loss is {value}"
        elif not math.isfinite(gn):
            what = f"gradient norm became {gn}" if first is not None else f"the gradient norm is {gn}"
        elif first is not None and value - first > diverge * max(abs(first), DIVERGE_FLOOR):
            what = f"loss {value:.3g} rose from its initial {first:.3g} by more than {diverge:g} x |{first:.3g}|"
        else:
            what = ""
        if what and diverged(what):
            status = "diverged"
            return True
        first = value if first is None else first
        good = theta.detach().clone()
        hist.step.append(k)
        hist.iteration.append(it)
        hist.phase.append(phase)
        hist.loss.append(value)
        for name, v in terms.items():
            hist.terms.setdefault(name, []).append(float(v))
        hist.grad_norm.append(gn)
        hist.time.append(elapsed)
        if budget_clock == "cpu":
            hist.extra.setdefault("cpu_time", []).append(cpu)
        counted = 0 if stepper is None else getattr(stepper, "evals", None)
        hist.evals.append(None if counted is None else evals_before + counted)
        if l2re is not None:
            hist.l2re.append(float(l2re(theta)))
        for c in calls:
            c.logged(k, theta, g, hist)
        if grad_tol is not None and gn <= grad_tol:
            status = "converged"
            return True
        return False

    def state(phase: int, done: int) -> TrainState:
        sd = stepper.state_dict() if hasattr(stepper, "state_dict") else None
        return TrainState(method=method, steps=steps, switch=counts, k=k, iteration=it, phase=phase, done=done,
                          theta=theta.detach().clone(), stepper=sd, history=History(**dataclasses.asdict(hist)),
                          elapsed=elapsed, first=first, evals_done=evals_before, cpu=cpu)

    stepper: Any = None
    evals_before = 0 if resume is None else resume.evals_done   # evaluations of the finished phases
    done = False
    k_start, last_save = k, time.monotonic()
    with tqdm(total=steps, initial=k, desc=desc or method, disable=quiet, leave=False) as bar:
        for p in range(start_phase, len(phases)):
            phase, n = phases[p]
            if stepper is not None:
                evals_before += getattr(stepper, "evals", 0) or 0
            stepper = STEPPERS[phase](terms_fn, theta, **routed[p])
            if (savers or stop_after is not None) and not hasattr(stepper, "state_dict"):
                raise TypeError(f"train({method!r}) with checkpoint=/stop_after=: the {phase!r} stepper has no "
                                f"state_dict(), so a resumed run could not continue it exactly; run without "
                                f"checkpoints, or give {type(stepper).__name__} state_dict()/load_state_dict()")
            made = 0
            if p == start_phase and resume is not None:
                made = start_done
                if resume_stepper is not None and hasattr(stepper, "load_state_dict"):
                    stepper.load_state_dict(resume_stepper)
            while made < n:
                if k % log_every == 0 and record(phase):
                    done = True
                    break
                before = theta.detach().clone() if watch_steps else theta
                _synchronize(theta)
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    stepper.step()
                except FloatingPointError as err:   # a stepper's own non-finite check (NNCG's direction)
                    if diverged(str(err)):
                        status, done = "diverged", True
                        break
                _synchronize(theta)
                elapsed += time.perf_counter() - t0
                cpu += time.process_time() - c0
                theta = stepper.theta
                if watch_steps:
                    after = theta.detach().clone()
                    for c in watch_steps:
                        c.stepped(k, before, after, stepper)
                last_opts = routed[p]
                stop = getattr(stepper, "last_stop", None)
                if stop is not None:
                    for key, value in (("step", k), ("phase", phase), ("evals", stop[0]), ("reason", stop[1])):
                        hist.stops.setdefault(key, []).append(value)
                k += 1
                made += 1
                it += getattr(stepper, "iterations_per_step", 1)
                bar.update(1)
                if getattr(stepper, "stalled", False):   # no acceptable step: log it and stop
                    done = True
                    if not record(phase):
                        status = "stalled"
                    break
                spent = elapsed if budget_clock == "wall" else cpu
                if max_seconds is not None and spent >= max_seconds and k < steps:   # time budget spent
                    done = True
                    if not record(phase):
                        status = "max_seconds"
                    break
                if k % log_every and not math.isfinite(float(theta.sum())) and diverged(
                        "the parameters became non-finite"):
                    status, done = "diverged", True
                    break
                if stop_after is not None and k - k_start >= stop_after and k < steps:
                    if savers:
                        now = state(p, made)
                        for c in savers:
                            c.checkpoint(now)
                    return TrainResult(theta=theta.detach().clone(), history=hist, method=method, steps=k,
                                       stepper=stepper, status="interrupted")
                if savers and checkpoint_every is not None and time.monotonic() - last_save >= checkpoint_every:
                    now = state(p, made)
                    for c in savers:
                        c.checkpoint(now)
                    last_save = time.monotonic()
            if done:
                break
        if not done:
            record(phases[-1][0])
    return TrainResult(theta=good.clone(), history=hist, method=method, steps=hist.step[-1] if hist.step else 0,
                       stepper=stepper, status=status)
