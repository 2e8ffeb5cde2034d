r"""Dense BFGS and its self-scaled variants SSBFGS and SSBroyden (Urbán, Stefanou & Pons 2025, eqs. 9–23),
strong Wolfe line search (:func:`pinnkit.linesearch.strong_wolfe`), for float64.

With :math:`d_k = -H_k g_k`, :math:`s_k = t_k d_k`, :math:`y_k = g_{k+1} - g_k`, :math:`\rho_k = 1/y_k^\top s_k`,
:math:`h_k = \rho_k y_k^\top H_k y_k`, :math:`b_k = -t_k \rho_k s_k^\top g_k`, :math:`a_k = b_k h_k - 1`:

.. math::

   H_{k+1} = \frac{1}{\tau_k}\Big[H_k - \frac{H_k y_k y_k^\top H_k}{y_k^\top H_k y_k}
             + \phi_k\,(y_k^\top H_k y_k)\, v_k v_k^\top\Big] + \rho_k s_k s_k^\top,\qquad
   v_k = \rho_k s_k - \frac{H_k y_k}{y_k^\top H_k y_k}.

* ``"bfgs"``: :math:`\tau_k = \phi_k = 1`, :math:`H_0 = I` (scipy's iterates when the line searches agree);
* ``"ssbfgs"``: :math:`\phi_k = 1`, :math:`\tau_k = \min(1, 1/b_k)`;
* ``"ssbroyden"``: :math:`\rho_k^- = \min(1, h_k(1 - \sqrt{a_k/(1+a_k)}))`, :math:`\theta_k^- = (\rho_k^- - 1)/a_k`,
  :math:`\theta_k^+ = 1/\rho_k^-`, :math:`\theta_k = \max(\theta_k^-, \min(\theta_k^+, (1 - b_k)/b_k))`,
  :math:`\sigma_k = 1 + \theta_k a_k`, :math:`\bar\rho_k = \min(1, 1/b_k)`, :math:`\tau_k = \min(\bar\rho_k\,
  |\sigma_k|^{1/(1-n)}, \sigma_k)` if :math:`\theta_k \le 0` else :math:`\bar\rho_k \min(|\sigma_k|^{1/(1-n)},
  1/\theta_k)`, :math:`\phi_k = (1 - \theta_k)/(1 + a_k\theta_k)` (:math:`n` parameters).

Differences from the authors' code (``jorgeurban/self_scaled_algorithms_pinns``, a patched SciPy, run with
``initial_scale=False`` as here): the gradient-norm test is on the new iterate, not the previous one; an update with
:math:`y_k^\top s_k \le 0` or a non-finite :math:`\tau_k, \phi_k` is skipped (scipy uses :math:`\rho_k = 1000`);
the line search is scipy's Nocedal–Wright zoom without MINPACK's ``dcsrch`` first try (equal iterates when that
try is off; tested).

>>> A = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
>>> res = bfgs(lambda th: 0.5 * th @ A @ th, torch.ones(3, dtype=torch.float64), gtol=1e-10)
>>> res.status, res.grad_norm <= 1e-10, bool(torch.allclose(res.theta, torch.zeros(3, dtype=torch.float64)))
('converged', True, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from .linesearch import WOLFE_REASONS, WolfeResult, strong_wolfe
from .objective import TermsFn, as_terms, value_and_grad

__all__ = ["UPDATES", "BFGS_REASONS", "self_scaled_update", "BFGSStepper", "BFGSResult", "bfgs", "bfgs_stepper",
           "ssbfgs_stepper", "ssbroyden_stepper", "LineSearch", "MAX_DENSE"]

#: the inverse-Hessian updates (module docstring)
UPDATES = ("bfgs", "ssbfgs", "ssbroyden")
#: the most parameters for which a dense ``n x n`` inverse Hessian is formed (800 MB in float64)
MAX_DENSE = 10_000
#: why a BFGS step ended (logged in :attr:`pinnkit.training.History.stops`): the line search's reasons and two more
BFGS_REASONS = {**WOLFE_REASONS,
                "no_descent": "g.d >= 0 at the current point (a zero gradient): no step, the run stops",
                "skipped_update": "a step was taken but y.s <= 0 or the scaling was not finite: H kept"}

#: ``line_search(phi, phi0, slope0, phi_prev) -> WolfeResult``, ``phi(t) -> (f(theta + t d), g(theta + t d).d)``
LineSearch = Callable[[Callable[[float], tuple[float, float]], float, float, "float | None"], WolfeResult]


def self_scaled_update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, t: float, update: str = "bfgs"
                       ) -> tuple[Tensor, float, float] | None:
    r"""One update (module docstring): ``(H_{k+1}, tau_k, phi_k)``, or ``None`` when skipped. ``g``: the gradient
    at the start of the step, ``t``: the step length. ``"bfgs"``/``"ssbfgs"`` use the :math:`O(n^2)` form
    :math:`H' - \rho(H' y s^\top + s y^\top H') + \rho(1 + \rho\,y^\top H' y)\, s s^\top`, :math:`H' = H/\tau`.

    >>> H = torch.eye(2, dtype=torch.float64); s = torch.tensor([1.0, 0.0], dtype=torch.float64)
    >>> y = torch.tensor([2.0, 0.0], dtype=torch.float64)                   # curvature 2 along s
    >>> Hn, tau, phi = self_scaled_update(H, s, y, -y, 1.0)
    >>> Hn.tolist(), bool(torch.allclose(Hn @ y, s))                         # the secant equation H y = s
    ([[0.5, 0.0], [0.0, 1.0]], True)

    Raises:
        ValueError: an unknown ``update``.
    """
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    ys = float(torch.dot(y, s))
    if not ys > 0:
        return None
    rho = 1.0 / ys
    b = -t * rho * float(torch.dot(s, g))            # s^T B s / y^T s > 0 for a descent step
    if update != "bfgs" and not b > 0:
        return None
    if update in ("bfgs", "ssbfgs"):
        tau = 1.0 if update == "bfgs" else min(1.0, 1.0 / b)
        Hs = H / tau if tau != 1.0 else H
        Hy = Hs @ y
        h = float(torch.dot(y, Hy)) * rho
        return Hs - rho * (torch.outer(Hy, s) + torch.outer(s, Hy)) + (rho * (1 + h)) * torch.outer(s, s), tau, 1.0
    Hy = H @ y
    yHy = float(torch.dot(y, Hy))
    h = yHy * rho
    a = b * h - 1
    try:
        n = H.shape[0]
        rho_m = min(1.0, h * (1 - math.sqrt(abs(a) / (1 + a))))
        theta_m, theta_p = (rho_m - 1) / a, 1 / rho_m
        theta = max(theta_m, min(theta_p, (1 - b) / b))
        sigma = 1 + theta * a
        sigma_n = abs(sigma) ** (1.0 / (1 - n)) if n > 1 else 1.0
        rho_b = min(1.0, 1.0 / b)
        tau = min(rho_b * sigma_n, sigma) if theta <= 0 else rho_b * min(sigma_n, 1 / theta)
        phi = (1 - theta) / (1 + a * theta)
    except (ZeroDivisionError, ValueError, OverflowError):
        return None
    if not (math.isfinite(tau) and math.isfinite(phi) and tau > 0):
        return None
    v = rho * s - Hy / yHy
    Hn = (H - torch.outer(Hy, Hy) / yHy + (phi * yHy) * torch.outer(v, v)) / tau + rho * torch.outer(s, s)
    return Hn, tau, phi


class BFGSStepper:
    """Dense (self-scaled) BFGS stepper: ``step()`` is one iteration. ``evals``: loss+gradient evaluations;
    ``last_stop``: ``(evaluations, reason)`` (:data:`BFGS_REASONS`); ``stalled``: no step found; ``taus``/``phis``.
    """

    iterations_per_step = 1

    def __init__(self, terms_fn: TermsFn, theta: Tensor, update: str = "bfgs", *, c1: float = 1e-4, c2: float = 0.9,
                 max_params: int = MAX_DENSE, line_search: LineSearch | None = None):
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
        n = theta.numel()
        if n > max_params:
            raise ValueError(f"dense BFGS stores an n x n matrix; n = {n} parameters exceeds max_params={max_params}: "
                             "use 'lbfgs64' (limited memory) or raise max_params")
        self.terms_fn, self.update, self.c1, self.c2 = terms_fn, update, float(c1), float(c2)
        self.line_search, self._theta = line_search, theta.detach().clone()
        self.f, self.f_prev, self.g = math.nan, math.nan, torch.zeros_like(self._theta)
        self.H = torch.eye(n, dtype=theta.dtype, device=theta.device)
        self.evals, self.k, self.stalled = 0, 0, False
        self.last_stop: tuple[int, str] | None = None
        self.taus: list[float] = []
        self.phis: list[float] = []

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self._theta

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on (``theta`` is saved by :class:`pinnkit.training.TrainState`)."""
        return {"H": self.H, "g": self.g, "f": self.f, "f_prev": self.f_prev, "evals": self.evals, "k": self.k}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.H, self.g = state["H"], state["g"]
        self.f, self.f_prev = float(state["f"]), float(state["f_prev"])
        self.evals, self.k = int(state["evals"]), int(state["k"])

    def start(self) -> None:
        """Evaluate the loss and gradient at the start (the first :meth:`step` does it)."""
        if self.evals == 0:
            f, _, g = value_and_grad(self.terms_fn, self._theta)
            self.f, self.g, self.evals = float(f), g.detach(), 1
            self.f_prev = self.f + float(torch.linalg.vector_norm(self.g)) / 2   # scipy: first trial step ~ 1/|g|

    def step(self) -> None:
        """One iteration (``stalled``: no step found; ``FloatingPointError``: a non-finite loss or direction)."""
        before = self.evals
        self.start()
        th, g = self._theta, self.g
        d = -(self.H @ g)
        slope = float(torch.dot(g, d))
        if not (math.isfinite(self.f) and math.isfinite(slope)):
            raise FloatingPointError(f"BFGS step {self.k}: the loss or the direction is not finite; train in float64")
        if not slope < 0:
            self.stalled, self.last_stop = True, (self.evals - before, "no_descent")
            return
        at: dict[float, Tensor] = {}

        def phi(t: float) -> tuple[float, float]:
            f, _, gt = value_and_grad(self.terms_fn, th + t * d)
            at[t] = gt.detach()
            return float(f), float(torch.dot(gt, d))

        if self.line_search is None:
            ls = strong_wolfe(phi, self.f, slope, self.f_prev, c1=self.c1, c2=self.c2)
        else:
            ls = self.line_search(phi, self.f, slope, self.f_prev)
        self.evals += ls.evals
        if ls.step is None:
            self.stalled, self.last_stop = True, (self.evals - before, ls.reason)
            return
        t = float(ls.step)
        s = t * d
        g_new = at[t] if t in at else value_and_grad(self.terms_fn, th + s)[2].detach()
        out = self_scaled_update(self.H, s, g_new - g, g, t, self.update)
        if out is not None:
            self.H = out[0]
            self.taus.append(out[1])
            self.phis.append(out[2])
        self._theta = (th + s).detach()
        self.f_prev, self.f, self.g = self.f, float(ls.value), g_new
        self.k += 1
        self.last_stop = (self.evals - before, ls.reason if out is not None else "skipped_update")


def bfgs_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                 max_params: int = MAX_DENSE) -> BFGSStepper:
    """The ``"bfgs"`` stepper of :data:`pinnkit.training.STEPPERS` (float64; one step is one iteration)."""
    return BFGSStepper(terms_fn, theta, "bfgs", c1=c1, c2=c2, max_params=max_params)


def ssbfgs_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                   max_params: int = MAX_DENSE) -> BFGSStepper:
    """The ``"ssbfgs"`` stepper: self-scaled BFGS."""
    return BFGSStepper(terms_fn, theta, "ssbfgs", c1=c1, c2=c2, max_params=max_params)


def ssbroyden_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                      max_params: int = MAX_DENSE) -> BFGSStepper:
    """The ``"ssbroyden"`` stepper: Urbán et al.'s SSBroyden2."""
    return BFGSStepper(terms_fn, theta, "ssbroyden", c1=c1, c2=c2, max_params=max_params)


@dataclass(frozen=True)
class BFGSResult:
    """Result of :func:`bfgs`: ``grad_norm`` is the max-norm; ``status`` ``"converged"`` (``grad_norm <= gtol``),
    ``"max_steps"`` or ``"stalled"``; ``path``: every iterate from ``theta0``; ``reasons``: each line search's end.
    """

    theta: Tensor
    loss: float
    grad_norm: float
    steps: int
    evals: int
    status: str
    path: list[Tensor] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def bfgs(f: Callable[[Tensor], Any], theta0: Tensor, *, update: str = "bfgs", max_steps: int | None = None,
         gtol: float = 1e-5, c1: float = 1e-4, c2: float = 0.9, line_search: LineSearch | None = None) -> BFGSResult:
    """Minimise ``f`` (a loss or terms of ``theta``) from ``theta0`` (float64) with an update of :data:`UPDATES`,
    until :math:`\\|g\\|_\\infty \\le` ``gtol`` or ``max_steps`` iterations (default ``200 n``, as scipy).
    ``line_search`` replaces :func:`pinnkit.linesearch.strong_wolfe` (see :data:`LineSearch`).
    """
    stepper = BFGSStepper(as_terms(f), theta0, update, c1=c1, c2=c2, line_search=line_search)
    stepper.start()
    max_steps = 200 * theta0.numel() if max_steps is None else int(max_steps)
    path, reasons = [stepper.theta], []
    while not float(stepper.g.abs().max()) <= gtol and stepper.k < max_steps:   # a NaN gradient steps (and raises)
        stepper.step()
        if stepper.last_stop is not None:
            reasons.append(stepper.last_stop[1])
        if stepper.stalled:
            break
        path.append(stepper.theta)
    gmax = float(stepper.g.abs().max())
    status = "stalled" if stepper.stalled else "converged" if gmax <= gtol else "max_steps"
    return BFGSResult(theta=stepper.theta, loss=stepper.f, grad_norm=gmax, steps=stepper.k, evals=stepper.evals,
                      status=status, path=path, reasons=reasons)
