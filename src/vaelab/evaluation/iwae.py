"""Importance-weighted estimates of log p(x) (Burda et al. 2016), batched over images and samples.

For K samples z_k ~ q(z|x), log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) and
    log p(x) >= IWAE_K = logsumexp_k(log w_k) - log K,
which equals the (Monte Carlo) ELBO for K = 1 and tightens as K grows. The
negative, averaged over images, is the importance-weighted NLL in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..models.objectives import importance_bound
from ..models.vae import VAE, is_top_down
from ..training import direct

# (image, sample) pairs decoded at once when the caller does not say. On the CPU small
# passes stay in cache (cvae2 on 2 cores with AMX: ~21,000 pairs/s at 256, ~9,900 at 1,024;
# without AMX ~8,000 at 256, ~4,700 at 4,096); a GPU wants larger ones. Either way memory
# stays bounded whatever K is.
DEFAULT_CHUNK = {"cpu": 256, "cuda": 4096}


def default_chunk(device: torch.device | str) -> int:
    return DEFAULT_CHUNK.get(torch.device(device).type, 4096)


@torch.inference_mode()
def log_weights(
    model: VAE, x: torch.Tensor, k: int, *, chunk: int | None = None, done: Callable[[int], None] | None = None
) -> torch.Tensor:
    """log w for K samples per image: x (B, C, H, W) -> (K, B).

    At most `chunk` (image, sample) pairs go through the decoder at once, so
    memory stays bounded whatever K and B are. The noise is drawn one sample
    index at a time, (B, D_l) per latent group and draw from the global RNG, so
    for a given seed the values do not depend on `chunk` (default:
    `default_chunk(device)`). A hierarchy runs its whole top-down pass per
    (image, sample) pair; a single latent only its decoder.
    `done(pairs)` is called after each decoder pass (for progress).
    """
    chunk = default_chunk(x.device) if chunk is None else chunk
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be at least 1, got k={k}, chunk={chunk}")
    h = model.encoder(model.images(x))  # the encoder's output (a hierarchy's: its activations at each resolution)
    top_down = model.top_down
    dims = [math.prod(shape) for shape in model.group_shapes]
    single = not is_top_down(model.decoder)
    kwargs = {"decode": lambda z: direct.forward(model.decoder, z)} if single else {}  # its faster inference pass
    b = x.shape[0]
    per_pass = max(1, chunk // b)  # samples per decoder pass
    width = min(b, chunk)  # images per decoder pass (all of them unless chunk < B)
    out = torch.empty(k, b, device=x.device)
    for start in range(0, k, per_pass):
        n = min(per_pass, k - start)
        # one sample index at a time, group by group: (B, D_l) per draw
        draws = [[torch.randn(b, d, device=x.device) for d in dims] for _ in range(n)]
        eps = [torch.stack([draw[g] for draw in draws]) for g in range(len(dims))]  # (n, B, D_l) per group
        for i in range(0, b, width):
            rows = slice(i, i + width)
            trace = top_down.posterior_pass(_rows(h, rows), eps=[e[:, rows] for e in eps], **kwargs)
            log_px_z = model.likelihood.log_prob(trace.out, x[rows])  # (n, w), x broadcasts over samples
            log_ratio = [g.log_ratio() for g in trace.groups]  # (n, w) each
            out[start : start + n, rows] = log_px_z + (log_ratio[0] if single else torch.stack(log_ratio).sum(0))
            if done is not None:
                done(n * min(width, b - i))
    return out


def _rows(h: torch.Tensor | list[torch.Tensor], rows: slice) -> torch.Tensor | list[torch.Tensor]:
    """The rows of the encoder's output: one tensor, or a hierarchy's activations at each resolution."""
    return h[rows] if isinstance(h, torch.Tensor) else [a[rows] for a in h]


def iwae_bound(
    model: VAE, x: torch.Tensor, k: int, *, chunk: int | None = None, done: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The IWAE lower bound on log p(x) per image: (B,). `done`: as `log_weights`."""
    return importance_bound(log_weights(model, x, k, chunk=chunk, done=done))
