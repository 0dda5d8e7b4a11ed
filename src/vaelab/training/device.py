"""Pick the device a run trains on."""

from __future__ import annotations

import torch

from ..errors import VaelabError


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else the CPU; 'cuda' without CUDA is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VaelabError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaelabError(f"device {name!r} asked for, but CUDA is not available here (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise VaelabError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device
