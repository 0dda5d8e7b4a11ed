"""The learning rate at each step: a pure function of the step count, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math

from ..config import TrainConfig


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """The learning rate of step `step` (0-based) of a run of `total_steps` steps.

    Linear warm-up over the first `cfg.warmup_steps` steps (step s takes
    lr * (s + 1) / warmup_steps, so the first update is not wasted and the
    last one of the warm-up takes lr), then `cfg.lr` ("constant") or a cosine
    decay from lr towards 0 ("cosine"; Loshchilov & Hutter, 2017, without
    restarts), which would reach 0 one step after the last. Steps past
    `total_steps` keep the last step's rate. "constant" with no warm-up is
    `cfg.lr` itself, as before schedules existed.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    t = min(step - cfg.warmup_steps, decay_steps - 1) / decay_steps  # in [0, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
