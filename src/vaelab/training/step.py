"""One optimisation step."""

from __future__ import annotations

import torch

from ..models.vae import VAE


def train_step(model: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Minimise the batch mean of the objective's per-example loss; return the terms, detached."""
    terms = model(x)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].mean().backward()
    optimizer.step()
    return {k: v.detach() for k, v in terms.items()}
