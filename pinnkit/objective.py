r"""The one interface every tool shares: a loss as a function of a flat parameter vector ``theta``.

A *loss* is ``f(theta) -> scalar``; a *terms function* ``f(theta) -> dict[str, scalar]`` sums to the loss
(``PINN.terms``). Every tool reads either through :func:`total` (the sum) or :func:`as_terms` (the dict).

>>> import torch
>>> f = lambda th: {"a": (th ** 2).sum(), "b": th.sum()}
>>> float(total(f)(torch.tensor([1.0, 2.0])))
8.0
>>> sorted(as_terms(lambda th: th.sum())(torch.ones(2)))
['loss']
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Union, cast

import torch
from torch import Tensor

#: theta -> dict of scalar terms
TermsFn = Callable[[Tensor], dict[str, Tensor]]
#: theta -> scalar Tensor, or theta -> dict of scalar Tensors (summed)
Loss = Callable[[Tensor], Union[Tensor, Mapping[str, Tensor]]]

__all__ = ["Loss", "TermsFn", "function", "total", "as_terms", "term", "resolve", "value_and_grad"]


def _sum_terms(out: Any) -> Tensor:
    if isinstance(out, Mapping):
        if not out:
            raise ValueError("the terms dict is empty; a terms function must return at least one term")
        out = sum(out.values())
    if not isinstance(out, Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else ""
        raise ValueError("the loss must return a scalar Tensor or a dict of scalar Tensors, got "
                         f"{type(out).__name__}{shape}")
    return out.reshape(())


def function(objective: Any) -> Loss:
    """An objective as a function of ``theta``: a function of ``theta`` (scalar or dict of terms), an object with a
    ``terms`` method (a :class:`~pinnkit.PINN`), or a dict of named losses ``{"residual": f_r, ...}``.

    >>> f = function({"a": lambda th: th.sum(), "b": lambda th: (th ** 2).sum()})
    >>> {k: float(v) for k, v in f(torch.ones(2)).items()}
    {'a': 2.0, 'b': 2.0}

    Raises:
        TypeError: anything else (the message lists what is accepted).
    """
    if isinstance(objective, Mapping):
        fns = dict(objective)
        bad = [k for k, g in fns.items() if not callable(g)]
        if not fns or bad:
            raise TypeError(f"a dict objective maps term names to functions theta -> scalar; "
                            f"{'it is empty' if not fns else f'not callable: {bad}'}")
        return lambda theta: {k: g(theta) for k, g in fns.items()}
    terms = getattr(objective, "terms", None)
    if callable(terms):
        return cast(Loss, terms)
    if callable(objective):
        return cast(Loss, objective)
    raise TypeError(f"an objective is a function of theta (returning a scalar or a dict of terms), an object with a "
                    f".terms method (a PINN), or a dict of named losses; got {type(objective).__name__}")


def total(f: Any) -> Callable[[Tensor], Tensor]:
    r"""``f`` (any objective :func:`function` reads) as the scalar loss :math:`L(\theta) = \sum_k L_k(\theta)`."""
    fn = function(f)

    def loss(theta: Tensor) -> Tensor:
        return _sum_terms(fn(theta))
    return loss


def as_terms(f: Any) -> TermsFn:
    """``f`` (any objective :func:`function` reads) as a terms function; a scalar loss becomes ``{"loss": f}``."""
    fn = function(f)

    def terms(theta: Tensor) -> dict[str, Tensor]:
        out = fn(theta)
        return dict(out) if isinstance(out, Mapping) else {"loss": out}
    return terms


def term(f: Callable[[Tensor], Mapping[str, Tensor]], name: str) -> Callable[[Tensor], Tensor]:
    """The single term ``name`` of a terms function, as a loss of its own: ``theta -> f(theta)[name]``."""
    def loss(theta: Tensor) -> Tensor:
        return f(theta)[name]
    return loss


def resolve(objective: Any, theta0: Tensor | None) -> tuple[TermsFn, Tensor]:
    """``(terms function, theta0)`` of an objective; ``theta0`` defaults to the model's own (a :class:`~pinnkit.PINN`)."""
    terms_fn = as_terms(objective)
    if theta0 is None:
        if not hasattr(objective, "theta0"):
            raise ValueError("pass theta0= when the objective is a plain function of theta")
        theta0 = objective.theta0
    return terms_fn, theta0


def _functorch_active() -> bool:
    probe = getattr(torch._C, "_are_functorch_transforms_active", None)
    return True if probe is None else bool(probe())


def value_and_grad(terms_fn: Loss, theta: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """``(loss, terms, grad)`` at ``theta``, detached; by plain autograd (faster), or by
    :func:`torch.func.grad_and_value` inside a ``torch.func`` transform.
    """
    terms_of = as_terms(terms_fn)
    if not _functorch_active():
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            t = terms_of(th)
            loss = _sum_terms(t)
            g = torch.autograd.grad(loss, th, allow_unused=True)[0] if loss.requires_grad else None
        g = torch.zeros_like(th) if g is None else g
        return loss.detach(), {k: v.detach() for k, v in t.items()}, g.detach()

    def value(th: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        t = terms_of(th)
        return _sum_terms(t), {k: v.detach() for k, v in t.items()}

    g, (loss, terms) = torch.func.grad_and_value(value, has_aux=True)(theta.detach())
    return loss.detach(), terms, g.detach()
