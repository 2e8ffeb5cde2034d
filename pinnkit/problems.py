r"""PDE problems: domain, per-term residuals of a candidate ``u``, exact solution, collocation points.

A candidate maps points ``X`` of shape ``(N, d)`` (columns ``(x, t)`` or ``(x,)``) to ``u(X)`` of shape ``(N,)``,
row by row. Input derivatives come from :func:`jet` (reverse mode, as fast as a hand-written
``torch.autograd.grad`` loss), so every loss stays a pure function that composes with :mod:`torch.func`.
Convection, reaction and wave use Rathore et al.'s (ICML 2024) settings.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]

__all__ = [
    "Problem", "Collocation", "Poisson1D", "Poisson2D", "Convection", "Reaction", "Wave", "AllenCahn",
    "make", "PROBLEMS", "partial", "jet", "Jet", "sum_of_mean_squares",
]


def partial(u: Fn, i: int) -> Fn:
    r""":math:`X \mapsto \partial u / \partial X_i` by one forward-mode pass (``u`` row-wise); nest for higher ones.

    >>> u = lambda X: X[:, 0] ** 3
    >>> partial(partial(u, 0), 0)(torch.tensor([[2.0]]))  # 6 x = 12
    tensor([12.])
    """
    def du(X: Tensor) -> Tensor:
        e = torch.zeros_like(X)
        e[:, i] = 1.0
        return cast(Tensor, torch.func.jvp(u, (X,), (e,))[1])
    return du


@dataclass(frozen=True)
class Jet:
    r"""A candidate at the rows of ``X``: ``value`` :math:`u` ``(N,)``, ``grad[:, i]`` :math:`\partial u/\partial X_i`
    ``(N, d)``, ``second[i]`` :math:`\partial^2 u/\partial X_i^2` ``(N,)`` for the requested ``i``.
    """

    value: Tensor
    grad: Tensor
    second: dict[int, Tensor] = field(default_factory=dict)


def jet(u: Fn, X: Tensor, second: Sequence[int] = ()) -> Jet:
    r"""``u(X)``, all first input derivatives and the pure second derivatives of the columns ``second``.

    For a row-wise ``u``, :math:`(\nabla u)_n = \partial \sum_m u(X_m) / \partial X_n`: one reverse pass (a
    vector-Jacobian product with ones) gives every row's gradient; each :math:`\partial^2 u/\partial X_i^2` costs
    one more pass through the same graph.

    >>> j = jet(lambda X: X[:, 0] ** 3 * X[:, 1], torch.tensor([[2.0, 5.0]]), second=(0,))
    >>> j.value, j.grad, j.second[0]   # u = 40, (3 x^2 t, x^3) = (60, 8), 6 x t = 60
    (tensor([40.]), tensor([[60.,  8.]]), tensor([60.]))
    """
    def g(X: Tensor) -> tuple[Tensor, Tensor]:
        uX, pullback = torch.func.vjp(u, X)  # type: ignore[misc]  # torch stubs: 3-tuple with has_aux only
        return pullback(torch.ones_like(uX))[0], uX

    if not second:
        du, uX = g(X)
        return Jet(uX, du, {})
    du, pullback, uX = torch.func.vjp(g, X, has_aux=True)  # type: ignore[misc]  # torch stubs
    cols = torch.arange(du.shape[-1], device=du.device)
    out = {}
    for i in second:
        onehot = torch.ones_like(du) * (cols == i).to(du.dtype)   # out of place: safe under vmap
        out[int(i)] = pullback(onehot)[0][..., i]
    return Jet(uX, du, out)


def sum_of_mean_squares(*parts: Tensor) -> Tensor:
    r"""The parts :math:`r_j` (:math:`N_j` entries) scaled by :math:`\sqrt{N/N_j}`, :math:`N = \sum_j N_j`, and
    joined, so that :math:`\operatorname{mean}(r^2) = \sum_j \operatorname{mean}(r_j^2)`.

    >>> r = sum_of_mean_squares(torch.tensor([1.0, 1.0]), torch.tensor([2.0]))
    >>> float((r ** 2).mean())  # mean(1, 1) + mean(4)
    5.0
    """
    n = sum(p.numel() for p in parts)
    return torch.cat([p * math.sqrt(n / p.numel()) for p in parts])


@dataclass(frozen=True)
class Collocation:
    """Training points of one problem: one ``(N, d)`` tensor per loss term."""

    points: dict[str, Tensor]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Collocation":
        """A copy with every point set moved to ``device`` / converted to ``dtype``."""
        return Collocation({k: v.to(device=device, dtype=dtype) for k, v in self.points.items()})


def _check_positive(**sizes: int) -> list[int]:
    """The sizes as Python ints (numpy integers accepted); raise unless each is a positive integer."""
    out = []
    for name, n in sizes.items():
        try:
            k = operator.index(n)
        except TypeError:
            k = 0
        if isinstance(n, bool) or k <= 0:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
        out.append(k)
    return out


#: Rathore et al.'s collocation grid (257 x-points, 101 t-points); ``sampling="authors"`` draws from its interior
AUTHORS_GRID = (257, 101)


class Problem:
    """A PDE on a box domain, ``bounds`` one ``(low, high)`` per input column (time last), with its conditions."""

    name: str = "problem"
    bounds: tuple[tuple[float, float], ...] = ()
    input_names: tuple[str, ...] = ("x", "t")
    eval_shape: tuple[int, ...] = (256, 100)   # evaluation grid: points per input column

    @property
    def dim(self) -> int:
        """The number of input coordinates (space and time)."""
        return len(self.bounds)

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """Residual vectors per term for the candidate ``u``; the loss term is each one's mean square."""
        raise NotImplementedError

    def exact(self, X: Tensor) -> Tensor:
        """Exact solution at the rows of ``X`` (shape ``(N,)``)."""
        raise NotImplementedError(f"{self.name} has no closed-form solution")

    def sample(self, n_res: int, n_ic: int, n_bc: int, seed: int = 0, method: str = "grid") -> Collocation:
        """Seeded collocation points; residual points from the interior of the evaluation grid (``"grid"``), of
        Rathore et al.'s 257 x 101 grid as their code draws them (``"authors"``), or uniform (``"random"``).
        """
        raise NotImplementedError

    def axes(self, shape: tuple[int, ...] | None = None, dtype: torch.dtype = torch.float64) -> list[Tensor]:
        """Evenly spaced coordinates along each axis of the domain (``shape``: points per axis)."""
        shape = shape or self.eval_shape
        return [torch.linspace(lo, hi, n, dtype=dtype) for (lo, hi), n in zip(self.bounds, shape)]

    def grid(self, shape: tuple[int, ...] | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """The evaluation grid as an ``(N, d)`` tensor, first input varying slowest (``indexing='ij'``)."""
        mesh = torch.meshgrid(*self.axes(shape, dtype), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)

    def _interior(self, n: int, gen: torch.Generator, method: str, seed: int = 0) -> Tensor:
        if method == "authors":
            return self._authors_interior(n, seed)
        if method == "grid":
            axes = [a[1:-1] for a in self.axes()]
            total = math.prod(len(a) for a in axes)
            if n > total:
                raise ValueError(f"n_res={n} exceeds the {total} interior grid points; use method='random'")
            idx = torch.randperm(total, generator=gen)[:n]
            cols = []
            for a in reversed(axes):
                cols.append(a[idx % len(a)])
                idx = idx // len(a)
            return torch.stack(cols[::-1], dim=1)
        if method == "random":
            b = torch.tensor(self.bounds, dtype=torch.float64)
            return b[:, 0] + (b[:, 1] - b[:, 0]) * torch.rand(n, self.dim, generator=gen, dtype=torch.float64)
        raise ValueError(f"unknown sampling method {method!r}; valid: 'grid', 'authors', 'random'")

    def _authors_interior(self, n: int, seed: int) -> Tensor:
        """``n`` distinct points of the 255 x 100 interior (x without its ends, t > 0) of the 257 x 101 grid, as
        ``np.random.seed(seed); choice(25500, n, replace=False)`` over the ``(t, x)`` mesh, x fastest.
        """
        import numpy as np

        if self.dim != 2:
            raise ValueError(f"sampling='authors' is Rathore et al.'s (x, t) grid; {self.name} has {self.dim} inputs")
        x, t = self.axes(AUTHORS_GRID)
        xs, ts = x[1:-1], t[1:]
        total = len(xs) * len(ts)
        if n > total:
            raise ValueError(f"n_res={n} exceeds the {total} interior points of the authors' {AUTHORS_GRID} grid")
        idx = torch.from_numpy(np.random.RandomState(seed).choice(total, n, replace=False))
        return torch.stack([xs[idx % len(xs)], ts[idx // len(xs)]], dim=1)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class _SpaceTime(Problem):
    """Problems on ``x in (x0, x1)``, ``t in (0, 1)`` with an initial condition at ``t = 0``."""

    def initial(self, x: Tensor) -> Tensor:
        return self.exact(torch.stack([x, torch.zeros_like(x)], dim=1))

    def sample(self, n_res: int, n_ic: int, n_bc: int, seed: int = 0, method: str = "grid") -> Collocation:
        n_res, n_ic, n_bc = _check_positive(n_res=n_res, n_ic=n_ic, n_bc=n_bc)
        gen = torch.Generator().manual_seed(seed)
        (x0, x1), (t0, t1) = self.bounds
        x = torch.linspace(x0, x1, n_ic, dtype=torch.float64)
        t = torch.linspace(t0, t1, n_bc, dtype=torch.float64)
        return Collocation({
            "residual": self._interior(n_res, gen, method, seed),
            "initial": torch.stack([x, torch.full_like(x, t0)], dim=1),
            "boundary_low": torch.stack([torch.full_like(t, x0), t], dim=1),
            "boundary_high": torch.stack([torch.full_like(t, x1), t], dim=1),
        })


class _Periodic(_SpaceTime):
    r"""A first-order-in-time PDE, periodic in x. Loss terms (weight 1 each, as in the authors' code):
    ``residual`` = :math:`\operatorname{mean}\,\mathcal{N}[u]^2`, ``initial`` =
    :math:`\operatorname{mean}(u(x,0) - u_0(x))^2`, ``boundary`` = :math:`\operatorname{mean}(u(x_0,t) - u(x_1,t))^2`.
    """

    second: tuple[int, ...] = ()   # the pure second derivatives the PDE needs

    def pde(self, j: Jet) -> Tensor:
        """The PDE residual :math:`\\mathcal{N}[u]` at the residual points, from the :class:`Jet` of ``u``."""
        raise NotImplementedError

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The residual vectors of the loss terms of ``u`` at the collocation points ``pts``."""
        x0 = pts["initial"]
        return {
            "residual": self.pde(jet(u, pts["residual"], self.second)),
            "initial": u(x0) - self.initial(x0[:, 0]),
            "boundary": u(pts["boundary_low"]) - u(pts["boundary_high"]),
        }


class Convection(_Periodic):
    r""":math:`u_t + \beta u_x = 0` on :math:`(0, 2\pi)\times(0, 1)`, :math:`u(x, 0) = \sin x`; exact
    :math:`u = \sin(x - \beta t)`.
    """

    name = "convection"
    bounds = ((0.0, 2 * math.pi), (0.0, 1.0))

    def __init__(self, beta: float = 40.0):
        self.beta = float(beta)

    def initial(self, x: Tensor) -> Tensor:
        """:math:`u_0(x) = \\sin x`."""
        return torch.sin(x)

    def exact(self, X: Tensor) -> Tensor:
        """The exact solution at the rows of ``X``."""
        return torch.sin(X[:, 0] - self.beta * X[:, 1])

    def pde(self, j: Jet) -> Tensor:
        """:math:`u_t + \\beta u_x`."""
        return j.grad[:, 1] + self.beta * j.grad[:, 0]


class Reaction(_Periodic):
    r""":math:`u_t - \rho u (1 - u) = 0` on :math:`(0, 2\pi)\times(0, 1)`,
    :math:`u(x, 0) = h(x) = \exp(-(x-\pi)^2 / (2(\pi/4)^2))`; exact :math:`u = h e^{\rho t} / (h e^{\rho t} + 1 - h)`.
    """

    name = "reaction"
    bounds = ((0.0, 2 * math.pi), (0.0, 1.0))

    def __init__(self, rho: float = 5.0):
        self.rho = float(rho)

    def initial(self, x: Tensor) -> Tensor:
        """:math:`h(x)`."""
        return torch.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))

    def exact(self, X: Tensor) -> Tensor:
        """The exact solution at the rows of ``X``."""
        h = self.initial(X[:, 0])
        g = h * torch.exp(self.rho * X[:, 1])
        return g / (g + 1 - h)

    def pde(self, j: Jet) -> Tensor:
        """:math:`u_t - \\rho u (1 - u)`."""
        return j.grad[:, 1] - self.rho * j.value * (1 - j.value)


class AllenCahn(_Periodic):
    r""":math:`u_t - 10^{-4} u_{xx} + 5u^3 - 5u = 0` on :math:`(-1,1)\times(0,1)`, :math:`u(x,0) = x^2\cos\pi x`
    (Wang et al. 2025). No closed form: :meth:`exact` raises; L2RE needs a reference solution.
    """

    name = "allen_cahn"
    bounds = ((-1.0, 1.0), (0.0, 1.0))
    eval_shape = (201, 101)
    second = (0,)

    def __init__(self, diffusion: float = 1e-4, reaction: float = 5.0):
        self.diffusion = float(diffusion)
        self.reaction = float(reaction)

    def initial(self, x: Tensor) -> Tensor:
        r""":math:`u_0(x) = x^2\cos(\pi x)`."""
        return x ** 2 * torch.cos(math.pi * x)

    def pde(self, j: Jet) -> Tensor:
        """:math:`u_t - d\\,u_{xx} + r(u^3 - u)`."""
        return j.grad[:, 1] - self.diffusion * j.second[0] + self.reaction * (j.value ** 3 - j.value)


class Wave(_SpaceTime):
    r""":math:`u_{tt} - 4 u_{xx} = 0` on :math:`(0,1)^2`, :math:`u(x,0) = \sin \pi x + \tfrac12 \sin \beta\pi x`,
    :math:`u_t(x, 0) = 0`, :math:`u(0,t) = u(1,t) = 0`; exact
    :math:`u = \sin \pi x \cos 2\pi t + \tfrac12 \sin \beta\pi x \cos 2\beta\pi t`.

    Loss terms (weight 1, as the authors): ``residual`` = :math:`\operatorname{mean}(u_{tt} - 4u_{xx})^2`;
    ``initial`` = :math:`\operatorname{mean}(u(x,0) - u_0)^2 + \operatorname{mean}\,u_t(x,0)^2`; ``boundary`` =
    :math:`\operatorname{mean}\,u(0,t)^2 + \operatorname{mean}\,u(1,t)^2`, each one vector by :func:`sum_of_mean_squares`.
    """

    name = "wave"
    bounds = ((0.0, 1.0), (0.0, 1.0))

    def __init__(self, beta: float = 5.0):
        self.beta = float(beta)

    def exact(self, X: Tensor) -> Tensor:
        """The exact solution at the rows of ``X``."""
        x, t = X[:, 0], X[:, 1]
        b = self.beta
        return torch.sin(math.pi * x) * torch.cos(2 * math.pi * t) + 0.5 * torch.sin(b * math.pi * x) * torch.cos(
            2 * b * math.pi * t)

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The residual vectors of the loss terms of ``u`` at the collocation points ``pts``."""
        j = jet(u, pts["residual"], second=(0, 1))
        x0 = pts["initial"]
        j0 = jet(u, x0)
        return {
            "residual": j.second[1] - 4.0 * j.second[0],
            "initial": sum_of_mean_squares(j0.value - self.exact(x0), j0.grad[:, 1]),
            "boundary": sum_of_mean_squares(u(pts["boundary_low"]), u(pts["boundary_high"])),
        }


class Poisson1D(Problem):
    r""":math:`-u'' = f = (k\pi)^2 \sin(k\pi x)` on :math:`(0, 1)`, :math:`u(0) = u(1) = 0`; exact
    :math:`u = \sin(k \pi x)`. Loss terms: ``residual`` = :math:`\operatorname{mean}(-u'' - f)^2`, ``boundary`` =
    :math:`\tfrac12(u(0)^2 + u(1)^2)`; the Deep Ritz loss is :meth:`energy_terms`.
    """

    #: weight :math:`\beta` of the boundary penalty in the Deep Ritz loss (:meth:`energy_terms`)
    ritz_penalty: float = 100.0

    name = "poisson1d"
    bounds = ((0.0, 1.0),)
    input_names = ("x",)
    eval_shape = (1001,)

    def __init__(self, k: int = 1, ritz_penalty: float = 100.0):
        self.k = int(k)
        self.ritz_penalty = float(ritz_penalty)

    def forcing(self, x: Tensor) -> Tensor:
        """The right-hand side :math:`f(x)`."""
        return (self.k * math.pi) ** 2 * torch.sin(self.k * math.pi * x)

    def exact(self, X: Tensor) -> Tensor:
        """The exact solution at the rows of ``X``."""
        return torch.sin(self.k * math.pi * X[:, 0])

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The residual vectors of the loss terms of ``u`` at the collocation points ``pts``."""
        X = pts["residual"]
        return {
            "residual": -jet(u, X, second=(0,)).second[0] - self.forcing(X[:, 0]),
            "boundary": u(pts["boundary"]),
        }

    def energy_terms(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        r"""The Deep Ritz terms (E & Yu 2018) ``energy`` :math:`E(u) = \operatorname{mean}_i(\tfrac12 u'(x_i)^2 -
        f(x_i) u(x_i)) \approx \int_0^1 \tfrac12 u'^2 - f u` and ``boundary`` :math:`\beta\,\operatorname{mean}(u(0)^2,
        u(1)^2)`, :math:`\beta` = :attr:`ritz_penalty`; :math:`\min E = E(u^*) = -\tfrac14 (k\pi)^2`.

        >>> p = Poisson1D(1); X = torch.linspace(0, 1, 2001, dtype=torch.float64)[1:-1, None]
        >>> t = p.energy_terms(lambda X: torch.sin(torch.pi * X[:, 0]), {"residual": X, "boundary": X[[0, -1]] * 0})
        >>> round(float(t["energy"]), 2), round(-torch.pi ** 2 / 4, 2), float(t["boundary"])  # O(1/n) quadrature
        (-2.47, -2.47, 0.0)
        """
        X = pts["residual"]
        j = jet(u, X)
        return {
            "energy": (0.5 * j.grad[:, 0] ** 2 - self.forcing(X[:, 0]) * j.value).mean(),
            "boundary": self.ritz_penalty * (u(pts["boundary"]) ** 2).mean(),
        }

    def sample(self, n_res: int, n_ic: int = 1, n_bc: int = 1, seed: int = 0, method: str = "grid") -> Collocation:
        """``n_res`` interior points (``"grid"``: evenly spaced) and the two boundary points."""
        (n_res,) = _check_positive(n_res=n_res)
        if method == "grid":
            X = torch.linspace(0, 1, n_res + 2, dtype=torch.float64)[1:-1, None]
        else:
            X = self._interior(n_res, torch.Generator().manual_seed(seed), method)
        return Collocation({"residual": X, "boundary": torch.tensor([[0.0], [1.0]], dtype=torch.float64)})


class Poisson2D(Problem):
    r""":math:`-\Delta u = f = 2\pi^2 \sin(\pi x)\sin(\pi y)` on :math:`(0, 1)^2`, :math:`u = 0` on the boundary
    (Müller & Zeinhofer 2023); exact :math:`u = \sin(\pi x)\sin(\pi y)`. Loss terms: ``residual`` =
    :math:`\operatorname{mean}(-\Delta u - f)^2`, ``boundary`` = :math:`\operatorname{mean}\,u^2` over ``n_bc`` points
    per edge (corners excluded). Müller & Zeinhofer halve both terms: same minimiser, same Gauss–Newton step.

    >>> p = Poisson2D(); X = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    >>> float(p.exact(X)), round(float(p.forcing(X)), 4)   # 2 pi^2 = 19.7392
    (1.0, 19.7392)
    """

    name = "poisson2d"
    bounds = ((0.0, 1.0), (0.0, 1.0))
    input_names = ("x", "y")
    eval_shape = (101, 101)

    def forcing(self, X: Tensor) -> Tensor:
        """The right-hand side :math:`f` at the rows of ``X``."""
        return 2 * math.pi ** 2 * torch.sin(math.pi * X[:, 0]) * torch.sin(math.pi * X[:, 1])

    def exact(self, X: Tensor) -> Tensor:
        """The exact solution at the rows of ``X``."""
        return torch.sin(math.pi * X[:, 0]) * torch.sin(math.pi * X[:, 1])

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """The residual vectors of the loss terms of ``u`` at the collocation points ``pts``."""
        X = pts["residual"]
        j = jet(u, X, second=(0, 1))
        return {
            "residual": -(j.second[0] + j.second[1]) - self.forcing(X),
            "boundary": u(pts["boundary"]),
        }

    def sample(self, n_res: int, n_ic: int = 1, n_bc: int = 25, seed: int = 0, method: str = "grid") -> Collocation:
        """``n_res`` interior points (``method`` as :meth:`Problem.sample`; ``n_ic`` unused), ``n_bc`` per edge."""
        n_res, n_bc = _check_positive(n_res=n_res, n_bc=n_bc)
        gen = torch.Generator().manual_seed(seed)
        s = torch.linspace(0, 1, n_bc + 2, dtype=torch.float64)[1:-1]
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        edges = [torch.stack(c, dim=1) for c in ((s, zero), (one, s), (s, one), (zero, s))]
        return Collocation({"residual": self._interior(n_res, gen, method, seed), "boundary": torch.cat(edges)})


PROBLEMS: dict[str, type[Problem]] = {
    "poisson1d": Poisson1D, "convection": Convection, "reaction": Reaction, "wave": Wave,
    "allen_cahn": AllenCahn, "poisson2d": Poisson2D,
}


def make(name: str, **params: Any) -> Problem:
    """Build a problem by name, e.g. ``make("convection", beta=10)``."""
    key = name.lower().replace("-", "_")
    if key not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid names: {', '.join(sorted(PROBLEMS))}")
    return PROBLEMS[key](**params)
