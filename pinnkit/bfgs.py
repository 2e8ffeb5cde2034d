r"""Dense BFGS and its self-scaled variants (SSBFGS, SSBroyden) with a strong Wolfe line search, for float64.

Each iteration takes the quasi-Newton direction :math:`d_k = -H_k g_k`, a strong Wolfe step :math:`t_k`
(:func:`pinnkit.linesearch.strong_wolfe`, :math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`), and updates the dense
inverse-Hessian approximation with :math:`s_k = t_k d_k`, :math:`y_k = g_{k+1} - g_k`, :math:`\rho_k = 1 / y_k^\top
s_k`. All three methods are the self-scaled Broyden update of Urbán, Stefanou & Pons (2025, J. Comput. Phys.,
"Unveiling the optimization process of PINNs", arXiv:2405.04230, eqs. 9–23; also Kiyani et al. 2025, CMAME)

.. math::

   H_{k+1} = \frac{1}{\tau_k}\Big[H_k - \frac{H_k y_k y_k^\top H_k}{y_k^\top H_k y_k}
             + \phi_k\,(y_k^\top H_k y_k)\, v_k v_k^\top\Big] + \rho_k s_k s_k^\top,\qquad
   v_k = \rho_k s_k - \frac{H_k y_k}{y_k^\top H_k y_k},

with :math:`h_k = \rho_k\, y_k^\top H_k y_k`, :math:`b_k = -t_k \rho_k\, s_k^\top g_k` (:math:`= s_k^\top B_k
s_k / y_k^\top s_k`) and :math:`a_k = b_k h_k - 1 \ge 0`:

* ``"bfgs"``: :math:`\tau_k = \phi_k = 1` — BFGS, with scipy's conventions (:math:`H_0 = I`; no scaling of
  :math:`H_0`), so that the iterates are those of ``scipy.optimize.minimize(method="BFGS")`` when the line searches
  agree (tested);
* ``"ssbfgs"``: :math:`\phi_k = 1`, :math:`\tau_k = \min(1, 1/b_k)` — Al-Baali's self-scaling (Urbán et al.,
  eq. 11; ``method_bfgs="SSBFGS_AB"`` of the authors' patched SciPy, ``jorgeurban/self_scaled_algorithms_pinns``);
* ``"ssbroyden"``: the authors' ``SSBroyden2`` (eqs. 13–23): :math:`\rho_k^- = \min(1, h_k(1 - \sqrt{a_k/(1+a_k)}))`,
  :math:`\theta_k^- = (\rho_k^- - 1)/a_k`, :math:`\theta_k^+ = 1/\rho_k^-`, :math:`\theta_k = \max(\theta_k^-,
  \min(\theta_k^+, (1 - b_k)/b_k))`, :math:`\sigma_k = 1 + \theta_k a_k`, :math:`\bar\rho_k = \min(1, 1/b_k)`,
  :math:`\tau_k = \min(\bar\rho_k\,|\sigma_k|^{1/(1-n)}, \sigma_k)` if :math:`\theta_k \le 0`, else
  :math:`\bar\rho_k \min(|\sigma_k|^{1/(1-n)}, 1/\theta_k)`, and :math:`\phi_k = (1 - \theta_k)/(1 + a_k\theta_k)`
  (:math:`n` the number of parameters).

Differences from the authors' code, all stated: their ``initial_scale=False`` (the default they run) is used;
their SciPy checks the gradient norm of the *previous* iterate, this module that of the new one; an update with
:math:`y_k^\top s_k \le 0` (possible only when the line search ends without the Wolfe conditions) or with a
non-finite :math:`\tau_k, \phi_k` (:math:`b_k \le 0` from rounding, or :math:`a_k = 0`, where :math:`\theta_k^-` is
0/0) is skipped (scipy's BFGS uses :math:`\rho_k = 1000` at :math:`y_k^\top s_k = 0` only). The line search is
the Nocedal–Wright zoom of scipy's ``line_search_wolfe2``; scipy's BFGS tries MINPACK's ``dcsrch`` first and falls
back to it, so the two agree exactly when scipy's first search is switched off (tested), and otherwise reach the
same minimiser along slightly different steps.

>>> import torch
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

#: the inverse-Hessian updates: ``"bfgs"``, ``"ssbfgs"`` (Al-Baali scaling), ``"ssbroyden"`` (Urbán et al.'s
#: SSBroyden2)
UPDATES = ("bfgs", "ssbfgs", "ssbroyden")
#: the largest number of parameters for which a dense ``n x n`` inverse Hessian is formed (800 MB in float64)
MAX_DENSE = 10_000
#: why a BFGS step ended (logged in :attr:`pinnkit.train.History.stops`): the line search's reasons and two more
BFGS_REASONS = {**WOLFE_REASONS,
                "no_descent": "g.d >= 0 at the current point (a zero gradient): no step, the run stops",
                "skipped_update": "a step was taken but y.s <= 0 or the scaling was not finite: H kept"}

#: ``line_search(phi, phi0, slope0, phi_prev) -> WolfeResult``, ``phi(t) -> (f(theta + t d), g(theta + t d).d)``
LineSearch = Callable[[Callable[[float], tuple[float, float]], float, float, "float | None"], WolfeResult]


def self_scaled_update(H: Tensor, s: Tensor, y: Tensor, g: Tensor, t: float, update: str = "bfgs"
                       ) -> tuple[Tensor, float, float] | None:
    r"""One inverse-Hessian update (module docstring): the new :math:`H_{k+1}` and the :math:`\tau_k, \phi_k`
    used, or ``None`` when the update is skipped (:math:`y^\top s \le 0` or a non-finite :math:`\tau, \phi`).

    ``"bfgs"`` and ``"ssbfgs"`` are evaluated as the authors' code does, the BFGS update of :math:`H/\tau` in
    :math:`O(n^2)` form, :math:`H - \rho(H y s^\top + s y^\top H) + \rho(1 + \rho\,y^\top H y)\, s s^\top`
    (scipy's product form :math:`(I - \rho s y^\top) H (I - \rho y s^\top) + \rho s s^\top` is the same matrix
    in :math:`O(n^3)`; tested); ``"ssbroyden"`` in the form of the module docstring.

    >>> import torch
    >>> H = torch.eye(2, dtype=torch.float64); s = torch.tensor([1.0, 0.0], dtype=torch.float64)
    >>> y = torch.tensor([2.0, 0.0], dtype=torch.float64)                   # curvature 2 along s
    >>> Hn, tau, phi = self_scaled_update(H, s, y, -y, 1.0)
    >>> Hn.tolist(), bool(torch.allclose(Hn @ y, s))                         # the secant equation H y = s
    ([[0.5, 0.0], [0.0, 1.0]], True)

    Args:
        H: the current inverse-Hessian approximation (symmetric positive definite).
        s, y: the step and the gradient change.
        g: the gradient at the start of the step (for :math:`b_k`).
        t: the line-search step length.
        update: one of :data:`UPDATES`.

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
    r"""Dense (self-scaled) BFGS on a flat ``theta`` (the stepper protocol of :mod:`pinnkit.train`): ``step()`` =
    one iteration (direction, strong Wolfe line search, update). ``evals`` counts loss+gradient evaluations,
    ``last_stop`` is ``(evaluations of the step, reason)`` (a key of :data:`BFGS_REASONS`), ``stalled`` is set when
    no step was found (the run stops), ``taus`` / ``phis`` record the scaling of every update.
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
        self.line_search = line_search
        self._theta = theta.detach().clone()
        self.f, self.f_prev, self.g = math.nan, math.nan, torch.zeros_like(self._theta)
        self.H = torch.eye(n, dtype=theta.dtype, device=theta.device)
        self.evals, self.k = 0, 0
        self.stalled = False
        self.last_stop: tuple[int, str] | None = None
        self.taus: list[float] = []
        self.phis: list[float] = []

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return self._theta

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on (``theta`` is saved by :class:`pinnkit.train.TrainState`)."""
        return {"H": self.H, "g": self.g, "f": self.f, "f_prev": self.f_prev, "evals": self.evals, "k": self.k}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.H, self.g = state["H"], state["g"]
        self.f, self.f_prev = float(state["f"]), float(state["f_prev"])
        self.evals, self.k = int(state["evals"]), int(state["k"])

    def start(self) -> None:
        """Evaluate the loss and gradient at the starting point (done by the first :meth:`step`, inside the timed
        step as every other evaluation; one evaluation).
        """
        if self.evals == 0:
            f, _, g = value_and_grad(self.terms_fn, self._theta)
            self.f, self.g, self.evals = float(f), g.detach(), 1
            self.f_prev = self.f + float(torch.linalg.vector_norm(self.g)) / 2   # scipy: first trial step ~ 1/|g|

    def step(self) -> None:
        """One iteration; ``theta`` is unchanged (and ``stalled`` set) when the line search finds no step.

        Raises:
            FloatingPointError: the loss or the direction is not finite.
        """
        before = self.evals               # the first step counts the evaluation at the start too
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
        reason = ls.reason
        if out is None:
            reason = "skipped_update"
        else:
            self.H, tau, phi_k = out
            self.taus.append(tau)
            self.phis.append(phi_k)
        self._theta = (th + s).detach()
        self.f_prev, self.f, self.g = self.f, float(ls.value), g_new
        self.k += 1
        self.last_stop = (self.evals - before, reason)


def bfgs_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                 max_params: int = MAX_DENSE) -> BFGSStepper:
    """Stepper factory for :data:`pinnkit.train.STEPPERS` (``"bfgs"``): dense BFGS, strong Wolfe (``c1``, ``c2``).
    Train in float64 (``dtype=torch.float64``); one step is one iteration.
    """
    return BFGSStepper(terms_fn, theta, "bfgs", c1=c1, c2=c2, max_params=max_params)


def ssbfgs_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                   max_params: int = MAX_DENSE) -> BFGSStepper:
    """Stepper factory (``"ssbfgs"``): self-scaled BFGS, :math:`\\tau_k = \\min(1, 1/b_k)` (Urbán et al., eq. 11)."""
    return BFGSStepper(terms_fn, theta, "ssbfgs", c1=c1, c2=c2, max_params=max_params)


def ssbroyden_stepper(terms_fn: TermsFn, theta: Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                      max_params: int = MAX_DENSE) -> BFGSStepper:
    """Stepper factory (``"ssbroyden"``): Urbán et al.'s SSBroyden2 (eqs. 13–23; the module docstring)."""
    return BFGSStepper(terms_fn, theta, "ssbroyden", c1=c1, c2=c2, max_params=max_params)


@dataclass(frozen=True)
class BFGSResult:
    """The last iterate ``theta``, its ``loss`` and ``grad_norm`` (max-norm, as scipy's ``gtol``), the iterations
    ``steps``, the loss+gradient evaluations ``evals``, ``status`` (``"converged"``: ``grad_norm <= gtol``;
    ``"max_steps"``; ``"stalled"``: no step found), every iterate in ``path`` (``theta0`` first) and the reason
    each line search ended (``reasons``).
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
    """Minimise ``f`` (a scalar or a dict of terms of ``theta``) from ``theta0`` with dense (self-scaled) BFGS.

    The stopping rule is scipy's: the max-norm of the gradient at most ``gtol``, or ``max_steps`` iterations
    (default ``200 n``, scipy's).

    Args:
        f: the loss.
        theta0: the start (not modified); use float64.
        update: ``"bfgs"``, ``"ssbfgs"`` or ``"ssbroyden"`` (:data:`UPDATES`).
        max_steps: the most iterations.
        gtol: the gradient tolerance (max-norm).
        c1, c2: the strong Wolfe constants.
        line_search: replaces :func:`pinnkit.linesearch.strong_wolfe` (``(phi, phi0, slope0, phi_prev) ->
            WolfeResult``), e.g. an exact line search on a quadratic.

    Returns:
        A :class:`BFGSResult`.
    """
    stepper = BFGSStepper(as_terms(f), theta0, update, c1=c1, c2=c2, line_search=line_search)
    stepper.start()
    max_steps = 200 * theta0.numel() if max_steps is None else int(max_steps)
    path, reasons = [stepper.theta], []
    status = "max_steps"
    while True:
        if float(stepper.g.abs().max()) <= gtol:
            status = "converged"
            break
        if stepper.k >= max_steps:
            break
        stepper.step()
        if stepper.last_stop is not None:
            reasons.append(stepper.last_stop[1])
        if stepper.stalled:
            status = "stalled"
            break
        path.append(stepper.theta)
    return BFGSResult(theta=stepper.theta, loss=stepper.f, grad_norm=float(stepper.g.abs().max()), steps=stepper.k,
                      evals=stepper.evals, status=status, path=path, reasons=reasons)
