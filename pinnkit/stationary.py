r"""Classify a point :math:`\theta` of a loss by its gradient and the eigenvalues of its dense Hessian.

The *index* of a stationary point is the number of negative Hessian eigenvalues (Morse index); the
*index fraction* divides it by the number of parameters (Dauphin et al. 2014; Rowan 2025). With explicit
tolerances, and one definition used by every chapter:

* ``not stationary`` — :math:`\|\nabla L\| >` ``grad_tol``;
* an eigenvalue counts as zero when :math:`|\lambda| \le \max(` ``eig_atol``, ``eig_rtol`` :math:`\max|\lambda|)`;
* ``saddle`` — some negative and some positive eigenvalues;
* ``minimum`` / ``maximum`` — all eigenvalues positive / negative: the second-order test *certifies* a strict
  local minimum (maximum);
* ``global minimum`` — index 0 at a loss at most ``global_below``. Pass it when the loss has a known lower
  bound that this loss attains (0 for a least-squares loss that can interpolate): such a point is a global
  minimum *by the bound*, whatever its zero eigenvalues (an over-parametrised network that interpolates has a
  whole valley of them);
* ``degenerate`` — no eigenvalue of one sign but some zero, and not certified by the bound: the second-order
  test cannot decide. At high loss in a saturating network these are flat *plateaus* (see chapters 06–07).
  With ``flat_ok=True`` such points are labelled minimum / maximum instead (use with care: a plateau then
  looks like a minimum).

>>> import torch
>>> f = lambda th: th[0] ** 2 - th[1] ** 2
>>> p = classify(f, torch.zeros(2, dtype=torch.float64))
>>> p.label, p.index, p.min_eig, p.max_eig
('saddle', 1, -2.0, 2.0)
>>> flat = lambda th: th[0] ** 2                       # a valley of minima at loss 0: (0, t) for every t
>>> classify(flat, torch.zeros(2, dtype=torch.float64)).label
'degenerate'
>>> classify(flat, torch.zeros(2, dtype=torch.float64), global_below=1e-12).label
'global minimum'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, cast

import torch
from torch import Tensor

from .curvature import hessian, jacobian
from .objective import Loss, total

__all__ = ["LABELS", "StationaryPoint", "classify", "zero_output", "tangent_alignment",
           "CurvatureSplit", "curvature_split", "BasisFit", "basis_fit", "EscapeDirection", "escape_direction",
           "Endpoint"]

LABELS = ("global minimum", "minimum", "maximum", "saddle", "degenerate", "not stationary")


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
        """True unless the gradient norm was above ``grad_tol``."""
        return self.label != "not stationary"

    def index_at(self, eig_rtol: float) -> int:
        r"""The index with another relative zero tolerance: eigenvalues :math:`< -` ``eig_rtol`` :math:`\max|\lambda|`.

        >>> p = classify(lambda th: th[0] ** 2 - 1e-6 * th[1] ** 2, torch.zeros(2, dtype=torch.float64))
        >>> p.index_at(1e-9), p.index_at(1e-3)
        (1, 0)
        """
        if eig_rtol < 0:
            raise ValueError(f"eig_rtol must be >= 0, got {eig_rtol}")
        lam = self.eigenvalues
        return int((lam < -eig_rtol * float(lam.abs().max())).sum())


def classify(f: Loss, theta: Tensor, *, grad_tol: float = 1e-6, eig_rtol: float = 1e-8, eig_atol: float = 0.0,
             global_below: float | None = None, flat_ok: bool = False, H: Tensor | None = None) -> StationaryPoint:
    """Gradient norm, Hessian index and label of ``theta`` for the loss ``f``.

    Args:
        f: the loss, ``theta -> scalar`` or a terms function ``theta -> dict`` (summed, e.g. ``pinn.terms``).
        theta: the point (not modified).
        grad_tol: points with a larger gradient norm are ``"not stationary"``.
        eig_rtol, eig_atol: eigenvalues with ``|lambda| <= max(eig_atol, eig_rtol * max|lambda|)`` count as zero.
        global_below: a stationary point of index 0 with loss at most this is a ``"global minimum"`` (pass it
            only for a loss bounded below by about 0, such as least squares; default: no bound known).
        flat_ok: label positive (negative) semi-definite stationary points minimum (maximum), not degenerate.
        H: the dense Hessian at ``theta`` if already computed (else :func:`pinnkit.curvature.hessian`).

    Returns:
        A :class:`StationaryPoint`.

    Raises:
        ValueError: a negative tolerance, or ``H`` of the wrong shape.
    """
    if grad_tol < 0 or eig_rtol < 0 or eig_atol < 0:
        raise ValueError(f"tolerances must be >= 0, got grad_tol={grad_tol}, eig_rtol={eig_rtol}, eig_atol={eig_atol}")
    loss_fn = total(f)
    theta = theta.detach()
    g, loss = torch.func.grad_and_value(loss_fn)(theta)
    if H is None:
        H = hessian(loss_fn, theta)
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
    elif neg == 0 and global_below is not None and float(loss) <= global_below:
        label = "global minimum"
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

    Raises:
        ValueError: the dense Jacobian would be too large (:func:`pinnkit.curvature.jacobian` guards its size).
    """
    r = residual(theta.detach()).detach()
    J = jacobian(residual, theta)
    denom = torch.linalg.matrix_norm(J, ord=2) * torch.linalg.vector_norm(r)
    return float(torch.linalg.vector_norm(J.T @ r) / denom.clamp_min(torch.finfo(r.dtype).tiny))


@dataclass(frozen=True)
class CurvatureSplit:
    r"""The Hessian of :math:`L = \|r\|^2` split as :math:`H = G + R`, :math:`G = 2J^\top J` (Gauss–Newton, positive
    semi-definite, rank :math:`\le m`) and :math:`R = 2\sum_i r_i \nabla^2 r_i` (residual curvature, indefinite,
    of size :math:`O(\|r\|)`).

    ``null_dim`` is the dimension of the null space of :math:`J` (numerical, cut-off ``rcond`` times
    :math:`\sigma_{\max}`); on it :math:`H = R`. ``index_on_null`` counts the negative eigenvalues of :math:`H`
    restricted to that null space, ``index`` those of :math:`H` and ``index_R`` those of :math:`R` (all with the
    zero threshold ``zero_tol``). Since :math:`G \succeq 0`, :math:`\lambda_k(H) \ge \lambda_k(R)`, so
    ``index <= index_R`` and :math:`\lambda_{\min}(H) \ge -\|R\|_2`.
    """

    n_params: int
    n_residuals: int
    rank_J: int
    null_dim: int
    index: int
    index_R: int
    index_on_null: int
    norm_G: float
    norm_R: float
    min_eig: float
    zero_tol: float


def curvature_split(residual: Callable[[Tensor], Tensor], theta: Tensor, *, rcond: float = 1e-10,
                    eig_rtol: float = 1e-9) -> CurvatureSplit:
    r"""Split the Hessian of :math:`\|r(\theta)\|^2` into its Gauss–Newton and residual-curvature parts.

    Args:
        residual: ``theta -> r`` with loss :math:`\|r\|^2` (e.g. ``model.residual_vector``).
        theta: the point (not modified).
        rcond: singular values of :math:`J` below ``rcond`` times the largest count as zero (numerical rank).
        eig_rtol: eigenvalues below ``eig_rtol`` times :math:`\max|\lambda(H)|` in size count as zero.

    Returns:
        A :class:`CurvatureSplit`.

    Raises:
        ValueError: negative tolerances, or dense matrices too large (see :func:`pinnkit.curvature.jacobian`).

    A linear residual has :math:`R = 0`: no negative eigenvalue anywhere.

    >>> A = torch.tensor([[1., 2., 0.], [0., 1., 1.]], dtype=torch.float64)
    >>> s = curvature_split(lambda th: A @ th - 1.0, torch.zeros(3, dtype=torch.float64))
    >>> s.rank_J, s.null_dim, s.index, s.norm_R
    (2, 1, 0, 0.0)
    """
    if rcond < 0 or eig_rtol < 0:
        raise ValueError(f"rcond and eig_rtol must be >= 0, got rcond={rcond}, eig_rtol={eig_rtol}")
    th = theta.detach()
    J = jacobian(residual, th)
    H = hessian(lambda t: (residual(t) ** 2).sum(), th)
    G = 2.0 * (J.T @ J)
    R = H - G
    _, S, Vh = torch.linalg.svd(J, full_matrices=True)
    rank = int((S > rcond * S.max().clamp_min(torch.finfo(S.dtype).tiny)).sum()) if S.numel() else 0
    N = Vh[rank:].T                                              # (P, P - rank): orthonormal basis of null(J)
    lam = torch.linalg.eigvalsh(H)
    tol = eig_rtol * float(lam.abs().max())
    lam_null = torch.linalg.eigvalsh(N.T @ H @ N) if N.shape[1] else lam[:0]
    lam_R = torch.linalg.eigvalsh(0.5 * (R + R.T))
    return CurvatureSplit(n_params=th.numel(), n_residuals=J.shape[0], rank_J=rank, null_dim=N.shape[1],
                          index=int((lam < -tol).sum()), index_R=int((lam_R < -tol).sum()),
                          index_on_null=int((lam_null < -tol).sum()),
                          norm_G=float(torch.linalg.matrix_norm(G, ord=2)),
                          norm_R=float(torch.linalg.matrix_norm(R, ord=2)), min_eig=float(lam[0]), zero_tol=tol)


@dataclass(frozen=True)
class BasisFit:
    r"""The network as a nonlinear discretisation :math:`u = \sum_j c_j \varphi_j(x; W)`: ``c`` the last layer's
    weights and bias (``n_basis`` coefficients), :math:`\varphi_j` the last hidden layer's features and 1.

    ``residual_norm`` is :math:`\|r\|` at ``theta`` and ``best_in_span`` the smallest :math:`\|r\|` over all
    coefficients with the basis :math:`W` held fixed (a linear least-squares problem, since :math:`r` is affine in
    :math:`c`). They are equal exactly when :math:`\Phi^\top r = 0` with :math:`\Phi = \partial r / \partial c`:
    the residual is orthogonal to every basis function (Galerkin orthogonality; for a PINN, to the differential
    operator applied to each basis function).
    """

    n_basis: int
    residual_norm: float
    best_in_span: float


def basis_fit(model: Any, theta: Tensor) -> BasisFit:
    """How far the coefficients of the last layer are from the best ones for the current basis.

    Args:
        model: a model with ``blocks`` (the last two: the last layer's weight and bias) and ``residual_vector``.
        theta: the point (not modified).

    Returns:
        A :class:`BasisFit`.
    """
    th = theta.detach()
    start = model.blocks[-2].start
    rest = th[:start]

    def r_of_c(c: Tensor) -> Tensor:
        return cast(Tensor, model.residual_vector(torch.cat([rest, c])))

    c = th[start:]
    r = r_of_c(c).detach()
    Phi = torch.func.jacrev(r_of_c)(c)                              # (m, n_basis): r(c + d) = r + Phi d exactly
    d = torch.linalg.lstsq(Phi, -r[:, None], driver="gelsd").solution[:, 0]
    return BasisFit(n_basis=c.numel(), residual_norm=float(torch.linalg.vector_norm(r)),
                    best_in_span=float(torch.linalg.vector_norm(r + Phi @ d)))


@dataclass(frozen=True)
class EscapeDirection:
    """The most negative Hessian eigenvalue ``lam_min`` and its unit eigenvector ``v_min`` (the way down)."""

    lam_min: float
    v_min: Tensor = field(repr=False)


def escape_direction(f: Loss, theta: Tensor) -> EscapeDirection:
    """The most negative Hessian eigenvalue of ``f`` at ``theta`` and its unit eigenvector.

    Raises:
        ValueError: the Hessian has no negative eigenvalue (nothing to escape along).
    """
    lam, vmin, _ = _eig_pair(f, theta)
    if float(lam[0]) >= 0:
        raise ValueError(f"the smallest eigenvalue is {float(lam[0]):.3g} >= 0: no descent direction to escape along")
    return EscapeDirection(float(lam[0]), vmin)


def _eig_pair(f: Loss, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    lam, V = torch.linalg.eigh(hessian(f, theta.detach()))
    return lam, V[:, 0], V[:, -1]


@dataclass(frozen=True)
class Endpoint:
    """Where one optimizer run from one start ended: the run, its classification, and the residual geometry.

    ``residual_norm`` is :math:`\\|r\\|` (so ``loss == residual_norm**2``) and ``tangent_align`` is
    :func:`tangent_alignment`: 0 when :math:`J^\\top r = 0` however large :math:`r` is. ``start`` names the
    starting point (``"init"`` for the model's ``theta0``).
    """

    name: str
    seed: int
    run: Any  # the pinnkit.train result (status, final_loss, history, theta)
    point: StationaryPoint
    residual_norm: float
    tangent_align: float
    start: str = "init"


