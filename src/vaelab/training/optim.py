"""Optimisers by name, with the seeds' frameworks' defaults where they differ from PyTorch's.

Each runs its fastest kernel for the parameters' device (`runtime.optimizer_kernel`),
and `update` applies a step.
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as _optimizer

from ..config import TrainConfig
from ..registry import Registry
from ..runtime import optimizer_kernel

OPTIMIZERS: Registry = Registry("optimizer")

# Each factory takes (params, lr, weight_decay, device). The weight decay is each optimiser's own: decoupled
# from the gradient for adamw (Loshchilov & Hutter, 2019), an L2 term added to the gradient for the others.
OPTIMIZERS.register(
    "adam",
    lambda params, lr, weight_decay, device: torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay, **optimizer_kernel(device, fused_ok=True)
    ),
)
OPTIMIZERS.register(
    "adamw",
    lambda params, lr, weight_decay, device: torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, **optimizer_kernel(device, fused_ok=True)
    ),
)
# PyTorch has no fused Adamax or RMSprop.
OPTIMIZERS.register(
    "adamax",
    lambda params, lr, weight_decay, device: torch.optim.Adamax(
        params, lr=lr, weight_decay=weight_decay, **optimizer_kernel(device, fused_ok=False)
    ),
)
# Keras' RMSprop: rho 0.9 and epsilon 1e-7 (PyTorch: alpha 0.99, eps 1e-8).
OPTIMIZERS.register(
    "rmsprop",
    lambda params, lr, weight_decay, device: torch.optim.RMSprop(
        params, lr=lr, alpha=0.9, eps=1e-7, weight_decay=weight_decay, **optimizer_kernel(device, fused_ok=False)
    ),
)


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    device = params[0].device if params else torch.device("cpu")
    return OPTIMIZERS[cfg.optimizer](params, cfg.lr, cfg.weight_decay, device)


def main_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the run's optimiser trains: all the model's but its objective's own (FactorVAE's
    discriminator), which the objective's auxiliary optimiser trains (`auxiliary_optimizer`)."""
    objective = getattr(model, "objective", None)
    own = {id(p) for p in objective.parameters()} if isinstance(objective, torch.nn.Module) else set()
    return [p for p in model.parameters() if id(p) not in own]


def auxiliary_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer | None:
    """The objective's second optimiser (FactorVAE's discriminator: `objective.auxiliary_optimizer()`), built
    once the model is on its device; None for an objective with no second update."""
    make = getattr(getattr(model, "objective", None), "auxiliary_optimizer", None)
    return make() if make is not None else None


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group's learning rate, for the next step (the schedule's value, `schedule.lr_at`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def update(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`; for fused Adam, its kernel called directly with the optimiser's own state.

    `Adam.step` wraps one fused kernel in Python, which inside a training step
    costs more than its kernel: leaving it out made a cvae2 bf16 step at
    batch 32 on 2 CPU cores 1.003x to 1.032x faster (one process alternating
    blocks of steps with either; about 1%). Here the same kernel runs on
    the same state tensors with the same arguments, so parameters, state and
    `state_dict()` are the same as `step()`'s, bit for bit
    (tests/training/test_optim.py). Anything else takes `step()`: other
    optimisers, a first step (the state is made there), hooks, a patched
    `step`, a gradient scaler's attributes, a tensor learning rate, complex or
    sparse tensors, or several devices or dtypes in one group.
    """
    if not _fused_adam_update(optimizer):
        optimizer.step()


def _fused_adam_update(opt: torch.optim.Optimizer) -> bool:
    if (
        type(opt) is not torch.optim.Adam
        or "step" in vars(opt)
        or opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
        or _optimizer._global_optimizer_pre_hooks
        or _optimizer._global_optimizer_post_hooks
        or hasattr(opt, "grad_scale")
        or hasattr(opt, "found_inf")
    ):
        return False
    calls = []
    for group in opt.param_groups:
        if (
            not group["fused"]
            or group["differentiable"]
            or isinstance(group["lr"], torch.Tensor)
            or any(isinstance(b, torch.Tensor) for b in group["betas"])
        ):
            return False
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        states = [opt.state.get(p) for p in params]
        first = params[0]
        if not all(s for s in states) or any(
            p.device != first.device or p.dtype != first.dtype or p.is_complex() or p.grad.is_sparse for p in params
        ):
            return False  # a first step makes the state; the rest is what `step()` handles in other ways
        calls.append((group, params, states))
    for group, params, states in calls:  # as `torch.optim.adam._fused_adam` does for one device and dtype
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        kernel = (
            torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
        )  # absent before torch 2.8
        beta1, beta2 = group["betas"]
        kernel(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            steps,
            amsgrad=group["amsgrad"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            grad_scale=None,
            found_inf=None,
        )
    return True
