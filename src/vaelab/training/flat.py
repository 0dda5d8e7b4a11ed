"""An optimiser run on one flat buffer that holds all of a model's parameters, and one for their gradients.

PyTorch's fused Adam on the CPU pays a fixed cost per parameter tensor, and
so does the step's gradient-norm guard. A small model such as cvae2 (14
tensors, 70k numbers) spends more on that than on the arithmetic: alone,
Adam's step takes 0.15-0.20 ms on 14 tensors and 0.05 ms on one flat tensor
of the same numbers, and in a training step the difference is larger
(README, speed). The update itself is the same elementwise arithmetic.

Each parameter keeps being the model's own `nn.Parameter` (state-dict names
and values unchanged), but its storage moves into `flat` as a view with its
own strides (a channels-last weight stays channels-last), and its `.grad` is
a view of `flat.grad`, which backward accumulates into. `state_dict` and
`load_state_dict` speak the wrapped optimiser's per-parameter format, so
checkpoints are the same either way and load into either.

Every parameter is assumed to get a gradient every step, as in vaelab's
models: one that got none would be updated with a zero gradient rather than
skipped. Data-parallel training does not use this (DDP manages its own
gradient buckets).
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def _dense_strides(p: torch.Tensor) -> tuple[int, ...]:
    """The parameter's strides when they cover exactly numel() elements (contiguous or channels-last), else contiguous."""
    if p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)):
        return p.stride()
    return torch.empty(p.shape, device="meta").stride()


class FlatOptimizer:
    """`make([flat])`, the optimiser, updating `params` as one tensor; see the module docstring."""

    def __init__(self, params, make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> None:
        self.params = list(params)
        first = self.params[0]
        if any(p.device != first.device or p.dtype != first.dtype for p in self.params):
            raise ValueError("FlatOptimizer needs all parameters on one device and of one dtype")
        flat = torch.empty(sum(p.numel() for p in self.params), dtype=first.dtype, device=first.device)
        grad = torch.zeros_like(flat)
        self._layout: list[tuple[tuple[int, ...], tuple[int, ...], int]] = []  # (shape, strides, offset)
        self._grads: list[torch.Tensor] = []
        offset = 0
        for p in self.params:
            layout = (tuple(p.shape), _dense_strides(p), offset)
            view = flat.as_strided(*layout)
            view.copy_(p.detach())
            p.data = view
            self._layout.append(layout)
            self._grads.append(grad.as_strided(*layout))
            offset += p.numel()
        self._data_ptrs = [p.data_ptr() for p in self.params]
        self.flat = torch.nn.Parameter(flat)
        self.flat.grad = grad
        self.optimizer = make([self.flat])
        self.zero_grad()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradient buffer in place (whatever `set_to_none` says) and point each `.grad` at its view again."""
        self.flat.grad.zero_()
        for p, g in zip(self.params, self._grads):
            p.grad = g

    def step(self) -> None:
        for p, g, ptr in zip(self.params, self._grads, self._data_ptrs):
            if p.grad is not g or p.data_ptr() != ptr:  # e.g. the model was moved, or backward replaced a .grad
                raise RuntimeError("a parameter no longer lives in the optimiser's flat buffer; build the optimiser "
                                   "after placing the model and step only after zero_grad")
        self.optimizer.step()

    def _views(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.as_strided(*layout) for layout in self._layout]

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimiser's state in its per-parameter format (copies, one entry per parameter)."""
        inner = self.optimizer.state_dict()
        flat_state = inner["state"].get(0, {})
        state = {}
        for i in range(len(self.params)):
            state[i] = {k: (self._views(v)[i].clone() if torch.is_tensor(v) and v.shape == self.flat.shape
                            else v.clone() if torch.is_tensor(v) else v)
                        for k, v in flat_state.items()}
        (group,) = inner["param_groups"]
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a per-parameter state (as `state_dict` gives, or the plain optimiser saved) into the flat one."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"the optimiser state is for {sum(len(g['params']) for g in groups)} parameters in "
                             f"{len(groups)} group(s), not {len(self.params)} in one")
        flat_state: dict[str, Any] = {}
        for i, index in enumerate(groups[0]["params"]):
            for key, value in state_dict["state"].get(index, {}).items():
                if torch.is_tensor(value) and tuple(value.shape) == self._layout[i][0] and value.dim() > 0:
                    if key not in flat_state:
                        flat_state[key] = torch.zeros_like(self.flat, dtype=value.dtype)
                    self._views(flat_state[key])[i].copy_(value)
                else:
                    flat_state.setdefault(key, value)  # the step count: the same for every parameter
        self.optimizer.load_state_dict({"state": {0: flat_state} if flat_state else {},
                                        "param_groups": [{**groups[0], "params": [0]}]})
