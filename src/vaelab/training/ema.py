"""An exponential moving average of a model's weights, kept on their device (as VDVAE evaluates its EMA copy).

After every applied update, ema <- d * ema + (1 - d) * weight, for each
parameter (`torch._foreach_lerp_`: one kernel for all). Buffers (batch-norm
statistics) are not averaged: the model's own are used with either weights.

At training step t (0-based) the decay is d = min(decay, (1 + t) / (10 + t)),
as TensorFlow's `ExponentialMovingAverage` does with `num_updates`: without
it a decay of 0.999 keeps about e^-1 of the initial weights after 1,000 steps,
and a short run's average (which validation reports) is far worse than its
weights. It follows from the step alone, so resume stays exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """The averaged copy of `model`'s parameters, starting from their current values."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    def decay_at(self, step: int | None) -> float:
        """The decay in force after training step `step` (0-based); `decay` itself when no step is known."""
        return self.decay if step is None else min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int | None = None) -> None:
        """Move the average towards the weights (after an update that was applied at training step `step`)."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{parameter name: averaged tensor}, as the checkpoint saves it (`ema.<name>`)."""
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a saved average (names and shapes already checked: `checkpoint.check_ema_state`)."""
        for name, shadow in zip(self.names, self.shadow):
            shadow.copy_(state[name])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block; its own come back, bit for bit, after."""
        params = [p.detach() for p in self.params]
        raw = [p.clone() for p in params]
        torch._foreach_copy_(params, self.shadow)
        try:
            yield
        finally:
            torch._foreach_copy_(params, raw)
