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
from typing import Any, Callable, Sequence, cast

import torch
from torch import Tensor

from .conditioning import RCUT, range_condition
from .curvature import hessian
from .objective import term
from .pinn import PINN
from .problems import Convection as Problem_convection
from .problems import Problem, partial

__all__ = ["LastLayer", "random_features", "fourier_features", "random_sine_features", "feature_weights",
           "operator_factors", "derivative_gram", "order_scaling", "scaled", "operator_condition", "fit_power_law",
           "PowerLaw", "t_quantile", "magnitude_ratio", "Fig10Point", "fig10_sweep", "ResidualControl",
           "residual_control", "KernelPoint", "tangent_kernel_sweep", "authors_estimate"]


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
        return self.pinn.residuals(self.full(c))

    def terms(self, c: Tensor) -> dict[str, Tensor]:
        return self.pinn.terms(self.full(c))

    def loss(self, c: Tensor) -> Tensor:
        return self.pinn.loss(self.full(c))

    def residual_vector(self, c: Tensor) -> Tensor:
        return self.pinn.residual_vector(self.full(c))

    def l2re(self, c: Tensor) -> float:
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
        Phi = torch.func.jacfwd(lambda c: self.pinn.u(self.full(c))(X))(self.theta0)
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
    (:func:`~pinnkit.conditioning.range_condition`). The Hessian is constant: the model is linear in its parameters.

    Args:
        model: a :class:`LastLayer` model.
        term: a loss term name (``"residual"``, ...) or ``None`` for the whole loss.
        rcut: the relative cutoff below which eigenvalues count as zero; report it with the number.

    Returns:
        :math:`\kappa` on the numerical range.
    """
    H = model.hessian() if term is None else model.term_hessians()[term]
    return range_condition(torch.linalg.eigvalsh(H), rcut=rcut).kappa


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

    A = torch.func.jacfwd(d)(model.theta0)
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
def magnitude_ratio(eigenvalues: Tensor | Sequence[float]) -> float:
    r""":math:`\lambda_1 / \min_i |\lambda_i|`: the ratio Rathore et al. plot in their Figure 10.

    Their 129 eigenvalues come from power iteration with deflation, which finds eigenvalues in order of
    **magnitude**, so their :math:`\lambda_{129}` is the eigenvalue of smallest magnitude and the ratio is the
    2-norm condition number :math:`\|H\|\,\|H^{-1}\|` (when :math:`\lambda_1` is the largest in magnitude).

    >>> magnitude_ratio(torch.tensor([-0.5, 0.25, 2.0, 40.0]))    # 40 / 0.25, not 40 / 0.5
    160.0
    """
    ev = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    small = float(ev.abs().min())
    if small == 0.0:
        raise ValueError("an eigenvalue is exactly zero: the ratio is infinite (the matrix is singular)")
    return float(ev.max()) / small


@dataclass(frozen=True)
class Fig10Point:
    r"""One point of :func:`fig10_sweep`: the trained PINN at one ``n_res``.

    Attributes:
        n_res: residual points.
        loss, l2re: at the end of training.
        lmax: the largest eigenvalue of the dense Hessian of the loss.
        min_abs: the smallest eigenvalue magnitude.
        ratio: ``lmax / min_abs`` (:func:`magnitude_ratio`).
        n_negative: eigenvalues below ``-1e-8 * lmax``.
        seconds: wall time of training and eigensolve.
        authors_first, authors_last: the first and the last (129th) value of the authors' estimator
            (:func:`~pinnkit.power_iteration.deflated_power_iteration`, ``top_n = P``, ``tol = 1e-3``, at most 500
            iterations, float32) on the float32 Hessian at the same ``theta``; ``nan`` when not asked for.
        authors_ratio: :math:`|\lambda_1/\lambda_{129}|` as the authors plot it.
        n_below: how many exact eigenvalues are smaller in magnitude than ``|authors_last|``.
    """

    n_res: int
    loss: float
    l2re: float
    lmax: float
    min_abs: float
    ratio: float
    n_negative: int
    seconds: float
    authors_first: float = math.nan
    authors_last: float = math.nan
    authors_ratio: float = math.nan
    n_below: int = -1


def fig10_sweep(n_res: Sequence[int], *, adam_steps: int, lbfgs_steps: int, lr: float, seed: int,
                beta: float = 1.0, width: int = 32, dtype: torch.dtype = torch.float64,
                device: str | torch.device | None = None, authors: bool = False) -> list[Fig10Point]:
    r"""Train a one-hidden-layer PINN (width 32: 129 parameters) on convection at each ``n_res`` with Adam
    (``lr``) then L-BFGS, and take the dense Hessian's eigenvalues at the end (``eigvalsh``: exact).

    The same ``seed`` gives the same initial network for every ``n_res``; the residual points are drawn at random,
    without replacement, from the interior of the evaluation grid. Initial points 257, boundary points 101.

    Args:
        n_res: residual point counts, e.g. ``[2**k for k in range(8, 14)]``.
        adam_steps, lbfgs_steps: the schedule (Rathore et al.: 11,000 and 1,500, ``lr = 1e-4``).
        lr: Adam's learning rate.
        seed: initialisation and sampling seed.
        authors: also run the authors' estimator (:func:`authors_estimate`) at each trained ``theta`` (on the
            dense Hessian rounded to float32).

    Returns:
        One :class:`Fig10Point` per ``n_res``.
    """
    import time

    from .train import train
    out = []
    for n in n_res:
        t0 = time.perf_counter()
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=257, n_bc=101, seed=seed,
                    dtype=dtype, device=device)
        run = train(pinn, "adam+lbfgs", adam_steps + lbfgs_steps, switch=adam_steps, lr=lr,
                    log_every=max(1, (adam_steps + lbfgs_steps) // 10))
        H = hessian(pinn.loss, run.theta)
        ev = torch.linalg.eigvalsh(H)
        extra: dict[str, Any] = {}
        if authors:
            est = authors_estimate(pinn, run.theta, seed=seed, hessian64=H if H.dtype == torch.float64 else None)
            last = float(est.eigenvalues[-1])
            extra = dict(authors_first=float(est.eigenvalues[0]), authors_last=last, authors_ratio=est.ratio,
                         n_below=int((ev.abs() < abs(last)).sum()))
        out.append(Fig10Point(int(n), run.loss, run.l2re, float(ev[-1]), float(ev.abs().min()),
                              magnitude_ratio(ev), int((ev < -1e-8 * float(ev[-1])).sum()),
                              time.perf_counter() - t0, **extra))
    return out


def authors_estimate(pinn: PINN, theta: Tensor, *, seed: int = 0, top_n: int | None = None, tol: float = 1e-3,
                     max_iter: int = 500, hessian64: Tensor | None = None) -> Any:
    r"""Rathore et al.'s Figure 10 estimator at ``theta``: :func:`~pinnkit.power_iteration.deflated_power_iteration`
    (``top_n`` = all parameters, ``tol = 1e-3``, at most 500 iterations per value) in **float32**, on the Hessian
    of ``pinn``'s loss formed in float32 at ``theta`` rounded to float32, on the same points (a tanh network, as in
    Figure 10).

    The authors multiply by the Hessian with float32 autograd products; we form the float32 Hessian once (the
    network is small) and multiply by it — the same operator up to float32 rounding, far below the estimator's own
    error. ``hessian64``: a dense float64 Hessian already at hand, rounded to float32 instead of forming it again
    (again the same operator up to float32 rounding, relative ``1e-7`` against a floor near ``1e-4`` of
    :math:`\lambda_1`).

    Returns:
        A :class:`~pinnkit.power_iteration.DeflatedPower` (``.ratio``: :math:`|\lambda_1/\lambda_{129}|`).
    """
    from .power_iteration import deflated_power_iteration

    if hessian64 is not None:
        H32 = hessian64.to(torch.float32)
    else:
        p32 = PINN(pinn.problem, widths=list(pinn.widths), n_res=1, n_ic=1, n_bc=1, seed=0, dtype=torch.float32,
                   device=pinn.device)
        p32.points = {k: v.to(torch.float32) for k, v in pinn.points.items()}
        H32 = hessian(p32.loss, theta.detach().to(torch.float32))
    return deflated_power_iteration(H32, top_n=top_n or H32.shape[0], tol=tol, max_iter=max_iter, seed=seed,
                                    dtype=torch.float32)


@dataclass(frozen=True)
class ResidualControl:
    r"""The residual term's Hessian at one fixed ``theta`` as ``n_res`` grows (:func:`residual_control`).

    Attributes:
        n_res: residual points.
        lmax: the largest eigenvalue of the residual term's Hessian.
        min_abs: the smallest :math:`|\lambda|` above ``rcut * max|lambda|``.
        ratio: ``max|lambda| / min_abs``, the condition number on the range (:func:`range_condition`): the
            residual term does not depend on the output bias (the operator annihilates constants), so its
            Hessian has an exact zero eigenvalue and no finite :func:`magnitude_ratio`.
        rank: eigenvalues above the cutoff.
        distance: :math:`\|H_n - H_{N}\|_F / \|H_{N}\|_F` against the largest ``n_res`` ``N``.
    """

    n_res: int
    lmax: float
    min_abs: float
    ratio: float
    rank: int
    distance: float


def residual_control(n_res: Sequence[int], *, seed: int, beta: float = 1.0, width: int = 32, rcut: float = 1e-12,
                     dtype: torch.dtype = torch.float64, device: str | torch.device | None = None
                     ) -> list[ResidualControl]:
    r"""The control for :func:`fig10_sweep`: the Hessian of the residual term alone,
    :math:`\frac1n\sum_i r_i^2`, at the **initial** ``theta`` (the same for every ``n``). A mean over points is a
    Monte-Carlo estimate of an integral, so at a fixed ``theta`` it converges as ``n`` grows (distance to the
    largest ``n`` of order :math:`n^{-1/2}`); it has no reason to grow.

    Returns:
        One :class:`ResidualControl` per ``n_res`` (the last has ``distance == 0``).
    """
    Hs = []
    for n in n_res:
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=257, n_bc=101, seed=seed,
                    dtype=dtype, device=device)
        Hs.append(hessian(term(pinn.terms, "residual"), pinn.theta0))
    ref = Hs[-1]
    out = []
    for n, H in zip(n_res, Hs):
        rc = range_condition(torch.linalg.eigvalsh(H), rcut=rcut)
        out.append(ResidualControl(int(n), rc.lmax, rc.smallest, rc.kappa, rc.rank,
                                   float(torch.linalg.matrix_norm(H - ref) / torch.linalg.matrix_norm(ref))))
    return out


def partial_term(pinn: PINN, name: str) -> Callable[[Tensor], Tensor]:
    """``theta -> pinn.residuals(theta)[name]``: one term's residual vector as a function of ``theta``."""
    return lambda theta: pinn.residuals(theta)[name]


# --- Theorem 8.4's mechanism: the tangent kernel as n_res grows, where p >= n --------------------------------
@dataclass(frozen=True)
class KernelPoint:
    r"""The tangent kernels at one ``n_res`` (:func:`tangent_kernel_sweep`).

    Attributes:
        n_res: residual points.
        n_rows: rows of the whole loss's kernel, :math:`n = n_{\rm res} + n_{\rm ic} + n_{\rm bc}`.
        n_params: :math:`p`.
        lmax_res, lmin_res: extreme eigenvalues of the residual term's kernel
            :math:`K_{\rm res} = J_{\rm res}J_{\rm res}^\top / n_{\rm res}` (``n_res`` square).
        rel_min_res: ``lmin_res / lmax_res`` (near :math:`10^{-16}`: singular to working precision).
        rel_min_all: the same for the whole loss's kernel :math:`JJ^\top` (``J``: Jacobian of
            ``pinn.residual_vector``, each term scaled by :math:`1/\sqrt{N_k}`).
    """

    n_res: int
    n_rows: int
    n_params: int
    lmax_res: float
    lmin_res: float
    rel_min_res: float
    rel_min_all: float


def tangent_kernel_sweep(n_res: Sequence[int], *, seed: int, width: int = 32, n_ic: int = 8, n_bc: int = 4,
                         beta: float = 1.0, dtype: torch.dtype = torch.float64,
                         device: str | torch.device | None = None) -> list[KernelPoint]:
    r"""The tangent kernel :math:`JJ^\top` of a one-hidden-layer convection PINN (width 32: :math:`p = 129`, the
    network of Figure 10) at its **initial** ``theta`` as ``n_res`` grows: the quantity behind Rathore et al.'s
    Definition 8.3. With the residuals :math:`r` of the loss :math:`L = \|r\|^2`,
    :math:`\|\nabla L\|^2 = 4 r^\top JJ^\top r \ge 4\lambda_{\min}(JJ^\top) L`: the loss is PL* with
    :math:`\mu = 4\lambda_{\min}(JJ^\top)`, which can be positive only when :math:`p \ge n`.

    The same ``seed`` gives the same network for every ``n_res``; the points are the problem's own grid samples.

    Returns:
        One :class:`KernelPoint` per ``n_res``.
    """
    from .curvature import jacobian

    out = []
    for n in n_res:
        pinn = PINN(Problem_convection(beta), widths=[width], n_res=int(n), n_ic=n_ic, n_bc=n_bc, seed=seed,
                    dtype=dtype, device=device)
        theta = pinn.theta0
        J = jacobian(pinn.residual_vector, theta)
        Jr = jacobian(partial_term(pinn, "residual"), theta) / math.sqrt(int(n))
        ev_all = torch.linalg.eigvalsh(J @ J.T)
        ev = torch.linalg.eigvalsh(Jr @ Jr.T)
        out.append(KernelPoint(int(n), J.shape[0], pinn.n_params, float(ev[-1]), float(ev[0]),
                               float(ev[0] / ev[-1]), float(ev_all[0] / ev_all[-1])))
    return out
