"""Optimisers by name, with the seeds' frameworks' defaults where they differ from PyTorch's.

Each runs its fastest kernel for the parameters' device (`runtime.optimizer_kernel`),
on all parameters at once as one flat tensor (`training/flat.py`) unless asked not to.
"""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..registry import Registry
from ..runtime import optimizer_kernel
from .flat import FlatOptimizer

OPTIMIZERS: Registry = Registry("optimizer")

OPTIMIZERS.register("adam", lambda params, lr, device: torch.optim.Adam(
    params, lr=lr, **optimizer_kernel(device, fused_ok=True)))
# Keras' RMSprop: rho 0.9 and epsilon 1e-7 (PyTorch: alpha 0.99, eps 1e-8). PyTorch has no fused RMSprop.
OPTIMIZERS.register("rmsprop", lambda params, lr, device: torch.optim.RMSprop(
    params, lr=lr, alpha=0.9, eps=1e-7, **optimizer_kernel(device, fused_ok=False)))


def build_optimizer(params, cfg: TrainConfig, *, flat: bool = True) -> torch.optim.Optimizer | FlatOptimizer:
    """`cfg.optimizer` over `params`; with `flat`, their storage moves into one buffer it updates in one go.

    Build it after the model is placed (device and memory layout). Data-parallel
    training passes flat=False: DDP manages the gradients itself.
    """
    params = list(params)
    device = params[0].device if params else torch.device("cpu")
    make = lambda ps: OPTIMIZERS[cfg.optimizer](ps, cfg.lr, device)  # noqa: E731
    if flat and params and len({(p.device, p.dtype) for p in params}) == 1:
        return FlatOptimizer(params, make)
    return make(params)
