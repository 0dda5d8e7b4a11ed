"""Optimisers by name, with the seeds' frameworks' defaults where they differ from PyTorch's.

Each runs its fastest kernel for the parameters' device (`runtime.optimizer_kernel`).
"""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..registry import Registry
from ..runtime import optimizer_kernel

OPTIMIZERS: Registry = Registry("optimizer")

OPTIMIZERS.register("adam", lambda params, lr, device: torch.optim.Adam(
    params, lr=lr, **optimizer_kernel(device, fused_ok=True)))
# Keras' RMSprop: rho 0.9 and epsilon 1e-7 (PyTorch: alpha 0.99, eps 1e-8). PyTorch has no fused RMSprop.
OPTIMIZERS.register("rmsprop", lambda params, lr, device: torch.optim.RMSprop(
    params, lr=lr, alpha=0.9, eps=1e-7, **optimizer_kernel(device, fused_ok=False)))


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    device = params[0].device if params else torch.device("cpu")
    return OPTIMIZERS[cfg.optimizer](params, cfg.lr, device)
