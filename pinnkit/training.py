"""The one training driver: a registered optimizer, or a chain of them, on a flat parameter vector ``theta``.

>>> import pinnkit as pk
>>> pinn = pk.PINN("convection", widths=[8], n_res=64, n_ic=16, n_bc=8)
>>> run = pk.train(pinn, "adam", steps=20, lr=1e-2, quiet=True)
>>> run.history.loss[-1] < run.history.loss[0], run.status
(True, 'max_steps')

A method is a chain of phases joined by ``+`` (``"adam+lbfgs"``, case-insensitive); ``switch`` gives the lengths
of all phases but the last. A phase is a factory ``(terms_fn, theta, **options) -> stepper`` in :data:`STEPPERS`;
``stepper.step()`` advances one iteration and ``stepper.theta`` is the current iterate. Options go by name to the
phases whose factory declares them (``phase_options`` sets one phase's); one that no phase declares is a
``TypeError``. ``pk.train`` is this module, callable as :func:`train`.
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
from .curvature import LBFGSPairs, lbfgs_pairs
from .gauss_newton import METHODS as _GAUSS_NEWTON_METHODS
from .nets import size
from .newton import METHODS as _NEWTON_METHODS
from .nncg import gd_armijo_stepper, nncg_stepper
from .objective import TermsFn, resolve, value_and_grad
from .soap import soap_stepper

__all__ = ["train", "TrainResult", "TrainState", "History", "TrainingDiverged", "STEPPERS", "Callback", "Log",
           "OnStep", "Checkpoint", "Stepper", "TorchStepper", "LBFGSStepper", "LBFGS_REASONS", "adam", "lbfgs",
           "lbfgs64", "valid_options"]

#: divergence is a rise past ``diverge * max(|initial loss|, DIVERGE_FLOOR)``: the absolute floor keeps a loss
#: that starts near zero and rises to a small value from counting as diverged
DIVERGE_FLOOR = 1.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew past the divergence threshold."""


@dataclass(frozen=True)
class History:
    """What was logged: entry ``i`` describes theta after ``step[i]`` optimizer steps.

    ``iteration`` counts an L-BFGS step as its ``lbfgs_iter`` inner iterations; ``time`` is the wall seconds
    inside ``step()`` so far; ``evals`` the loss and gradient evaluations so far (None: not counted); ``extra``
    what callbacks logged; ``stops`` one entry per step of a stepper that says how its step ended (L-BFGS, NNCG,
    gradient descent with an Armijo search):
    ``{"step", "phase", "evals", "reason"}`` lists, and a list per number a stepper adds (NNCG: ``"hvps"``,
    ``"cg_iters"``, ``"t"``, ``"d_norm"``; None in the rows of steppers that do not report it).
    """

    step: list[int] = field(default_factory=list)
    iteration: list[int] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    grad_norm: list[float] = field(default_factory=list)
    l2re: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    extra: dict[str, list[Any]] = field(default_factory=dict)
    evals: list[int | None] = field(default_factory=list)
    stops: dict[str, list[Any]] = field(default_factory=dict)


Status = Literal["converged", "max_steps", "diverged", "stalled", "interrupted", "max_seconds"]


@dataclass(frozen=True)
class TrainResult:
    """A training run: the last logged iterate ``theta`` after ``steps`` steps, the :class:`History`, the last
    phase's ``stepper`` and why the run ended: ``status`` is ``"converged"`` (``grad_tol``), ``"max_steps"``,
    ``"diverged"``, ``"stalled"`` (no acceptable step), ``"max_seconds"`` or ``"interrupted"`` (``stop_after``:
    ``theta`` is the current iterate; continue with ``resume=``). ``reason`` says why a diverged run stopped.
    """

    theta: Tensor
    history: History
    method: str
    steps: int
    stepper: Any = None
    status: Status = "max_steps"
    reason: str = ""

    @property
    def loss(self) -> float:
        """The loss at ``theta`` (the last history entry); also ``final_loss``."""
        return self.history.loss[-1]

    @property
    def l2re(self) -> float:
        """The relative L2 error at ``theta`` (NaN when not logged)."""
        return self.history.l2re[-1] if self.history.l2re else math.nan

    @property
    def grad_norm(self) -> float:
        """The gradient norm at ``theta``; also ``final_grad_norm``."""
        return self.history.grad_norm[-1]

    final_loss, final_grad_norm = loss, grad_norm

    def _per(self, counts: list[int], phase: str | None) -> float:
        h = self.history
        pairs = [(counts[i] - counts[i - 1], h.time[i] - h.time[i - 1]) for i in range(1, len(h.step))
                 if phase is None or h.phase[i - 1] == phase]
        n = sum(p[0] for p in pairs)
        return sum(p[1] for p in pairs) / n if n else math.nan

    def seconds_per_step(self, phase: str | None = None) -> float:
        """Mean wall seconds per optimizer step, within ``phase`` (e.g. ``"lbfgs"``) if given; NaN if none timed."""
        return self._per(self.history.step, phase)

    def seconds_per_iteration(self, phase: str | None = None) -> float:
        """Mean wall seconds per iteration (:attr:`History.iteration`), within ``phase`` if given."""
        return self._per(self.history.iteration, phase)


@dataclass(frozen=True)
class TrainState:
    """A checkpoint of :func:`train`: enough to continue the run exactly where it stopped.

    ``done`` steps made in phase number ``phase``, whose ``state_dict()`` is ``stepper``; ``first`` is the first
    logged loss (the divergence reference); ``evals_done`` the evaluations of the finished phases, ``cpu`` the CPU
    seconds in ``step()``. Callbacks' own state is not kept.
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
    evals_done: int = 0
    cpu: float = 0.0

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

    Every hook is a no-op here. :func:`train` calls each callback's :meth:`logged` at every log point,
    :meth:`stepped` after every step and :meth:`checkpoint` every ``checkpoint_every`` seconds and when
    ``stop_after`` interrupts the run. Its ``log=``, ``on_step=`` and ``checkpoint=`` are shorthands for
    :class:`Log`, :class:`OnStep` and :class:`Checkpoint`.

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

    Optional: ``iterations_per_step`` (default 1), ``stalled`` (True: the last step found no acceptable point),
    ``evals`` (:attr:`History.evals`), ``last_stop`` (``(evals, reason)`` or ``(evals, reason, {name: number})``,
    :attr:`History.stops`),
    ``state_dict()`` / ``load_state_dict()`` (for :class:`TrainState`).
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
    """``torch.optim.LBFGS`` (iterates unchanged) whose :attr:`last_reason` says which stopping test (a key of
    :data:`LBFGS_REASONS`) ended the last ``step()``, read off the state torch leaves behind (``d``, ``t``,
    ``prev_flat_grad``) and the line search's accepted point (:meth:`_directional_evaluate`).
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


class AdamStepper(TorchStepper):
    """``torch.optim.Adam`` on a flat ``theta`` (:func:`adam`), with its preconditioner."""

    def precondition(self, v: Tensor) -> Tensor | None:
        r"""Adam's current preconditioner :math:`v / (\sqrt{s} + \epsilon)`, :math:`s` its second moment (not
        bias-corrected); ``None`` before the first step.
        """
        st = self.opt.state.get(self.param, {})
        if "exp_avg_sq" not in st:
            return None
        denom: Tensor = st["exp_avg_sq"].sqrt() + self.opt.param_groups[0]["eps"]
        return v / denom.reshape(v.shape)


def adam(terms_fn: TermsFn, theta: Tensor, lr: float = 1e-3) -> AdamStepper:
    """``torch.optim.Adam`` with learning rate ``lr`` (other constants torch's defaults) from a copy of ``theta``."""
    return AdamStepper(terms_fn, theta, lambda p: torch.optim.Adam(p, lr=lr))


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

    def pairs(self) -> LBFGSPairs:
        """The stored curvature pairs (:func:`pinnkit.curvature.lbfgs_pairs`)."""
        return lbfgs_pairs(self.opt)


def lbfgs(terms_fn: TermsFn, theta: Tensor, lbfgs_iter: int = 20, history_size: int = 100,
          tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9) -> LBFGSStepper:
    """Torch L-BFGS as Rathore et al.: lr 1, strong Wolfe, ``lbfgs_iter`` inner iterations (torch's ``max_iter``)
    per step, ``history_size`` pairs, torch's tolerances (0 turns a test off). Each step's loss evaluations and
    the test that ended it (:data:`LBFGS_REASONS`) go to :attr:`History.stops`.
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
def valid_options(name: str) -> tuple[str, ...] | None:
    """The options the factory ``STEPPERS[name]`` declares after ``(terms_fn, theta)`` (None: it takes ``**kw``).

    Raises:
        ValueError: ``name`` is not in :data:`STEPPERS`.
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
class _Run:
    """The state of one :func:`train` call: the iterate ``theta`` after ``k`` steps, clocks, history, status."""

    def __init__(self, key: tuple[str, int, tuple[int, ...]], terms_fn: TermsFn, theta0: Tensor,
                 resume: TrainState | None, calls: list[Callback], grad_tol: float | None, diverge: float,
                 on_diverge: str, l2re: Callable[[Tensor], float] | None, budget_clock: str) -> None:
        self.key, self.terms_fn, self.calls, self.grad_tol, self.diverge = key, terms_fn, calls, grad_tol, diverge
        self.on_diverge, self.l2re, self.budget_clock = on_diverge, l2re, budget_clock
        r = resume
        self.hist = History() if r is None else History(**dataclasses.asdict(r.history))   # a private copy
        self.theta = theta0.detach().clone() if r is None else r.theta.detach().clone().to(theta0.device,
                                                                                            theta0.dtype)
        self.k, self.it, self.elapsed, self.cpu = (0, 0, 0.0, 0.0) if r is None else (r.k, r.iteration,
                                                                                     r.elapsed, r.cpu)
        self.first: float | None = None if r is None else r.first   # the first logged loss
        self.evals_before = 0 if r is None else r.evals_done        # evaluations of the finished phases
        self.good = self.theta                                      # the last logged (finite) iterate
        self.stepper: Any = None
        self.opts: Mapping[str, Any] = {}    # options of the phase that made the latest step (for the advice)
        self.status: Status = "max_steps"
        self.reason = ""                     # why a diverged run stopped

    def fail(self, what: str) -> bool:
        """Raise :class:`TrainingDiverged`, or (``on_diverge="stop"``) set ``status="diverged"`` and return True.

        At step 0 it always raises: ``theta0`` itself is bad.
        """
        method = self.key[0]
        if self.first is None:
            raise TrainingDiverged(f"{method}: {what} at the starting point (step 0, before any optimizer step): "
                                   f"the objective is not finite at theta0; check the loss (e.g. sqrt or log of a "
                                   f"negative number, a division by zero) and theta0")
        if self.on_diverge == "raise":
            raise TrainingDiverged(f"{method}: {what} at step {self.k}; {_advice(self.opts)}")
        self.status, self.reason = "diverged", f"{what} at step {self.k}"
        return True

    def record(self, phase: str) -> bool:
        """Log ``theta`` at step ``k``; True when the run must stop (diverged or converged)."""
        loss, terms, g = value_and_grad(self.terms_fn, self.theta)
        value, gn, first, h = float(loss), float(torch.linalg.vector_norm(g)), self.first, self.hist
        if not math.isfinite(value):
            return self.fail(f"the loss is {value}" if first is None else f"loss became {value}")
        if not math.isfinite(gn):
            return self.fail(f"the gradient norm is {gn}" if first is None else f"gradient norm became {gn}")
        if first is not None and value - first > self.diverge * max(abs(first), DIVERGE_FLOOR):
            return self.fail(f"loss {value:.3g} rose from its initial {first:.3g} by more than {self.diverge:g} x "
                             f"|{first:.3g}|")
        self.first = value if first is None else first
        self.good = self.theta.detach().clone()
        h.step.append(self.k)
        h.iteration.append(self.it)
        h.phase.append(phase)
        h.loss.append(value)
        for name, v in terms.items():
            h.terms.setdefault(name, []).append(float(v))
        h.grad_norm.append(gn)
        h.time.append(self.elapsed)
        if self.budget_clock == "cpu":
            h.extra.setdefault("cpu_time", []).append(self.cpu)
        counted = getattr(self.stepper, "evals", None)
        h.evals.append(None if counted is None else self.evals_before + counted)
        if self.l2re is not None:
            h.l2re.append(float(self.l2re(self.theta)))
        for c in self.calls:
            c.logged(self.k, self.theta, g, h)
        if self.grad_tol is not None and gn <= self.grad_tol:
            self.status = "converged"
            return True
        return False

    def stop(self, phase: str, status: Status) -> None:
        """Log the last iterate and end with ``status`` (unless logging it ended the run: diverged, converged)."""
        if not self.record(phase):
            self.status = status

    def step(self, phase: str, watch: list[Callback]) -> bool:
        """One timed optimizer step; False when the stepper found a non-finite quantity and the run stops."""
        s, before = self.stepper, self.theta.detach().clone() if watch else self.theta
        _synchronize(self.theta)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            s.step()
        except FloatingPointError as err:   # a stepper's own non-finite check (NNCG's direction)
            self.fail(str(err))   # raises, or ends the run
            return False
        _synchronize(self.theta)
        self.elapsed += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        self.theta = s.theta
        if watch:
            after = self.theta.detach().clone()
            for c in watch:
                c.stepped(self.k, before, after, s)
        stop = getattr(s, "last_stop", None)
        if stop is not None:
            evals, reason, *numbers = stop
            row = {"step": self.k, "phase": phase, "evals": evals, "reason": reason, **(numbers[0] if numbers else {})}
            stops, n = self.hist.stops, len(self.hist.stops.get("step", []))
            for key in [*row, *(k for k in stops if k not in row)]:   # columns stay aligned: None where unreported
                stops.setdefault(key, [None] * n).append(row.get(key))
        self.k += 1
        self.it += getattr(s, "iterations_per_step", 1)
        return True

    def save(self, savers: list[Callback], phase: int, done: int) -> None:
        """Pass a :class:`TrainState` (``done`` steps made in phase number ``phase``) to every saver."""
        if not savers:
            return
        sd = self.stepper.state_dict() if hasattr(self.stepper, "state_dict") else None
        method, steps, switch = self.key
        state = TrainState(method=method, steps=steps, switch=switch, k=self.k, iteration=self.it, phase=phase,
                           done=done, theta=self.theta.detach().clone(), stepper=sd, elapsed=self.elapsed,
                           history=History(**dataclasses.asdict(self.hist)), first=self.first,
                           evals_done=self.evals_before, cpu=self.cpu)
        for c in savers:
            c.checkpoint(state)


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
    r"""Optimise ``objective`` from ``theta0`` with ``method``; return the last iterate and its :class:`History`.

    Args:
        objective: a model with ``terms`` and ``theta0`` (``PINN``) or a function of ``theta`` returning a scalar
            or a dict of terms (then pass ``theta0``).
        method: a name in :data:`STEPPERS` or a chain such as ``"adam+lbfgs"`` (case-insensitive).
        steps: total optimizer steps (0 only evaluates ``theta0``).
        theta0: the starting point (default ``objective.theta0``); never modified.
        switch: steps of each phase but the last (``switch=1000``: Adam→L-BFGS after 1000 Adam steps).
        phase_options: per-phase options, ``{"adam": {"lr": 1e-2}}``; they override ``**options`` there.
        blocks: the layout of ``theta`` for phases that declare ``blocks`` (SOAP); default ``objective.blocks``.
        grad_tol: ``status="converged"`` when a logged gradient norm is at most this.
        on_diverge: ``"raise"`` :class:`TrainingDiverged`, or ``"stop"`` with ``status="diverged"`` and ``theta``
            the last finite logged iterate.
        diverge: diverged when ``loss - loss0 > diverge * max(|loss0|, DIVERGE_FLOOR)`` (``loss0`` the first
            logged loss), when the loss, gradient or parameters are not finite, or when a stepper raises
            ``FloatingPointError``.
        l2re: ``theta -> relative L2 error`` logged with the loss (default ``objective.l2re`` for a PINN).
        log_every: log every this many steps (default: about 100 entries); the last step is always logged.
        log, on_step, checkpoint: shorthands for the callbacks ``Log(log)``, ``OnStep(on_step)``,
            ``Checkpoint(checkpoint)``.
        quiet: hide the progress bar (default: ``$PINNKIT_PROGRESS == "0"``); ``desc`` labels it.
        resume: a :class:`TrainState` of this run (same method, steps, switch) to continue from.
        checkpoint_every: seconds between checkpoints (default: only when ``stop_after`` interrupts).
        stop_after: interrupt after this many steps of this call (``status="interrupted"``).
        max_seconds: stop (``status="max_seconds"``) after the step at which the optimizer time reaches this.
        budget_clock: the clock of ``max_seconds``: ``"wall"`` (``History.time``, seconds inside ``step()``) or
            ``"cpu"`` (process CPU seconds inside ``step()``, logged as ``History.extra["cpu_time"]``).
        callbacks: :class:`Callback` objects, called in order after the shorthands.
        **options: routed to every phase whose factory declares them (:func:`valid_options`).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: unknown method, bad ``steps``/``switch``/``log_every``/``on_diverge``, a non-positive ``lr``,
            or a ``resume`` state of another run.
        TypeError: an option no phase accepts, or checkpoints with a stepper that has no ``state_dict``.
        TrainingDiverged: as ``diverge`` says with ``on_diverge="raise"``; always when ``theta0`` is not finite.
    """
    names = _names(method)
    steps = size(steps, "steps", 0)
    phases = _phases(method, names, steps, switch)
    for bad, what in ((on_diverge not in ("raise", "stop"), f"on_diverge must be 'raise' or 'stop', got {on_diverge!r}"),
                      (grad_tol is not None and not grad_tol >= 0, f"grad_tol must be >= 0, got {grad_tol}"),
                      (not diverge > 0, f"diverge must be positive, got {diverge}"),
                      (budget_clock not in ("wall", "cpu"), f"budget_clock must be 'wall' or 'cpu', got {budget_clock!r}"),
                      (max_seconds is not None and not max_seconds > 0,
                       f"max_seconds must be a positive number of seconds, got {max_seconds}"),
                      (checkpoint_every is not None and not checkpoint_every > 0,
                       f"checkpoint_every must be a positive number of seconds, got {checkpoint_every}")):
        if bad:
            raise ValueError(what)
    log_every = max(1, steps // 100) if log_every is None else size(log_every, "log_every", 1)
    stop_after = None if stop_after is None else size(stop_after, "stop_after", 1)
    terms_fn, theta0 = resolve(objective, theta0)
    routed = _route(method, names, options, phase_options, getattr(objective, "blocks", None) if blocks is None
                    else blocks)
    if l2re is None and getattr(objective, "u_exact", None) is not None:
        l2re = objective.l2re
    counts = tuple(n for _, n in phases[:-1])
    calls: list[Callback] = [*([Log(log)] if log else []), *([OnStep(on_step)] if on_step is not None else []),
                             *([Checkpoint(checkpoint)] if checkpoint is not None else []), *callbacks]
    watch = [c for c in calls if c._overrides("stepped")]
    savers = [c for c in calls if c._overrides("checkpoint")]
    p, made = 0, 0   # the phase and its steps made
    if resume is not None:
        if (resume.method.lower(), resume.steps, resume.switch) != (method.lower(), steps, counts):
            raise ValueError(f"resume= is a state of train({resume.method!r}, steps={resume.steps}, "
                             f"switch={resume.switch}), not of train({method!r}, steps={steps}, switch={counts})")
        p, made = resume.phase, resume.done
    run = _Run((method, steps, counts), terms_fn, theta0, resume, calls, grad_tol, diverge, on_diverge, l2re,
               budget_clock)
    k_start, last_save = run.k, time.monotonic()
    if quiet is None:
        quiet = os.environ.get("PINNKIT_PROGRESS", "1") == "0"
    current = -1   # the phase of run.stepper
    with tqdm(total=steps, initial=run.k, desc=desc or method, disable=quiet, leave=False) as bar:
        while True:
            phase, n = phases[p]
            if current != p:   # a new phase starts from the last iterate
                run.evals_before += getattr(run.stepper, "evals", 0) or 0
                run.stepper, current = STEPPERS[phase](terms_fn, run.theta, **routed[p]), p
                if (savers or stop_after is not None) and not hasattr(run.stepper, "state_dict"):
                    raise TypeError(f"train({method!r}) with checkpoint=/stop_after=: the {phase!r} stepper has "
                                    f"no state_dict(), so a resumed run could not continue it exactly; run without "
                                    f"checkpoints, or give {type(run.stepper).__name__} state_dict()/"
                                    f"load_state_dict()")
                if resume is not None and p == resume.phase and resume.stepper is not None and hasattr(
                        run.stepper, "load_state_dict"):
                    run.stepper.load_state_dict(resume.stepper)
            if made == n:
                if p == len(phases) - 1:
                    run.record(phase)
                    break
                p, made = p + 1, 0
                continue
            if run.k % log_every == 0 and run.record(phase):
                break
            run.opts = routed[p]   # the phase that makes the next step (a divergence's advice names its options)
            if not run.step(phase, watch):
                break
            made += 1
            bar.update(1)
            if getattr(run.stepper, "stalled", False):   # no acceptable step: log it and stop
                run.stop(phase, "stalled")
                break
            spent = run.elapsed if budget_clock == "wall" else run.cpu
            if max_seconds is not None and spent >= max_seconds and run.k < steps:
                run.stop(phase, "max_seconds")
                break
            if run.k % log_every and not math.isfinite(float(run.theta.sum())) and run.fail(
                    "the parameters became non-finite"):
                break
            if stop_after is not None and run.k - k_start >= stop_after and run.k < steps:
                run.save(savers, p, made)
                return TrainResult(theta=run.theta.detach().clone(), history=run.hist, method=method, steps=run.k,
                                   stepper=run.stepper, status="interrupted")
            if savers and checkpoint_every is not None and time.monotonic() - last_save >= checkpoint_every:
                run.save(savers, p, made)
                last_save = time.monotonic()
    h = run.hist
    return TrainResult(theta=run.good.clone(), history=h, method=method, steps=h.step[-1] if h.step else 0,
                       stepper=run.stepper, status=run.status, reason=run.reason)

