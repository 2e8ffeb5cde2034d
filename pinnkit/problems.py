"""PDE problems: domain, residual operator, initial/boundary conditions, exact solution, sampling.

A :class:`Problem` knows how to turn a solution candidate ``u: X -> u(X)`` (``X`` of shape ``(N, d)``,
columns ``(x, t)`` or ``(x,)``) into per-term residual vectors. Derivatives of ``u`` with respect to
its inputs are taken in forward mode with :func:`torch.func.jvp`, so every loss built from a problem is
a pure function that composes with ``torch.func.grad``, ``vmap`` and Hessian-vector products.

The settings of the convection, reaction and wave problems are those of Rathore et al. (ICML 2024).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]

__all__ = [
    "Problem", "Collocation", "Poisson1D", "Convection", "Reaction", "Wave", "AllenCahn",
    "make", "PROBLEMS", "partial",
]


def partial(u: Fn, i: int) -> Fn:
    r"""Return the function :math:`X \mapsto \partial u / \partial X_i` (forward mode, pointwise).

    ``u`` must act row by row (``u(X)[n]`` depends only on ``X[n]``), as a network does. Nesting gives
    higher derivatives: ``partial(partial(u, 0), 0)`` is :math:`u_{xx}`.

    >>> u = lambda X: X[:, 0] ** 3
    >>> partial(partial(u, 0), 0)(torch.tensor([[2.0]]))  # 6 x = 12
    tensor([12.])
    """
    def du(X: Tensor) -> Tensor:
        e = torch.zeros_like(X)
        e[:, i] = 1.0
        return torch.func.jvp(u, (X,), (e,))[1]
    return du


@dataclass(frozen=True)
class Collocation:
    """Training points of one problem: a dict of point sets, one per loss term (``(N, d)`` tensors)."""

    points: dict[str, Tensor]

    def to(self, device=None, dtype=None) -> "Collocation":
        return Collocation({k: v.to(device=device, dtype=dtype) for k, v in self.points.items()})


def _check_positive(**sizes: int) -> None:
    for name, n in sizes.items():
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")


class Problem:
    """A PDE on a box domain with its conditions and (optionally) an exact solution.

    Subclasses set ``name``, ``bounds`` (one ``(low, high)`` pair per input column; the last column is
    time for evolution problems) and implement :meth:`residuals` and :meth:`exact`.
    """

    name: str = "problem"
    bounds: tuple[tuple[float, float], ...] = ()
    input_names: tuple[str, ...] = ("x", "t")
    eval_shape: tuple[int, ...] = (256, 100)   # evaluation grid: points per input column

    @property
    def dim(self) -> int:
        return len(self.bounds)

    # --- to implement -------------------------------------------------------------------------
    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        """Residual vectors per term for the candidate ``u``; the loss term is each one's mean square."""
        raise NotImplementedError

    def exact(self, X: Tensor) -> Tensor:
        """Exact solution at the rows of ``X`` (shape ``(N,)``)."""
        raise NotImplementedError(f"{self.name} has no closed-form solution")

    def sample(self, n_res: int, n_ic: int, n_bc: int, seed: int = 0, method: str = "grid") -> Collocation:
        """Seeded collocation points; ``method='grid'`` draws residual points from the interior of the
        evaluation grid (as Rathore et al.), ``'random'`` uniformly from the open domain."""
        raise NotImplementedError

    # --- shared machinery ---------------------------------------------------------------------
    def axes(self, shape: tuple[int, ...] | None = None, dtype=torch.float64) -> list[Tensor]:
        shape = shape or self.eval_shape
        return [torch.linspace(lo, hi, n, dtype=dtype) for (lo, hi), n in zip(self.bounds, shape)]

    def grid(self, shape: tuple[int, ...] | None = None, dtype=torch.float64) -> Tensor:
        """The evaluation grid as an ``(N, d)`` tensor, first input varying slowest (``indexing='ij'``)."""
        mesh = torch.meshgrid(*self.axes(shape, dtype), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)

    def _interior(self, n: int, gen: torch.Generator, method: str) -> Tensor:
        if method == "grid":
            axes = [a[1:-1] for a in self.axes()]
            sizes = [len(a) for a in axes]
            total = math.prod(sizes)
            if n > total:
                raise ValueError(f"n_res={n} exceeds the {total} interior grid points; use method='random'")
            idx = torch.randperm(total, generator=gen)[:n]
            cols = []
            for a, s in zip(reversed(axes), reversed(sizes)):
                cols.append(a[idx % s])
                idx = idx // s
            return torch.stack(cols[::-1], dim=1)
        if method == "random":
            lo = torch.tensor([b[0] for b in self.bounds], dtype=torch.float64)
            hi = torch.tensor([b[1] for b in self.bounds], dtype=torch.float64)
            return lo + (hi - lo) * torch.rand(n, self.dim, generator=gen, dtype=torch.float64)
        raise ValueError(f"unknown sampling method {method!r}; valid: 'grid', 'random'")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class _SpaceTime(Problem):
    """Problems on ``x in (x0, x1)``, ``t in (0, 1)`` with an initial condition at ``t = 0``."""

    def initial(self, x: Tensor) -> Tensor:
        return self.exact(torch.stack([x, torch.zeros_like(x)], dim=1))

    def sample(self, n_res: int, n_ic: int, n_bc: int, seed: int = 0, method: str = "grid") -> Collocation:
        _check_positive(n_res=n_res, n_ic=n_ic, n_bc=n_bc)
        gen = torch.Generator().manual_seed(seed)
        (x0, x1), (t0, t1) = self.bounds
        x = torch.linspace(x0, x1, n_ic, dtype=torch.float64)
        t = torch.linspace(t0, t1, n_bc, dtype=torch.float64)
        return Collocation({
            "residual": self._interior(n_res, gen, method),
            "initial": torch.stack([x, torch.full_like(x, t0)], dim=1),
            "boundary_low": torch.stack([torch.full_like(t, x0), t], dim=1),
            "boundary_high": torch.stack([torch.full_like(t, x1), t], dim=1),
        })


class Convection(_SpaceTime):
    r""":math:`u_t + \beta u_x = 0` on :math:`(0, 2\pi)\times(0, 1)`, :math:`u(x, 0) = \sin x`, periodic in x.

    Exact solution :math:`u = \sin(x - \beta t)`.
    """

    name = "convection"
    bounds = ((0.0, 2 * math.pi), (0.0, 1.0))

    def __init__(self, beta: float = 40.0):
        self.beta = float(beta)

    def exact(self, X: Tensor) -> Tensor:
        return torch.sin(X[:, 0] - self.beta * X[:, 1])

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        X = pts["residual"]
        x0 = pts["initial"]
        return {
            "residual": partial(u, 1)(X) + self.beta * partial(u, 0)(X),
            "initial": u(x0) - torch.sin(x0[:, 0]),
            "boundary": u(pts["boundary_low"]) - u(pts["boundary_high"]),
        }


def _bump(x: Tensor) -> Tensor:
    return torch.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))


class Reaction(_SpaceTime):
    r""":math:`u_t - \rho u (1 - u) = 0` on :math:`(0, 2\pi)\times(0, 1)`, periodic in x,
    :math:`u(x, 0) = h(x) = \exp(-(x-\pi)^2 / (2(\pi/4)^2))`.

    Exact solution :math:`u = h e^{\rho t} / (h e^{\rho t} + 1 - h)`.
    """

    name = "reaction"
    bounds = ((0.0, 2 * math.pi), (0.0, 1.0))

    def __init__(self, rho: float = 5.0):
        self.rho = float(rho)

    def exact(self, X: Tensor) -> Tensor:
        h = _bump(X[:, 0])
        g = h * torch.exp(self.rho * X[:, 1])
        return g / (g + 1 - h)

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        X = pts["residual"]
        uX = u(X)
        x0 = pts["initial"]
        return {
            "residual": partial(u, 1)(X) - self.rho * uX * (1 - uX),
            "initial": u(x0) - _bump(x0[:, 0]),
            "boundary": u(pts["boundary_low"]) - u(pts["boundary_high"]),
        }


class Wave(_SpaceTime):
    r""":math:`u_{tt} - 4 u_{xx} = 0` on :math:`(0,1)^2`, :math:`u(x,0) = \sin \pi x + \tfrac12 \sin \beta\pi x`,
    :math:`u_t(x, 0) = 0`, :math:`u(0,t) = u(1,t) = 0`.

    Exact solution :math:`u = \sin \pi x \cos 2\pi t + \tfrac12 \sin \beta\pi x \cos 2\beta\pi t`.
    The initial term is the sum of the two mean squares (``u`` and ``u_t``), as in the paper.
    """

    name = "wave"
    bounds = ((0.0, 1.0), (0.0, 1.0))
    eval_shape = (256, 100)  # the paper samples residual points from a 255 x 100 grid

    def __init__(self, beta: float = 5.0):
        self.beta = float(beta)

    def exact(self, X: Tensor) -> Tensor:
        x, t = X[:, 0], X[:, 1]
        b = self.beta
        return torch.sin(math.pi * x) * torch.cos(2 * math.pi * t) + 0.5 * torch.sin(b * math.pi * x) * torch.cos(
            2 * b * math.pi * t)

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        X = pts["residual"]
        x0 = pts["initial"]
        u_tt = partial(partial(u, 1), 1)(X)
        u_xx = partial(partial(u, 0), 0)(X)
        # initial term = MSE(u - g) + MSE(u_t): stack both so that mean(r^2) * 2 equals their sum
        r_u = u(x0) - self.exact(x0)
        r_ut = partial(u, 1)(x0)
        return {
            "residual": u_tt - 4.0 * u_xx,
            "initial": math.sqrt(2.0) * torch.cat([r_u, r_ut]),
            "boundary": torch.cat([u(pts["boundary_low"]), u(pts["boundary_high"])]),
        }


class AllenCahn(_SpaceTime):
    r""":math:`u_t - 10^{-4} u_{xx} + 5u^3 - 5u = 0` on :math:`(-1,1)\times(0,1)`, :math:`u(x,0) = x^2\cos\pi x`,
    periodic in x (Wang et al. 2025). No closed-form solution: :meth:`exact` raises, so L2RE needs a
    reference solution supplied by the caller.
    """

    name = "allen_cahn"
    bounds = ((-1.0, 1.0), (0.0, 1.0))
    eval_shape = (201, 101)

    def __init__(self, diffusion: float = 1e-4, reaction: float = 5.0):
        self.diffusion = float(diffusion)
        self.reaction = float(reaction)

    def initial(self, x: Tensor) -> Tensor:
        return x ** 2 * torch.cos(math.pi * x)

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        X = pts["residual"]
        uX = u(X)
        x0 = pts["initial"]
        return {
            "residual": partial(u, 1)(X) - self.diffusion * partial(partial(u, 0), 0)(X)
            + self.reaction * (uX ** 3 - uX),
            "initial": u(x0) - self.initial(x0[:, 0]),
            "boundary": u(pts["boundary_low"]) - u(pts["boundary_high"]),
        }


class Poisson1D(Problem):
    r""":math:`-u'' = (k\pi)^2 \sin(k\pi x)` on :math:`(0, 1)`, :math:`u(0) = u(1) = 0`.

    Exact solution :math:`u = \sin(k \pi x)`. The Deep Ritz energy of the same problem is
    :meth:`energy_terms`.
    """

    #: weight :math:`\beta` of the boundary penalty in the Deep Ritz loss (:meth:`energy_terms`)
    ritz_penalty: float = 100.0

    name = "poisson1d"
    bounds = ((0.0, 1.0),)
    input_names = ("x",)
    eval_shape = (1001,)

    def __init__(self, k: int = 1):
        self.k = int(k)

    def forcing(self, x: Tensor) -> Tensor:
        return (self.k * math.pi) ** 2 * torch.sin(self.k * math.pi * x)

    def exact(self, X: Tensor) -> Tensor:
        return torch.sin(self.k * math.pi * X[:, 0])

    def residuals(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        X = pts["residual"]
        return {
            "residual": -partial(partial(u, 0), 0)(X) - self.forcing(X[:, 0]),
            "boundary": u(pts["boundary"]),
        }

    def energy_terms(self, u: Fn, pts: dict[str, Tensor]) -> dict[str, Tensor]:
        r"""Deep Ritz loss terms of the same problem (E & Yu 2018): the energy and a boundary penalty,

        .. math:: E(u) = \int_0^1 \big(\tfrac12 u'^2 - f u\big)\,dx \approx
                  \operatorname{mean}_{x_i \in \text{residual points}} \big(\tfrac12 u'(x_i)^2 - f(x_i) u(x_i)\big),
                  \qquad B(u) = \beta\,\operatorname{mean}\big(u(0)^2, u(1)^2\big),

        with :math:`\beta` = :attr:`ritz_penalty`. :math:`E` is minimised by the solution of
        :math:`-u'' = f`, :math:`u(0)=u(1)=0`, where :math:`E(u^*) = -\tfrac14 (k\pi)^2`; unlike the
        strong-form loss it can be negative and needs only first derivatives of ``u``.

        >>> p = Poisson1D(1); X = torch.linspace(0, 1, 2001, dtype=torch.float64)[1:-1, None]
        >>> t = p.energy_terms(lambda X: torch.sin(torch.pi * X[:, 0]), {"residual": X, "boundary": X[[0, -1]] * 0})
        >>> round(float(t["energy"]), 2), round(-torch.pi ** 2 / 4, 2), float(t["boundary"])  # O(1/n) quadrature
        (-2.47, -2.47, 0.0)
        """
        X = pts["residual"]
        du = partial(u, 0)(X)
        return {
            "energy": (0.5 * du ** 2 - self.forcing(X[:, 0]) * u(X)).mean(),
            "boundary": self.ritz_penalty * (u(pts["boundary"]) ** 2).mean(),
        }

    def sample(self, n_res: int, n_ic: int = 1, n_bc: int = 1, seed: int = 0, method: str = "grid") -> Collocation:
        _check_positive(n_res=n_res)
        gen = torch.Generator().manual_seed(seed)
        if method == "grid":  # evenly spaced interior points: the natural 1-D grid
            X = torch.linspace(0, 1, n_res + 2, dtype=torch.float64)[1:-1, None]
        else:
            X = self._interior(n_res, gen, method)
        return Collocation({"residual": X, "boundary": torch.tensor([[0.0], [1.0]], dtype=torch.float64)})


PROBLEMS: dict[str, type[Problem]] = {
    "poisson1d": Poisson1D, "convection": Convection, "reaction": Reaction, "wave": Wave,
    "allen_cahn": AllenCahn,
}


def make(name: str, **params) -> Problem:
    """Build a problem by name, e.g. ``make("convection", beta=10)``."""
    key = name.lower().replace("-", "_")
    if key not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid names: {', '.join(sorted(PROBLEMS))}")
    return PROBLEMS[key](**params)
