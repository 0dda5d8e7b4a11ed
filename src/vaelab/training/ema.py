"""An exponential moving average of a model's weights, kept on their device (as VDVAE evaluates its EMA copy).

After every applied update, ema <- decay * ema + (1 - decay) * weight, for each
parameter (`torch._foreach_lerp_`: one kernel for all). Buffers (batch-norm
statistics) are not averaged: the model's own are used with either weights.
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

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the weights (after an update that was applied)."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)

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
