r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024), as a ``torch.optim.Optimizer``.

For a 2-D weight with gradient :math:`G`, with EMAs :math:`L \leftarrow \beta_s L + (1-\beta_s) G G^\top`,
:math:`R \leftarrow \beta_s R + (1-\beta_s) G^\top G` and their eigenbases :math:`Q_L, Q_R`, SOAP runs Adam on
:math:`\tilde G = Q_L^\top G Q_R` and steps :math:`\Delta W = -\eta\, Q_L (\hat m / (\sqrt{\hat v} + \epsilon))
Q_R^\top`. :math:`Q` comes from ``eigh`` at the first step (which moves nothing) and is refreshed every
``precondition_frequency`` steps by :math:`Q \leftarrow \mathrm{qr}(L Q)`; 1-D tensors get plain Adam. As the
reference (github.com/nikhilvyas/SOAP) except: :math:`m` is kept in the original basis, :math:`Q` in the
parameter's dtype, no ``merge_dims``.

>>> W = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
>>> opt = SOAP([W], lr=0.1)
>>> W.grad = W.detach().clone(); opt.step()         # first step: preconditioner only, W unchanged
>>> bool((W == torch.tensor([[1.0, 2.0], [3.0, 4.0]])).all())
True
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from .objective import Loss, value_and_grad


class SOAP(torch.optim.Optimizer):
    r"""SOAP (module docstring) with the reference's defaults. ``shampoo_beta``: :math:`\beta_s` (negative:
    ``betas[1]``); ``weight_decay``: :math:`W \leftarrow (1-\eta\lambda)W` after the step; ``max_precond_dim``:
    larger dimensions get no factor; ``precondition_1d``: factors on 1-D tensors too; ``normalize_grads``: divide
    each step by its RMS.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 3e-3,
                 betas: tuple[float, float] = (0.95, 0.95), shampoo_beta: float = -1.0, eps: float = 1e-8,
                 weight_decay: float = 0.01, precondition_frequency: int = 10, max_precond_dim: int = 10000,
                 precondition_1d: bool = False, normalize_grads: bool = False, correct_bias: bool = True):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if shampoo_beta >= 1.0:
            raise ValueError(f"shampoo_beta must be < 1 (negative: use betas[1]), got {shampoo_beta}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be non-negative, got eps={eps}, weight_decay={weight_decay}")
        if int(precondition_frequency) != precondition_frequency or precondition_frequency < 1:
            raise ValueError(f"precondition_frequency must be a positive integer, got {precondition_frequency}")
        defaults = dict(lr=lr, betas=tuple(betas), shampoo_beta=shampoo_beta, eps=eps, weight_decay=weight_decay,
                        precondition_frequency=int(precondition_frequency), max_precond_dim=max_precond_dim,
                        precondition_1d=precondition_1d, normalize_grads=normalize_grads, correct_bias=correct_bias)
        super().__init__(params, defaults)

    @staticmethod
    def project(x: Tensor, Q: Sequence[Tensor | None]) -> Tensor:
        """Rotate into the eigenbasis: for a matrix :math:`Q_L^\\top X Q_R` (``None`` factors: identity)."""
        for q in Q:
            x = torch.tensordot(x, q, dims=([0], [0])) if q is not None else x.permute(*range(1, x.dim()), 0)
        return x

    @staticmethod
    def project_back(x: Tensor, Q: Sequence[Tensor | None]) -> Tensor:
        """Rotate back to the original basis: for a matrix :math:`Q_L X Q_R^\\top`."""
        for q in Q:
            x = torch.tensordot(x, q, dims=([0], [1])) if q is not None else x.permute(*range(1, x.dim()), 0)
        return x

    @staticmethod
    def _eigenbasis(m: Tensor) -> Tensor:
        """Eigenvectors of the symmetric factor ``m``, largest eigenvalue first."""
        eye = torch.eye(m.shape[0], device=m.device, dtype=m.dtype)
        try:
            Q = torch.linalg.eigh(m + 1e-30 * eye)[1]
        except RuntimeError:  # eigh failed to converge: retry in float64
            Q = torch.linalg.eigh(m.double() + 1e-30 * eye.double())[1].to(m.dtype)
        return torch.flip(Q, [1])

    def _refresh_qr(self, state: dict[str, Any]) -> list[Tensor | None]:
        """One power iteration + QR per factor; columns sorted by estimated eigenvalue, ``exp_avg_sq`` permuted."""
        exp_avg_sq = state["exp_avg_sq"]
        new: list[Tensor | None] = []
        for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
            if m is None:
                new.append(None)
                continue
            est_eig = torch.diag(o.T @ m @ o)
            order = torch.argsort(est_eig, descending=True)
            exp_avg_sq = exp_avg_sq.index_select(ind, order)
            new.append(torch.linalg.qr(m @ o[:, order])[0])
        state["exp_avg_sq"] = exp_avg_sq
        return new

    def _update_preconditioner(self, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """EMA of the Kronecker factors; eigh the first time, QR refresh every ``precondition_frequency`` steps."""
        beta = group["shampoo_beta"] if group["shampoo_beta"] >= 0 else group["betas"][1]
        for idx, m in enumerate(state["GG"]):
            if m is None:
                continue
            others = [*chain(range(idx), range(idx + 1, grad.dim()))]
            m.lerp_(torch.tensordot(grad, grad, dims=(others, others)), 1.0 - beta)
        if state["Q"] is None:
            state["Q"] = [None if m is None else self._eigenbasis(m) for m in state["GG"]]
        if state["step"] > 0 and state["step"] % group["precondition_frequency"] == 0:
            state["Q"] = self._refresh_qr(state)

    def _init_state(self, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        keep = grad.dim() > 1 or group["precondition_1d"]
        state.update(step=0, exp_avg=torch.zeros_like(grad), exp_avg_sq=torch.zeros_like(grad),
                     GG=[torch.zeros(n, n, dtype=grad.dtype, device=grad.device)
                         if keep and n <= group["max_precond_dim"] else None for n in grad.shape], Q=None)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One SOAP step for every parameter with a ``.grad`` (the first call only builds the preconditioner)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse or torch.is_complex(grad):
                    raise ValueError("SOAP supports dense real gradients only")
                if grad.dtype in (torch.float16, torch.bfloat16):
                    grad = grad.float()
                state = self.state[p]
                if "Q" not in state:
                    self._init_state(grad, state, group)
                    self._update_preconditioner(grad, state, group)
                    continue  # as the reference: the current gradient never enters its own projection
                Q = state["Q"]
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).add_(self.project(grad, Q).square(), alpha=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size *= math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                update = self.project_back(self.project(exp_avg, Q) / denom, Q)
                if group["normalize_grads"]:
                    update = update / (1e-30 + update.square().mean().sqrt())
                p.add_(update.to(p.dtype), alpha=-step_size)
                if group["weight_decay"] > 0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
                self._update_preconditioner(grad, state, group)
        return loss


class SOAPStepper:
    """SOAP on the flat ``theta``: one leaf tensor per parameter block (``pinn.blocks``), gradients by autograd."""

    def __init__(self, terms_fn: Loss, theta: Tensor, blocks: Sequence[Any] | None, **soap_options: Any):
        blocks = _check_blocks(blocks, theta)
        self.terms_fn = terms_fn
        self.blocks = tuple(blocks)
        th = theta.detach()
        self.params = [th[b.start:b.stop].reshape(tuple(b.shape)).clone() for b in self.blocks]
        self.opt = SOAP(self.params, **soap_options)

    @property
    def theta(self) -> Tensor:
        """The current iterate (a flat parameter vector)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def step(self) -> None:
        """Advance one optimizer step (updates :attr:`theta`)."""
        _, _, g = value_and_grad(self.terms_fn, self.theta)
        for p, b in zip(self.params, self.blocks):
            p.grad = g[b.start:b.stop].reshape(p.shape)
        self.opt.step()

    def state_dict(self) -> dict[str, Any]:
        """SOAP's state (moments, Kronecker factors, eigenbases) for :class:`pinnkit.training.TrainState`."""
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.opt.load_state_dict(state["opt"])

    def precondition(self, v: Tensor) -> Tensor | None:
        r"""SOAP's current preconditioner on a flat vector, block by block:
        :math:`Q_L [(Q_L^\top X Q_R) / (\sqrt{v} + \epsilon)] Q_R^\top` (:math:`v` not bias-corrected; plain
        Adam on 1-D blocks). ``None`` before the first update (the first step only builds :math:`Q`).
        """
        parts = []
        for p, b in zip(self.params, self.blocks):
            st = self.opt.state.get(p, {})
            if "exp_avg_sq" not in st or st.get("step", 0) == 0:
                return None
            Q, denom = st["Q"], st["exp_avg_sq"].sqrt() + self.opt.param_groups[0]["eps"]
            x = v[b.start:b.stop].reshape(p.shape)
            parts.append(self.opt.project_back(self.opt.project(x, Q) / denom, Q).reshape(-1))
        return torch.cat(parts)


def _check_blocks(blocks: Sequence[Any] | None, theta: Tensor) -> Sequence[Any]:
    if blocks is None:
        raise ValueError("SOAP needs the parameter blocks (its Kronecker factors live on the 2-D weights): "
                         "pass blocks=pinn.blocks to pk.train (or to soap_stepper)")
    pos = 0
    for b in blocks:
        if b.start != pos or b.stop - b.start != math.prod(b.shape):
            raise ValueError(f"blocks must tile theta in order with stop - start == prod(shape); block "
                             f"{getattr(b, 'name', b)!r} has start={b.start}, stop={b.stop}, shape={tuple(b.shape)}")
        pos = b.stop
    if pos != theta.numel():
        raise ValueError(f"blocks cover {pos} entries but theta has {theta.numel()}; pass this PINN's pinn.blocks")
    return blocks


def soap_stepper(terms_fn: Loss, theta: Tensor, lr: float = 3e-3, blocks: Sequence[Any] | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 precondition_frequency: int = 2, shampoo_beta: float = -1.0) -> SOAPStepper:
    """The ``"soap"`` stepper of :data:`pinnkit.training.STEPPERS` with Wang et al.'s PINN settings; ``blocks``
    (``pinn.blocks``: ``start``, ``stop``, ``shape`` of each tensor in ``theta``) is required (``ValueError``).
    """
    return SOAPStepper(terms_fn, theta, blocks, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                       precondition_frequency=precondition_frequency, shampoo_beta=shampoo_beta)
