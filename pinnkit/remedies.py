r"""Remedies as losses of ``theta``: input embeddings :math:`\gamma` (:class:`EmbeddedPINN` sees
:math:`\gamma(X)`), loss weights :math:`\{k: \lambda_k L_k\}` (:func:`weighted_terms`, updated by
:class:`WeightUpdate`) and causal training (:func:`causal_terms`).

>>> import torch, pinnkit as pk
>>> pinn = EmbeddedPINN(pk.problems.Convection(beta=1.0), Periodic(), widths=[8], n_res=64, n_ic=16, n_bc=8)
>>> float(pinn.terms(pinn.theta0)["boundary"]) < 1e-12      # periodic in x by construction
True
>>> w = Weights({"residual": 1.0, "initial": 10.0, "boundary": 1.0})
>>> t = weighted_terms(pinn, w)(pinn.theta0)
>>> bool(torch.isclose(t["initial"], 10 * pinn.terms(pinn.theta0)["initial"]))
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from .flat import FlatMLP
from .nets import size
from .objective import TermsFn, as_terms
from .pinn import PINN
from .problems import Problem

__all__ = ["Embedding", "Periodic", "FourierFeatures", "Concat", "EmbeddedPINN", "EMBEDDINGS", "embedding", "model",
           "Weights", "weighted_terms", "grad_norm_weights", "ntk_weights", "term_traces", "WeightUpdate",
           "causal_terms", "causal_weights", "slice_losses"]


# --- embeddings ----------------------------------------------------------------------------------------
class Embedding:
    """A fixed map :math:`\\gamma: \\mathbb R^d \\to \\mathbb R^m` applied row by row before the network."""

    n_in: int
    n_out: int

    def __call__(self, X: Tensor) -> Tensor:
        """The embedded inputs: one row of features per row of ``X``."""
        raise NotImplementedError


class Periodic(Embedding):
    r"""Exact periodicity in column ``dim``: :math:`x \mapsto (\cos k\omega x, \sin k\omega x)_{k=1..K}`
    (``harmonics`` :math:`K`), :math:`\omega = 2\pi / L` (``period``); the other of ``n_in`` columns pass through.

    >>> e = Periodic(period=2 * math.pi)
    >>> X = torch.tensor([[0.0, 0.5], [2 * math.pi, 0.5]], dtype=torch.float64)
    >>> bool(torch.allclose(e(X)[0], e(X)[1])), e.n_out     # x = 0 and x = L map to the same features
    (True, 3)
    """

    def __init__(self, period: float = 2 * math.pi, dim: int = 0, harmonics: int = 1, n_in: int = 2):
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        self.n_in = size(n_in, "n_in")
        if not 0 <= dim < self.n_in:
            raise ValueError(f"dim must be an input column in 0..{self.n_in - 1}, got {dim}")
        self.period, self.dim, self.harmonics = float(period), int(dim), size(harmonics, "harmonics")
        self.n_out = self.n_in - 1 + 2 * self.harmonics

    def __call__(self, X: Tensor) -> Tensor:
        """The embedded inputs: one row of features per row of ``X``."""
        k = torch.arange(1, self.harmonics + 1, dtype=X.dtype, device=X.device)
        a = (2 * math.pi / self.period) * X[:, self.dim:self.dim + 1] * k
        rest = [X[:, j:j + 1] for j in range(self.n_in) if j != self.dim]
        return torch.cat([torch.cos(a), torch.sin(a), *rest], dim=1)

    def __repr__(self) -> str:
        return f"Periodic(period={self.period:.4g}, dim={self.dim}, harmonics={self.harmonics})"


class FourierFeatures(Embedding):
    r"""Random Fourier features :math:`(\cos(X B^\top), \sin(X B^\top))`, :math:`B \in \mathbb R^{m \times d}`
    (``n_features`` :math:`m`), :math:`B_{ij} \sim \mathcal N(0, \sigma^2)` seeded by ``seed``, of the columns
    ``dims`` (default all); the other columns pass through if ``keep_rest``.

    >>> e = FourierFeatures(n_features=4, sigma=1.0, n_in=2, seed=0)
    >>> Y = e(torch.zeros(3, 2, dtype=torch.float64))
    >>> Y.shape, float(Y[:, :4].min()), float(Y[:, 4:].abs().max())    # cos 0 = 1, sin 0 = 0
    (torch.Size([3, 8]), 1.0, 0.0)
    """

    def __init__(self, n_features: int = 32, sigma: float = 1.0, dims: Sequence[int] | None = None, n_in: int = 2,
                 seed: int = 0, keep_rest: bool = True):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.n_in = size(n_in, "n_in")
        self.dims = tuple(range(self.n_in)) if dims is None else tuple(int(d) for d in dims)
        if not self.dims or any(not 0 <= d < self.n_in for d in self.dims):
            raise ValueError(f"dims must be input columns in 0..{self.n_in - 1}, got {dims}")
        self.sigma, self.n_features = float(sigma), size(n_features, "n_features")
        gen = torch.Generator().manual_seed(size(seed, "seed", 0))
        self.B = sigma * torch.randn(self.n_features, len(self.dims), generator=gen, dtype=torch.float64)
        self.keep_rest = bool(keep_rest)
        self.n_out = 2 * self.n_features + (self.n_in - len(self.dims) if keep_rest else 0)

    def __call__(self, X: Tensor) -> Tensor:
        """The embedded inputs: one row of features per row of ``X``."""
        a = X[:, list(self.dims)] @ self.B.to(X.device, X.dtype).T
        rest = [X[:, j:j + 1] for j in range(self.n_in) if j not in self.dims and self.keep_rest]
        return torch.cat([torch.cos(a), torch.sin(a), *rest], dim=1)

    def __repr__(self) -> str:
        return f"FourierFeatures(n_features={self.n_features}, sigma={self.sigma:g}, dims={self.dims})"


class Concat(Embedding):
    r"""Several embeddings of the same input side by side: :math:`\gamma(X) = (\gamma_1(X), \dots, \gamma_n(X))`.

    >>> e = Concat(Periodic(), FourierFeatures(4, sigma=10.0, dims=[1], keep_rest=False))
    >>> e.n_out, e(torch.zeros(5, 2)).shape        # (cos x, sin x, t) and 4 cosines, 4 sines of t
    (11, torch.Size([5, 11]))
    """

    def __init__(self, *parts: Embedding):
        if not parts or len({p.n_in for p in parts}) != 1:
            raise ValueError(f"Concat needs embeddings of the same input dimension, got {[p.n_in for p in parts]}")
        self.parts = parts
        self.n_in = parts[0].n_in
        self.n_out = sum(p.n_out for p in parts)

    def __call__(self, X: Tensor) -> Tensor:
        """The embedded inputs: one row of features per row of ``X``."""
        return torch.cat([p(X) for p in self.parts], dim=1)

    def __repr__(self) -> str:
        return "Concat(" + ", ".join(map(repr, self.parts)) + ")"


#: the embeddings of chapter 11 by name (:func:`embedding`)
EMBEDDINGS = ("none", "periodic", "fourier", "periodic+fourier")


def embedding(name: str, problem: Problem, sigma: float = 10.0, n_features: int = 16, seed: int = 0
              ) -> Embedding | None:
    r"""An embedding of a space-time ``problem`` by name: ``"none"`` (``None``), ``"periodic"`` (:class:`Periodic`
    in :math:`x` over the domain), ``"fourier"`` (:class:`FourierFeatures` of :math:`t`) or ``"periodic+fourier"``
    (:math:`(\cos\omega x, \sin\omega x, t, \cos b_j t, \sin b_j t)`).

    >>> import pinnkit as pk
    >>> embedding("periodic+fourier", pk.problems.Convection(), n_features=4).n_out
    11
    """
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {name!r}; valid: {', '.join(EMBEDDINGS)}")
    if name == "none":
        return None
    (x0, x1), _ = problem.bounds[0], problem.bounds[-1]
    per = Periodic(period=x1 - x0, dim=0, n_in=problem.dim)
    if name == "periodic":
        return per
    ff = FourierFeatures(n_features, sigma, dims=[problem.dim - 1], n_in=problem.dim, seed=seed,
                         keep_rest=name == "fourier")
    return ff if name == "fourier" else Concat(per, ff)


def model(problem: Problem, name: str = "none", *, sigma: float = 10.0, n_features: int = 16, seed: int = 0,
          **pinn_options: Any) -> PINN:
    """A :class:`~pinnkit.PINN` or an :class:`EmbeddedPINN` with :func:`embedding` ``name``, all seeded by ``seed``."""
    emb = embedding(name, problem, sigma=sigma, n_features=n_features, seed=seed)
    if emb is None:
        return PINN(problem, seed=seed, **pinn_options)
    return EmbeddedPINN(problem, emb, seed=seed, **pinn_options)


class EmbeddedPINN(PINN):
    r""":math:`u_\theta(X) = N_\theta(\gamma(X))`: a :class:`~pinnkit.PINN` (same points and terms for the same
    arguments) whose first layer takes ``embedding.n_out`` inputs.
    """

    def __init__(self, problem: Problem | str, embedding: Embedding, widths: Sequence[int] = (50, 50, 50),
                 n_res: int = 10_000, n_ic: int = 257, n_bc: int = 101, seed: int = 0, activation: str = "tanh",
                 sampling: str = "grid", dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, eval_shape: tuple[int, ...] | None = None):
        super().__init__(problem, widths, n_res=n_res, n_ic=n_ic, n_bc=n_bc, seed=seed, activation=activation,
                         sampling=sampling, dtype=dtype, device=device, eval_shape=eval_shape)
        if embedding.n_in != self.problem.dim:
            raise ValueError(f"the embedding takes {embedding.n_in} input column(s) but {self.problem.name} has "
                             f"{self.problem.dim}; build it with n_in={self.problem.dim}")
        self.embedding = embedding
        FlatMLP.__init__(self, embedding.n_out, widths, seed=seed, activation=activation, dtype=dtype,
                         device=device)   # the network, rebuilt for the embedded inputs
        self.n_in = self.problem.dim      # predict() takes (x, t) rows

    def u(self, theta: Tensor) -> Callable[[Tensor], Tensor]:
        """The network with parameters ``theta`` as a function of the raw inputs (embedding first)."""
        net = FlatMLP.u(self, theta)
        return lambda X: net(self.embedding(X))

    def __repr__(self) -> str:
        return super().__repr__().replace("PINN(", f"EmbeddedPINN({self.embedding!r}, ", 1)


# --- loss weights --------------------------------------------------------------------------------------
@dataclass
class Weights:
    """Loss weights :math:`\\lambda_k` by term name (missing: 1) and their history, read at every evaluation."""

    values: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def __getitem__(self, name: str) -> float:
        return self.values.get(name, 1.0)

    def set(self, values: Mapping[str, float], step: int = 0) -> None:
        """Replace the weights (and record them with the step number)."""
        self.values = {k: float(v) for k, v in values.items()}
        self.history.append((step, dict(self.values)))


def weighted_terms(model: Any, weights: Weights | Mapping[str, float]) -> TermsFn:
    r"""The terms :math:`\{k: \lambda_k L_k(\theta)\}` of ``model`` (a PINN or a terms function), ``weights`` read
    at every call.

    >>> f = weighted_terms(lambda th: {"a": th.sum(), "b": 2 * th.sum()}, {"b": 0.5})
    >>> {k: float(v) for k, v in f(torch.ones(2)).items()}
    {'a': 2.0, 'b': 2.0}
    """
    terms = as_terms(model)
    w = weights if isinstance(weights, Weights) else Weights(dict(weights))

    def fn(theta: Tensor) -> dict[str, Tensor]:
        return {k: w[k] * v for k, v in terms(theta).items()}
    return fn


def _term_grads(model: Any, theta: Tensor) -> dict[str, Tensor]:
    terms = as_terms(model)
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        t = terms(th)
        return {k: torch.autograd.grad(v, th, retain_graph=True, allow_unused=True)[0] if v.requires_grad
                else torch.zeros_like(th) for k, v in t.items()}


def grad_norm_weights(model: Any, theta: Tensor, kind: str = "norm") -> dict[str, float]:
    r"""Weights that equalise the terms' gradients at ``theta``: ``kind="norm"`` :math:`\hat\lambda_k = \sum_j
    \|\nabla L_j\| / \|\nabla L_k\|`; ``kind="max/mean"`` :math:`\hat\lambda_k = \max_i |\nabla L_r|_i /
    \operatorname{mean}_i |\nabla L_k|_i` (1 for the residual).

    >>> f = lambda th: {"residual": (3 * th).pow(2).sum(), "initial": th.pow(2).sum()}
    >>> w = grad_norm_weights(f, torch.ones(2, dtype=torch.float64))
    >>> round(w["residual"], 6), round(w["initial"], 6)        # gradients 18 (1, 1) and 2 (1, 1)
    (1.111111, 10.0)
    """
    g = _term_grads(model, theta)
    if kind == "norm":
        norms = {k: float(torch.linalg.vector_norm(v)) for k, v in g.items()}
        s = sum(norms.values())
        return {k: s / max(n, 1e-300) for k, n in norms.items()}
    if kind == "max/mean":
        if "residual" not in g:
            raise ValueError(f"kind='max/mean' scales every term to the 'residual' term; terms: {sorted(g)}")
        top = float(g["residual"].abs().max())
        return {k: 1.0 if k == "residual" else top / max(float(v.abs().mean()), 1e-300) for k, v in g.items()}
    raise ValueError(f"kind must be 'norm' or 'max/mean', got {kind!r}")


def term_traces(pinn: PINN, theta: Tensor, max_points: int | None = None) -> dict[str, float]:
    r"""Per term, :math:`\operatorname{tr} K_{kk} = \frac{1}{N_k} \sum_{i} \|\nabla_\theta r_k(x_i)\|^2`, the
    kernel trace of :math:`r_k/\sqrt{N_k}`; ``max_points`` uses an evenly strided subset of each point set.

    >>> import pinnkit as pk
    >>> pinn = pk.PINN(pk.problems.Convection(beta=1.0), widths=[4], n_res=8, n_ic=4, n_bc=2, dtype=torch.float64)
    >>> J = torch.func.jacrev(lambda th: pinn.residuals(th)["initial"])(pinn.theta0)
    >>> bool(abs(term_traces(pinn, pinn.theta0)["initial"] - float((J ** 2).sum()) / 4) < 1e-12)
    True
    """
    pts = pinn.points
    if max_points is not None:
        n = size(max_points, "max_points")
        pts = {k: v[::max(1, math.ceil(len(v) / n))] for k, v in pts.items()}

    def residuals(th: Tensor) -> dict[str, Tensor]:
        return pinn.problem.residuals(pinn.u(th), pts)
    jac = torch.func.jacrev(residuals)(theta.detach())
    return {k: float((J ** 2).sum()) / J.shape[0] for k, J in jac.items()}


def ntk_weights(pinn: PINN, theta: Tensor, max_points: int | None = None) -> dict[str, float]:
    r"""NTK weights :math:`\lambda_k = \sum_j \operatorname{tr} K_{jj} / \operatorname{tr} K_{kk}` (:func:`term_traces`)."""
    tr = term_traces(pinn, theta, max_points)
    s = sum(tr.values())
    return {k: s / max(v, 1e-300) for k, v in tr.items()}


@dataclass
class WeightUpdate:
    r"""A :func:`pinnkit.train` ``on_step`` callback: every ``every`` steps up to step ``until``,
    :math:`\lambda \leftarrow \alpha\lambda + (1 - \alpha)\hat\lambda` with :math:`\hat\lambda` = ``rule(theta)``
    (e.g. ``lambda th: grad_norm_weights(pinn, th)``). Freeze before L-BFGS: it needs a fixed loss.
    """

    weights: Weights
    rule: Callable[[Tensor], Mapping[str, float]]
    every: int = 100
    alpha: float = 0.9
    until: int | None = None

    def start(self, theta: Tensor) -> None:
        """Set the weights from ``theta`` (the first estimate, not averaged)."""
        self.weights.set(self.rule(theta), 0)

    def __call__(self, k: int, theta_k: Tensor, theta_k1: Tensor, stepper: Any) -> None:
        """Update the weights after step ``k -> k+1`` when the schedule says so."""
        step = k + 1
        if step % self.every or (self.until is not None and step > self.until):
            return
        new = self.rule(theta_k1)
        old = self.weights.values
        self.weights.set({n: self.alpha * old.get(n, v) + (1 - self.alpha) * v for n, v in new.items()}, step)


# --- causal training -----------------------------------------------------------------------------------
def _slices(t: Tensor, n: int, t_range: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """Slice index of every time ``t`` and the number of points per slice; an empty slice is an error."""
    lo, hi = t_range
    idx = ((t - lo) / (hi - lo) * n).floor().clamp(0, n - 1).long()
    counts = torch.bincount(idx, minlength=n).to(t.dtype)
    if bool((counts == 0).any()):
        raise ValueError(f"a time slice holds no residual point; use fewer than {n} slices or more points")
    return idx, counts


def slice_losses(r: Tensor, t: Tensor, n_slices: int, t_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    r"""Mean squared residual in each of ``n_slices`` equal time slices of ``t_range``: :math:`L_r(t_i)`.

    >>> slice_losses(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0.1, 0.2, 0.9]), 2)
    tensor([5., 4.])
    """
    idx, counts = _slices(t, size(n_slices, "n_slices"), t_range)
    return _slice_means(r, idx, counts)


def _slice_means(r: Tensor, idx: Tensor, counts: Tensor) -> Tensor:
    return torch.zeros(len(counts), dtype=r.dtype, device=r.device).index_add(0, idx, r ** 2) / counts


def causal_weights(losses: Tensor, eps: float) -> Tensor:
    r"""Causal weights :math:`w_i = \exp(-\varepsilon \sum_{j<i} L_r(t_j))`, :math:`w_1 = 1`, without gradient.

    >>> causal_weights(torch.tensor([1.0, 2.0, 3.0]), eps=1.0)
    tensor([1.0000, 0.3679, 0.0498])
    """
    c = torch.cumsum(losses.detach(), 0) - losses.detach()
    return torch.exp(-eps * c)


def causal_terms(pinn: PINN, n_slices: int = 16, eps: float | Callable[[], float] = 1.0,
                 time_dim: int = -1) -> TermsFn:
    r"""The PINN's terms with the residual term :math:`\frac{1}{M} \sum_{i=1}^{M} w_i L_r(t_i)` over ``n_slices``
    :math:`M` time slices, :func:`causal_weights` :math:`w_i` without gradient; ``eps`` a number or a callable.

    >>> import pinnkit as pk
    >>> pinn = pk.PINN(pk.problems.Convection(beta=1.0), widths=[4], n_res=64, n_ic=4, n_bc=2)
    >>> t0 = causal_terms(pinn, n_slices=4, eps=0.0)(pinn.theta0)   # eps = 0: the mean of the slice losses
    >>> r, X = pinn.residuals(pinn.theta0)["residual"], pinn.points["residual"]
    >>> bool(torch.isclose(t0["residual"], slice_losses(r, X[:, 1], 4).mean()))
    True
    """
    lo, hi = pinn.problem.bounds[time_dim]
    t = pinn.points["residual"][:, time_dim]
    idx, counts = _slices(t, size(n_slices, "n_slices"), (lo, hi))

    def fn(theta: Tensor) -> dict[str, Tensor]:
        res = pinn.residuals(theta)
        losses = _slice_means(res["residual"], idx, counts)
        e = eps() if callable(eps) else eps
        out = {"residual": (causal_weights(losses, e) * losses).mean()}
        out.update({k: (r ** 2).mean() for k, r in res.items() if k != "residual"})
        return out
    return fn
