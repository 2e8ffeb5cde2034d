r"""Classify a point :math:`\theta` of a loss by its gradient and the eigenvalues of its dense Hessian.

The *index* of a stationary point is the number of negative Hessian eigenvalues (Morse index); the
*index fraction* divides it by the number of parameters (Dauphin et al. 2014; Rowan 2025). With explicit
tolerances:

* ``not stationary`` — :math:`\|\nabla L\| >` ``grad_tol``;
* an eigenvalue counts as zero when :math:`|\lambda| \le \max(` ``eig_atol``, ``eig_rtol`` :math:`\max|\lambda|)`;
* ``saddle`` — some negative and some positive eigenvalues;
* ``minimum`` / ``maximum`` — all eigenvalues positive / negative;
* ``degenerate`` — no eigenvalue of one sign but some zero (the second-order test cannot decide). With
  ``flat_ok=True`` such points are labelled minimum / maximum: over-parametrised networks have whole
  valleys of minima, whose flat directions are zero eigenvalues.

>>> import torch
>>> f = lambda th: th[0] ** 2 - th[1] ** 2
>>> p = classify(f, torch.zeros(2, dtype=torch.float64))
>>> p.label, p.index, p.min_eig, p.max_eig
('saddle', 1, -2.0, 2.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .curvature import hessian

__all__ = ["StationaryPoint", "classify", "zero_output", "table", "tangent_alignment", "plot_saddle_slices",
           "plot_index_vs_loss", "escape_direction", "Endpoint", "survey", "endpoint_table", "Escape", "escape"]

LABELS = ("minimum", "maximum", "saddle", "degenerate", "not stationary")


@dataclass(frozen=True)
class StationaryPoint:
    """Gradient, Hessian spectrum and label of one point (see the module docstring for the rules)."""

    loss: float
    grad_norm: float
    n_params: int
    n_negative: int
    n_zero: int
    n_positive: int
    min_eig: float
    max_eig: float
    label: str
    grad_tol: float
    zero_tol: float  # the eigenvalue threshold actually used: max(eig_atol, eig_rtol * max|lambda|)
    eigenvalues: Tensor = field(repr=False)  # ascending, on the CPU

    @property
    def index(self) -> int:
        """Number of negative eigenvalues."""
        return self.n_negative

    @property
    def index_fraction(self) -> float:
        """Fraction of negative eigenvalues, ``n_negative / n_params``."""
        return self.n_negative / self.n_params

    @property
    def stationary(self) -> bool:
        return self.label != "not stationary"


def classify(f: Callable[[Tensor], Tensor], theta: Tensor, *, grad_tol: float = 1e-6, eig_rtol: float = 1e-8,
             eig_atol: float = 0.0, flat_ok: bool = False, H: Tensor | None = None) -> StationaryPoint:
    """Gradient norm, Hessian index and label of ``theta`` for the scalar loss ``f``.

    Args:
        grad_tol: points with a larger gradient norm are ``"not stationary"``.
        eig_rtol, eig_atol: eigenvalues with ``|lambda| <= max(eig_atol, eig_rtol * max|lambda|)`` count as zero.
        flat_ok: label positive (negative) semi-definite stationary points minimum (maximum), not degenerate.
        H: the dense Hessian at ``theta`` if already computed (else :func:`pinnkit.curvature.hessian`).
    """
    if grad_tol < 0 or eig_rtol < 0 or eig_atol < 0:
        raise ValueError(f"tolerances must be >= 0, got grad_tol={grad_tol}, eig_rtol={eig_rtol}, eig_atol={eig_atol}")
    theta = theta.detach()
    g, loss = torch.func.grad_and_value(f)(theta)
    if H is None:
        H = hessian(f, theta)
    if H.shape != (theta.numel(), theta.numel()):
        raise ValueError(f"H must be {theta.numel()} x {theta.numel()}, got {tuple(H.shape)}")
    lam = torch.linalg.eigvalsh(0.5 * (H + H.T)).detach().cpu()
    tol = max(eig_atol, eig_rtol * float(lam.abs().max()))
    neg, pos = int((lam < -tol).sum()), int((lam > tol).sum())
    zero = lam.numel() - neg - pos
    gn = float(torch.linalg.vector_norm(g))
    if not gn <= grad_tol:
        label = "not stationary"
    elif neg and pos:
        label = "saddle"
    elif neg == 0 and (zero == 0 or (flat_ok and pos)):
        label = "minimum"
    elif pos == 0 and (zero == 0 or (flat_ok and neg)):
        label = "maximum"
    else:
        label = "degenerate"
    return StationaryPoint(loss=float(loss), grad_norm=gn, n_params=lam.numel(), n_negative=neg, n_zero=zero,
                           n_positive=pos, min_eig=float(lam[0]), max_eig=float(lam[-1]), label=label,
                           grad_tol=grad_tol, zero_tol=tol, eigenvalues=lam)


def zero_output(model: Any, theta: Tensor | None = None) -> Tensor:
    """``theta`` with every parameter after the first weight matrix set to zero, so the network output is 0.

    With ``tanh`` layers the hidden features after the first layer vanish, so the gradient is zero whenever the
    data/forcing has zero mean against the constant feature — the *trivial saddle* :math:`u \\equiv 0`.
    """
    theta = (model.theta0 if theta is None else theta).detach().clone()
    theta[model.blocks[0].stop:] = 0.0
    return theta


def tangent_alignment(residual: Callable[[Tensor], Tensor], theta: Tensor) -> float:
    r"""How much of the residual the network's tangent space sees: :math:`\|J^\top r\| / (\|J\|_2 \|r\|) \in [0, 1]`
    (:math:`J = \partial r/\partial\theta`, :math:`\|J\|_2` its largest singular value).

    It is 0 exactly when :math:`J^\top r = 0` — the residual orthogonal to the tangent space of the approximation
    manifold, i.e. a stationary point of :math:`\|r\|^2` — however large :math:`r` is.

    >>> r = lambda th: torch.stack([th[0], torch.ones_like(th[0])])   # the line {(a, 1)}: r(0) = (0, 1) is normal
    >>> tangent_alignment(r, torch.zeros(1, dtype=torch.float64))
    0.0
    """
    from .curvature import jacobian
    r = residual(theta.detach()).detach()
    J = jacobian(residual, theta)
    denom = torch.linalg.matrix_norm(J, ord=2) * torch.linalg.vector_norm(r)
    return float(torch.linalg.vector_norm(J.T @ r) / denom.clamp_min(torch.finfo(r.dtype).tiny))


def table(points: dict[str, StationaryPoint]) -> str:
    """A fixed-width text table (2 significant digits) of loss, gradient norm, index and label."""
    name_w = max([4, *map(len, points)])
    lines = [f"{'run':<{name_w}}  {'loss':>8}  {'|grad|':>8}  {'index':>5}  {'fraction':>8}  {'min eig':>8}  label"]
    for name, p in points.items():
        lines.append(f"{name:<{name_w}}  {p.loss:8.1e}  {p.grad_norm:8.1e}  {p.index:5d}  {p.index_fraction:8.2f}  "
                     f"{p.min_eig:8.1e}  {p.label}")
    return "\n".join(lines)


def escape_direction(f: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[float, Tensor]:
    """``(lambda_min, v_min)``: the most negative Hessian eigenvalue and its unit eigenvector (the way down)."""
    lam, vmin, _ = _eig_pair(f, theta)
    if float(lam[0]) >= 0:
        raise ValueError(f"the smallest eigenvalue is {float(lam[0]):.3g} >= 0: no descent direction to escape along")
    return float(lam[0]), vmin


def _eig_pair(f: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    lam, V = torch.linalg.eigh(hessian(f, theta.detach()))
    return lam, V[:, 0], V[:, -1]


def plot_saddle_slices(f: Callable[[Tensor], Tensor], theta: Tensor, radius: float = 1.0, n: int = 31,
                       axes: Sequence[Any] | None = None) -> Any:
    r"""Left: :math:`L(\theta + t v_{\min})` along the most negative eigenvector with its quadratic model
    :math:`L + \tfrac12 \lambda_{\min} t^2`, :math:`|t| \le` ``radius``; right: contours of
    :math:`L(\theta + s v_{\max} + t v_{\min})`, the ``s`` range shrunk by
    :math:`\sqrt{|\lambda_{\min}|/\lambda_{\max}}` so that both quadratic terms span the same range.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    theta = theta.detach()
    lam, vmin, vmax = _eig_pair(f, theta)
    lmin, lmax = float(lam[0]), float(lam[-1])
    t = torch.linspace(-radius, radius, n, dtype=theta.dtype, device=theta.device)
    s = t * (abs(lmin) / lmax) ** 0.5 if lmax > 0 and lmin < 0 else t
    L0 = float(f(theta))
    with torch.no_grad():
        line = torch.stack([f(theta + ti * vmin) for ti in t]).cpu()
        grid = torch.stack([torch.stack([f(theta + si * vmax + ti * vmin) for ti in t]) for si in s]).cpu()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    else:
        fig = axes[0].figure
    tc, sc = t.cpu(), s.cpu()
    axes[0].plot(tc, line, label="loss along $v_{\\min}$")
    axes[0].plot(tc, L0 + 0.5 * lmin * tc ** 2, "--", label=f"quadratic model, $\\lambda_{{\\min}}$ = {lmin:.2g}")
    axes[0].axvline(0, color="gray", lw=0.5)
    axes[0].set_xlabel("step t along the most negative eigenvector")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    cs = axes[1].contourf(sc, tc, grid.T, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=axes[1], label="loss")
    axes[1].plot([0], [0], "r*", ms=12, label="saddle")
    axes[1].set_xlabel(f"s along $v_{{\\max}}$ ($\\lambda_{{\\max}}$ = {lmax:.2g})")
    axes[1].set_ylabel(f"t along $v_{{\\min}}$ ($\\lambda_{{\\min}}$ = {lmin:.2g})")
    axes[1].legend()
    fig.tight_layout()
    return fig


def plot_index_vs_loss(points: Sequence[StationaryPoint], axes: Sequence[Any] | None = None, title: str = "") -> Any:
    """Left: index fraction against loss (log scale) of stationary points; right: histogram of the index."""
    import matplotlib.pyplot as plt
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    loss = [max(p.loss, 1e-16) for p in points]
    frac = [p.index_fraction for p in points]
    idx = [p.index for p in points]
    axes[0].scatter(loss, frac, s=18, alpha=0.7)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("loss at the stationary point")
    axes[0].set_ylabel("index fraction (negative eigenvalues / parameters)")
    axes[0].set_title(title or "index against loss")
    bins = range(0, max(idx) + 2)
    axes[1].hist(idx, bins=bins, align="left", rwidth=0.85)
    axes[1].set_xlabel("index (number of negative eigenvalues)")
    axes[1].set_ylabel("number of stationary points")
    axes[1].set_title("histogram of indices")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Endpoint:
    """Where one optimizer run from one seed ended: the run, its classification, and the residual geometry.

    ``residual_norm`` is :math:`\\|r\\|` (so ``loss == residual_norm**2``) and ``tangent_align`` is
    :func:`tangent_alignment`: 0 when :math:`J^\\top r = 0` however large :math:`r` is.
    """

    name: str
    seed: int
    run: Any  # pinnkit.newton.NewtonResult
    point: StationaryPoint
    residual_norm: float
    tangent_align: float


def survey(make_model: Callable[[int], Any], seeds: Sequence[int], methods: dict[str, tuple[str, int, dict]], *,
           grad_tol: float = 1e-8, eig_rtol: float = 1e-9, flat_ok: bool = False) -> list[Endpoint]:
    """Run every ``methods[name] = (method, steps, options)`` of :func:`pinnkit.newton.run` from every seed's
    model (``make_model(seed)``, exposing ``loss``, ``theta0`` and ``residual_vector``) and classify the endpoint.

    ``options`` may use the key ``"residual"`` with value ``True`` to pass the model's ``residual_vector``.
    """
    from .newton import run
    out = []
    for seed in seeds:
        model = make_model(seed)
        for name, (method, steps, options) in methods.items():
            opts = {k: (model.residual_vector if k == "residual" and v is True else v) for k, v in options.items()}
            res = run(model, method, steps, **opts)
            point = classify(model.loss, res.theta, grad_tol=grad_tol, eig_rtol=eig_rtol, flat_ok=flat_ok)
            r = model.residual_vector(res.theta).detach()
            out.append(Endpoint(name, int(seed), res, point, float(torch.linalg.vector_norm(r)),
                                tangent_alignment(model.residual_vector, res.theta)))
    return out


def endpoint_table(endpoints: Sequence[Endpoint]) -> str:
    """One line per endpoint (2 significant digits): loss, |grad|, index, index fraction, smallest eigenvalue,
    |r|, :func:`tangent_alignment`, label."""
    w = max([6, *(len(e.name) for e in endpoints)])
    lines = [f"{'method':<{w}}  seed  {'loss':>7}  {'|grad|':>7}  index  {'frac':>4}  {'min eig':>8}  {'|r|':>7}  "
             f"{'J^T r/|J||r|':>12}  label"]
    for e in endpoints:
        p = e.point
        lines.append(f"{e.name:<{w}}  {e.seed:4d}  {p.loss:7.1e}  {p.grad_norm:7.1e}  {p.index:5d}  "
                     f"{p.index_fraction:4.2f}  {p.min_eig:8.1e}  {e.residual_norm:7.1e}  {e.tangent_align:12.1e}  "
                     f"{p.label}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Escape:
    """Leaving a saddle: the loss there, after ``steps`` of ``method`` started *at* it (``stay``) and started
    ``eps`` along its most negative eigenvector (``escaped``); ``slice_drop`` is
    :math:`L(\\theta + \\epsilon v) - L(\\theta)` and ``predicted_drop`` its quadratic model
    :math:`\\tfrac12\\lambda_{\\min}\\epsilon^2`."""

    lam_min: float
    loss_saddle: float
    slice_drop: float
    predicted_drop: float
    loss_stay: float
    loss_escaped: float


def escape(model: Any, theta: Tensor, eps: float = 1e-2, method: str = "lbfgs", steps: int = 20,
           **options: Any) -> Escape:
    """Run ``method`` (:func:`pinnkit.newton.run`) from the saddle ``theta`` and from ``theta + eps v_min``."""
    from .newton import run
    f = model.loss
    lam, v = escape_direction(f, theta)
    th = theta.detach()
    L0 = float(f(th))
    # either sign of v descends to second order; take the one that descends more
    drops = [float(f(th + s * eps * v)) - L0 for s in (1.0, -1.0)]
    sign = 1.0 if drops[0] <= drops[1] else -1.0
    stay = run(model, method, steps, theta0=th, **options).final_loss
    moved = run(model, method, steps, theta0=th + sign * eps * v, **options).final_loss
    return Escape(lam, L0, min(drops), 0.5 * lam * eps ** 2, stay, moved)
