"""The test ELBO and its parts, averaged over images, deterministic for a given seed."""

from __future__ import annotations

import torch

from ..config import ObjectiveConfig
from ..models.objectives import ELBO
from ..models.vae import VAE
from ..training.batches import Batches

# Evaluation always uses the analytic KL: the same expectation as the Monte Carlo
# estimate some presets train with, without its variance.
_EVAL_ELBO = ELBO(ObjectiveConfig(kl="analytic", beta=1.0))


@torch.inference_mode()
def evaluate_elbo(model: VAE, images: torch.Tensor, *, batch_size: int = 1000, dynamic_binarize: bool = False,
                  seed: int = 0) -> dict[str, float]:
    """Mean ELBO, recon (-log p(x|z)) and KL in nats per image over uint8 images (N, C, H, W).

    The random draws (z, and the binarisation when dynamic) come from `seed`
    inside a forked RNG, so the result is repeatable and training's random
    stream is left untouched.
    """
    was_training = model.training
    model.eval()
    device = model.device
    batches = Batches(images, batch_size, device=device, dynamic_binarize=dynamic_binarize)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for x in batches:
            t = _EVAL_ELBO(model, x)
            sums += torch.stack([t["elbo"].sum(), t["recon"].sum(), t["kl"].sum()]).double()
    model.train(was_training)
    elbo, recon, kl = (sums / len(images)).tolist()
    return {"n": len(images), "elbo": elbo, "recon": recon, "kl": kl}
