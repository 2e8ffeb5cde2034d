r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024), as a ``torch.optim.Optimizer``.

For a 2-D weight with gradient :math:`G` (``m x n``) SOAP keeps exponential moving averages of the two
Kronecker factors of Shampoo,

.. math:: L \leftarrow \beta_s L + (1-\beta_s)\, G G^\top, \qquad R \leftarrow \beta_s R + (1-\beta_s)\, G^\top G,

and their eigenbases :math:`Q_L, Q_R`. It runs Adam on the rotated gradient :math:`\tilde G = Q_L^\top G Q_R`
(first moment :math:`m`, second moment :math:`v` in the rotated basis) and rotates the step back,
:math:`\Delta W = -\eta\, Q_L\, (\hat m / (\sqrt{\hat v} + \epsilon))\, Q_R^\top`. The eigenbases are found
by ``eigh`` the first time and refreshed every ``precondition_frequency`` steps by one power iteration
:math:`Q \leftarrow \mathrm{qr}(L Q)` (columns sorted by the estimated eigenvalues
:math:`\mathrm{diag}(Q^\top L Q)`, and :math:`v` permuted along). 1-D parameters (biases) get plain Adam
unless ``precondition_1d=True``. As in the reference the very first ``step()`` only initialises the
preconditioner and does not move the parameters, so the current gradient is never used in its own projection.

This follows the reference implementation (github.com/nikhilvyas/SOAP, ``soap.py``) line by line, with three
deliberate differences that do not change the mathematics: the first moment is stored in the original basis
and rotated when used (the reference stores it rotated and rotates it back and forth around every refresh);
eigenbases are computed in the parameter's own dtype (the reference always uses float32, which limits
the orthogonality of :math:`Q` to about 1e-7 in float64 training); ``merge_dims`` and ``channels_last``
(for convolutions) are not offered.

Defaults are the reference's (``lr=3e-3``, ``betas=(0.95, 0.95)``, ``weight_decay=0.01``,
``precondition_frequency=10``). Wang et al. (2025) train PINNs with ``betas=(0.9, 0.999)``, ``eps=1e-8``,
``weight_decay=0`` and ``precondition_frequency=2``: these are the defaults of :func:`soap_stepper`, which
``pk.train(pinn, "soap", ..., blocks=pinn.blocks)`` uses.

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
    """SOAP optimizer (Adam in the Shampoo eigenbasis); see the module docstring for the update.

    Args:
        params: parameters (any shape; each tensor dimension up to ``max_precond_dim`` gets a Kronecker factor).
        lr: learning rate :math:`\\eta`.
        betas: Adam's :math:`(\\beta_1, \\beta_2)`.
        shampoo_beta: EMA rate of :math:`L, R`; negative means use ``betas[1]``.
        eps: Adam's :math:`\\epsilon`, added to :math:`\\sqrt{\\hat v}`.
        weight_decay: decoupled (AdamW) weight decay, applied after the step: :math:`W \\leftarrow (1-\\eta\\lambda)W`.
        precondition_frequency: refresh :math:`Q_L, Q_R` every this many steps.
        max_precond_dim: dimensions larger than this get no factor (identity rotation).
        precondition_1d: also precondition 1-D tensors with a full ``n x n`` factor.
        normalize_grads: divide each step by its RMS.
        correct_bias: Adam's bias correction.
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

    # --- rotations ---------------------------------------------------------------------------------
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

    # --- preconditioner ----------------------------------------------------------------------------
    @staticmethod
    def _eigenbasis(m: Tensor) -> Tensor:
        """Eigenvectors of the symmetric factor ``m``, largest eigenvalue first (reference: eigh + flip)."""
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
        dims = grad.shape
        keep = grad.dim() > 1 or group["precondition_1d"]
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(grad)
        state["exp_avg_sq"] = torch.zeros_like(grad)
        state["GG"] = [torch.zeros(n, n, dtype=grad.dtype, device=grad.device)
                       if keep and n <= group["max_precond_dim"] else None for n in dims]
        state["Q"] = None

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
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)                       # m, original basis
                exp_avg_sq.mul_(beta2).add_(self.project(grad, Q).square(), alpha=1.0 - beta2)  # v, rotated basis
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
        """SOAP's state (moments, Kronecker factors, eigenbases) for :class:`pinnkit.train.TrainState`."""
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.opt.load_state_dict(state["opt"])


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
    """Stepper factory for :data:`pinnkit.train.STEPPERS` (``"soap"``): SOAP with Wang et al.'s PINN settings.

    Args:
        terms_fn: the loss (terms dict or scalar) of the flat ``theta``.
        theta: the starting point (copied).
        lr: learning rate.
        blocks: the layout of ``theta`` (``pinn.blocks``: ``start``, ``stop``, ``shape`` of each parameter
            tensor); required, ``pk.train`` passes the model's.
        betas, eps, weight_decay: Adam's constants (defaults ``(0.9, 0.999)``, ``1e-8``, ``0``).
        precondition_frequency: eigenbasis refresh interval (default 2).
        shampoo_beta: moving-average factor of the Kronecker factors (``-1``: ``betas[1]``).

    Returns:
        A :class:`SOAPStepper`.

    Raises:
        ValueError: missing or malformed ``blocks``, or a bad hyperparameter.
    """
    return SOAPStepper(terms_fn, theta, blocks, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                       precondition_frequency=precondition_frequency, shampoo_beta=shampoo_beta)
