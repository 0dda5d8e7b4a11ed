"""One optimisation step, with the numerical guards: a bad update never reaches the weights."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..models import noise
from ..models.vae import VAE
from ..runtime import autocast, compute_dtype
from .direct import direct_step
from .direct import elbo as direct_elbo
from .direct.layers import rule_for
from .distributed import SINGLE, Dist
from .ema import EMA
from .optim import update


def train_step(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    *,
    grad_clip: float | None = None,
    skip_grad_norm: float | None = None,
    precision: str = "fp32",
    batch_size: int | None = None,
    dist: Dist = SINGLE,
    direct: bool = True,
    ema: EMA | None = None,
    record_norm: Callable[[float], None] | None = None,
    auxiliary_optimizer: torch.optim.Optimizer | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Minimise the batch mean of the objective's per-example loss.

    In data-parallel training `model` is the DDP wrapper, `x` this rank's rows
    and `batch_size` the global batch: each rank's loss is its share of the
    global mean, so DDP's gradient average is that mean's gradient whatever
    the split, and all ranks agree on skipping an update.

    Returns the detached per-example terms and whether the update was applied.
    The update is skipped (weights and optimiser state untouched) when the loss
    or the gradient norm is not finite, or the norm exceeds `skip_grad_norm`
    (as VDVAE does); otherwise the gradient is clipped to `grad_clip` first,
    and after the update `ema` (if any) moves towards the new weights.
    `record_norm`, if given, gets the total gradient norm before clipping
    (a float the guard has on the host already: no extra sync).
    `precision="bf16"` runs the networks in bf16 (matrix products and
    convolutions, as bf16 autocast does); weights, gradients and the loss
    terms are fp32 either way.

    Models made only of parts with hand-written backward rules take the
    direct step (`training/direct`, the same gradients without autograd)
    unless `direct=False`; the rest, and data-parallel training, autograd.

    With `auxiliary_optimizer` (an objective with a second update: FactorVAE's
    discriminator), an applied step is followed by `objective.auxiliary_step`
    on the step's latents, whose per-example terms join the others.
    """
    weight = dist.world / (batch_size or len(x))
    fast = direct_step(model) if direct and not dist.enabled else None
    if fast is not None:
        terms = fast(model, x, compute_dtype(precision), weight)  # computed without autograd: nothing to detach
        fast.clear_other_grads(optimizer)
        loss = terms["loss"].sum()  # for the guard only: the gradients are set
    else:
        with autocast(x.device, precision):
            terms = model(x)
        loss = terms["loss"].sum() * weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        terms = {k: v.detach() for k, v in terms.items()}
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # each gradient's norm and the loss in one host sync (free on the CPU, microseconds on CUDA), the guard
    # in Python: ten tensor operations fewer than `get_total_norm` and `torch.isfinite` on tensors, which
    # a small step feels (README, Speed)
    norms = torch._foreach_norm([p.grad for p in params]) if params else []
    *norm_values, loss_value = torch.stack([*norms, loss.detach()]).tolist()
    norm_value = math.sqrt(math.fsum(n * n for n in norm_values))  # the total norm
    if record_norm is not None:
        record_norm(norm_value)
    ok = math.isfinite(norm_value) and math.isfinite(loss_value)
    if skip_grad_norm is not None:
        ok = ok and norm_value <= skip_grad_norm
    applied = dist.all(ok, x.device)
    if applied:
        if grad_clip is not None and norms:  # the total norm as `torch.nn.utils.get_total_norm` computes it
            norm = torch.linalg.vector_norm(torch.stack(norms))
            torch.nn.utils.clip_grads_with_norm_(params, grad_clip, norm, foreach=True)
        update(optimizer)
        if ema is not None:
            ema.update(noise.current_step())  # the step of the loop's step context; None outside
        if auxiliary_optimizer is not None:
            objective = model.objective  # never a DDP wrapper: the trainer refuses such objectives under torchrun
            terms |= objective.auxiliary_step(objective.latents, auxiliary_optimizer)
    return terms, applied


def step_kind(model: nn.Module, *, direct: bool = True, dist: Dist = SINGLE) -> str:
    """Which step `train_step` takes for `model`, for a run's first line: "direct step" or "autograd (why)"."""
    if not direct:
        return "autograd (asked for)"
    if dist.enabled:
        return "autograd (data-parallel)"
    if direct_step(model) is not None:
        return "direct step"
    return f"autograd ({_why_not_direct(model)})"


def _why_not_direct(model: nn.Module) -> str:
    """The first reason `direct_step` found none, in words (its own checks decide; this only tells)."""
    if type(model) is not VAE:
        return f"a {type(model).__name__}, not a plain VAE"
    if not direct_elbo.supported(model):
        return "no hand-written gradient for its objective, posterior, prior or likelihood"
    if any(p.device.type != "cpu" for p in model.parameters()):
        return "not on the CPU"
    for part in ("encoder", "decoder"):
        net = getattr(model, part)
        if type(net) is not nn.Sequential:
            return f"the {part} is a {type(net).__name__}, not an nn.Sequential"
        for i, layer in enumerate(net):
            if rule_for(layer) is None:
                return f"the {part}'s layer {i}, {type(layer).__name__}, has no direct rule"
    return "hooks, frozen weights or replaced methods"
