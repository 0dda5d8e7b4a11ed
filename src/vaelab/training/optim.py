"""Optimisers by name, with the seeds' frameworks' defaults where they differ from PyTorch's."""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")

OPTIMIZERS.register("adam", lambda params, lr: torch.optim.Adam(params, lr=lr))
# Keras' RMSprop: rho 0.9 and epsilon 1e-7 (PyTorch: alpha 0.99, eps 1e-8).
OPTIMIZERS.register("rmsprop", lambda params, lr: torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7))


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.optimizer](params, cfg.lr)
