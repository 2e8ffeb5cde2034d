r"""Models linear in their parameters: a PINN whose hidden layers are frozen (random features).

With :math:`u_c(X) = \sum_j c_j \phi_j(X) + c_0` and a linear PDE operator :math:`\mathcal D`, every residual is
linear in ``c``: :math:`r_k(c) = A_k c - b_k`, with :math:`A_k` the operator applied to the features
at the term's points (:math:`(\mathcal D\phi_j)(X_i)` for the residual term). The PINN loss
:math:`L(c) = \sum_k \frac{1}{N_k}\|A_k c - b_k\|^2` is then a quadratic with constant Hessian

.. math::  H = 2 \sum_k \tfrac{1}{N_k} A_k^\top A_k ,

so its conditioning is exactly that of the (scaled) operator matrices — the setting of Rathore et al.'s Section 8.

>>> import torch, pinnkit as pk
>>> m = random_features(pk.problems.Convection(beta=2.0), width=8, n_res=64, n_ic=16, n_bc=8)
>>> H = m.hessian()
>>> bool(torch.allclose(H, pk.curvature.hessian(m.loss, m.theta0), atol=1e-10))
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from .conditioning import RCUT, condition_number
from .pinn import PINN
from .problems import Problem, partial

__all__ = ["LastLayer", "random_features", "fourier_features", "random_sine_features", "feature_weights",
           "operator_factors", "derivative_gram", "order_scaling", "scaled", "operator_condition", "fit_power_law",
           "PowerLaw", "t_quantile"]


class LastLayer:
    """``pinn`` with every layer but the last frozen at ``theta``: a model linear in ``c`` (the last layer's weights
    and bias, ``pinn.blocks[-2:]``). Exposes the PINN interface on ``c``: ``theta0``, ``terms``, ``loss``,
    ``residuals``, ``residual_vector``, ``l2re``.
    """

    def __init__(self, pinn: PINN, theta: Tensor | None = None):
        theta = pinn.theta0 if theta is None else theta.detach()
        pinn.check(theta)
        self.pinn = pinn
        self.split = pinn.blocks[-2].start
        self.hidden = theta[:self.split].clone()
        self.theta0 = theta[self.split:].clone()
        self.n_params = self.theta0.numel()
        self.u_exact = pinn.u_exact

    def full(self, c: Tensor) -> Tensor:
        """The PINN's flat parameter vector for last-layer parameters ``c``."""
        return torch.cat([self.hidden, c])

    def residuals(self, c: Tensor) -> dict[str, Tensor]:
        """The residual vectors of the loss terms at the output-layer coefficients ``c``."""
        return self.pinn.residuals(self.full(c))

    def terms(self, c: Tensor) -> dict[str, Tensor]:
        """The per-term mean-square losses at ``c``."""
        return self.pinn.terms(self.full(c))

    def loss(self, c: Tensor) -> Tensor:
        """The loss at the output-layer coefficients ``c``."""
        return self.pinn.loss(self.full(c))

    def residual_vector(self, c: Tensor) -> Tensor:
        """All terms' residuals, each divided by the square root of its point count, as one vector."""
        return self.pinn.residual_vector(self.full(c))

    def l2re(self, c: Tensor) -> float:
        """The relative L2 error of the model at ``c``."""
        return self.pinn.l2re(self.full(c))

    def operator_matrices(self) -> dict[str, Tensor]:
        r"""Per term, :math:`A_k = \partial r_k / \partial c` (``N_k x n_params``): exact, and constant for linear
        PDEs.
        """
        names = list(self.residuals(self.theta0))
        return {k: torch.func.jacfwd(lambda c, k=k: self.residuals(c)[k])(self.theta0) for k in names}

    def term_hessians(self) -> dict[str, Tensor]:
        r""":math:`H_k = \frac{2}{N_k} A_k^\top A_k` per term (their sum is :meth:`hessian`)."""
        return {k: 2.0 * A.T @ A / A.shape[0] for k, A in self.operator_matrices().items()}

    def hessian(self) -> Tensor:
        r"""The loss Hessian :math:`H = 2\sum_k A_k^\top A_k / N_k`."""
        return cast(Tensor, sum(self.term_hessians().values()))

    def fit_hessian(self) -> Tensor:
        r"""Hessian of plain regression with the same features and points, :math:`\frac1N\|u_c(X) - u^*(X)\|^2`
        over the residual points: :math:`2\Phi^\top\Phi/N` — the PINN Hessian with the operator taken out.
        """
        X = self.pinn.points["residual"]
        Phi: Tensor = torch.func.jacfwd(lambda c: self.pinn.u(self.full(c))(X))(self.theta0)
        return 2.0 * Phi.T @ Phi / Phi.shape[0]


def random_features(problem: Problem | str, width: int = 64, scale: float = 1.0, n_res: int = 1000, n_ic: int = 101,
                    n_bc: int = 51, seed: int = 0, dtype: torch.dtype = torch.float64,
                    device: str | torch.device | None = None, **pinn_kw: Any) -> LastLayer:
    r"""Random tanh features :math:`\phi_j(X) = \tanh(w_j^\top \tilde X + b_j)` with :math:`w_j \sim \mathcal N(0,
    \mathrm{scale}^2 I)` on inputs rescaled to :math:`[-1, 1]` per column,
    :math:`b_j \sim \mathcal N(0, \mathrm{scale}^2)` (``activation="sin"`` gives random Fourier features);
    the last layer (``width + 1`` parameters) is the model's parameter vector.
    """
    pinn = PINN(problem, widths=[width], n_res=n_res, n_ic=n_ic, n_bc=n_bc, seed=seed, dtype=dtype, device=device,
                **pinn_kw)
    gen = torch.Generator().manual_seed(seed + 1)
    d = pinn.problem.dim
    lo = torch.tensor([b[0] for b in pinn.problem.bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in pinn.problem.bounds], dtype=torch.float64)
    W = scale * torch.randn(width, d, generator=gen, dtype=torch.float64)
    b = scale * torch.randn(width, generator=gen, dtype=torch.float64)
    # tanh(W (2 (X - lo) / (hi - lo) - 1) + b) = tanh(W' X + b')
    W1 = W * (2.0 / (hi - lo))
    b1 = b - W @ (2.0 * lo / (hi - lo) + 1.0)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = W1.reshape(-1).to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = b1.to(theta)
    return LastLayer(pinn, theta)


def operator_condition(model: LastLayer, term: str | None = None, rcut: float = RCUT) -> float:
    r"""Condition number **on the range** of the Hessian of ``model``'s loss (or of one ``term``): the largest
    :math:`|\lambda|` over the smallest :math:`|\lambda|` above ``rcut`` times it
    (:func:`~pinnkit.conditioning.condition_number`). The Hessian is constant: the model is linear in its parameters.

    Args:
        model: a :class:`LastLayer` model.
        term: a loss term name (``"residual"``, ...) or ``None`` for the whole loss.
        rcut: the relative cutoff below which eigenvalues count as zero; report it with the number.

    Returns:
        :math:`\kappa` on the numerical range.
    """
    H = model.hessian() if term is None else model.term_hessians()[term]
    return condition_number(torch.linalg.eigvalsh(H), rcut=rcut)


def feature_weights(model: LastLayer) -> Tensor:
    r"""The hidden layer's weights in the problem's own coordinates, ``(width, d)``: feature ``j`` is
    :math:`\phi_j(X) = \sigma(w_j^\top X + b_j)`. For :func:`random_features` the inputs were rescaled to
    :math:`[-1, 1]` first, so :math:`w_{j,i} = 2\tilde w_{j,i} / (\mathrm{hi}_i - \mathrm{lo}_i)`
    (convection on :math:`(0, 2\pi)\times(0, 1)`: :math:`w_x = \tilde w_x/\pi`, :math:`w_t = 2\tilde w_t`).
    """
    b = model.pinn.blocks[0]
    return model.hidden[b.start:b.stop].reshape(b.shape)


def operator_factors(model: LastLayer, beta: float) -> Tensor:
    r"""For a sine feature :math:`\phi_j = \sin(w_j^\top X + b_j)` of convection, :math:`(\partial_t + \beta
    \partial_x)\phi_j = (w_{j,t} + \beta w_{j,x}) \cos(\cdot)`: the factor :math:`w_{j,t} + \beta w_{j,x}` by
    which the operator scales feature ``j`` (``width`` values; columns ``(x, t)``).

    >>> import pinnkit as pk
    >>> m = random_features(pk.problems.Convection(beta=1.0), width=4, activation="sin")
    >>> W = feature_weights(m)
    >>> bool(torch.allclose(operator_factors(m, 3.0), W[:, 1] + 3.0 * W[:, 0]))
    True
    """
    W = feature_weights(model)
    return W[:, 1] + beta * W[:, 0]


def fourier_features(problem: Problem | str, n_freq: int, n_res: int = 512, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
                     **pinn_kw: Any) -> LastLayer:
    r"""Deterministic Fourier features for a 1-D problem on :math:`(a, b)`:
    :math:`\phi_j(x) = \sin\big(j\pi (x - a)/(b - a)\big)`, :math:`j = 1, \dots,` ``n_freq``, plus the
    constant (the last layer's bias). On Poisson1D, :math:`(0, 1)`, they are :math:`\sin(j\pi x)`.

    Args:
        problem: a 1-D :class:`~pinnkit.problems.Problem` (e.g. ``Poisson1D``).
        n_freq: number of frequencies ``K``; the model has ``K + 1`` parameters.
        n_res: residual points (evenly spaced on Poisson1D's default grid sampling).

    Returns:
        A :class:`LastLayer` model.

    Raises:
        ValueError: the problem is not 1-D, or ``n_res <= 2 n_freq`` (too few points to resolve the frequencies).

    >>> import pinnkit as pk
    >>> m = fourier_features(pk.problems.Poisson1D(), n_freq=3, n_res=16)
    >>> X = torch.tensor([[0.25]], dtype=torch.float64)
    >>> bool(torch.allclose(m.pinn.u(m.full(torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)))(X),
    ...                     torch.sin(torch.tensor([2 * math.pi * 0.25], dtype=torch.float64))))
    True
    """
    pinn = PINN(problem, widths=[n_freq], n_res=n_res, seed=seed, activation="sin", dtype=dtype, device=device,
                **pinn_kw)
    if pinn.problem.dim != 1:
        raise ValueError(f"fourier_features needs a 1-D problem, got dim={pinn.problem.dim}; "
                         "use random_features for space-time problems")
    if n_res <= 2 * n_freq:
        raise ValueError(f"n_res={n_res} points cannot resolve {n_freq} frequencies; use n_res > 2 * n_freq")
    (a, b), = pinn.problem.bounds
    w = math.pi * torch.arange(1, n_freq + 1, dtype=torch.float64) / (b - a)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = w.to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = (-w * a).to(theta)
    return LastLayer(pinn, theta)


def random_sine_features(problem: Problem | str, n_freq: int, n_res: int = 512, seed: int = 0,
                         dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
                         **pinn_kw: Any) -> LastLayer:
    r"""A non-orthogonal companion of :func:`fourier_features` for a 1-D problem on :math:`(a, b)`: random sine
    features :math:`\phi_j(x) = \sin\big(\omega_j (x - a) + b_j\big)` with one frequency per band,
    :math:`\omega_j = \pi (j + u_j)/(b - a)`, :math:`u_j \sim U(-\tfrac12, \tfrac12)`, and random phases
    :math:`b_j \sim U(0, 2\pi)` — the hidden layer of a sine-activated PINN with random weights, covering the same
    frequencies as the sines :math:`j = 1, \dots, K` but not orthogonal on any grid. Plus the constant.

    Differentiating still multiplies feature ``j`` by :math:`\omega_j` (and shifts its phase), so
    :func:`order_scaling` undoes the operator exactly as :math:`(j\pi)^{-k}` does on the sines; what it cannot undo
    is the features' own collinearity.

    >>> import pinnkit as pk
    >>> m = random_sine_features(pk.problems.Poisson1D(), n_freq=4, n_res=64, seed=0)
    >>> w = feature_weights(m)[:, 0] / math.pi
    >>> bool(((w - torch.arange(1, 5) ).abs() <= 0.5).all())
    True
    """
    pinn = PINN(problem, widths=[n_freq], n_res=n_res, seed=seed, activation="sin", dtype=dtype, device=device,
                **pinn_kw)
    if pinn.problem.dim != 1:
        raise ValueError(f"random_sine_features needs a 1-D problem, got dim={pinn.problem.dim}; "
                         "use random_features for space-time problems")
    (a, b), = pinn.problem.bounds
    gen = torch.Generator().manual_seed(seed + 1)
    w = math.pi * (torch.arange(1, n_freq + 1, dtype=torch.float64)
                   + torch.rand(n_freq, generator=gen, dtype=torch.float64) - 0.5) / (b - a)
    phase = 2 * math.pi * torch.rand(n_freq, generator=gen, dtype=torch.float64)
    theta = pinn.theta0.clone()
    theta[pinn.blocks[0].start:pinn.blocks[0].stop] = w.to(theta)
    theta[pinn.blocks[1].start:pinn.blocks[1].stop] = (phase - w * a).to(theta)
    return LastLayer(pinn, theta)


def order_scaling(model: LastLayer, order: int) -> Tensor:
    r"""Operator preconditioning for a sine/Fourier-feature model and the ``order``-th derivative: the diagonal
    :math:`d` with :math:`d_j = |\omega_j|^{-k}` for feature ``j`` (first input's frequency, :math:`\omega_j =
    j\pi` for :func:`fourier_features` on :math:`(0, 1)`) and :math:`1` for the constant. Rescaling the features,
    :math:`\phi_j \to d_j\phi_j`, turns a Hessian :math:`H` into :func:`scaled` ``(H, d)`` :math:`= DHD`.

    >>> import pinnkit as pk
    >>> m = fourier_features(pk.problems.Poisson1D(), n_freq=2, n_res=16)
    >>> [round(x, 6) for x in (order_scaling(m, 2) * torch.tensor([math.pi**2, 4 * math.pi**2, 1.0])).tolist()]
    [1.0, 1.0, 1.0]
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    w = feature_weights(model)[:, 0].abs().to(torch.float64)
    return torch.cat([w ** (-order), torch.ones(1, dtype=torch.float64)])


def scaled(H: Tensor, d: Tensor) -> Tensor:
    r""":math:`DHD` with :math:`D = \mathrm{diag}(d)`: the Hessian in rescaled parameters :math:`c = Dc'`
    (features :math:`\phi_j \to d_j \phi_j`).

    >>> scaled(torch.eye(2), torch.tensor([2.0, 3.0])).diag().tolist()
    [4.0, 9.0]
    """
    d = d.to(H)
    return d[:, None] * H * d[None, :]


def derivative_gram(model: LastLayer, order: int, X: Tensor | None = None, constant: bool = False) -> Tensor:
    r"""The Hessian of :math:`\frac1N\|\partial_x^{\,k} u_c(X)\|^2` in ``c`` (first input, ``k = order``):
    :math:`\frac2N A_k^\top A_k` with :math:`(A_k)_{ij} = \partial_x^{\,k}\phi_j(X_i)`. ``order = 0`` is plain
    regression; ``order = 2`` is the residual term of :math:`-u'' = f`. Default ``X``: the residual points.

    For :math:`\phi_j = \sin(j\pi x)` the ``k``-th derivative multiplies feature ``j`` by :math:`(j\pi)^k`, so on
    orthogonal features the eigenvalues are :math:`\approx (j\pi)^{2k}` and
    :math:`\kappa \approx K^{2k}`.

    By default the constant feature (the last layer's bias) is left out: it is annihilated by every derivative
    (a zero eigenvalue), and for ``order = 0`` it is nearly collinear with the odd sines (the square-wave series
    :math:`1 = \frac4\pi\sum_{j\,\rm odd}\sin(j\pi x)/j`), which would make even plain regression's
    :math:`\kappa` grow like ``K``. ``constant=True`` keeps it.

    Args:
        model: a :class:`LastLayer` model.
        order: the derivative order ``k >= 0``.
        X: ``(N, d)`` points; default ``model.pinn.points["residual"]``.
        constant: keep the constant feature's column.

    Returns:
        The Gram matrix, ``(n_params - 1)`` square (``n_params`` with ``constant=True``).

    Raises:
        ValueError: a negative ``order``.
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    X = model.pinn.points["residual"] if X is None else X

    def d(c: Tensor) -> Tensor:
        f = model.pinn.u(model.full(c))
        for _ in range(order):
            f = partial(f, 0)
        return f(X)

    A: Tensor = torch.func.jacfwd(d)(model.theta0)
    A = A if constant else A[:, :-1]
    return 2.0 * A.T @ A / A.shape[0]


@dataclass(frozen=True)
class PowerLaw:
    r"""A least-squares fit :math:`y \approx C x^{p}` on log-log axes, valid on the fitted range only.

    Attributes:
        slope: the exponent :math:`p`.
        prefactor: :math:`C`.
        xmin, xmax: the range of ``x`` the fit used (:func:`pinnkit.plots.plot_power_law` draws it only there).
        stderr: the slope's standard error from the residuals of the fit (``nan`` with fewer than 3 points).
        n_points: how many points were fitted.
    """

    slope: float
    prefactor: float
    xmin: float = 0.0
    xmax: float = math.inf
    stderr: float = math.nan
    n_points: int = 0

    def ci(self) -> tuple[float, float]:
        r"""The 95% confidence interval of the slope, :math:`p \pm t_{0.975,\,n-2}\,\mathrm{SE}` (Student's
        ``t``: six points give :math:`t = 2.78`, not 2). ``(nan, nan)`` with fewer than 3 points.
        """
        if not self.n_points >= 3 or not math.isfinite(self.stderr):
            return (math.nan, math.nan)
        half = t_quantile(self.n_points - 2) * self.stderr
        return (self.slope - half, self.slope + half)

    def __call__(self, x: Any) -> Any:
        r"""The fitted law :math:`c\,x^p` at ``x``."""
        return self.prefactor * x ** self.slope

    def rounded(self, digits: int = 2) -> float:
        """The slope rounded to ``digits`` decimals, with ``-0.0`` printed as ``0.0``."""
        return round(self.slope, digits) or 0.0

    def __repr__(self) -> str:
        return f"PowerLaw(slope={self.slope:.3g}, prefactor={self.prefactor:.3g}, x in [{self.xmin:g}, {self.xmax:g}])"


#: two-sided 95% quantiles t_{0.975, df} of Student's t, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile :math:`t_{0.975}` of Student's t with ``df`` degrees of freedom (a table up to 30,
    then the normal 1.96 with a first-order correction).

    >>> t_quantile(4)
    2.776
    """
    if df < 1:
        raise ValueError(f"need at least one degree of freedom (three points), got df={df}")
    return _T975[df - 1] if df <= 30 else 1.96 + 2.4 / df


def fit_power_law(x: Any, y: Any, base: float = math.e) -> PowerLaw:
    r"""Fit :math:`\log y = p \log x + \log C` by least squares (the slope does not depend on ``base``).

    Args:
        x, y: positive values, at least two points.

    Returns:
        A :class:`PowerLaw` that remembers the fitted ``x`` range.

    Raises:
        ValueError: fewer than two points, or a non-positive / non-finite value.

    >>> round(fit_power_law([1, 2, 4, 8], [3, 12, 48, 192]).slope, 6)
    2.0
    >>> fit_power_law([1, 2, 4], [5, 5, 5]).rounded()
    0.0
    >>> f = fit_power_law([1, 2, 4, 8], [1.0, 4.4, 14.5, 70.0])   # noisy y ~ x^2: the CI brackets 2
    >>> lo, hi = f.ci(); bool(lo < 2 < hi)
    True
    """
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    if xt.numel() < 2 or not bool((xt > 0).all() and (yt > 0).all() and torch.isfinite(yt).all()):
        raise ValueError("need at least two points with positive x and positive, finite y to fit a power law")
    lx, ly = torch.log(xt), torch.log(yt)
    A = torch.stack([lx, torch.ones_like(lx)], dim=1)
    p, c = torch.linalg.lstsq(A, ly[:, None]).solution[:, 0]
    n = int(lx.numel())
    se = math.nan
    if n >= 3:
        resid = ly - (p * lx + c)
        sxx = float(((lx - lx.mean()) ** 2).sum())
        se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx) if sxx > 0 else math.nan
    return PowerLaw(float(p), math.exp(float(c)), float(xt.min()), float(xt.max()), se, n)


# --- Rathore et al.'s Figure 10: a 129-parameter PINN as n_res grows ---------------------------------------


# --- Theorem 8.4's mechanism: the tangent kernel as n_res grows, where p >= n --------------------------------


